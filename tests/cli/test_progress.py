"""Progress while `cod run --verify` runs (plain lines when piped, a live table on a terminal,
bars for large transfers) and the one log line per job of `cod serve` / `cod devstack`.

Real parts: `cod` subprocesses, embedded and real devstacks, a real pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cod.node.joblog import record, text_line

from ..helpers import VECTORS, cod_env, devstack

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
WORDCOUNT = str(VECTORS / "wordcount.wasm")


def env_for(tmp: Path) -> dict[str, str]:
    return cod_env(tmp)


@pytest.fixture
def big_input(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "words.txt").write_bytes(b"compute over data\n" * ((6 << 20) // 18))  # 6 MiB: over the bar threshold
    return data


def test_piped_progress_is_plain_lines_per_node_with_the_upload(tmp_path: Path, big_input: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "cod", "run", "--verify", "2", WORDCOUNT, "-i", str(big_input)],
                         cwd=tmp_path, env=env_for(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert not ANSI.search(out.stderr)
    lines = out.stderr.splitlines()
    node_lines = [line for line in lines if line.startswith("  node ")]
    states = {line.split()[3] for line in node_lines}
    assert {"uploading", "signed"} <= states, out.stderr
    assert sum(" signed " in line for line in node_lines) == 2
    uploads = [line for line in lines if line.startswith("  upload to http://")]
    assert len([u for u in uploads if u.endswith("MiB") and "done" not in u]) == 2, out.stderr
    assert len([u for u in uploads if ": done (" in u]) == 2


def run_in_pty(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal; its exit code and all it drew."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, cwd=cwd, env=dict(env, COLUMNS="120", LINES="40", TERM="xterm-256color"),
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


def test_on_a_terminal_a_live_table_shows_each_node_and_clears_before_the_report(
        tmp_path: Path, big_input: Path) -> None:
    # 48 MiB: the CAR is built and uploaded over several redraws (8 a second), so they show
    (big_input / "words.txt").write_bytes(b"compute over data\n" * ((48 << 20) // 18))
    code, drawn = run_in_pty([sys.executable, "-m", "cod", "run", "--verify", "2", WORDCOUNT, "-i", str(big_input)],
                             env_for(tmp_path), tmp_path)
    assert code == 0, drawn
    assert ANSI.search(drawn)  # drawn in place
    plain = ANSI.sub("", drawn)
    assert "STATE" in plain and "signed" in plain, plain
    assert "uploading" in plain, plain  # (a bar's frames depend on timing: see the test below)
    assert "Outcome:" in plain and "VERIFIED" in plain
    assert "  node " not in plain  # the plain lines are for pipes only


def test_the_live_view_draws_a_bar_for_a_large_transfer_and_node_text_as_plain_text() -> None:
    from rich.console import Console

    from cod.cli.progress import TRANSFER_BAR_BYTES, VerifyProgress

    shown = VerifyProgress(live=True)
    shown.step = "Running on 1 node(s)"
    shown.node("12D3KooWAbCdEfGhIjKlMn", "http://10.0.0.1:1", "failed", "[bold red]not markup[/] \x1b[31mno escape")
    shown.transfer("k", "upload to http://10.0.0.1:1", 24 << 20, 48 << 20)
    shown.transfer("small", "upload to http://10.0.0.2:1", 10, TRANSFER_BAR_BYTES - 1)  # under the threshold
    console = Console(record=True, width=120, color_system=None)
    console.print(shown.render())
    text = console.export_text()
    assert "upload to http://10.0.0.1:1" in text and "24.0 MiB / 48.0 MiB" in text
    assert "10.0.0.2" not in text
    assert "[bold red]not markup[/]" in text and "\x1b" not in text and "?[31mno escape" in text


def test_devstack_logs_one_json_line_per_finished_job(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    with open(tmp_path / "log", "w") as log, devstack(env, tmp_path, 2, 1, "--log-format", "json",
                                                      stderr=log) as stack:
        nodes = [(node_id, url) for node_id, url, _ in stack]
        ran = subprocess.run([sys.executable, "-m", "cod", "run", "--json", "--verify", "2", "--referee", "none",
                              str(VECTORS / "hello.wasm")], cwd=tmp_path, capture_output=True, text=True,
                             env=dict(env, COD_NODES=",".join(u for _, u in nodes)), timeout=120)
        assert ran.returncode == 10, ran.stderr  # one of two lies: a mismatch
        view = json.loads(ran.stdout)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (tmp_path / "log").read_text().count("\n") < 3:
            time.sleep(0.1)
    logged = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines() if line.startswith("{")]
    assert sorted(r["node"] for r in logged) == sorted(i for i, _ in nodes)
    for rec in logged:
        assert rec["job"] == view["job_cid"] and rec["state"] == "done" and rec["exit_code"] == 0
        assert rec["fuel_used"] == 952 and rec["ms"] >= 0 and rec["time"].endswith("Z")
    by_node = {r["node"]: r["result_cid"] for r in logged}
    assert {n["node_id"]: n["result_cid"] for n in view["nodes"]} == by_node  # what each signed


def test_a_text_log_line_stays_one_line_whatever_the_error_says() -> None:
    row = {"job_cid": "bagaaieraq3kd2a7xq3kd2a7x", "state": "failed", "exit_code": None, "trap": None,
           "fuel_used": None, "result_cid": None,
           "error": json.dumps({"error": "Trap", "message": "evil\nforged line\r\x1b[31m" + "x" * 1000})}
    rec = record("12D3KooWAbCdEfGhIjK", row, 0.0421)
    line = text_line(rec)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and len(line) < 400
    assert " node AbCdEfGh job q3kd2a7x failed Trap: evil?forged line??[31mxxx" in line and line.endswith(" 42ms")
    done = dict(row, state="done", exit_code=0, trap=None, fuel_used=952, result_cid="bafyresult", error=None)
    assert text_line(record("12D3KooWAbCdEfGhIjK", done, 0.025)).endswith(
        " node AbCdEfGh job q3kd2a7x done exit 0 fuel 952 result bafyresult 25ms")
