"""The allocator tuning the heavy commands apply: glibc accepts it, and large allocations then come from
the heap and are reused (far fewer page faults for a repeated large allocation)."""

import subprocess
import sys

import pytest

from nex_core.runtime.allocator import keep_freed_memory

PROBE = """
import resource, sys
import numpy as np
from nex_core.runtime.allocator import keep_freed_memory
tuned = sys.argv[1] == "tuned" and keep_freed_memory()
faults = []
for i in range(30):
    if i in (10, 29):
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
    a = np.ones(64 << 20, np.uint8)  # 64 MiB: above glibc's largest mmap threshold
    del a
print(tuned, (faults[1] - faults[0]) / 19)  # page faults per repeated allocation, after warming up
"""

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    runs = {}
    for mode in ("default", "tuned"):
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        tuned, faults = out.stdout.split()
        runs[mode] = (tuned == "True", float(faults))
    if not runs["tuned"][0]:
        pytest.skip("the C library is not glibc")
    # Default: each 64 MiB block is a fresh mmap, faulted in again (32 faults with 2 MiB pages, more with
    # 4 KiB ones). Tuned: the heap block is faulted in once and then reused.
    assert runs["default"][1] >= 30, runs
    assert runs["tuned"][1] < 0.1 * runs["default"][1], runs


def test_it_is_harmless_to_call_twice():
    first = keep_freed_memory()
    assert keep_freed_memory() == first
