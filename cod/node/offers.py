"""What a node offers from its own disk: datasets and private modules (SPEC 9.9).

A dataset (``cod serve --dataset PATH``) is a directory the node hashes into its UnixFS CID
and copies into a store of its own (:meth:`Offers.keep_copies`): a CAR of the tree, unpacked
and checked against the CID as an upload is. Jobs that name the CID mount that copy, and
peers fetch it, so nobody uploads the dataset, and no later write to the operator's files
(not even one through a shared mmap, which need not change a time the node can see) reaches
a job or a signed result. The node keeps a fingerprint of the tree (every entry's path,
type, size, inode and change times, links not followed); before a job is given the dataset
it is taken anew, and a tree that changed is hashed (and copied) again under its new CID,
the CID it had being no longer offered. An equal fingerprint is trusted only for entries
whose times are older than the hash by RACY_NS (git's "racily clean" rule): on a file system
whose timestamps tick coarsely, a same-size rewrite within one tick keeps every field, so a
tree with such an entry is hashed again instead.

A private module (``cod serve --private-module FILE``) runs for jobs that name its CID; it
is advertised by that CID (its hash) but its bytes are never served.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..content.blobs import BlobStore
from ..content.car import write_car
from ..content.store import LOCAL_CAPS
from ..content.unixfs import Importer, module_cid
from ..errors import CodError, InputError

log = logging.getLogger("cod.node.offers")

Fingerprint = tuple[tuple[bytes, int, int, int, int, int], ...]
RACY_NS = 2_000_000_000  # the coarsest timestamp tick trusted: FAT's 2 s (ext4 before 6.13: a jiffy)


def overlaps(a: Path, b: Path) -> bool:
    """Whether two resolved paths are the same directory or one lies inside the other: by name, and
    by the directories themselves (device and inode), which a bind mount shows under another name
    that realpath() cannot see through."""
    if a == b or a in b.parents or b in a.parents:
        return True
    ids_a, ids_b = _identities(a), _identities(b)
    return bool(ids_a[0] and ids_a[0] in ids_b) or bool(ids_b[0] and ids_b[0] in ids_a)


def _identities(path: Path) -> list[tuple[int, int] | None]:
    """(st_dev, st_ino) of ``path`` (None when it does not exist), then of each of its parents that exists."""
    out: list[tuple[int, int] | None] = []
    for each in (path, *path.parents):
        try:
            info = os.stat(each)
        except OSError:
            if each == path:
                out.append(None)
            continue
        out.append((info.st_dev, info.st_ino))
    return out


def fingerprint(root: Path) -> Fingerprint:
    """Every entry below ``root`` (and the root): (relative path, mode, size, inode, mtime_ns,
    ctime_ns), walked without following links, in path-byte order."""
    out: list[tuple[bytes, int, int, int, int, int]] = []
    stack = [b""]
    base = os.fsencode(root)
    while stack:
        rel = stack.pop()
        path = os.path.join(base, rel) if rel else base
        info = os.lstat(path)
        out.append((rel, info.st_mode, info.st_size, info.st_ino, info.st_mtime_ns, info.st_ctime_ns))
        if stat.S_ISDIR(info.st_mode):
            stack.extend(os.path.join(rel, name) if rel else name for name in sorted(os.listdir(path), reverse=True))
    return tuple(sorted(out))


@dataclass
class Dataset:
    """A tree as it was hashed: its CID, its fingerprint, and the host clock (ns) read just
    before the fingerprint was taken (for the racy rule; never part of a result)."""

    path: Path
    cid: str
    stamp: Fingerprint
    hashed_at_ns: int = 0

    @property
    def racy(self) -> bool:
        """Whether an entry's mtime or ctime is not older than the hash by RACY_NS: a change
        within that tick may have left its fingerprint as it was."""
        edge = self.hashed_at_ns - RACY_NS
        return any(entry[4] >= edge or entry[5] >= edge for entry in self.stamp)


class Offers:
    """The node's datasets and private modules, by CID."""

    def __init__(self, datasets: list[Path] | None = None, private_modules: list[Path] | None = None,
                 home: Path | None = None) -> None:
        """Hash every dataset and read every private module; InputError for one that cannot be,
        and for a dataset that is, holds or lies inside ``home`` (the node's data directory:
        a dataset is public, and the node's key must never be)."""
        keep = Path(os.path.realpath(home)) if home is not None else None
        self._lock = threading.Lock()
        self.datasets: dict[str, Dataset] = {}
        self.private: dict[str, Path] = {}
        self._hashed: dict[str, tuple[tuple[int, ...], int]] = {}  # CID -> (stat key, clock) of its last hash
        self._replaced: dict[str, str] = {}  # CID of a tree that changed -> its new CID, until that is copied
        self.copies: BlobStore | None = None  # where datasets are copied to (the node's), see keep_copies
        self._copying = threading.Lock()
        for given in datasets or []:
            path = Path(os.path.realpath(given))
            if not path.is_dir():
                raise InputError(f"dataset {str(given)!r} is not a directory", "give --dataset a directory")
            if keep is not None and overlaps(path, keep):
                raise InputError(f"dataset {str(given)!r} overlaps the node's data directory {str(home)!r}",
                                 "serve a directory apart from the node's data directory")
            found = self._hash(path)
            self.datasets[found.cid] = found
        for given in private_modules or []:
            path = Path(os.path.realpath(given))
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise InputError(f"cannot read private module {str(given)!r}: {exc.strerror}") from exc
            if not data.startswith(b"\0asm"):
                raise InputError(f"private module {str(given)!r} is not a WebAssembly module")
            self.private[module_cid(data)] = path
            for found in self.datasets.values():  # datasets are public: a private module in one is not
                if found.path in path.parents or _holds_bytes(found, data):
                    raise InputError(f"private module {str(given)!r} is inside dataset {str(found.path)!r} "
                                     "(datasets are public)", "keep private modules out of every dataset")

    @staticmethod
    def _hash(path: Path) -> Dataset:
        for _ in range(3):  # a tree that changes while it is hashed is hashed again
            clock = time.time_ns()
            before = fingerprint(path)
            cid = str(Importer().tree(path).cid)
            if fingerprint(path) == before:
                return Dataset(path, cid, before, clock)
        raise InputError(f"dataset {str(path)!r} keeps changing while it is hashed", "serve it once it is still")

    def keep_copies(self, copies: BlobStore) -> None:
        """From now on serve every dataset from a copy in ``copies``, made now for each one offered
        (a dataset that changes while it is copied is copied when a job first names it)."""
        self.copies = copies
        for cid in self.dataset_cids():
            self.dataset(cid)

    def dataset(self, cid: str) -> Path | None:
        """Dataset ``cid`` if it is offered: the node's copy of it (made now when there is none
        yet: None when the tree no longer has that CID); without :meth:`keep_copies`, the
        directory itself. A changed tree is re-hashed and offered under its new CID."""
        found = self._offered_tree(cid)
        if found is None and self.copies is not None:
            with self._lock:
                fresh = self._replaced.pop(cid, None)
            if fresh is not None:  # copied (and so listed, cod.node.contents) as it is now, under its new CID
                self.dataset(fresh)
        if found is None or self.copies is None:
            return found
        with self._copying:
            held = self.copies.tree(cid)
            if held is not None:
                return held
            handle, spooled = self.copies.spool()
            handle.close()
            try:  # the CAR's blocks are hashed as read, then unpacked and re-imported: the copy is the CID's bytes
                write_car(found, spooled)
                self.copies.put_car(cid, spooled, LOCAL_CAPS)
            except (CodError, OSError) as exc:
                log.warning("dataset %s (%s) was not copied (it changed, or cannot be read): %s", found, cid, exc)
                return None
            finally:
                spooled.unlink(missing_ok=True)
            return self.copies.tree(cid)

    def copy_of(self, cid: str) -> Path | None:
        """The copy of dataset ``cid`` if it is offered and copied, its fingerprint not taken (a
        hint, as /v1/holdings is: a job or a download takes it, :meth:`dataset`)."""
        with self._lock:
            offered = cid in self.datasets
        return self.copies.tree(cid) if offered and self.copies is not None else None

    def stale_copies(self) -> list[str]:
        """CIDs of copies kept for datasets no longer offered (a job may still be reading one)."""
        if self.copies is None:
            return []
        with self._lock:
            offered = set(self.datasets)
        return sorted(name for name in os.listdir(self.copies.trees) if name not in offered)

    def _offered_tree(self, cid: str) -> Path | None:
        """The directory of dataset ``cid`` if the tree still has that CID, else None (and a
        changed tree is re-hashed and offered under its new CID)."""
        with self._lock:
            found = self.datasets.get(cid)
            if found is None:
                return None
            try:
                if fingerprint(found.path) == found.stamp and not found.racy:
                    return found.path
                del self.datasets[cid]
                fresh = self._hash(found.path)
            except (OSError, InputError) as exc:
                log.warning("dataset %s (%s) is no longer offered: %s", found.path, cid, exc)
                self._unlist(cid)
                return None
            self.datasets[fresh.cid] = fresh
            if fresh.cid != cid:
                self._replaced[cid] = fresh.cid
                self._unlist(cid)
                log.warning("dataset %s changed: now %s, no longer %s", found.path, fresh.cid, cid)
            return fresh.path if fresh.cid == cid else None

    def _unlist(self, cid: str) -> None:
        """Forget the listing of the copy of ``cid``, no longer offered (cod.node.contents): the
        copy answers nothing by the CIDs inside it, and its rows must not hide those of the
        version offered now (a CID is looked for in a bounded number of trees). A job given
        the copy already reads it to the end; the collector keeps it meanwhile."""
        if self.copies is not None and self.copies.index is not None:
            self.copies.index.retired(cid)

    def module(self, cid: str) -> Path | None:
        """The file of private module ``cid``, if it still hashes to it. The hash is taken again
        only when the file's metadata (device, inode, size, mtime, ctime) changed since the last
        one, or is racy (not older than that hash by RACY_NS): the same rule as datasets. (The
        executor checks the bytes it runs against the CID in any case, SPEC 5.3.)"""
        path = self.private.get(cid)
        if path is None:
            return None
        try:
            info = os.stat(path)
            key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            with self._lock:
                known = self._hashed.get(cid)
            if known is not None and known[0] == key and max(key[3], key[4]) < known[1] - RACY_NS:
                return path
            clock = time.time_ns()
            if module_cid(path.read_bytes()) != cid:
                with self._lock:
                    self._hashed.pop(cid, None)
                return None
        except OSError:
            return None
        with self._lock:
            self._hashed[cid] = (key, clock)
        return path

    def dataset_cids(self) -> list[str]:
        with self._lock:
            return sorted(self.datasets)


def _holds_bytes(dataset: Dataset, data: bytes) -> bool:
    """Whether a regular file of ``dataset`` (as fingerprinted) has exactly ``data`` (a copy
    or a hard link of a private module)."""
    for rel, mode, size, _ino, _mtime, _ctime in dataset.stamp:
        if stat.S_ISREG(mode) and size == len(data):
            try:
                with open(os.path.join(os.fsencode(dataset.path), rel), "rb") as handle:
                    if handle.read(len(data) + 1) == data:
                        return True
            except OSError:
                continue
    return False
