"""Text from elsewhere (nodes, ledgers, jobs, the host) made safe to show a person.

A terminal acts on control characters (ESC starts colour, title and clear-screen sequences;
CR and LF start forged lines) and bidirectional overrides reorder what is drawn, so every
such character is replaced by "?" before cod prints text it did not write itself, in its
reports, tables, logs and error lines. (A job's own stdout and stderr, printed raw by
``cod run`` and ``cod logs``, are the job's bytes by design.)
"""

from __future__ import annotations

import re

UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls, DEL, and the Unicode bidirectional marks, embeddings, overrides and isolates."""

UNSAFE_MULTILINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""The same, but keeping tab and newline: for text shown as several lines (a job's output in a view)."""


def printable(text: str, limit: int | None = None) -> str:
    """``text`` on one line with every unsafe character replaced by "?", cut to ``limit``."""
    text = UNSAFE.sub("?", text)
    return text if limit is None or len(text) <= limit else text[:limit] + "..."


def printable_lines(text: str) -> str:
    """``text`` with every unsafe character but tab and newline replaced by "?"."""
    return UNSAFE_MULTILINE.sub("?", text)


__all__ = ["UNSAFE", "printable", "printable_lines"]
