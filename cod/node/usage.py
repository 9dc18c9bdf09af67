"""What a node stores for whom: bytes per client address, and when each thing was last used.

One row per stored blob (upload, fetch) and per job's results, in the node's ``usage.db``
(SQLite, WAL): the client address it is charged to (the first one to store it), its bytes,
and the host clock (ns) of its last use (a blob) or of its completion (a result). The
per-client quota (SPEC 9.11) sums a client's rows; the collector (cod.node.collector) reads
the times. The clock is the node's own and never reaches a result. Used from the event
loop's thread only.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

BLOB, RESULT = "blob", "result"


def tree_bytes(root: Path) -> int:
    """The bytes of the regular files of a stored file or tree (lstat: no link is followed)."""
    info = os.lstat(root)
    if not os.path.isdir(root) or os.path.islink(root):
        return info.st_size
    total = 0
    for folder, _dirs, files in os.walk(root):  # does not follow links
        for name in files:
            total += os.lstat(os.path.join(folder, name)).st_size
    return total


class Usage:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS stored (kind TEXT NOT NULL, cid TEXT NOT NULL, client TEXT NOT NULL, "
                        "bytes INTEGER NOT NULL, used_ns INTEGER NOT NULL, PRIMARY KEY (kind, cid))")
        self.db.execute("CREATE INDEX IF NOT EXISTS stored_client ON stored (client)")

    def charged(self, client: str) -> int:
        """Bytes stored for ``client`` (results and blobs charged to it)."""
        row = self.db.execute("SELECT COALESCE(SUM(bytes), 0) FROM stored WHERE client = ?", [client]).fetchone()
        return int(row[0])

    def record(self, kind: str, cid: str, client: str, size: int, now_ns: int) -> None:
        """Charge ``size`` bytes of ``cid`` to ``client`` unless it is charged already (then
        only its time of use is set to ``now_ns``)."""
        self.db.execute("INSERT INTO stored (kind, cid, client, bytes, used_ns) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (kind, cid) DO UPDATE SET used_ns = MAX(used_ns, excluded.used_ns)",
                        [kind, cid, client, size, now_ns])

    def known(self, kind: str, cid: str) -> bool:
        return self.db.execute("SELECT 1 FROM stored WHERE kind = ? AND cid = ?", [kind, cid]).fetchone() is not None

    def size(self, kind: str, cid: str) -> int | None:
        row = self.db.execute("SELECT bytes FROM stored WHERE kind = ? AND cid = ?", [kind, cid]).fetchone()
        return None if row is None else int(row[0])

    def times(self, kind: str) -> dict[str, int]:
        """CID -> time of last use (or completion) of every row of ``kind``."""
        return {cid: used for cid, used in self.db.execute("SELECT cid, used_ns FROM stored WHERE kind = ?", [kind])}

    def drop(self, kind: str, cid: str) -> None:
        self.db.execute("DELETE FROM stored WHERE kind = ? AND cid = ?", [kind, cid])

    def close(self) -> None:
        self.db.close()
