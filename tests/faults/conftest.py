"""Fixtures of the fault suite: the prerequisite check (root, ip, nft, tc, namespaces), one
fabric of namespaced nodes per test (destroyed by name, also on failure), and the table of
figures printed at the end of the run and written to ``fault-figures.txt`` in pytest's
base temporary directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from .netns import CHECKS, Fabric, missing_prerequisites, run_subnet

COLUMNS = ("scenario", "outcome", "expected", "elapsed_s", "bound_s", "answers", "failed", "spares", "fault")
_rows: list[dict[str, Any]] = []
_skipped: list[str] = []
_tests = count()


@pytest.fixture(scope="session")
def prerequisites() -> None:
    reasons = missing_prerequisites()
    if reasons:
        message = f"fault suite not run ({'; '.join(reasons)}); checks that did not run: {', '.join(CHECKS)}"
        if message not in _skipped:
            _skipped.append(message)
        pytest.skip(message)


@pytest.fixture()
def fabric(prerequisites: None, tmp_path: Path) -> Iterator[Fabric]:
    tag = f"{os.getpid() % 4096:03x}{next(_tests) % 100:02d}"
    made = Fabric(tag, run_subnet(), tmp_path)
    try:
        yield made
    finally:
        made.destroy()


class Figures:
    """One row per scenario for the closing table."""

    def __init__(self, base: Path) -> None:
        self.path = base / "fault-figures.txt"

    def add(self, **row: Any) -> None:
        _rows.append(row)
        self.path.write_text(table())


@pytest.fixture(scope="session")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Figures:
    return Figures(tmp_path_factory.getbasetemp())


def table() -> str:
    """The rows as a fixed-width text table (one line per scenario)."""
    cells = [[str(row.get(c, "")) for c in COLUMNS] for row in _rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines) + "\n"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    # the table itself is printed by tests/conftest.py, from fault-figures.txt (in a worker's
    # directory under pytest-xdist, where this process is not the one that prints)
    for message in _skipped:
        terminalreporter.section("fault suite")
        terminalreporter.write_line(message)
