"""The C2SP tlog-witness on loopback: real aiohttp server, real SQLite, real keys, the real CLI."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import nacl.signing
import pytest

from cod.errors import KeyFileError, LedgerRefused, UsageError
from cod.ledger.checkpoint import Checkpoint
from cod.ledger.merkle import EMPTY_ROOT, MemoryHashes, leaf_hash, prove_tree, tree_hash
from cod.ledger.note import CosignatureSigner, CosignatureVerifier, Signer, Verifier, open_note, verify_cosignature
from cod.ledger.witness import (
    DB_FILE, KEY_FILE, MAX_PROOF_LINES, MAX_REQUEST_BYTES, RunningWitness, WitnessSizeConflict, add_checkpoint,
    format_request, origin_hash, start_witness,
)

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "cod.test/ledger"


class Log:
    """A toy log: entries, stored hashes, a key; makes signed checkpoints and proofs."""

    def __init__(self, seed: bytes, origin: str = ORIGIN, prefix: bytes = b"entry") -> None:
        self.signer = Signer(origin, nacl.signing.SigningKey(hashlib.sha256(seed).digest()))
        self.mem = MemoryHashes()
        self.prefix = prefix

    def grow(self, size: int) -> None:
        while self.mem.size < size:
            self.mem.append(leaf_hash(self.prefix + str(self.mem.size).encode()))

    def body(self, size: int) -> bytes:
        self.grow(size)
        return Checkpoint(self.signer.name, size, tree_hash(size, self.mem.read)).body()

    def note(self, size: int) -> str:
        return self.signer.sign(self.body(size).decode())

    def proof(self, new: int, old: int) -> list[bytes]:
        self.grow(new)
        return prove_tree(new, old, self.mem.read)


@pytest.fixture
def log() -> Log:
    return Log(b"log key")


@pytest.fixture
async def running(tmp_path: Path, log: Log) -> AsyncIterator[RunningWitness]:
    w = await start_witness(tmp_path / "w", [log.signer.vkey], name="witness.test/w1")
    try:
        yield w
    finally:
        await w.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, str, str]:
    async with http.post(url + "/add-checkpoint", data=body) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


async def test_consistent_chain_is_cosigned(running: RunningWitness, log: Log, http: aiohttp.ClientSession) -> None:
    cv = CosignatureVerifier.from_vkey(running.witness.vkey)
    assert running.witness.vkey.startswith("witness.test/w1+")
    lines = await add_checkpoint(http, running.url, 0, [], log.note(3))
    assert len(lines) == 1 and verify_cosignature(lines[0], log.body(3), cv) > 0
    lines = await add_checkpoint(http, running.url, 3, log.proof(7, 3), log.note(7), witness=cv)
    assert verify_cosignature(lines[0], log.body(7), cv) > 0
    # the same checkpoint again: consistent with itself, cosigned again
    await add_checkpoint(http, running.url, 7, [], log.note(7), witness=cv)
    lines = await add_checkpoint(http, running.url, 7, log.proof(300, 7), log.note(300), witness=cv)
    # a cosignature of size 300 does not verify over the body of size 7
    with pytest.raises(Exception):
        verify_cosignature(lines[0], log.body(7), cv)
    # the monitoring endpoint serves the latest checkpoint with the log's and the witness's signatures
    async with http.get(f"{running.url}/{origin_hash(ORIGIN)}/checkpoint") as r:
        assert r.status == 200
        note = await r.read()
    assert open_note(note, [Verifier.from_vkey(log.signer.vkey), cv]) == (log.body(300).decode(),
                                                                          [ORIGIN, "witness.test/w1"])
    async with http.get(f"{running.url}/{'0' * 64}/checkpoint") as r:
        assert r.status == 404


async def test_fork_refused_state_unchanged(running: RunningWitness, log: Log, http: aiohttp.ClientSession) -> None:
    await add_checkpoint(http, running.url, 0, [], log.note(7))
    fork = Log(b"log key", prefix=b"forked")  # same key and origin, other entries
    # same size, other root (C2SP: 422)
    status, _, text = await post(http, running.url, format_request(7, [], fork.note(7)))
    assert status == 422 and "forked" in text
    # a larger forked tree with its own (valid-looking) proof from 7: does not verify against what was cosigned
    status, _, _ = await post(http, running.url, format_request(7, fork.proof(9, 7), fork.note(9)))
    assert status == 422
    # the fork presented as if the witness had seen nothing: 409 with the known size
    status, ctype, text = await post(http, running.url, format_request(0, [], fork.note(9)))
    assert (status, ctype, text) == (409, "text/x.tlog.size", "7\n")
    with pytest.raises(WitnessSizeConflict) as info:
        await add_checkpoint(http, running.url, 3, fork.proof(9, 3), fork.note(9))
    assert info.value.size == 7 and info.value.status == 409
    latest = running.witness.latest(ORIGIN)
    assert latest is not None and latest[:2] == (7, Checkpoint.parse(log.body(7)).root)


async def test_bad_proof_422(running: RunningWitness, log: Log, http: aiohttp.ClientSession) -> None:
    await add_checkpoint(http, running.url, 0, [], log.note(5))
    proof = log.proof(11, 5)
    for bad in ([proof[0][:-1] + bytes([proof[0][-1] ^ 1])] + proof[1:], proof[:-1], proof + [proof[0]], []):
        with pytest.raises(LedgerRefused) as info:
            await add_checkpoint(http, running.url, 5, bad, log.note(11))
        assert info.value.status == 422
    # from old size 0 the proof must be empty
    fresh = Log(b"other", origin="cod.test/other")
    # (unknown origin first: 404)
    with pytest.raises(LedgerRefused) as info:
        await add_checkpoint(http, running.url, 0, [], fresh.note(2))
    assert info.value.status == 404 and info.value.error == "UnknownLog"
    latest = running.witness.latest(ORIGIN)
    assert latest is not None and latest[0] == 5


async def test_nonempty_proof_from_zero_and_bad_empty_root_422(tmp_path: Path, log: Log,
                                                              http: aiohttp.ClientSession) -> None:
    w = await start_witness(tmp_path / "w", [log.signer.vkey])
    try:
        with pytest.raises(LedgerRefused) as info:
            await add_checkpoint(http, w.url, 0, log.proof(4, 2), log.note(4))
        assert info.value.status == 422
        bad_empty = log.signer.sign(Checkpoint(ORIGIN, 0, bytes(32)).body().decode())
        with pytest.raises(LedgerRefused) as info:
            await add_checkpoint(http, w.url, 0, [], bad_empty)
        assert info.value.status == 422
        empty = log.signer.sign(Checkpoint(ORIGIN, 0, EMPTY_ROOT).body().decode())
        assert await add_checkpoint(http, w.url, 0, [], empty)
    finally:
        await w.stop()


async def test_bad_signatures_403(running: RunningWitness, log: Log, http: aiohttp.ClientSession) -> None:
    impostor = Log(b"impostor key")  # same origin (key name), another key: its key ID is unknown
    with pytest.raises(LedgerRefused) as info:
        await add_checkpoint(http, running.url, 0, [], impostor.note(3))
    assert info.value.status == 403
    # the right key ID, but the text was altered after signing
    note = log.note(3)
    altered = note.replace("\n3\n", "\n4\n", 1)
    with pytest.raises(LedgerRefused) as info:
        await add_checkpoint(http, running.url, 0, [], altered)
    assert info.value.status == 403 and info.value.error == "BadSignature"
    # a valid log signature plus a failing one by the same key: the note is refused
    line = note.rstrip("\n").split("\n")[-1]
    forged = line[:-8] + ("A" if line[-8] != "A" else "B") + line[-7:]
    with pytest.raises(LedgerRefused) as info:
        await add_checkpoint(http, running.url, 0, [], note + forged + "\n")
    assert info.value.status == 403
    assert running.witness.latest(ORIGIN) is None


@pytest.mark.parametrize("body", [
    b"old 0\n",                                  # no blank line, no note
    b"old 00\n\n",                               # leading zero
    b"old -1\n\n",
    b"new 0\n\n",
    b"old 0\nnot base64!\n\n",
    b"old 0\n" + base64.b64encode(bytes(31)) + b"\n\n",
    b"old 0\n" + b"\n".join([base64.b64encode(bytes(32))] * (MAX_PROOF_LINES + 1)) + b"\n\n",
    b"old 0\n\nnot a note",
    b"old 0\xff\n\n",
])
async def test_malformed_requests_400(running: RunningWitness, log: Log, http: aiohttp.ClientSession,
                                      body: bytes) -> None:
    if body.endswith(b"\n\n"):
        body += log.note(2).encode()
    status, ctype, _ = await post(http, running.url, body)
    assert status == 400 and ctype.startswith("application/json")
    assert running.witness.latest(ORIGIN) is None


async def test_old_size_over_checkpoint_400_and_huge_413(running: RunningWitness, log: Log,
                                                          http: aiohttp.ClientSession) -> None:
    status, _, _ = await post(http, running.url, format_request(5, [], log.note(3)))
    assert status == 400
    status, _, _ = await post(http, running.url, b"old 0\n\n" + b"x" * (MAX_REQUEST_BYTES + 1))
    assert status == 413


async def test_concurrent_requests_advance_once(running: RunningWitness, log: Log,
                                                http: aiohttp.ClientSession) -> None:
    await add_checkpoint(http, running.url, 0, [], log.note(7))
    sizes = [8, 9, 12, 20, 33, 64, 65, 100]
    results = await asyncio.gather(*(add_checkpoint(http, running.url, 7, log.proof(n, 7), log.note(n))
                                     for n in sizes), return_exceptions=True)
    ok = [n for n, r in zip(sizes, results) if isinstance(r, list)]
    conflicts = [r for r in results if isinstance(r, WitnessSizeConflict)]
    assert len(ok) == 1 and len(conflicts) == len(sizes) - 1
    assert {c.size for c in conflicts} == set(ok)
    latest = running.witness.latest(ORIGIN)
    assert latest is not None and latest[0] == ok[0]


async def test_restart_keeps_state_and_key(tmp_path: Path, log: Log, http: aiohttp.ClientSession) -> None:
    w = await start_witness(tmp_path / "w", [log.signer.vkey], name="witness.test/w1")
    vkey = w.witness.vkey
    await add_checkpoint(http, w.url, 0, [], log.note(6))
    await w.stop()
    assert (tmp_path / "w" / KEY_FILE).stat().st_mode & 0o777 == 0o600
    w = await start_witness(tmp_path / "w", [log.signer.vkey], name="witness.test/w1")
    try:
        assert w.witness.vkey == vkey
        with pytest.raises(WitnessSizeConflict) as info:
            await add_checkpoint(http, w.url, 0, [], log.note(6))
        assert info.value.size == 6
        await add_checkpoint(http, w.url, 6, log.proof(10, 6), log.note(10))
    finally:
        await w.stop()


async def test_state_table_refuses_rollback(tmp_path: Path, log: Log, http: aiohttp.ClientSession) -> None:
    w = await start_witness(tmp_path / "w", [log.signer.vkey])
    await add_checkpoint(http, w.url, 0, [], log.note(6))
    await w.stop()
    db = sqlite3.connect(tmp_path / "w" / DB_FILE)
    with pytest.raises(sqlite3.DatabaseError, match="never rolls"):
        db.execute("UPDATE logs SET size = 2")
    with pytest.raises(sqlite3.DatabaseError, match="never forgets"):
        db.execute("DELETE FROM logs")
    db.close()


async def test_key_file_and_config_refusals(tmp_path: Path, log: Log) -> None:
    d = tmp_path / "w"
    d.mkdir()
    (d / KEY_FILE).write_bytes(bytes(32))
    os.chmod(d / KEY_FILE, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        await start_witness(d, [log.signer.vkey])
    with pytest.raises(UsageError, match="--log"):
        await start_witness(tmp_path / "x", ["not a vkey"])
    with pytest.raises(UsageError):
        await start_witness(tmp_path / "x", [])
    first = await start_witness(tmp_path / "y", [log.signer.vkey])
    await first.stop()
    with pytest.raises(UsageError, match="0x01"):  # a witness's own (0x04) key is not a log key
        await start_witness(tmp_path / "z", [first.witness.vkey])


async def test_client_keeps_only_the_expected_witness(running: RunningWitness, log: Log,
                                                       http: aiohttp.ClientSession) -> None:
    other = CosignatureSigner("witness.test/w1", nacl.signing.SigningKey(bytes(32)))  # same name, other key
    with pytest.raises(LedgerRefused) as info:
        await add_checkpoint(http, running.url, 0, [], log.note(1),
                             witness=CosignatureVerifier.from_vkey(other.vkey))
    assert info.value.status == 502 and "no cosignature" in info.value.message


async def test_client_unreachable(log: Log, http: aiohttp.ClientSession) -> None:
    with pytest.raises(LedgerRefused) as info:
        await add_checkpoint(http, "http://127.0.0.1:9", 0, [], log.note(1))
    assert info.value.status == 0 and info.value.error == "Unreachable"


def test_cli_serves_and_prints_vkey(tmp_path: Path, log: Log) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "cod", "ledger", "witness", "--data-dir", str(tmp_path / "w"),
                             "--log", log.signer.vkey, "--port", "0", "--name", "witness.test/cli"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        vkey = proc.stdout.readline().strip()
        url = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
        cv = CosignatureVerifier.from_vkey(vkey)
        assert cv.name == "witness.test/cli" and url.startswith("http://127.0.0.1:")

        async def use() -> list[str]:
            async with aiohttp.ClientSession() as session:
                return await add_checkpoint(session, url, 0, [], log.note(4), witness=cv)
        lines = asyncio.run(use())
        assert verify_cosignature(lines[0], log.body(4), cv) > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_cli_refuses_a_bad_log_vkey(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "cod", "ledger", "witness", "--data-dir", str(tmp_path / "w"),
                          "--log", "nonsense"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "error:" in out.stderr and "Traceback" not in out.stderr


async def test_a_second_witness_on_one_data_dir_is_refused(tmp_path: Path, log: Log) -> None:
    """A second round of Stage 9 point 36: two `cod ledger witness` on one --data-dir both started,
    one witness key and name on two ports. The second is refused at start; a stopped witness's
    lock is gone."""
    from cod.errors import LocalPathError
    first = await start_witness(tmp_path / "w", [log.signer.vkey])
    try:
        with pytest.raises(LocalPathError, match="is in use by another cod process"):
            second = await start_witness(tmp_path / "w", [log.signer.vkey])
            await second.stop()
    finally:
        await first.stop()
    again = await start_witness(tmp_path / "w", [log.signer.vkey])
    await again.stop()
