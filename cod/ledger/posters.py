"""Who posted each eligibility entry's evidence: kept beside the log, not in it (``posters.sqlite``).

The log holds what anyone can check (the spec and the signed statements); who sent them is a
fact only this ledger saw: the client's address of ``POST /v1/evidence`` or the node URL a
scanner read. A moderator weighs it beside the signers' history (SPEC.md 12.7); nothing derives
from it, no audit checks it, and a crash between an append and this write loses one poster, never
an entry. Writes ignore a second poster for the same entry (the first is kept).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from ..errors import LocalPathError

POSTERS_FILE = "posters.sqlite"
MAX_POSTER_CHARS = 300
"""A poster as recorded: an address or a node URL, cut to this length."""


class Posters:
    def __init__(self, path: Path) -> None:
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("CREATE TABLE IF NOT EXISTS posters (entry INTEGER PRIMARY KEY, poster TEXT NOT NULL)")
        except sqlite3.Error as exc:
            raise LocalPathError(f"cannot open {path}: {exc}", "check the data directory") from None

    def record(self, entry: int, poster: str) -> None:
        try:
            self._conn.execute("INSERT OR IGNORE INTO posters VALUES (?, ?)", (entry, poster[:MAX_POSTER_CHARS]))
        except sqlite3.Error:
            pass  # a fact beside the log: losing it must not refuse an entry already appended

    def of(self, entries: Sequence[int]) -> dict[int, str]:
        if not entries:
            return {}
        marks = ",".join("?" * len(entries))
        return {int(e): str(p) for e, p in
                self._conn.execute(f"SELECT entry, poster FROM posters WHERE entry IN ({marks})", list(entries))}

    def close(self) -> None:
        self._conn.close()
