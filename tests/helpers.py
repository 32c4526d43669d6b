"""Small builders shared by several test files (imported as ``helpers``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import torch

from squeezebert import HEADS, preset


def perturbed(head: str = "base", scale: float = 0.05, **changes):
    """A tiny model whose weights are not at their init values (zero biases would hide a wrong bias path)."""
    torch.manual_seed(0)
    model = HEADS[head](preset("tiny", **changes)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model


def kill_after_checkpoint(proc, latest: Path, step: int, timeout: float = 120.0) -> str:
    """SIGKILL a training subprocess once its ``checkpoints/latest`` names step ``step`` or later; returns the
    checkpoint it had reached. The job must still be running then (else the test proves nothing)."""
    wanted = f"step-{step:06d}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if latest.exists() and latest.read_text().strip() >= wanted:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the job finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return latest.read_text().strip()
