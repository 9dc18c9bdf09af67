"""Attacks on the Stage 5 commands that were tried and now hold (the adversary's findings of
the Stage 5 review, each kept as a test): hostile ledgers and jobs writing escape sequences
into cod's own output, malformed ledger answers, damaged records, odd destinations, and a
`cod get` that must never report success without delivering checked bytes.

Real parts: `cod` subprocesses, a real aiohttp server on loopback playing the hostile ledger,
real devstacks, real SQLite files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from cod.errors import KeyFileError
from cod.identity import Identity

from .helpers import VECTORS, cod_env, devstack

HELLO = str(VECTORS / "hello.wasm")
ESC = "\x1b"
EVIL = "\x1b]0;PWNED\x07\x1b[2J\r\nforged line \u202e"


def cod(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cod", *args], cwd=tmp, env=cod_env(tmp, **env), capture_output=True,
                          text=True, timeout=120)


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
    once = cod(tmp_path, "dashboard", "--once", "--ledger", hostile_ledger.url)
    assert once.returncode == 0, once.stderr
    assert ESC not in once.stdout and "\u202e" not in once.stdout and "\r" not in once.stdout
    assert "forged line" in once.stdout  # shown, as text
    snap = json.loads(cod(tmp_path, "dashboard", "--json", "--ledger", hostile_ledger.url).stdout)
    assert snap["moderation"]["checkpoint"]["size"] == 7 and ESC not in json.dumps(snap["moderation"])


@pytest.mark.parametrize("queue, checkpoint", [
    ({}, "o\n1\nr\n"), ({"jobs": ["x"]}, "o\n1\nr\n"), ({"jobs": None}, "o\n1\nr\n"),
    ({"jobs": [{"nodes": 5, "entry": "one"}]}, "o\n" + "9" * 5000 + "\nr\n"), ([1, 2], ""),
])
def test_a_malformed_ledger_answer_is_shown_as_such_never_a_crash(tmp_path: Path, hostile_ledger: HostileLedger,
                                                                  queue: Any, checkpoint: str) -> None:
    hostile_ledger.answers = {"/v1/moderation/queue": (200, queue), "/checkpoint": (200, checkpoint)}
    out = cod(tmp_path, "dashboard", "--json", "--ledger", hostile_ledger.url)
    assert out.returncode == 0, out.stderr
    mod = json.loads(out.stdout)["moderation"]
    if mod["error"] is None:  # a queue that could be read: its odd fields as null, the size as null
        assert mod["queue"] == [{"job": "None", "result": "None", "entry": None, "nodes": []}]
        assert mod["checkpoint"]["size"] is None
    else:
        assert "malformed" in mod["error"] or "not an object" in mod["error"]


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


def test_cods_own_error_line_shows_control_characters_as_question_marks(capfd: pytest.CaptureFixture[str]) -> None:
    from cod.cli import report

    assert report(f"import {EVIL} is unknown", f"hint {EVIL}", 6) == 6
    err = capfd.readouterr().err
    assert ESC not in err and "\u202e" not in err and err.count("\n") == 2
    assert err.startswith("error: import ?]0;PWNED??[2J") and "forged line ?" in err


# -- damaged records, odd paths ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["garbage", "directory"])
def test_damaged_records_are_a_local_path_error(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "home" / "requester.db"
    db.parent.mkdir()
    if kind == "garbage":
        db.write_bytes(os.urandom(4096))
    else:
        db.mkdir()
    for args in (("list",), ("nodes",), ("dashboard", "--once"), ("nodes", "forget", "abcdefgh")):
        out = cod(tmp_path, *args)
        assert out.returncode == 22, (args, out.stderr)
        assert out.stderr.startswith("error: cannot use the records database") and "Traceback" not in out.stderr


def test_a_key_file_the_host_cannot_read_is_a_key_file_error() -> None:
    with pytest.raises(KeyFileError):
        Identity.from_key_file(Path("/proc/self/mem"))


def test_config_init_never_writes_through_a_link_or_into_a_fifo(tmp_path: Path) -> None:
    target = tmp_path / "config" / "cod" / "config.toml"
    target.parent.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere.toml"
    target.symlink_to(elsewhere)  # dangling
    out = cod(tmp_path, "config", "init")
    assert out.returncode == 2 and not elsewhere.exists()
    out = cod(tmp_path, "config", "init", "--force")
    assert out.returncode == 22 and "not a regular file" in out.stderr and not elsewhere.exists()
    target.unlink()
    os.mkfifo(target)
    out = cod(tmp_path, "config", "init", "--force")  # would block for ever if it opened the FIFO
    assert out.returncode == 22 and "not a regular file" in out.stderr
    target.unlink()
    team = tmp_path / "team.conf"
    out = cod(tmp_path, "config", "init", COD_CONFIG=str(team))
    assert out.returncode == 0 and out.stdout.strip() == str(team) and team.read_text().startswith("# cod")
    assert cod(tmp_path, "config", "show", "--json", COD_CONFIG=str(team)).returncode == 0
    missing = cod(tmp_path, "config", "show", COD_CONFIG=str(tmp_path / "nope.toml"))
    assert missing.returncode == 21 and "does not exist" in missing.stderr


# -- cod get: success only with checked bytes ----------------------------------------------------------
@pytest.fixture
def verified(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], dict[str, Any]]]:
    env = cod_env(tmp_path)
    with devstack(env, tmp_path, 2) as nodes:
        env["COD_NODES"] = ",".join(url for _, url, _ in nodes)
        ran = subprocess.run([sys.executable, "-m", "cod", "run", "--json", "--verify", "2", HELLO], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr
        yield tmp_path, env, json.loads(ran.stdout)


def get(tmp: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cod", "get", *args], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=120)


def test_get_refetches_a_deleted_or_tampered_copy_and_logs_never_print_a_tampered_one(
        verified: tuple[Path, dict[str, str], dict[str, Any]]) -> None:
    tmp, env, view = verified
    results = Path(view["results_dir"])
    shutil.rmtree(tmp / "cod-results")
    out = get(tmp, env, view["short_id"])
    assert out.returncode == 0, out.stderr
    assert (results / "stdout").read_text() == "hello from cod\n"  # really there again
    (results / "stdout").write_text("TAMPERED\n")
    logs = subprocess.run([sys.executable, "-m", "cod", "logs", view["short_id"]], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=120)
    assert logs.stdout == "hello from cod\n", logs.stderr
    (results / "stdout").write_text("TAMPERED\n")
    out = get(tmp, env, view["short_id"], "--output-dir", str(results))
    assert out.returncode == 0 and (results / "stdout").read_text() == "hello from cod\n"


def test_get_refuses_odd_destinations(verified: tuple[Path, dict[str, str], dict[str, Any]]) -> None:
    tmp, env, view = verified
    both = get(tmp, env, view["short_id"], "--output-dir", str(tmp / "a"), "--car", str(tmp / "a.car"))
    assert both.returncode == 2 and "not both" in both.stderr
    os.mkfifo(tmp / "fifo")
    fifo = get(tmp, env, view["short_id"], "--car", str(tmp / "fifo"))
    assert fifo.returncode == 22 and "not a regular file" in fifo.stderr
    (tmp / "link").symlink_to(tmp / "nowhere")
    link = get(tmp, env, view["short_id"], "--output-dir", str(tmp / "link"))
    assert link.returncode == 22 and "symlink" in link.stderr
    assert not [p for p in tmp.iterdir() if p.name.startswith(".cod-staging-")]
    inside = get(tmp, env, view["short_id"], "--output-dir", str(Path(view["results_dir"]) / "outputs" / "x"))
    assert inside.returncode == 22 and "inside the job's own results" in inside.stderr
