"""Training components: the one loop (loop.py) and optimisers (optim.py)."""
