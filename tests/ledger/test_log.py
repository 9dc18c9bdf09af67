"""class Ledger: init/open, appends all or nothing, proofs checked against RFC 9162 written here, queries."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from cod.errors import AuditFailed, KeyFileError, LocalPathError, NotFound, UsageError
from cod.ledger import entries
from cod.ledger.audit import audit_dir
from cod.ledger.entries import EntryRefused
from cod.ledger.log import LOG_KEY_FILE, Ledger
from cod.ledger.store import DB_FILE
from tests.ledger.bkit import (DATA, MOD, NODES, ORIGIN, OTHER, RESULT, ROOTS, STRANGER, agreeing, blessed_ledger, cid,
                               governed, job_of, spec)


# --- RFC 9162 2.1.1 / 2.1.3.1 / 2.1.4.1, written from the RFC's text (not cod.ledger.merkle) --------------------
def rfc_mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)   # the largest power of two smaller than n
    return hashlib.sha256(b"\x01" + rfc_mth(leaves[:k]) + rfc_mth(leaves[k:])).digest()


def rfc_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return rfc_path(m, leaves[:k]) + [rfc_mth(leaves[k:])]
    return rfc_path(m - k, leaves[k:]) + [rfc_mth(leaves[:k])]


def rfc_subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [rfc_mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return rfc_subproof(m, leaves[:k], b) + [rfc_mth(leaves[k:])]
    return rfc_subproof(m - k, leaves[k:], False) + [rfc_mth(leaves[:k])]


def open_checkpoint(note: str, vkey: str) -> tuple[str, int, bytes]:
    """Check the log's signature with PyNaCl (C2SP signed-note, by hand); return origin, size, root."""
    name, key_id_hex, key_b64 = vkey.split("+", 2)
    key = base64.b64decode(key_b64)
    assert key[0] == 0x01
    text, _, sigs = note.partition("\n\n")
    text += "\n"
    for line in sigs.splitlines():
        if line.startswith(f"\u2014 {name} "):
            raw = base64.b64decode(line.split(" ")[2])
            assert raw[:4] == hashlib.sha256(name.encode() + b"\n\x01" + key[1:]).digest()[:4] == bytes.fromhex(key_id_hex)
            nacl.signing.VerifyKey(key[1:]).verify(text.encode(), raw[4:])
            origin, size, root = text.splitlines()
            return origin, int(size), base64.b64decode(root)
    raise AssertionError("no signature of the log")


def test_init_writes_key_genesis_checkpoint(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "l", [ROOTS[1].node_id, ROOTS[0].node_id], 1)
    key_file = tmp_path / "l" / LOG_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and key_file.stat().st_size == 32
    assert ledger.size == 1 and ledger.origin.startswith("cod-ledger/12D3KooW")
    genesis = json.loads(ledger.entries(0, 1)[0])
    assert genesis == {"type": "cod/ledger/genesis/v1", "origin": ledger.origin, "log_key": ledger.vkey,
                       "root_keys": sorted([ROOTS[0].node_id, ROOTS[1].node_id]), "threshold": 1}
    origin, size, root = open_checkpoint(ledger.checkpoint(), ledger.vkey)
    assert (origin, size, root) == (ledger.origin, 1, rfc_mth(ledger.entries(0, 1)))
    with pytest.raises(LocalPathError):
        Ledger.init(tmp_path / "l", [ROOTS[0].node_id], 1)


@pytest.mark.parametrize("keys, k", [([], 1), (["12D3KooWnope"], 1), ([ROOTS[0].node_id], 2),
                                     ([ROOTS[0].node_id], 0)])
def test_init_refuses_bad_root_keys(tmp_path: Path, keys: list[str], k: int) -> None:
    with pytest.raises(UsageError):
        Ledger.init(tmp_path / "l", keys, k)
    assert not (tmp_path / "l" / DB_FILE).exists()


def test_open_refuses_what_is_not_a_ledger(tmp_path: Path) -> None:
    with pytest.raises(LocalPathError, match="holds no ledger"):
        Ledger.open(tmp_path)
    governed(tmp_path).close()
    key_file = tmp_path / "ledger" / LOG_KEY_FILE
    os.chmod(key_file, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        Ledger.open(tmp_path / "ledger")
    os.chmod(key_file, 0o600)
    seed = key_file.read_bytes()
    key_file.chmod(0o600)
    os.unlink(key_file)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, bytes(32))
    os.close(fd)
    with pytest.raises(KeyFileError, match="not the key the genesis names"):
        Ledger.open(tmp_path / "ledger")
    os.unlink(key_file)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, seed)
    os.close(fd)
    assert Ledger.open(tmp_path / "ledger").size == 3


def test_proofs_equal_rfc_9162_for_every_index_and_size(tmp_path: Path) -> None:
    ledger = governed(tmp_path)
    for i in range(21):
        ledger.refusal(entries.sign_refusal(NODES[i % 4], job=cid(f"j{i}"), policy="fil-plus-only", inputs=[],
                                            reason=f"r{i}"))
    leaves = ledger.entries(0, ledger.size)
    assert len(leaves) == ledger.size == 24
    for size in range(1, ledger.size + 1):
        origin, cp_size, root = open_checkpoint(ledger.checkpoint(size), ledger.vkey)
        assert origin == ledger.origin and cp_size == size and root == rfc_mth(leaves[:size])
        for m in range(size):
            got = ledger.inclusion(m, size)
            assert base64.b64decode(got["leaf"]) == leaves[m]
            assert [base64.b64decode(h) for h in got["inclusion_path"]] == rfc_path(m, leaves[:size])
        for old in range(1, size + 1):
            proof = ledger.consistency(old, size)["proof"]
            assert [base64.b64decode(h) for h in proof] == rfc_subproof(old, leaves[:size], True)


def test_proof_arguments_out_of_range(tmp_path: Path) -> None:
    ledger = governed(tmp_path)
    for call, args in ((ledger.inclusion, (3, None)), (ledger.inclusion, (0, 4)), (ledger.inclusion, (-1, None)),
                       (ledger.consistency, (0, None)), (ledger.consistency, (2, 1)), (ledger.consistency, (1, 9))):
        with pytest.raises(EntryRefused) as info:
            call(*args)  # type: ignore[operator]
        assert info.value.status == 400


def test_a_refused_request_stores_nothing(tmp_path: Path) -> None:
    ledger = blessed_ledger(tmp_path)
    db = tmp_path / "ledger" / DB_FILE
    before = db.read_bytes(), ledger.checkpoint()
    good = entries.sign_refusal(NODES[0], job=cid("j"), policy="fil-plus-only", inputs=[], reason="r")
    forged = entries.sign_refusal(NODES[1], job=cid("j"), policy="fil-plus-only", inputs=[], reason="r")
    forged["statement"]["reason"] = "changed"
    with pytest.raises(EntryRefused) as info:
        ledger.append_signed([good, forged])
    assert info.value.error == "BadSignature"
    assert ledger.checkpoint() == before[1]
    ledger.close()
    reopened = Ledger.open(tmp_path / "ledger")
    assert reopened.size == 4 and reopened.checkpoint() == before[1]
    assert audit_dir(tmp_path / "ledger") == []


def test_threads_append_concurrently(tmp_path: Path) -> None:
    ledger = governed(tmp_path)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                ledger.refusal(entries.sign_refusal(NODES[n], job=cid(f"{n}/{i}"), policy="prefer-fil-plus",
                                                    inputs=[], reason="r"))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and ledger.size == 3 + 100
    ledger.close()
    assert audit_dir(tmp_path / "ledger") == []


def test_input_job_queue_and_notary_answer(tmp_path: Path) -> None:
    ledger = blessed_ledger(tmp_path)
    assert ledger.input(DATA) == {"cid": DATA, "blessed": True,
                                  "blessings": [{"entry": 3, "deals": [3, 7], "source": "list"}]}
    assert ledger.input(OTHER) == {"cid": OTHER, "blessed": False, "blessings": []}
    s = spec(DATA)
    job = job_of(s)
    assert ledger.job(job)["state"] == "unknown"
    with pytest.raises(NotFound):
        ledger.result(RESULT)
    index, _, _ = ledger.report_evidence(s, agreeing(s, 3))
    assert ledger.job(job)["state"] == "eligible"
    signers = [{"node": n, "result": RESULT, "agrees": True, "first_seen": index, "jobs": 1, "disputed_jobs": 0}
               for n in sorted(n.node_id for n in NODES[:3])]
    assert ledger.queue() == [{"job": job, "result": RESULT, "entry": index,
                               "nodes": sorted(n.node_id for n in NODES[:3]), "inputs": [DATA], "signers": signers,
                               "posters": [{"entry": index, "poster": None}],
                               "flags": [], "audit": None, "audited": False}]  # no fraud entry, no audit (12.10)
    answer = ledger.result(RESULT)
    assert answer["approved"] is False and answer["decision"] is None and answer["datacap"] == 0
    decision = ledger.decide(entries.sign_decision(MOD, origin=ORIGIN, job=job, result=RESULT, action="approve",
                                                   datacap=1 << 40, reason="ok", eligibility=index, supersedes=None))
    assert ledger.queue() == []
    answer = ledger.result(RESULT)
    assert answer["approved"] is True and answer["job"] == job and answer["datacap"] == 1 << 40
    assert answer["nodes"] == sorted(n.node_id for n in NODES[:3])
    proof = answer["proof"]
    assert proof["leaf_index"] == decision and proof["tree_size"] == ledger.size
    leaf = base64.b64decode(proof["leaf"])
    assert json.loads(leaf)["statement"] == answer["decision"]["statement"]
    # the notary checks: leaf hash + path -> root of the signed checkpoint (RFC 9162 2.1.3.2, by hand)
    _, size, root = open_checkpoint(proof["checkpoint"], ledger.vkey)
    fn, sn = proof["leaf_index"], size - 1
    r = hashlib.sha256(b"\x00" + leaf).digest()
    for p in (base64.b64decode(x) for x in proof["inclusion_path"]):
        if fn % 2 == 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0 and r == root
    job_view = ledger.job(job)
    assert job_view["state"] == "approved" and job_view["decisions"][0]["entry"] == decision
    assert job_view["eligibility"]["statements"][0]["statement"]["job"] == job


def test_reopen_replays_to_the_same_state(tmp_path: Path) -> None:
    ledger = blessed_ledger(tmp_path)
    s = spec(DATA)
    index, _, _ = ledger.report_evidence(s, agreeing(s))
    ledger.refusal(entries.sign_refusal(STRANGER, job=job_of(s), policy="fil-plus-only", inputs=[], reason="r"))
    want: dict[str, Any] = {"info": ledger.info(), "queue": ledger.queue(), "job": ledger.job(job_of(s)),
                            "proposals": ledger.proposals(), "checkpoint": ledger.checkpoint()}
    ledger.close()
    again = Ledger.open(tmp_path / "ledger")
    assert {"info": again.info(), "queue": again.queue(), "job": again.job(job_of(s)),
            "proposals": again.proposals(), "checkpoint": again.checkpoint()} == want


def test_open_refuses_a_log_whose_checkpoint_does_not_match(tmp_path: Path) -> None:
    import sqlite3
    governed(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "ledger" / DB_FILE)
    conn.execute("DROP TRIGGER checkpoints_no_delete")
    conn.execute("DELETE FROM checkpoints WHERE size = (SELECT MAX(size) FROM checkpoints)")
    conn.commit()
    conn.close()
    with pytest.raises(AuditFailed, match="latest checkpoint"):
        Ledger.open(tmp_path / "ledger")


def test_cosignature_lines_are_kept_per_size_and_checked_for_form(tmp_path: Path) -> None:
    from cod.ledger import merkle
    from cod.ledger.checkpoint import Checkpoint
    from cod.ledger.note import CosignatureSigner, CosignatureVerifier, verify_cosignature
    ledger = governed(tmp_path)
    w = CosignatureSigner("w.example", nacl.signing.SigningKey(bytes([5]) * 32))
    body = Checkpoint(ledger.origin, 3, merkle.root(ledger.entries(0, 3))).body()
    line = w.cosign(body, 1_700_000_000)
    assert ledger.add_cosignature(3, w.name, line) is True
    assert ledger.add_cosignature(3, w.name, line) is False          # kept once
    note = ledger.checkpoint()
    assert note.endswith(line + "\n")
    verify_cosignature(note.rstrip("\n").split("\n")[-1], body, CosignatureVerifier.from_vkey(w.vkey))
    for size, name, bad in ((3, w.name, "not a line"), (3, "other.example", line), (99, w.name, line)):
        with pytest.raises(EntryRefused) as info:
            ledger.add_cosignature(size, name, bad)
        assert info.value.status == 400
    assert ledger.checkpoint(2).count("\u2014") == 1                   # another size: the log's signature only


def test_concurrent_requests_good_and_bad_each_all_or_nothing(tmp_path: Path) -> None:
    """Group commit: requests of several threads share transactions; a refused request drops only itself."""
    ledger = governed(tmp_path)
    outcomes: dict[tuple[int, int], Any] = {}

    def work(n: int) -> None:
        for i in range(30):
            good = entries.sign_refusal(NODES[n], job=cid(f"g{n}/{i}"), policy="fil-plus-only", inputs=[],
                                        reason="r")
            batch = [good]
            if i % 3 == 0:   # a forged second leaf spoils the whole request
                forged = entries.sign_refusal(NODES[n], job=cid(f"f{n}/{i}"), policy="fil-plus-only", inputs=[],
                                              reason="r")
                forged["statement"]["reason"] = "changed"
                batch.append(forged)
            try:
                outcomes[(n, i)] = ledger.append_signed(batch)
            except EntryRefused as exc:
                outcomes[(n, i)] = exc

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refused = [k for k, v in outcomes.items() if isinstance(v, EntryRefused)]
    assert sorted(refused) == sorted((n, i) for n in range(4) for i in range(0, 30, 3))
    assert all(outcomes[k].error == "BadSignature" for k in refused)
    stored = sorted(idx for v in outcomes.values() if isinstance(v, list) for idx in v)
    assert stored == list(range(3, 3 + 4 * 20)) == list(range(3, ledger.size))
    for (n, i), v in outcomes.items():
        if isinstance(v, list):
            assert json.loads(ledger.entries(v[0], v[0] + 1)[0])["statement"]["job"] == cid(f"g{n}/{i}")
    ledger.close()
    assert audit_dir(tmp_path / "ledger") == []


def test_derived_rows_written_by_hand_are_not_served_and_refused_at_open(tmp_path: Path) -> None:
    # issue 19 point 25: INSERT INTO blessings / eligibility / decisions outside cod
    import sqlite3
    ledger = blessed_ledger(tmp_path)
    s = spec(DATA)
    index, _, _ = ledger.report_evidence(s, agreeing(s, 2))
    fake_job, fake_result = job_of(spec(OTHER)), cid("fabricated result")
    conn = sqlite3.connect(tmp_path / "ledger" / DB_FILE)
    conn.execute("INSERT INTO blessings VALUES (?, '[1]', 'list', 3)", (OTHER,))
    conn.execute("INSERT INTO eligibility VALUES (?, ?, 1, NULL, ?)", (fake_job, fake_result, index))
    conn.execute("INSERT INTO decisions VALUES (?, ?, 'approve', ?, ?, 'fake', 1)",
                 (fake_job, fake_result, 1 << 60, MOD.node_id))
    conn.execute("INSERT INTO decisions VALUES (?, ?, 'approve', ?, ?, 'fake', 1)",
                 (job_of(s), RESULT, 1 << 60, MOD.node_id))
    conn.commit()
    # live: every answer comes from the replayed log, not from the tables
    assert ledger.input(OTHER) == {"cid": OTHER, "blessed": False, "blessings": []}
    with pytest.raises(NotFound):
        ledger.result(fake_result)
    assert ledger.job(job_of(s))["decisions"] == [] and ledger.result(RESULT)["approved"] is False
    ledger.close()
    conn.close()
    # after a restart: the ledger refuses to serve tables the log does not derive, naming them
    with pytest.raises(AuditFailed) as caught:
        Ledger.open(tmp_path / "ledger")
    text = "\n".join(caught.value.problems)
    for table in ("blessings", "eligibility", "decisions"):
        assert f"table {table} differs from what the log derives" in text, text


def test_an_entry_rewritten_by_hand_is_refused_at_open(tmp_path: Path) -> None:
    """A second round of point 25: with the append-only triggers dropped, a bless entry's leaf is
    rewritten to bless another CID (and the derived row to match). Open replayed the edited leaf
    (signatures unchecked, the leaf never compared with the tree), so the ledger served the forged
    blessing (a forged decision: "approved", 2^60 bytes) until someone ran verify. The leaves'
    hashes must give the checkpoint's root."""
    import sqlite3
    blessed_ledger(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "ledger" / DB_FILE)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    (idx, leaf), = conn.execute("SELECT idx, leaf FROM entries WHERE leaf LIKE ?", (f"%{DATA}%",)).fetchall()
    conn.execute("UPDATE entries SET leaf = ? WHERE idx = ?", (leaf.replace(DATA, OTHER), idx))
    conn.execute("UPDATE blessings SET cid = ? WHERE cid = ?", (OTHER, DATA))
    conn.commit()
    conn.close()
    with pytest.raises(AuditFailed) as caught:
        Ledger.open(tmp_path / "ledger")
    assert "run cod ledger verify" in (caught.value.hint or ""), caught.value


@pytest.mark.parametrize("what", ["evidence", "refusal"])
def test_signatures_are_checked_outside_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str) -> None:
    # issue 19 point 24: a read (what nodes ask: GET /v1/inputs) completes while a signature check is held up
    from cod.ledger.entries import Signed
    from cod.statement import SignedStatement
    ledger = blessed_ledger(tmp_path)
    entered, release = threading.Event(), threading.Event()
    cls: Any = SignedStatement if what == "evidence" else Signed
    real = cls.verify

    def held(self: Any, *args: Any) -> Any:
        entered.set()
        release.wait(60)
        return real(self, *args)

    monkeypatch.setattr(cls, "verify", held)
    s = spec(DATA)
    write = (lambda: ledger.report_evidence(s, agreeing(s))) if what == "evidence" else (
        lambda: ledger.refusal(entries.sign_refusal(NODES[0], job=job_of(s), policy="fil-plus-only", inputs=[DATA],
                                                    reason="r")))
    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert entered.wait(60)
        got: list[Any] = []
        reader = threading.Thread(target=lambda: got.append(ledger.input(DATA)))
        reader.start()
        reader.join(20)  # a bound: with the lock held during the check, the reader waits for `release`
        assert got and got[0]["blessed"] is True and not release.is_set(), "the read waited for a signature check"
    finally:
        release.set()
        writer.join(60)
    assert ledger.size == 5  # genesis, proposal, approval, bless batch, then the write
