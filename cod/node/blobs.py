"""Content-addressed blobs of a node: every blob is checked against its CID on the way in.

A module is stored as a file (its UnixFS CID is that of its bytes); an input directory
arrives as a CAR and is stored unpacked, as the tree the executor mounts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from ..cid import CID
from ..errors import CIDError
from ..export import unpack_car
from ..unixfs import Importer


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.files = root / "files"
        self.trees = root / "trees"
        self.tmp = root / "tmp"
        for folder in (self.files, self.trees, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp.iterdir():  # uploads a crash interrupted
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()

    @staticmethod
    def _name(cid: str) -> str:
        """The canonical text of a CID: the only thing ever used as a file name here."""
        return str(CID.parse(cid))

    def file(self, cid: str) -> Path | None:
        path = self.files / self._name(cid)
        return path if path.is_file() else None

    def tree(self, cid: str) -> Path | None:
        path = self.trees / self._name(cid)
        return path if path.is_dir() else None

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

    def put_car(self, cid: str, spooled: Path) -> None:
        """Unpack a CAR whose root is ``cid`` into the tree blob ``cid``; raises CIDError."""
        try:
            if self.tree(cid) is not None:
                return
            root = CID.parse(cid)
            with open(spooled, "rb") as source:
                unpack_car(source, root, self.trees / str(root), self.tmp)
        finally:
            spooled.unlink(missing_ok=True)
