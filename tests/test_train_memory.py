"""squeezebert.train.memory: freed training memory stays in the process (glibc), so the next step does not page it
in again."""

import os
import subprocess
import sys

import pytest

SCRIPT = """
import sys, torch
from squeezebert.train import memory

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

applied = memory.keep_freed_memory() if sys.argv[1] == "keep" else False
before = rss_mb()
block = torch.ones(64, 1024, 1024)  # 256 MB, touched
del block
print(applied, round(rss_mb() - before))
"""


def freed_mb_kept(mode: str, **env: str) -> tuple[bool, int]:
    # the allocator's own settings from outside (MALLOC_*, GLIBC_TUNABLES, a preloaded jemalloc) would decide instead
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD"))}
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                         env=clean | env).stdout
    applied, kept = out.split()
    return applied == "True", int(kept)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_block_stays_in_the_process_only_when_kept():
    applied, kept = freed_mb_kept("keep")
    if not applied:
        pytest.skip("this C library has no mallopt (not glibc)")
    assert kept > 200  # the 256 MB block is still mapped, ready for the next step
    assert freed_mb_kept("system")[1] < 50  # glibc as it is: the block went back to the kernel
    applied, kept = freed_mb_kept("keep", SQUEEZEBERT_SYSTEM_MALLOC="1")
    assert not applied and kept < 50  # the opt-out leaves malloc as it is
