"""Bad input at every entry point: each case of :data:`support.bad_input_cases.CASES` must end in the *exact*
(most specific) :mod:`nex_core.io.errors` class with a message naming the offending file and saying what
to do, leaving nothing behind but its entry point's logs -- or, for input that is valid after all, in a
correct result.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.bad_input_cases import CASES, Case, run_case


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Training setup is tiny; on a shared 2-core machine one thread is faster."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_case_ids_are_unique_and_enough():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert sum(c.error is not None for c in CASES) >= 32


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path):
    if case.id.startswith("colmap") or case.entry.startswith("nex prepare"):
        pytest.importorskip("pycolmap")
    out = run_case(case, tmp_path)
    if case.error is None:
        assert out.error is None, f"{case.id}: refused valid input: {out.error!r}"
        case.accept(out.value, tmp_path)
        return
    assert out.error is not None, f"{case.id}: {case.wrong} was accepted"
    assert type(out.error) is case.error, f"{case.id}: expected {case.error.__name__}, got {out.error!r}"
    message = str(out.error)
    for needle in case.needles:
        assert needle in message, f"{case.id}: {needle!r} not in the message: {message}"
    assert out.changes == [], f"{case.id}: the failed call left or changed {out.changes}"
    if case.max_alloc_mb is not None:
        assert out.peak_mb < case.max_alloc_mb, f"{case.id}: allocated {out.peak_mb:.0f} MB before refusing"
