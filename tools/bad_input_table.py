"""Run the bad-input cases (tests/support/bad_input_cases.py, checked by tests/test_bad_input.py) and print
what happens to each as a markdown table.

    .venv/bin/python tools/bad_input_table.py > table.md

Outcome: the exception class and the first line of its message (the case's temporary folder shortened
to ``…``), or how a valid input was accepted. A case whose result differs from what the test expects is
marked with ``(!)``; a non-NexError escaping is shown as ``ESCAPED``.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

# The cases live with the tests, which are not an installed package (pytest finds them the same way).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.bad_input_cases import CASES, Case, run_case  # noqa: E402


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def outcome(case: Case) -> str:
    """The case's outcome as one line."""
    with tempfile.TemporaryDirectory(prefix="nex_bad_input_") as tmp:
        folder = Path(tmp)
        try:
            result = run_case(case, folder)
        except Exception as exc:  # what the test would report as an escape
            return f"ESCAPED (!): {type(exc).__name__}: {exc}"
        if result.error is None:
            if case.error is not None:
                return "accepted (!)"
            try:
                case.accept(result.value, folder)
            except AssertionError as exc:
                return f"accepted, but wrong (!): {exc}"
            return case.accepted
        message = str(result.error).splitlines()[0].replace(str(folder.resolve()), "…").replace(str(folder), "…")
        flag = "" if type(result.error) is case.error and not result.changes else " (!)"
        return f"{type(result.error).__name__}{flag}: {message}"


def main() -> int:
    logging.disable(logging.WARNING)
    print("| case | entry point | what is wrong | outcome |")
    print("|---|---|---|---|")
    for case in CASES:
        print(f"| {case.id} | {_cell(case.entry)} | {_cell(case.wrong)} | {_cell(outcome(case))} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
