"""cod dashboard against a real local network with a lying node and a real FIL+ ledger (the
``net`` fixture of tests/cli/conftest.py): the snapshot (--json, --once) and the live view driven
in tmux (send-keys, capture-pane), on a real pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from .conftest import Net


def test_the_json_snapshot_names_the_liar_and_shows_the_queue(net: Net) -> None:
    out = net.cod("dashboard", "--json")
    assert out.returncode == 0, out.stderr
    snap = json.loads(out.stdout)
    assert snap["schema"] == "cod.dashboard/1"
    jobs = {j["job_cid"]: j for j in snap["jobs"]}
    assert jobs[net.mismatch["job_cid"]]["dissent"] == [net.liar]
    assert jobs[net.quorum["job_cid"]]["dissent"] == [net.liar]
    assert jobs[net.quorum["job_cid"]]["moderation"] == "queued"  # eligible, waiting for a moderator
    (liar,) = [n for n in snap["nodes"] if n["node_id"] == net.liar]
    assert liar["disagreed"] == 2 and liar["state"] == "up" and liar["latency_ms"] is not None
    assert all(n["disagreed"] == 0 for n in snap["nodes"] if n["node_id"] != net.liar)
    mod = snap["moderation"]
    assert mod["error"] is None and [q["job"] for q in mod["queue"]] == [net.quorum["job_cid"]]
    assert mod["checkpoint"]["size"] >= 3 and mod["checkpoint"]["origin"]
    # one job object everywhere: what describe prints, plus what only the dashboard adds
    described = json.loads(net.cod("describe", str(net.mismatch["short_id"]), "--json").stdout)
    assert {k: v for k, v in jobs[net.mismatch["job_cid"]].items() if k not in ("dissent", "moderation")} == described


def test_once_prints_the_tables_with_the_mismatch_in_capitals(net: Net) -> None:
    out = net.cod("dashboard", "--once")
    assert out.returncode == 0, out.stderr
    short_liar = net.liar[len("12D3KooW"):][:8]
    (row,) = [line for line in out.stdout.splitlines() if line.startswith(str(net.mismatch["short_id"]))]
    assert "MISMATCH" in row and short_liar in row
    assert "Moderation: 1 waiting" in out.stdout and "\x1b[" not in out.stdout


def test_a_ledger_that_is_down_is_shown_not_fatal(net: Net) -> None:
    out = net.cod("dashboard", "--json", "--ledger", "http://127.0.0.1:9")
    assert out.returncode == 0, out.stderr
    assert "cannot reach" in json.loads(out.stdout)["moderation"]["error"]


class Tmux:
    def __init__(self, name: str) -> None:
        self.name = name

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True,
                              timeout=10).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True, timeout=10)

    def wait_for(self, *texts: str, timeout: float = 30) -> str:
        """The screen once every one of ``texts`` is on it (a redraw may be caught half done)."""
        end = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < end:
            screen = self.screen()
            if all(text in screen for text in texts):
                return screen
            time.sleep(0.2)
        size = subprocess.run(["tmux", "display", "-p", "-t", self.name, "#{window_width}x#{window_height}"],
                              capture_output=True, text=True).stdout.strip()
        raise AssertionError(f"{texts!r} never all appeared on the {size} screen:\n{screen}")

    def alive(self) -> bool:
        return subprocess.run(["tmux", "has-session", "-t", self.name], capture_output=True).returncode == 0


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (make test installs it: target terminal-tools)")
def test_the_live_view_in_tmux_names_the_liar_filters_and_opens_a_job(net: Net) -> None:
    name = f"cod-dash-{os.getpid()}"
    script = net.tmp / "dash.sh"
    exports = " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(net.env.items())
                       if k.startswith(("COD_", "XDG_", "PYTHON", "PATH", "HOME")))
    script.write_text(f"cd {net.tmp} && env COLUMNS=120 LINES=50 {exports} {sys.executable} -m cod dashboard --interval 1; "
                      f"echo dashboard-exited-$?; sleep 60\n")
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "120", "-y", "50", f"sh {script}"], check=True)
    subprocess.run(["tmux", "resize-window", "-t", name, "-x", "120", "-y", "50"], capture_output=True)
    tmux = Tmux(name)
    try:
        short_liar = net.liar[len("12D3KooW"):][:8]
        screen = tmux.wait_for("MISMATCH", "1 waiting", "DISAGREED", "http://")
        mismatch_row = next(line for line in screen.splitlines() if str(net.mismatch["short_id"]) in line)
        assert "MISMATCH" in mismatch_row and short_liar in mismatch_row, screen  # the liar, named on its row
        liar_row = next(line for line in screen.splitlines() if short_liar in line and "http://" in line)
        assert liar_row.split()[3] == "2"  # DISAGREED
        assert "1 waiting" in screen
        tmux.keys("o")  # outcome filter: the first outcome in order, "mismatch"
        screen = tmux.wait_for("outcome: MISMATCH")
        jobs_part = screen.split("\nNodes")[0]
        assert str(net.quorum["short_id"]) not in jobs_part and str(net.mismatch["short_id"]) in jobs_part
        tmux.keys("Enter")  # open the mismatch
        screen = tmux.wait_for("Nodes and their signed statements", "DISAGREES", "stderr")
        assert f"Outvoted     {net.liar}" in screen
        assert any(net.liar in line and "DISAGREES" in line for line in screen.splitlines()), screen
        tmux.keys("Escape")
        tmux.wait_for("outcome: MISMATCH")
        tmux.keys("q")
        tmux.wait_for("dashboard-exited-0")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
