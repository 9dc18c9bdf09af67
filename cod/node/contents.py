"""Every file and directory inside what a node holds, by its own CID (SPEC 9.9, "Contents").

A node holds trees of three kinds: stored trees (uploads and fetches, the blob store), the
copies of its datasets, and the results of its done jobs. Each tree's listing (the CID and
path of every file and directory in it, the root included) is written here, in the node's
``contents.db`` (SQLite, WAL), when the tree is stored: a stored tree and a dataset copy from
the import that checks them against their CID (no second hash), a result once its job is
done. At most ``max_entries`` entries below the root are listed per tree; a tree with more
lists none (cod.content.listing). So the index is bounded by what the node holds, and a
request only ever reads rows by CID: no request makes the node walk a tree.

A row is only a hint of where to look: before a CID is answered as held, mounted or served,
the tree is checked to be still held as it was (a stored tree present, a dataset still offered
under that CID by its fingerprint, cod.node.offers; a result of a done job present), and the
path is walked without following links to a regular file or a real directory of the kind
listed. A tree that is gone, or a dataset that changed, answers nothing, even before its rows
are dropped (at its removal, or at the next start).

Used from threads: one connection writes (a big listing takes seconds), another reads, each
with its lock, so a lookup never waits for a listing being written (WAL: it reads the index as
last committed).
Being a hint made from what the node holds, the index never stops the node: a file that is
not a database (or is damaged) is set aside at open and made again, and a read that fails
answers nothing.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from pathlib import Path

from ..content.listing import Listing

log = logging.getLogger("cod.node.contents")

BLOB, DATASET, RESULT = "blob", "dataset", "result"
"""Kinds of tree: a stored tree (root: its CID), a dataset copy (its CID), a job's results (the job CID)."""
DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
"""SQLite's answers for a file that is not (or no longer) a sound database."""
MAX_PLACES = 8
"""Trees one CID is looked for in (a file in many trees): rows past it are never read."""


class Contents:
    """The listings of the trees a node holds, by the CIDs inside them."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()  # of the writing connection, self.db
        self._read_lock = threading.Lock()  # of the reading one, self.reads
        try:
            self._open(path)
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", None) not in DAMAGED:
                raise  # a full or read-only disk, a permission: the node says so
            self.db.close()
            if hasattr(self, "reads"):
                self.reads.close()
            aside = path.with_name(path.name + ".damaged")
            log.error("the contents index %s is damaged (%s): set aside as %s, made again", path, exc, aside)
            os.replace(path, aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            self._open(path)

    def _open(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        with self._lock:
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS trees (kind TEXT NOT NULL, root TEXT NOT NULL, "
                            "entries INTEGER NOT NULL, PRIMARY KEY (kind, root)) WITHOUT ROWID")
            self.db.execute("CREATE TABLE IF NOT EXISTS inside (cid TEXT NOT NULL, kind TEXT NOT NULL, "
                            "root TEXT NOT NULL, path BLOB NOT NULL, is_dir INTEGER NOT NULL, "
                            "PRIMARY KEY (cid, kind, root)) WITHOUT ROWID")
            self.db.execute("CREATE INDEX IF NOT EXISTS inside_tree ON inside (kind, root)")
        self.reads = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        with self._read_lock:
            self.reads.execute("SELECT count(*) FROM trees").fetchone()  # a damaged file says so now

    def add(self, kind: str, root: str, listing: Listing) -> None:
        """Keep ``listing`` as the listing of tree ``root`` of ``kind`` (replacing an earlier one);
        a listing past its bound keeps only that the tree was listed. Never raises: a tree whose
        listing cannot be written (a full disk) is listed at the next start."""
        rows = [] if listing.over else listing.rows
        try:
            with self._lock, self.db:
                self.db.execute("BEGIN")
                self.db.execute("DELETE FROM inside WHERE kind = ? AND root = ?", [kind, root])
                self.db.executemany("INSERT OR IGNORE INTO inside (cid, kind, root, path, is_dir) VALUES (?,?,?,?,?)",
                                    [(cid, kind, root, path, int(d)) for cid, path, d in rows])
                self.db.execute("INSERT OR REPLACE INTO trees (kind, root, entries) VALUES (?, ?, ?)",
                                [kind, root, -1 if listing.over else len(rows)])
        except sqlite3.Error as exc:
            log.error("the listing of %s %s was not kept (%s); it is made again at the next start", kind, root, exc)

    def drop(self, kind: str, root: str) -> None:
        """Forget tree ``root`` of ``kind`` (it is removed). Never raises: a stale row answers nothing."""
        try:
            with self._lock, self.db:
                self.db.execute("BEGIN")
                self.db.execute("DELETE FROM inside WHERE kind = ? AND root = ?", [kind, root])
                self.db.execute("DELETE FROM trees WHERE kind = ? AND root = ?", [kind, root])
        except sqlite3.Error as exc:
            log.error("the listing of %s %s was not dropped (%s)", kind, root, exc)

    def listed(self, kind: str) -> set[str]:
        """The roots of ``kind`` whose listing is kept."""
        with self._read_lock:
            return {row[0] for row in self.reads.execute("SELECT root FROM trees WHERE kind = ?", [kind])}

    def find(self, cid: str, strict: bool = False) -> list[tuple[str, str, bytes, bool]]:
        """Where ``cid`` was listed: (kind, root, path, is a directory), at most MAX_PLACES, in
        kind and root order; none when the index cannot be read (a hint lost, logged), unless
        ``strict`` (the collector: what it cannot read it must not remove): sqlite3.Error then."""
        try:
            with self._read_lock:
                rows = self.reads.execute("SELECT kind, root, path, is_dir FROM inside WHERE cid = ? ORDER BY kind, "
                                          "root LIMIT ?", [cid, MAX_PLACES]).fetchall()
        except sqlite3.Error as exc:
            if strict:
                raise
            log.error("the contents index cannot be read (%s): %s is answered as not inside", exc, cid)
            return []
        return [(kind, root, bytes(path), bool(is_dir)) for kind, root, path, is_dir in rows]

    def close(self) -> None:
        with self._read_lock:
            self.reads.close()
        with self._lock:
            self.db.close()


class Shelf:
    """The TreeIndex (cod.content.blobs) of one blob store: its trees, listed as ``kind``."""

    def __init__(self, contents: Contents, kind: str, limit: int) -> None:
        self.contents, self.kind, self.limit = contents, kind, limit

    def listing(self) -> Listing:
        return Listing(self.limit)

    def stored(self, cid: str, listing: Listing) -> None:
        self.contents.add(self.kind, cid, listing)

    def retired(self, cid: str) -> None:
        self.contents.drop(self.kind, cid)


def locate(base: Path, path: bytes, is_dir: bool) -> Path | None:
    """``base``/``path`` if every component is a real directory (no link followed) and the last
    a real directory (``is_dir``) or a regular file; else None."""
    here = os.fsencode(base)
    names = path.split(b"/") if path else []
    try:
        for n, name in enumerate(names):
            if name in (b"", b".", b".."):
                return None
            here = os.path.join(here, name)
            mode = os.lstat(here).st_mode
            if n < len(names) - 1 and not stat.S_ISDIR(mode):
                return None
        mode = os.lstat(here).st_mode
    except (OSError, ValueError):
        return None
    wanted = stat.S_ISDIR if is_dir else stat.S_ISREG
    return Path(os.fsdecode(here)) if wanted(mode) else None
