"""The requester's local content store: files and trees by CID, as ``ipfs add`` keeps them.

``cod add PATH`` puts a file or a directory here and prints its CID; ``cod run CID``,
``-i CID[:DST]`` and modules imported by CID look here first. The store is a node's blob
store kept under the requester's home (``$COD_HOME/store``, default
``~/.local/share/cod/store``): a file is kept as its bytes, a directory as the tree its CID
names, each checked against its CID on the way in (a directory travels through a CAR, so
what is stored is exactly what the CID names, under the ingest rules of SPEC 3.1).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from ..errors import CIDError, InputError
from .blobs import BlobStore
from .car import write_car
from .cid import CID
from .export import TreeCaps
from .unixfs import Importer

STORE_ENV = "COD_STORE"
# the store keeps what its owner adds: no caps below the format's own (SPEC 3)
LOCAL_CAPS = TreeCaps(max_unpacked_bytes=1 << 62, max_entries=1 << 40, max_car_blocks=1 << 40)


def default_root() -> Path:
    """``$COD_STORE``, else ``$COD_HOME/store``, else ``~/.local/share/cod/store``."""
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV])
    home = os.environ.get("COD_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share", "cod")
    return Path(home) / "store"


class ContentStore:
    """Files and trees by CID on the requester's disk."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()
        try:
            self.blobs = BlobStore(self.root)
        except OSError as exc:
            raise InputError(f"cannot use the content store at {self.root}: {exc.strerror}",
                             f"set {STORE_ENV} to a writable directory") from exc

    def add(self, path: str | os.PathLike[str]) -> str:
        """Store the file or directory at ``path`` (a symlink is followed once, here) and
        return its CID; adding what is stored already changes nothing. Raises InputError."""
        real = os.path.realpath(path)
        if not os.path.exists(real):
            raise InputError(f"{os.fspath(path)!r} does not exist", "give a file or a directory: cod add PATH")
        if not (os.path.isfile(real) or os.path.isdir(real)):
            raise InputError(f"{os.fspath(path)!r} is neither a regular file nor a directory",
                             "cod add stores files and directories")
        here = Path(os.path.realpath(self.root))
        if os.path.isdir(real) and (here == Path(real) or Path(real) in here.parents or here in Path(real).parents):
            raise InputError(f"{os.fspath(path)!r} holds the content store ({self.root}) or lies inside it",
                             f"add a directory apart from the store, or set {STORE_ENV} to a directory outside it")
        cid = str(Importer().tree(real).cid)
        if self.blobs.has(cid):
            return cid
        handle, spooled = self.blobs.spool()
        try:
            if os.path.isdir(real):
                handle.close()
                write_car(real, spooled)
                self.blobs.put_car(cid, spooled, LOCAL_CAPS)
            else:
                with handle, open(real, "rb") as source:
                    shutil.copyfileobj(source, handle, 1 << 20)
                self.blobs.put_file(cid, spooled)
        except CIDError as exc:  # the file changed between hashing and copying
            raise InputError(f"{os.fspath(path)!r} changed while it was added: {exc}", "add it again") from exc
        finally:
            spooled.unlink(missing_ok=True)
        return cid

    def get(self, cid: str) -> Path | None:
        """The stored file or tree ``cid`` (any CID text form), or None."""
        try:
            name = str(CID.parse(cid))
        except CIDError:
            return None
        return self.blobs.file(name) or self.blobs.tree(name)

    def has(self, cid: str) -> bool:
        return self.get(cid) is not None


def lookup(cid: str) -> Path | None:
    """``cid`` in the default store, without creating the store when there is none."""
    root = default_root()
    if not (root / "files").is_dir():
        return None
    return ContentStore(root).get(cid)


def resolver(nodes: list[str], gateways: list[str]) -> Callable[[str], Path | None]:
    """A lookup in the default store that, for a CID it lacks, first fetches it from ``nodes``
    (``GET /v1/blobs/{cid}`` as a CAR) and ``gateways`` (IPFS trustless gateways), checked as a
    node checks what it fetches (SPEC 9.8), into the store. Without sources: :func:`lookup`."""
    if not nodes and not gateways:
        return lookup

    def resolve(cid: str) -> Path | None:
        found = lookup(cid)
        if found is not None:
            return found
        try:
            name = str(CID.parse(cid))
        except CIDError:
            return None
        import asyncio  # here: a local run that fetches nothing loads no event loop (tests/cli/test_startup.py)

        store = ContentStore()
        asyncio.run(_fetch(store, name, nodes, gateways))
        return store.get(name)

    return resolve


async def _fetch(store: ContentStore, cid: str, nodes: list[str], gateways: list[str]) -> None:
    from .fetcher import Fetcher

    fetcher = Fetcher(store.blobs, peers=nodes, gateways=gateways)
    try:
        await fetcher.fetch(cid)
    finally:
        await fetcher.close()
