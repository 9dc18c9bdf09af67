"""The CARs a node serves (results, datasets, stored trees), each built once and kept on disk.

A CAR is built only by this cache: one build per CID at a time (concurrent requests for it
wait for that one build: single flight), at most ``builders`` builds at once, in threads of
its own (so a burst of downloads never fills the thread pool that job submission uses), into
one temporary file per build; the file is kept as ``{cid}.car`` only when the CAR's root is
``cid`` (a tree may change while its CAR is written: NotFound then, and nothing is kept).
The collector (cod.node.collector) removes a CAR with what it was built from.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..content import car as car_format
from ..errors import InputError, NotFound

CAR_BUILDERS = 2
"""CARs a node builds at once; more requests wait in line (SPEC 9.2)."""
TRANSIENT_CARS = 4
"""CARs of what lies inside held trees (built per request, each a file of its own until it is
sent) a node builds or sends at once; past it a download is answered 429 (SPEC 9.2), so clients
that read slowly or not at all hold at most this many trees' worth of the node's disk."""
TEMP_PREFIX = ".car-"


class CarCache:
    """CARs by root CID under ``folder``."""

    def __init__(self, folder: Path, builders: int = CAR_BUILDERS) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        for entry in sorted(os.listdir(folder)):  # temporaries of builds a stopped node did not finish
            if entry.startswith(TEMP_PREFIX):
                (folder / entry).unlink(missing_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=builders, thread_name_prefix="cod-car")
        self._building: dict[str, asyncio.Future[Path]] = {}
        self.builds = 0
        """CARs built so far (one per CID unless a build failed or the CAR was removed)."""
        self.transients = 0
        """Transient CARs being built or sent now (at most TRANSIENT_CARS: the caller counts them)."""

    def path(self, cid: str) -> Path:
        return self.folder / f"{cid}.car"

    async def get(self, cid: str, tree: Path) -> Path:
        """The CAR of ``tree`` (whose root CID must be ``cid``), built now unless it is kept
        already or being built; raises NotFound when the tree does not hash to ``cid``."""
        car = self.path(cid)
        if car.exists():
            return car
        pending = self._building.get(cid)
        if pending is None:
            loop = asyncio.get_running_loop()
            self.builds += 1
            pending = asyncio.ensure_future(loop.run_in_executor(self._executor, self._build, cid, tree))
            self._building[cid] = pending
            pending.add_done_callback(lambda done: self._finished(cid, done))
        return await asyncio.shield(pending)  # a waiter that goes away never cancels the others' build

    def _finished(self, cid: str, done: asyncio.Future[Path]) -> None:
        if self._building.get(cid) is done:
            del self._building[cid]
        if not done.cancelled():
            done.exception()  # retrieved: a build no one waits for any more fails quietly

    def _build(self, cid: str, tree: Path) -> Path:
        car = self.path(cid)
        if car.exists():
            return car
        fd, name = tempfile.mkstemp(dir=self.folder, prefix=TEMP_PREFIX)
        os.close(fd)
        try:
            try:
                root = car_format.write_car(tree, name)
            except (FileNotFoundError, InputError) as exc:  # removed meanwhile (the collector), unreadable
                raise NotFound(f"{cid} is no longer on this node", "ask a node that has it") from exc
            if str(root) != cid:
                raise NotFound(f"{cid} changed on this node while its CAR was written", "ask again")
            os.replace(name, car)
        finally:
            Path(name).unlink(missing_ok=True)
        return car

    async def transient(self, cid: str, tree: Path) -> Path:
        """The CAR of ``tree`` (root ``cid``) built now into a temporary file of its own, which
        the caller removes: for a file or directory inside a held tree (SPEC 9.9, contents),
        whose CARs are never kept (a tree of 256 nested directories would otherwise keep 256
        copies of its deepest file). One of the ``builders`` too; raises NotFound as :meth:`get`."""
        self.builds += 1
        build = self._executor.submit(self._build_transient, cid, tree)
        try:
            return await asyncio.shield(asyncio.wrap_future(build))
        except asyncio.CancelledError:  # the client went away: a build not begun never runs, one begun is removed
            if not build.cancel():
                build.add_done_callback(_remove_built)
            raise

    def _build_transient(self, cid: str, tree: Path) -> Path:
        fd, name = tempfile.mkstemp(dir=self.folder, prefix=TEMP_PREFIX)  # removed at a restart if left
        os.close(fd)
        try:
            root = car_format.write_car(tree, name)
        except (FileNotFoundError, InputError) as exc:
            Path(name).unlink(missing_ok=True)
            raise NotFound(f"{cid} is no longer on this node", "ask a node that has it") from exc
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        if str(root) != cid:
            Path(name).unlink(missing_ok=True)
            raise NotFound(f"{cid} changed on this node while its CAR was written", "ask again")
        return Path(name)

    def kept(self) -> list[str]:
        """Root CIDs of the CARs kept."""
        return sorted(name[:-4] for name in os.listdir(self.folder)
                      if name.endswith(".car") and not name.startswith(TEMP_PREFIX))

    def remove(self, cid: str) -> None:
        """Drop the kept CAR of ``cid`` (a build under way keeps its result)."""
        self.path(cid).unlink(missing_ok=True)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _remove_built(build: Future[Path]) -> None:
    """Remove the CAR a transient build made for a request that is gone."""
    if not build.cancelled() and build.exception() is None:
        build.result().unlink(missing_ok=True)
