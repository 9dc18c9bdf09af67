"""The files and directories of one tree by CID, as the importer tells them, within a bound.

A node keeps one listing per tree it holds (cod.node.contents) so that every file and
directory inside is addressable by its own CID (SPEC 9.9). The bound is the node's
``max_entries``: a tree with more entries below its root keeps none (only the root's own CID
names it), so no tree makes the index grow past what one upload may hold.
"""

from __future__ import annotations

from collections.abc import Callable

from .unixfs import Entry

Row = tuple[str, bytes, bool]
"""(CID text, path from the tree's root: names joined by b"/", b"" for the root; a directory)."""


class Stopped(Exception):
    """A listing given up because its ``stop`` said so (the node is stopping)."""


class Listing:
    """An ``EntrySink`` (cod.content.unixfs) keeping what it is told, at most ``limit`` entries
    below the root (the root, told last, is kept too); past it ``over`` is True and no row is kept.
    ``stop``, when given, is asked at each entry: True raises Stopped out of the import."""

    def __init__(self, limit: int, stop: Callable[[], bool] | None = None) -> None:
        self.limit = limit
        self.stop = stop
        self.rows: list[Row] = []
        self.over = False

    def __call__(self, rel: tuple[bytes, ...], entry: Entry, is_dir: bool) -> None:
        if self.stop is not None and self.stop():
            raise Stopped("the listing was given up")
        if self.over:
            return
        if len(self.rows) > self.limit:  # limit entries below the root, and the root
            self.over = True
            self.rows = []
            return
        self.rows.append((str(entry.cid), b"/".join(rel), is_dir))
