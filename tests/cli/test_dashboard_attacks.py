"""Attacks on `cod dashboard` that now hold: a hostile ledger writing escape sequences into its
output, malformed ledger answers, a job's own output in the job detail.

Real parts: `cod` subprocesses and a real aiohttp server on loopback playing the hostile ledger.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ..helpers import run_cod

ESC = "\x1b"
EVIL = "\x1b]0;PWNED\x07\x1b[2J\r\nforged line \u202e"


# -- a hostile ledger -------------------------------------------------------------------------------
class HostileLedger:
    """A ledger on loopback whose answers the test sets: (status, JSON or text) per path."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, Any]] = {}
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        status, body = self.answers.get(request.path, (404, {"error": "NotFound", "message": "no"}))
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status)


@pytest.fixture
def hostile_ledger() -> Iterator[HostileLedger]:
    import asyncio

    fake = HostileLedger()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner: list[web.AppRunner] = []

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", fake.handle)
        run = web.AppRunner(app)
        await run.setup()
        site = web.TCPSite(run, "127.0.0.1", 0)
        await site.start()
        fake.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        runner.append(run)
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(runner[0].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_a_hostile_ledgers_text_never_reaches_the_terminal_raw(tmp_path: Path, hostile_ledger: HostileLedger) -> None:
    hostile_ledger.answers = {
        "/v1/moderation/queue": (200, {"jobs": [{"job": EVIL, "result": EVIL, "entry": 1, "nodes": [EVIL]}]}),
        "/checkpoint": (200, f"origin{EVIL.replace(chr(10), '')}\n7\n{EVIL.replace(chr(10), '')}\n"),
    }
    once = run_cod(tmp_path, "dashboard", "--once", "--ledger", hostile_ledger.url)
    assert once.returncode == 0, once.stderr
    assert ESC not in once.stdout and "\u202e" not in once.stdout and "\r" not in once.stdout
    assert "forged line" in once.stdout  # shown, as text
    snap = json.loads(run_cod(tmp_path, "dashboard", "--json", "--ledger", hostile_ledger.url).stdout)
    assert snap["moderation"]["checkpoint"]["size"] == 7 and ESC not in json.dumps(snap["moderation"])


@pytest.mark.parametrize("queue, checkpoint", [
    ({}, "o\n1\nr\n"), ({"jobs": ["x"]}, "o\n1\nr\n"), ({"jobs": None}, "o\n1\nr\n"),
    ({"jobs": [{"nodes": 5, "entry": "one"}]}, "o\n" + "9" * 5000 + "\nr\n"), ([1, 2], ""),
])
def test_a_malformed_ledger_answer_is_shown_as_such_never_a_crash(tmp_path: Path, hostile_ledger: HostileLedger,
                                                                  queue: Any, checkpoint: str) -> None:
    hostile_ledger.answers = {"/v1/moderation/queue": (200, queue), "/checkpoint": (200, checkpoint)}
    out = run_cod(tmp_path, "dashboard", "--json", "--ledger", hostile_ledger.url)
    assert out.returncode == 0, out.stderr
    mod = json.loads(out.stdout)["moderation"]
    if mod["error"] is None:  # a queue that could be read: its odd fields as null, the size as null
        assert mod["queue"] == [{"job": "None", "result": "None", "entry": None, "nodes": []}]
        assert mod["checkpoint"]["size"] is None
    else:
        assert "malformed" in mod["error"] or "not an object" in mod["error"]


@pytest.mark.parametrize(("result_cid", "hint"), [(None, "nothing to fetch"), ("bafybeix", "cod get fetches it")])
def test_the_job_detail_offers_cod_get_only_for_a_result_it_can_fetch(result_cid: str | None, hint: str) -> None:
    from rich.console import Console

    from cod.cli.tui import job_detail

    view = {"job_cid": "bagaaierax", "short_id": "x", "outcome": "mismatch" if result_cid is None else "verified",
            "agreeing": 1, "n": 2, "note": "", "result_cid": result_cid, "exit_code": 0, "trap": None, "fuel_used": 1,
            "dissent": [], "groups": {}, "nodes": [], "stdout": None, "stderr": None}
    console = Console(record=True, width=300, color_system=None)
    console.print(job_detail(view))
    text = console.export_text()
    assert text.count(hint) == 2  # stdout and stderr
    assert result_cid is not None or "cod get" not in text  # `cod get` refuses a job with no accepted result


def test_a_jobs_output_is_drawn_as_text_in_the_job_detail() -> None:
    from rich.console import Console

    from cod.cli.tui import job_detail

    view = {"job_cid": "bagaaierax", "short_id": "x", "outcome": "local", "agreeing": 0, "n": 0, "note": EVIL,
            "result_cid": None, "exit_code": 0, "trap": None, "fuel_used": 1, "dissent": [], "groups": {},
            "nodes": [{"node_id": EVIL, "url": EVIL, "status": "failed", "error": EVIL, "statement": None}],
            "stdout": "line one\n" + EVIL + "\n\tindented\n", "stderr": EVIL}
    console = Console(record=True, width=200, color_system=None)
    console.print(job_detail(view))
    text = console.export_text()
    assert ESC not in text and "\u202e" not in text and "\x07" not in text
    assert "line one\n" in text and "\tindented" in text.replace("        indented", "\tindented")


def test_a_queue_longer_than_one_page_is_said_to_go_on(tmp_path: Path, hostile_ledger: HostileLedger) -> None:
    """The dashboard reads one page of the paged queue (SPEC 12.7): a page with a `next` cursor
    is shown as "N or more waiting", never as if the N shown were all."""
    job = {"job": "bagaaierajob", "result": "bafyresult", "entry": 3, "nodes": ["12D3KooWnode"]}
    hostile_ledger.answers = {"/v1/moderation/queue": (200, {"jobs": [job], "next": 3}),
                              "/checkpoint": (200, "o\n4\nr\n")}
    once = run_cod(tmp_path, "dashboard", "--once", "--ledger", hostile_ledger.url)
    assert once.returncode == 0, once.stderr
    assert "Moderation: 1 or more (cod moderation queue lists all) waiting" in once.stdout, once.stdout
    snap = json.loads(run_cod(tmp_path, "dashboard", "--json", "--ledger", hostile_ledger.url).stdout)
    assert snap["moderation"]["more"] is True and len(snap["moderation"]["queue"]) == 1
    hostile_ledger.answers["/v1/moderation/queue"] = (200, {"jobs": [job], "next": None})
    once = run_cod(tmp_path, "dashboard", "--once", "--ledger", hostile_ledger.url)
    assert "Moderation: 1 waiting" in once.stdout, once.stdout
