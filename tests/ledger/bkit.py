"""Shared parts of the ledger core's tests (engineer B): fixed keys, specs, signed node statements."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import nacl.signing

from cod.content.cid import CID, RAW
from cod.identity import Identity
from cod.jobspec import Input, JobSpec
from cod.ledger import entries
from cod.ledger.log import Ledger
from cod.statement import Statement

PROFILE = "wasmtime-test+cod-1"


def key(n: int) -> Identity:
    """A fixed key (seed = n repeated), so IDs are the same on every run."""
    return Identity(nacl.signing.SigningKey(bytes([n]) * 32))


def throw_away(n: int) -> Identity:
    """The n-th of any number of fixed throw-away keys (seed = SHA-256 of its name), none equal to a key()."""
    return Identity(nacl.signing.SigningKey(hashlib.sha256(f"throw-away key {n}".encode()).digest()))


ROOTS = [key(1), key(2), key(3)]
MOD = key(10)
MOD2 = key(11)
NODES = [key(20), key(21), key(22), key(23)]
STRANGER = key(99)
ORIGIN = "test.example/ledger"
"""The origin of the ledgers governed() makes: every statement signed for them names it."""


def cid(text: str) -> str:
    return str(CID.of(RAW, text.encode()))


MODULE = cid("module")
DATA = cid("fil+ data")
OTHER = cid("other data")
RESULT = cid("result A")
RESULT_B = cid("result B")


def spec(*inputs: str, engine: str = "wasm", output_base: str | None = None, local: str | None = None) -> dict[str, Any]:
    mounts = tuple(Input(cid=c, path=f"/inputs/{n}") for n, c in enumerate(inputs))
    if local is not None:
        mounts += (Input(local=local, path="/local"),)
    if engine == "docker":
        return JobSpec(engine="docker", image="alpine", inputs=mounts).to_dict()
    return JobSpec(module=MODULE, inputs=mounts, output_base=output_base).to_dict()


def job_of(spec_json: dict[str, Any]) -> str:
    return str(JobSpec.from_dict(spec_json).cid)


def statement(spec_json: dict[str, Any], node: Identity, result: str = RESULT, exit_code: int = 0,
              trap: str | None = None) -> dict[str, Any]:
    s = Statement(job=job_of(spec_json), result=result, node=node.node_id, profile=PROFILE, exit_code=exit_code,
                  trap=trap, fuel_used=1234)
    return s.sign(node).to_json()


def agreeing(spec_json: dict[str, Any], n: int = 2, result: str = RESULT) -> list[dict[str, Any]]:
    return [statement(spec_json, node, result) for node in NODES[:n]]


def governed(tmp: Path, threshold: int = 2, origin: str = ORIGIN, name: str = "ledger") -> Ledger:
    """A ledger in tmp/name with root keys ROOTS (K = threshold) and MOD a moderator."""
    ledger = Ledger.init(tmp / name, [r.node_id for r in ROOTS], threshold, origin=origin)
    _, pid = ledger.propose(entries.sign_proposal(ROOTS[0], origin=origin, action="add", moderator=MOD.node_id))
    for root in ROOTS[1:threshold]:
        ledger.approve(entries.sign_approval(root, pid, origin=origin))
    assert ledger.moderators() == [MOD.node_id]
    return ledger


def blessed_ledger(tmp: Path, origin: str = ORIGIN, name: str = "ledger") -> Ledger:
    """governed(), and DATA blessed by MOD."""
    ledger = governed(tmp, origin=origin, name=name)
    ledger.bless([entries.sign_bless_batch(MOD, {DATA: [7, 3]}, origin=origin)])
    return ledger
