"""An in-process network of compute nodes on loopback, for tests, demos and `cod devstack`.

Each node is a real aiohttp server with its own key, data directory and executor process;
``bad_nodes`` of them lie: they change their result and sign the changed one, as a real
cheater would, so verifiers can be tested against cheaters. ``bad_mode`` says where the lie
enters (cod.node.liar, SPEC 11.8): late (the final result altered), early (execution diverges
at the first countable WASI call) or random (at a call the seed and the job choose). The liars
collude by default: they share ``lie_seed``, so they tell the same lie for the same job.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from cod.dirlock import DirLock
from cod.errors import LocalPathError, UsageError
from cod.node import liar
from cod.node.server import RunningNode, start_node

MAX_NODES = 32
"""Most nodes one devstack starts: each is a server and an executor process on this machine."""


class Devstack:
    """``nodes`` servers on loopback, the last ``bad_nodes`` of them liars in ``bad_mode``.

    ``collude``: every liar has the seed ``lie_seed`` (the same lie); else liar i has
    ``lie_seed + b"\\0" + str(i)`` (lies of their own, but early liars all fault the same call).
    Raises UsageError (before anything starts) unless 1 <= nodes <= MAX_NODES,
    0 <= bad_nodes <= nodes and bad_mode is one of cod.node.liar.MODES.
    """

    def __init__(self, nodes: int, bad_nodes: int = 0, base_dir: Path | None = None, *, bad_mode: str = "late",
                 lie_seed: bytes = liar.DEFAULT_SEED, collude: bool = True, **node_options: Any) -> None:
        if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
            raise UsageError(f"a devstack runs 1 to {MAX_NODES} nodes, not {nodes!r}",
                              "start fewer nodes, or run cod serve on more machines")
        if isinstance(bad_nodes, bool) or not isinstance(bad_nodes, int) or not 0 <= bad_nodes <= nodes:
            raise UsageError(f"{bad_nodes!r} bad nodes of {nodes}: a devstack has 0 to {nodes} bad nodes",
                              "--bad-nodes is at most --nodes")
        if bad_mode not in liar.MODES:
            raise UsageError(f"{bad_mode!r} is not a way to lie", f"--bad-mode is one of: {', '.join(liar.MODES)}")
        self.bad_mode = bad_mode
        self.lie_seed = bytes(lie_seed)
        self.collude = collude
        self.count = nodes
        self.bad = bad_nodes
        self._own_dir = base_dir is None
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="cod-devstack-"))
        self.options = {"concurrency": 1, **node_options}
        self.nodes: list[RunningNode] = []
        self._lock: DirLock | None = None

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def liars(self) -> list[RunningNode]:
        """The running nodes that lie: the last ``bad`` of them."""
        return self.nodes[self.count - self.bad:] if self.bad else []

    def lie(self, mode: str) -> None:
        """From now on the liars lie in ``mode`` (UsageError if it is not one of cod.node.liar.MODES).
        A job a node answered before keeps its record: give the liars new jobs."""
        if mode not in liar.MODES:
            raise UsageError(f"{mode!r} is not a way to lie", f"use one of: {', '.join(liar.MODES)}")
        self.bad_mode = mode
        for running in self.liars:
            running.node.cheat = mode

    async def start(self) -> "Devstack":
        try:
            self.base_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalPathError(f"cannot make the devstack base directory {str(self.base_dir)!r}: {exc.strerror}",
                                 "give --base-dir a directory you can write") from None
        self._lock = DirLock.take(self.base_dir, "devstack base directory", "--base-dir")  # until stop
        try:
            for i in range(self.count):
                cheat = self.bad_mode if i >= self.count - self.bad else None
                seed = self.lie_seed if self.collude else self.lie_seed + b"\0" + str(i).encode()
                self.nodes.append(await start_node(self.base_dir / f"node-{i}", cheat=cheat, lie_seed=seed,
                                                   **self.options))
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        for node in self.nodes:
            await node.stop()
        self.nodes = []
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    async def __aenter__(self) -> "Devstack":
        return await self.start()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
