"""The audit: a clean ledger verifies; every hand edit of the SQLite file is caught and named."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from aiohttp import web

from cod.errors import LedgerRefused
from cod.ledger import entries, merkle
from cod.ledger.audit import audit_dir, audit_dir_report, audit_url
from cod.ledger.checkpoint import Checkpoint
from cod.ledger.log import Ledger
from cod.ledger.note import CosignatureSigner, Signer
from cod.ledger.store import DB_FILE, TABLES
from tests.ledger.bkit import (DATA, MOD, NODES, ORIGIN, RESULT, STRANGER, agreeing, blessed_ledger, governed, job_of,
                               spec)


def populated(tmp: Path) -> tuple[Ledger, int]:
    ledger = blessed_ledger(tmp)
    s = spec(DATA)
    index, _, _ = ledger.report_evidence(s, agreeing(s, 3))
    decision = ledger.decide(entries.sign_decision(MOD, origin=ORIGIN, job=job_of(s), result=RESULT, action="approve",
                                                   datacap=1 << 40, reason="ok", eligibility=index, supersedes=None))
    ledger.refusal(entries.sign_refusal(NODES[0], job=job_of(s), policy="fil-plus-only", inputs=[DATA], reason="r"))
    return ledger, decision


def edit(tmp: Path, *sql: str, params: tuple[Any, ...] = ()) -> None:
    """What an intruder with the file does: drop the guards, change rows."""
    conn = sqlite3.connect(tmp / "ledger" / DB_FILE)
    for table in TABLES:
        conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
        conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    for statement in sql:
        conn.execute(statement, params if "?" in statement else ())
    conn.commit()
    conn.close()


def problems(tmp: Path, **kw: Any) -> str:
    found = audit_dir(tmp / "ledger", **kw)
    assert found, "the audit found nothing"
    return "\n".join(found)


def test_a_clean_ledger_verifies_and_says_which_key(tmp_path: Path) -> None:
    ledger, _ = populated(tmp_path)
    vkey = ledger.vkey
    ledger.close()
    report = audit_dir_report(tmp_path / "ledger")
    assert report.problems == [] and report.size == 7
    assert "genesis's log_key" in report.facts[0]
    report = audit_dir_report(tmp_path / "ledger", vkey=vkey)
    assert report.problems == [] and "--vkey" in report.facts[0]


def test_dropped_triggers_are_named(tmp_path: Path) -> None:
    populated(tmp_path)[0].close()
    edit(tmp_path)
    found = problems(tmp_path)
    assert "trigger entries_no_update is missing" in found and "trigger decisions_no_delete is missing" in found


def test_a_changed_leaf(tmp_path: Path) -> None:
    ledger, decision = populated(tmp_path)
    ledger.close()
    edit(tmp_path, "UPDATE entries SET leaf = replace(leaf, '1099511627776', '1125899906842624') WHERE idx = ?",
         params=(decision,))
    found = problems(tmp_path)
    assert f"entry {decision}: its leaf_hash is not the hash of its leaf" in found
    assert f"entry {decision} is not valid: the cod/ledger/decision/v2 statement's signature does not verify" in found
    assert "its root is not the root of the first" in found


def test_a_changed_derived_row(tmp_path: Path) -> None:
    populated(tmp_path)[0].close()
    edit(tmp_path, "UPDATE decisions SET datacap = 1125899906842624")
    assert "table decisions differs from what the log derives: row" in problems(tmp_path)


def test_a_changed_eligibility_row(tmp_path: Path) -> None:
    populated(tmp_path)[0].close()
    edit(tmp_path, "INSERT INTO blessings VALUES ('bafkreinotblessed', '[]', 'list', 3)")
    assert "table blessings differs from what the log derives: row [\"bafkreinotblessed\"" in problems(tmp_path)


def test_a_changed_checkpoint(tmp_path: Path) -> None:
    ledger, _ = populated(tmp_path)
    size = ledger.size
    origin = ledger.origin
    ledger.close()
    # signed by another key under the log's name
    forged = Signer(origin, nacl.signing.SigningKey(bytes(32))).sign(
        Checkpoint(origin, size, hashlib.sha256(b"x").digest()).body().decode())
    edit(tmp_path, "UPDATE checkpoints SET note = ? WHERE size = ?", params=(forged, size))
    assert f"checkpoint {size}: the signed note does not verify" in problems(tmp_path)


def test_a_changed_root_column(tmp_path: Path) -> None:
    ledger, _ = populated(tmp_path)
    size = ledger.size
    ledger.close()
    edit(tmp_path, "UPDATE checkpoints SET root = ? WHERE size = ?", params=(bytes(32), size))
    assert f"checkpoint {size}: the note's root differs from the row's root" in problems(tmp_path)


def test_the_last_entry_deleted(tmp_path: Path) -> None:
    ledger, _ = populated(tmp_path)
    last = ledger.size - 1
    ledger.close()
    edit(tmp_path, "DELETE FROM entries WHERE idx = ?", "DELETE FROM refusals WHERE entry = ?", params=(last,))
    found = problems(tmp_path)
    assert f"the latest checkpoint signs {last + 1} entries; the log holds {last}" in found


def test_a_changed_stored_hash(tmp_path: Path) -> None:
    populated(tmp_path)[0].close()
    edit(tmp_path, "UPDATE hashes SET hash = ? WHERE idx = 2", params=(bytes(32),))
    assert "the hashes table differs from the tree of the leaves (at stored hash 2)" in problems(tmp_path)


def test_a_forged_decision_with_a_consistent_tree_and_the_log_key(tmp_path: Path) -> None:
    """An insider with the log key bypasses validation: the tree and checkpoints agree, the replay does not."""
    ledger, _ = populated(tmp_path)
    s = spec(DATA, output_base=DATA)
    index, _, _ = ledger.report_evidence(s, agreeing(s, 2))
    forged = entries.sign_decision(STRANGER, origin=ORIGIN, job=job_of(s), result=RESULT, action="approve",
                                   datacap=2**60, reason="me", eligibility=index, supersedes=None)
    entry = entries.parse_signed(forged)
    state = ledger.state

    def lax(i: int, leaf: bytes, check_signatures: bool = True, parsed: Any = None,
            appending: bool = True) -> list[Any]:
        state.skip(leaf)
        return [("decisions", (job_of(s), RESULT, "approve", 2**60, STRANGER.node_id, "me", i))]

    state.apply = lax  # type: ignore[method-assign]
    at = ledger._append([entries.leaf_bytes(entry)], [entry])[0]
    ledger.close()
    found = problems(tmp_path)
    assert f"entry {at} is not valid: {STRANGER.node_id} is not a current moderator" in found
    assert "table decisions differs from what the log derives" in found
    assert "checkpoint" not in found and "hashes" not in found


def test_wrong_vkey_and_witness_cosignatures(tmp_path: Path) -> None:
    ledger, _ = populated(tmp_path)
    other = Signer("someone.else", nacl.signing.SigningKey(bytes(32))).vkey
    size = ledger.size
    body = Checkpoint(ledger.origin, size, merkle.root(ledger.entries(0, size))).body()
    w1 = CosignatureSigner("w1.example", nacl.signing.SigningKey(bytes([1]) * 32))
    w2 = CosignatureSigner("w2.example", nacl.signing.SigningKey(bytes([2]) * 32))
    ledger.add_cosignature(size, w1.name, w1.cosign(body, 1_700_000_000))
    ledger.add_cosignature(size, w2.name, w2.cosign(body + b"x\n", 1_700_000_000))  # over another text
    ledger.close()
    found = problems(tmp_path, vkey=other)
    assert "the genesis names log key" in found and "does not verify" in found
    assert audit_dir(tmp_path / "ledger", witnesses=[w1.vkey], min_cosignatures=1) == []
    found = problems(tmp_path, witnesses=[w1.vkey, w2.vkey], min_cosignatures=2)
    assert "the cosignature of w2.example on checkpoint" in found
    assert "the latest checkpoint has 1 valid cosignatures of the named witnesses; 2 are required" in found


def static_server(root: Path) -> Any:
    """A plain static file server (aiohttp) of a directory: what any mirror is."""
    app = web.Application()
    app.router.add_static("/", root)
    return served_app(app)


@contextmanager
def served_app(app: web.Application) -> Iterator[str]:
    """``app`` served on loopback from a thread of its own (the audit runs its own event loop)."""
    loop = asyncio.new_event_loop()
    holder: list[Any] = []
    ready = threading.Event()

    async def start() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder.extend([runner, site._server.sockets[0].getsockname()[1]])  # type: ignore[union-attr]

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield f"http://127.0.0.1:{holder[1]}"
    finally:
        asyncio.run_coroutine_threadsafe(holder[0].cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def test_audit_of_a_static_mirror(tmp_path: Path) -> None:
    ledger, _ = populated(tmp_path)
    for i in range(300):   # past one full entry bundle
        ledger.refusal(entries.sign_refusal(NODES[i % 4], job=RESULT, policy="fil-plus-only", inputs=[],
                                            reason=f"r{i}"))
    mirror = tmp_path / "mirror"
    size = ledger.mirror(mirror)
    vkey = ledger.vkey
    assert (mirror / "tile" / "entries" / "000").is_file() and (mirror / "tile" / "entries" / "001.p" / "51").is_file()
    with static_server(mirror) as url:
        assert audit_url(url, vkey=vkey) == []
        # change one entry inside a bundle: the replay and the root both fail
        bundle = (mirror / "tile" / "entries" / "001.p" / "51").read_bytes()
        (mirror / "tile" / "entries" / "001.p" / "51").write_bytes(bundle.replace(b'"r299"', b'"r2999"'[:6]))
        found = "\n".join(audit_url(url, vkey=vkey))
        assert f"entry {size - 1} is not valid" in found and "its root is not the root" in found
        (mirror / "checkpoint").unlink()
        with pytest.raises(LedgerRefused, match="answered 404"):
            audit_url(url)
    assert json.loads(ledger.entries(size - 1, size)[0])["statement"]["reason"] == "r299"


def test_a_big_log_checked_in_parallel_still_names_a_forged_leaf(tmp_path: Path) -> None:
    from cod.ledger.audit import PARALLEL_FROM
    ledger = governed(tmp_path)
    batch = [entries.sign_refusal(NODES[i % 4], job=RESULT, policy="fil-plus-only", inputs=[], reason=f"r{i}")
             for i in range(PARALLEL_FROM + 10)]
    for start in range(0, len(batch), 1000):
        ledger.append_signed(batch[start:start + 1000])
    ledger.close()
    assert audit_dir(tmp_path / "ledger") == []
    target = 3 + PARALLEL_FROM // 2
    edit(tmp_path, "UPDATE entries SET leaf = replace(leaf, '\"reason\":\"r', '\"reason\":\"R') WHERE idx = ?",
         params=(target,))
    found = problems(tmp_path)
    assert f"entry {target} is not valid: the cod/ledger/refusal/v1 statement's signature does not verify" in found


def test_a_file_that_is_not_a_ledger(tmp_path: Path) -> None:
    assert "holds no ledger" in problems(tmp_path)
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / DB_FILE).write_bytes(b"not sqlite at all " * 100)
    assert "cannot be read" in problems(tmp_path)


def hostile_mirror(tmp: Path, size: int, *, content_length: int | None = None,
                   stream: int = 0, signer: Signer | None = None) -> tuple[web.Application, dict[str, int]]:
    """A mirror whose checkpoint claims ``size`` entries (signed by ``signer``, default a stranger's key)
    and whose bundles claim ``content_length`` bytes or stream ``stream`` bytes of junk; it counts what it serves."""
    signer = signer or Signer("hostile.example/log", nacl.signing.SigningKey(bytes([77]) * 32))
    note = signer.sign(Checkpoint(signer.name, size, bytes(32)).body().decode())
    seen = {"bundles": 0, "bytes": 0}

    async def checkpoint(request: web.Request) -> web.Response:
        return web.Response(text=note)

    async def bundle(request: web.Request) -> web.StreamResponse:
        seen["bundles"] += 1
        response = web.StreamResponse()
        if content_length is not None:
            response.content_length = content_length
        await response.prepare(request)
        chunk = b"\xff" * 65536
        try:
            while seen["bytes"] < stream:
                await response.write(chunk)
                seen["bytes"] += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return response

    app = web.Application()
    app.router.add_get("/checkpoint", checkpoint)
    app.router.add_get("/tile/entries/{rest:.+}", bundle)
    return app, seen


def test_verify_url_checks_the_checkpoint_against_vkey_before_fetching(tmp_path: Path) -> None:
    # issue 19 point 26: a mirror claiming 2^40 entries under another key gets no bundle request
    ledger, _ = populated(tmp_path)
    app, seen = hostile_mirror(tmp_path, 1 << 40, stream=1 << 40)
    with served_app(app) as url:
        found = audit_url(url, vkey=ledger.vkey)
    assert len(found) == 1 and "does not verify against --vkey" in found[0], found
    assert seen["bundles"] == 0


def test_verify_url_caps_what_a_hostile_mirror_sends(tmp_path: Path) -> None:
    from cod.ledger.audit import MAX_ENTRY_BYTES, MAX_MIRROR_ENTRIES

    # a size past the cap is refused before any bundle
    app, seen = hostile_mirror(tmp_path, MAX_MIRROR_ENTRIES + 1, stream=1 << 40)
    with served_app(app) as url, pytest.raises(LedgerRefused) as caught:
        audit_url(url)
    assert caught.value.error == "TooLarge" and seen["bundles"] == 0
    # a bundle of 3 entries holds at most 3 * (2 + 65,535) bytes: a claimed or streamed excess is refused there
    cap = 3 * (2 + MAX_ENTRY_BYTES)
    app, seen = hostile_mirror(tmp_path, 3, content_length=1 << 40)
    with served_app(app) as url, pytest.raises(LedgerRefused) as caught:
        audit_url(url)
    assert caught.value.error == "TooLarge" and "claims" in caught.value.message
    app, seen = hostile_mirror(tmp_path, 3, stream=4 << 20)  # 4 MiB of junk: under the old 16 MiB per bundle
    with served_app(app) as url, pytest.raises(LedgerRefused) as caught:
        audit_url(url)
    assert caught.value.error == "TooLarge" and f"{cap} bytes" in caught.value.message


def test_verify_url_without_vkey_checks_the_genesis_key_before_the_other_bundles(tmp_path: Path) -> None:
    ledger, _ = populated(tmp_path)
    for i in range(300):
        ledger.refusal(entries.sign_refusal(NODES[i % 4], job=RESULT, policy="fil-plus-only", inputs=[],
                                            reason=f"r{i}"))
    mirror = tmp_path / "mirror"
    size = ledger.mirror(mirror)
    forger = Signer(ledger.origin, nacl.signing.SigningKey(bytes([78]) * 32))  # the log's name, another key
    (mirror / "checkpoint").write_text(forger.sign(Checkpoint(ledger.origin, size, bytes(32)).body().decode()))
    asked: list[str] = []

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        asked.append(request.path)
        return await handler(request)

    app = web.Application(middlewares=[count])
    app.router.add_static("/", mirror)
    with served_app(app) as url:
        found = audit_url(url)
    assert len(found) == 1 and "does not verify against the genesis's log_key" in found[0], found
    assert asked == ["/checkpoint", "/tile/entries/000"]
