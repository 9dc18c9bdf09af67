"""Content-addressed blobs of a node: every blob is checked against its CID on the way in.

A module is stored as a file (its UnixFS CID is that of its bytes); an input directory
arrives as a CAR and is stored unpacked, as the tree the executor mounts (a CAR whose root
is a file is stored as a file). Nothing here follows a symlink: a stored blob is a regular
file or a real directory, decided by lstat, or it is not a blob.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

from ..errors import CIDError
from .cid import CID
from .export import FILE, TreeCaps, unpack_car
from .listing import Listing
from .unixfs import Importer


class TreeIndex(Protocol):
    """What is told of the trees a store keeps (cod.node.contents): each stored tree's listing, each retired CID."""

    def listing(self) -> Listing: ...

    def stored(self, cid: str, listing: Listing) -> None: ...

    def retired(self, cid: str) -> None: ...


class BlobStore:
    def __init__(self, root: Path, index: TreeIndex | None = None) -> None:
        """The store under ``root``; ``index``, when given, is told the listing of every tree stored
        (from the import that checks it: no second hash) and every CID retired."""
        self.index = index
        self.files = root / "files"
        self.trees = root / "trees"
        self.tmp = root / "tmp"
        for folder in (self.files, self.trees, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp.iterdir():  # uploads a crash interrupted
            _remove(stale)

    @staticmethod
    def _name(cid: str) -> str:
        """The canonical text of a CID: the only thing ever used as a file name here."""
        return str(CID.parse(cid))

    def file(self, cid: str) -> Path | None:
        """The stored file ``cid``, if it is a regular file (a symlink is not)."""
        path = self.files / self._name(cid)
        return path if _is(path, stat.S_ISREG) else None

    def tree(self, cid: str) -> Path | None:
        """The stored tree ``cid``, if it is a real directory (a symlink to one is not)."""
        path = self.trees / self._name(cid)
        return path if _is(path, stat.S_ISDIR) else None

    def has(self, cid: str) -> bool:
        return self.file(cid) is not None or self.tree(cid) is not None

    def spool(self) -> tuple[BinaryIO, Path]:
        """A temporary file an upload is streamed into."""
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="upload-")
        return os.fdopen(fd, "w+b"), Path(name)

    def put_file(self, cid: str, spooled: Path) -> None:
        """Keep ``spooled`` as the file blob ``cid`` if its bytes hash to it; raises CIDError."""
        try:
            expected = CID.parse(cid)
            actual = Importer().tree(spooled).cid
            if actual != expected:
                raise CIDError(f"upload hashes to {actual}, not to {cid}; refused")
            os.replace(spooled, self.files / str(expected))
        finally:
            spooled.unlink(missing_ok=True)

    def put_car(self, cid: str, spooled: Path, caps: TreeCaps) -> None:
        """Unpack a CAR whose root is ``cid`` into the blob ``cid`` (a tree, or a file).

        Raises CIDError, CapExceeded or InputError (see ``cod.content.export.unpack_car``); nothing is kept then.
        """
        staged = Path(tempfile.mkdtemp(dir=self.tmp, prefix="car-")) / "blob"
        try:
            if self.has(cid):
                return
            root = CID.parse(cid)
            listing = self.index.listing() if self.index is not None else None
            with open(spooled, "rb") as source:
                plan = unpack_car(source, root, staged, self.tmp, caps, entries=listing)
            target = (self.files if plan.kind == FILE else self.trees) / str(root)
            if not os.path.lexists(target):  # else a concurrent upload of the same CID won
                os.rename(staged, target)
            if self.index is not None and listing is not None and plan.kind != FILE:
                self.index.stored(str(root), listing)
        finally:
            spooled.unlink(missing_ok=True)
            _remove(staged.parent)


    def retire(self, cid: str, unlist: bool = True) -> list[Path]:
        """Take the stored file or tree ``cid`` out of the store at once (one rename each, into
        tmp, which a restart empties: the node's collector, SPEC 9.11); returns where it went.
        ``unlist``: tell the index (False: the caller did, off its event loop)."""
        gone = []
        if self.index is not None and unlist:
            self.index.retired(self._name(cid))
        for path in (self.files / self._name(cid), self.trees / self._name(cid)):
            if os.path.lexists(path):
                target = Path(tempfile.mkdtemp(dir=self.tmp, prefix="gc-")) / "blob"
                os.rename(path, target)
                gone.append(target.parent)
        return gone

    def held(self) -> list[str]:
        """The CIDs of every stored file and tree."""
        names = sorted(os.listdir(self.files)) + sorted(os.listdir(self.trees))
        return [name for name in names if self.has(name)]


def _is(path: Path, kind: Callable[[int], bool]) -> bool:
    try:
        return kind(os.lstat(path).st_mode)
    except OSError:
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
