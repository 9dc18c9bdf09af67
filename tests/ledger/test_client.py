"""LedgerClient against a real aiohttp server on loopback.

The routes are checked against design.md's list (written out here, not taken from the client);
the server is the stand-in of tests/ledger/standin.py, which answers the documented shapes and
can misbehave on demand (the real service, engineer D's, is used by test_verify_ledger and
test_node_policy where its judgement matters).
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cod.errors import LedgerRefused
from cod.ledger.client import LedgerClient, run

from . import standin
from .standin import StandIn

CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


@pytest.fixture()
async def ledger() -> AsyncIterator[tuple[StandIn, str]]:
    fake = StandIn()
    runner, url = await standin.start(fake)
    yield fake, url
    await runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# design.md "HTTP API of the ledger": method, path (with query), JSON body
ROUTES: list[tuple[str, tuple[Any, ...], str, str, Any]] = [
    ("info", (), "GET", "/v1/info", None),
    ("bless", ([{"b": 1}],), "POST", "/v1/blessings", {"batches": [{"b": 1}]}),
    ("job", (CID,), "GET", f"/v1/jobs/{CID}", None),
    ("queue", (), "GET", "/v1/moderation/queue", None),
    ("decide", ({"d": 1},), "POST", "/v1/decisions", {"d": 1}),
    ("moderators", (), "GET", "/v1/moderators", None),
    ("propose", ({"p": 1},), "POST", "/v1/moderators/proposals", {"p": 1}),
    ("approve", ("ab12", {"a": 1}), "POST", "/v1/moderators/proposals/ab12/approvals", {"a": 1}),
    ("result", (CID,), "GET", f"/v1/results/{CID}", None),
    ("inclusion", (5,), "GET", "/v1/proof/inclusion?index=5", None),
    ("inclusion", (5, 9), "GET", "/v1/proof/inclusion?index=5&size=9", None),
    ("consistency", (3,), "GET", "/v1/proof/consistency?old=3", None),
    ("consistency", (3, 8), "GET", "/v1/proof/consistency?old=3&new=8", None),
]


@pytest.mark.parametrize("method, args, verb, path, body", ROUTES)
async def test_each_route_sends_what_the_api_documents(ledger: tuple[StandIn, str], method: str,
                                                       args: tuple[Any, ...], verb: str, path: str, body: Any) -> None:
    fake, url = ledger
    answer = await getattr(LedgerClient(url), method)(*args)
    assert answer == {"ok": True}
    assert fake.requests == [(verb, path, body)]


async def test_input_evidence_refusal_and_checkpoint(ledger: tuple[StandIn, str]) -> None:
    fake, url = ledger
    fake.blessed.add(CID)
    client = LedgerClient(url)
    assert (await client.input(CID))["blessed"] is True
    assert fake.questions == [CID]
    fake.canned["/v1/evidence"] = (201, {"job": "j", "entry": 4, "eligible": False, "reason": "r", "result": None,
                                         "nodes": []})
    assert (await client.evidence({"s": 1}, [{"t": 2}]))["entry"] == 4
    assert fake.evidence == [{"spec": {"s": 1}, "statements": [{"t": 2}]}]
    fake.canned["/checkpoint"] = (200, b"origin\n1\nAAAA\n\n\xe2\x80\x94 origin abc\n")
    assert await client.checkpoint() == "origin\n1\nAAAA\n\n\u2014 origin abc\n"


async def test_a_refusal_carries_the_ledgers_status_error_message_and_hint(ledger: tuple[StandIn, str]) -> None:
    fake, url = ledger
    fake.canned["/v1/decisions"] = (409, {"error": "Replayed", "message": "entry 7 holds these bytes already",
                                          "hint": "sign a new decision"})
    with pytest.raises(LedgerRefused) as caught:
        await LedgerClient(url).decide({"d": 1})
    assert (caught.value.status, caught.value.error, caught.value.hint) == (409, "Replayed", "sign a new decision")
    assert "entry 7 holds these bytes already" in caught.value.message
    assert caught.value.code == 23


async def test_a_refusal_without_a_json_body_is_named_by_its_status(ledger: tuple[StandIn, str]) -> None:
    fake, url = ledger
    fake.canned["/v1/info"] = (502, b"<html>bad gateway</html>")
    with pytest.raises(LedgerRefused) as caught:
        await LedgerClient(url).info()
    assert (caught.value.status, caught.value.error) == (502, "HTTP502")
    assert caught.value.hint  # every refusal says what to do


async def test_terminal_escapes_in_a_ledgers_message_are_neutralised(ledger: tuple[StandIn, str]) -> None:
    fake, url = ledger
    fake.canned["/v1/info"] = (400, {"error": "X\x1b[2J", "message": "a\x1b]0;pwned\x07b" + "z" * 5000, "hint": "h"})
    with pytest.raises(LedgerRefused) as caught:
        await LedgerClient(url).info()
    assert "\x1b" not in caught.value.message and "\x07" not in caught.value.message
    assert "\x1b" not in caught.value.error
    assert len(caught.value.message) < 700  # cut at 500 characters of the ledger's text


async def test_a_ledger_that_is_down_is_status_0() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(LedgerRefused) as caught:
        await LedgerClient(url).info()
    assert caught.value.status == 0
    assert caught.value.message.startswith(f"cannot reach the ledger at {url}")
    assert "cod ledger serve" in (caught.value.hint or "")


async def test_a_ledger_that_never_answers_is_cut_off_by_the_timeout(ledger: tuple[StandIn, str]) -> None:
    fake, url = ledger
    fake.mode = standin.SLOW
    with pytest.raises(LedgerRefused) as caught:
        await LedgerClient(url, timeout_s=0.5).input(CID)
    assert caught.value.status == 0 and "within 0.5 s" in caught.value.message


@pytest.mark.parametrize("mode, problem", [(standin.BAD_JSON, "not JSON"), (standin.LIST, "not an object"),
                                           (standin.HUGE, "over the cap")])
async def test_an_answer_that_is_not_a_json_object_under_the_cap_is_refused(
        ledger: tuple[StandIn, str], mode: str, problem: str) -> None:
    fake, url = ledger
    fake.mode = mode
    with pytest.raises(LedgerRefused) as caught:
        await LedgerClient(url, max_bytes=1 << 20).input(CID)
    assert (caught.value.status, caught.value.error) == (200, "BadAnswer")
    assert problem in caught.value.message


async def test_a_cid_cannot_walk_to_another_route(ledger: tuple[StandIn, str]) -> None:
    fake, url = ledger
    await LedgerClient(url).input("../refusals")
    await LedgerClient(url).input("x?y=1#z")
    assert fake.questions == ["../refusals", "x?y=1#z"]  # both asked as CIDs, of /v1/inputs/
    assert fake.refusals == [] and fake.requests == []


def test_run_drives_a_call_from_synchronous_code(ledger: tuple[StandIn, str]) -> None:
    with standin.in_thread(StandIn()) as url:
        assert run(LedgerClient(url).info()) == {"ok": True}


async def test_a_redirect_is_not_followed(ledger: tuple[StandIn, str]) -> None:
    fake, url = ledger
    fake.canned["/v1/info"] = (307, b"")  # to /v1/moderators, which would answer 200
    with pytest.raises(LedgerRefused) as caught:
        await LedgerClient(url).info()
    assert caught.value.status == 307
    assert fake.requests == [("GET", "/v1/info", None)]  # /v1/moderators was never asked


# -- against the real service (engineer D's `cod ledger serve`), once it is there -------------------
def _real_service_commands() -> set[str]:
    from cod.cli.ledger import ledger as group

    return set(group.commands)


@pytest.fixture()
def real_ledger(tmp_path: Path) -> Any:
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from cod.identity import Identity

    from ..helpers import ROOT

    if not {"init", "serve"} <= _real_service_commands():
        pytest.skip("cod ledger init/serve are not there yet (engineer D)")
    root = Identity.create_key_file(tmp_path / "root.key")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "cod", "ledger", "init", "--data-dir", str(tmp_path / "l"),
                           "--root-key", root.node_id, "--threshold", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    port = free_port()
    served = subprocess.Popen([sys.executable, "-m", "cod", "ledger", "serve", "--data-dir", str(tmp_path / "l"),
                               "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # until it listens (a bound, not a timing assertion)
            try:
                urllib.request.urlopen(url + "/v1/info", timeout=5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url, root
    finally:
        served.terminate()
        served.wait(timeout=30)


async def test_the_client_speaks_the_real_service(real_ledger: Any, tmp_path: Path) -> None:
    from cod.identity import Identity
    from cod.ledger.entries import sign_refusal

    from ..helpers import load_vector

    url, root = real_ledger
    client = LedgerClient(url)
    info = await client.info()
    assert root.node_id in info["root_keys"] and info["threshold"] == 1 and info["vkey"].startswith(info["origin"])
    answer = await client.input(CID)
    assert (answer["cid"], answer["blessed"], answer["blessings"]) == (CID, False, [])
    node = Identity.load_or_create(tmp_path / "node")
    job = load_vector("wordcount")["job_cid"]
    refusal = sign_refusal(node, job=job, policy="fil-plus-only", inputs=[CID], reason="not blessed")
    assert isinstance((await client.refusal(refusal))["entry"], int)
    with pytest.raises(LedgerRefused) as caught:  # the same bytes again: a replay
        await client.refusal(refusal)
    assert caught.value.status == 409
    forged = json.loads(json.dumps(refusal))
    forged["statement"]["reason"] = "something else"
    with pytest.raises(LedgerRefused) as caught:
        await client.refusal(forged)
    assert caught.value.status in (400, 403, 422) and caught.value.hint
    assert (await client.checkpoint()).startswith(info["origin"] + "\n")
    with pytest.raises(LedgerRefused) as caught:
        await client.result(CID)
    assert caught.value.status == 404
