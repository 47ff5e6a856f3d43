"""The pinned malloc mmap threshold: a freed large block goes back to the system, run after run."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the threshold is glibc's")

# Frees an 8 MiB block (glibc then raises its threshold to 8 MiB unless pinned), allocates and frees
# another, and prints how much of it stayed resident, in KiB.
_PROBE = textwrap.dedent("""
    import sys
    from indexer.allocator import pin_mmap_threshold

    def anon_kib():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon"):
                return int(line.split()[1])

    pinned = pin_mmap_threshold() if sys.argv[1] == "pin" else None
    block = b"x" * (8 << 20); del block
    before = anon_kib()
    block = b"y" * (8 << 20); del block
    print(pinned, anon_kib() - before)
""")


def _probe(mode: str, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], cwd=ROOT, env={**environ, **env},
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], int(out[1])


def test_a_freed_large_block_is_returned_once_pinned():
    pinned, resident_kib = _probe("pin")
    assert pinned == "True"
    assert resident_kib < 1024
    # The same probe unpinned keeps the block in the heap: what the pin is for.
    _, unpinned_kib = _probe("default")
    assert unpinned_kib > 4096


def test_a_threshold_the_user_set_is_kept():
    pinned, resident_kib = _probe("pin", MALLOC_MMAP_THRESHOLD_="65536")
    assert pinned == "True"
    assert resident_kib < 1024  # glibc applied the user's own fixed threshold
