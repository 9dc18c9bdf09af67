"""The ``net`` fixture: a real local network with a lying node and a real FIL+ ledger.

Real parts: `cod devstack` (four nodes, the last one lies), `cod ledger serve` with a moderator
voted in and the input blessed, two verified runs (a quorum that outvoted the liar, and a
mismatch) reported to it. Module-scoped: each test file that asks for it builds it once.

The ``served`` fixture is lighter: a real ledger service in the test's own event loop with two
eligible jobs of signed statements (tests/ledger/bkit.py), for the commands that talk to a ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cod.ledger.client import LedgerClient
from cod.ledger.server import RunningLedger, start_ledger

from ..helpers import VECTORS, cod_env, devstack, run_cod
from ..ledger.bkit import DATA, MOD, agreeing, blessed_ledger, spec

WORDCOUNT = [str(VECTORS / "wordcount.wasm"), "-i", str(VECTORS / "data" / "wordcount")]


@dataclass
class Net:
    env: dict[str, str]
    tmp: Path
    liar: str
    mismatch: dict[str, object]
    quorum: dict[str, object]

    def cod(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cod", *args], cwd=self.tmp, env=self.env, capture_output=True,
                              text=True, timeout=120)


def _lines_until(proc: subprocess.Popen[str], wanted: int, prefix: str) -> list[str]:
    assert proc.stdout is not None
    found: list[str] = []
    while len(found) < wanted:
        line = proc.stdout.readline()
        assert line, "the server ended early"
        if line.startswith(prefix) or prefix in line:
            found.append(line)
    return found


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    tmp = tmp_path_factory.mktemp("dashboard")
    env = cod_env(tmp)
    procs: list[subprocess.Popen[str]] = []
    stack = contextlib.ExitStack()

    def cod(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "cod", *args], cwd=tmp, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode in (0, 10), (args, done.stderr)
        return done.stdout

    try:
        nodes = stack.enter_context(devstack(env, tmp, 4, 1))
        urls = [url for _, url, _ in nodes]
        liar = next(node_id for node_id, _, lies in nodes if lies)
        root_id = cod("keygen", str(tmp / "root.key")).split()[-1]
        moderator_id = cod("keygen", str(tmp / "moderator.key")).split()[-1]
        cod("ledger", "init", "--data-dir", str(tmp / "ledger"), "--root-key", root_id, "--threshold", "1")
        ledger = subprocess.Popen([sys.executable, "-m", "cod", "ledger", "serve", "--data-dir", str(tmp / "ledger"),
                                   "--port", "0"], cwd=tmp, env=env, stdout=subprocess.PIPE, text=True)
        procs.append(ledger)
        line = _lines_until(ledger, 1, "http://")[0]
        env.update(COD_NODES=",".join(urls), COD_LEDGER=line[line.index("http://"):].split()[0])
        cod("ledger", "moderator", "propose", "add", moderator_id, "--key", str(tmp / "root.key"))
        (tmp / "blessed.json").write_text(json.dumps([cod("cid", WORDCOUNT[2]).split()[-1]]))
        cod("ledger", "bless", "import", str(tmp / "blessed.json"), "--key", str(tmp / "moderator.key"))
        quorum = json.loads(cod("run", "--json", "--verify", "4", "--quorum", "3", "--referee", "none", *WORDCOUNT))
        mismatch = json.loads(cod("run", "--json", "--verify", "4", "--referee", "none", str(VECTORS / "hello.wasm")))
        assert quorum["outcome"] == "verified-by-quorum" and mismatch["outcome"] == "mismatch"
        yield Net(env, tmp, liar, mismatch, quorum)
    finally:
        stack.close()
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass
class Served:
    """A real ledger (in this process) with two eligible jobs, A and B, and MOD's key in a file."""

    running: RunningLedger
    tmp: Path
    key: str
    a: str
    b: str

    @property
    def vkey(self) -> str:
        return str(self.running.ledger.info()["vkey"])

    async def cod(self, *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run_cod, self.tmp, *args)

    async def approve(self, job: str, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return await self.cod("moderation", "approve", job, "--datacap", "1TiB", "--reason", "useful", "--key",
                              self.key, "--ledger", url, *extra)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    blessed_ledger(tmp_path).close()  # MOD a moderator, DATA blessed
    running = await start_ledger(tmp_path / "ledger")
    try:
        connection = LedgerClient(running.url)
        jobs = []
        for job_spec in (spec(DATA), spec(DATA, DATA)):
            answer = await connection.evidence(job_spec, agreeing(job_spec, 3))
            assert answer["eligible"] is True
            jobs.append(answer["job"])
        key = tmp_path / "moderator.key"
        key.write_bytes(MOD.signing_key.encode())
        key.chmod(0o600)
        yield Served(running, tmp_path, str(key), jobs[0], jobs[1])
    finally:
        await running.stop()
