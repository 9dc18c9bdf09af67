"""Stopping verified runs (SPEC 11 step 12): Ctrl-C during `cod run --verify 3` cancels the job on
every node and records the run `cancelled`; a requester killed after submitting leaves a
`running` row that `cod cancel` (or `cod get`) completes; `cod cancel` stops a detached run.
A real `cod devstack` of 3 nodes and a guest that spins until its fuel runs out (minutes)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import cod_env, devstack
from ..node_kit import BUSY_WAT, wat

SETTLE_S = 120.0  # at most this long for the nodes to reach a state (a wait, never an assertion on time)


class Stack:
    def __init__(self, tmp: Path, urls: list[str]) -> None:
        self.tmp, self.urls = tmp, urls
        self.env = dict(cod_env(tmp), COD_NODES=",".join(urls))
        self.module = tmp / "busy.wasm"
        self.module.write_bytes(wat(BUSY_WAT))
        self.started: list[str] = []

    def cod(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cod", *args], cwd=self.tmp, env=self.env, capture_output=True,
                              text=True, timeout=120)

    def start(self, tag: str, *flags: str) -> tuple[subprocess.Popen[str], str]:
        """`cod run --verify 3 busy.wasm TAG` in the background (TAG makes each test's job its own)."""
        planned = self.cod("run", "--verify", "3", "--dry-run", "--json", str(self.module), tag)
        job_cid = json.loads(planned.stdout)["job_cid"]
        self.started.append(job_cid)
        proc = subprocess.Popen([sys.executable, "-m", "cod", "run", "--verify", "3", *flags, str(self.module), tag],
                                cwd=self.tmp, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return proc, job_cid

    def stop_all(self) -> None:
        """DELETE every job a test started, on every node: a failed test leaves no busy node to the next."""
        for job_cid in self.started:
            for url in self.urls:
                try:
                    urllib.request.urlopen(urllib.request.Request(f"{url}/v1/jobs/{job_cid}", method="DELETE"),
                                           timeout=10).close()
                except urllib.error.HTTPError:
                    pass  # not running there (any more)
        self.started.clear()

    def states(self, job_cid: str) -> list[dict[str, Any]]:
        """Each node's record of the job ({} where it has none)."""
        out = []
        for url in self.urls:
            try:
                with urllib.request.urlopen(f"{url}/v1/jobs/{job_cid}", timeout=10) as resp:
                    out.append(json.loads(resp.read()))
            except urllib.error.HTTPError:
                out.append({})
        return out

    def active(self) -> list[int]:
        return [json.loads(urllib.request.urlopen(f"{url}/v1/health", timeout=10).read())["active_jobs"]
                for url in self.urls]

    def wait_running(self, job_cid: str) -> None:
        end = time.monotonic() + SETTLE_S
        while [r.get("state") for r in self.states(job_cid)] != ["running"] * 3:
            assert time.monotonic() < end, self.states(job_cid)
            time.sleep(0.2)

    def assert_cancelled_everywhere(self, job_cid: str) -> None:
        """Right now (no waiting): every node's job failed as Cancelled, and no node is busy."""
        for record in self.states(job_cid):
            assert record["state"] == "failed" and record["error"]["error"] == "Cancelled", record
        assert self.active() == [0, 0, 0]

    def listed(self, job_cid: str) -> dict[str, Any]:
        (job,) = [j for j in json.loads(self.cod("list", "--json").stdout) if j["job_cid"] == job_cid]
        return dict(job)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("cancel")
    with devstack(cod_env(tmp), tmp, 3) as nodes:
        yield Stack(tmp, [url for _, url, _ in nodes])


@pytest.fixture(autouse=True)
def _stopped(stack: Stack) -> Iterator[None]:
    yield
    stack.stop_all()


def test_ctrl_c_cancels_the_job_on_every_node_and_records_the_run_cancelled(stack: Stack) -> None:
    proc, job_cid = stack.start("ctrl-c")
    try:
        stack.wait_running(job_cid)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "error: interrupted" in stderr and "Traceback" not in stderr, stderr
    stack.assert_cancelled_everywhere(job_cid)  # the CLI asked every node before it exited
    job = stack.listed(job_cid)
    assert job["outcome"] == "cancelled" and job["result_cid"] is None
    assert sorted(n["url"] for n in job["nodes"]) == sorted(stack.urls)
    assert "CANCELLED" in stack.cod("list").stdout.upper()


def test_a_killed_requester_leaves_a_running_row_that_cod_cancel_completes(stack: Stack) -> None:
    proc, job_cid = stack.start("kill -9")
    try:
        stack.wait_running(job_cid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    job = stack.listed(job_cid)  # recorded before any node was asked, naming the nodes given the job
    assert job["outcome"] == "running" and sorted(n["url"] for n in job["nodes"]) == sorted(stack.urls), job
    assert stack.active() == [1, 1, 1]  # SIGKILL can cancel nothing: the nodes still run it
    done = stack.cod("cancel", job["short_id"])
    assert done.returncode == 0, done.stderr
    stack.assert_cancelled_everywhere(job_cid)
    job = stack.listed(job_cid)
    assert job["outcome"] == "cancelled" and len(job["runs"]) == 1  # the running row, completed in place
    again = stack.cod("cancel", job["short_id"])
    assert again.returncode == 2 and "not running on any node" in again.stderr


def test_cod_cancel_stops_a_detached_run(stack: Stack) -> None:
    proc, job_cid = stack.start("detached", "--detach")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    stack.wait_running(job_cid)
    done = stack.cod("cancel", "--json", job_cid)
    assert done.returncode == 0, done.stderr
    stack.assert_cancelled_everywhere(job_cid)
    view = json.loads(done.stdout)
    assert view["outcome"] == "cancelled" and set(view["cancel"]) == set(stack.urls)
    assert [r["outcome"] for r in stack.listed(job_cid)["runs"]] == ["submitted", "cancelled"]


# -- Stage 9 second round: variants of point 14 -----------------------------------------------------------------

def test_sigterm_cancels_the_job_on_every_node_as_ctrl_c_does(stack: Stack) -> None:
    proc, job_cid = stack.start("sigterm")  # timeout(1), systemd, docker stop and Airflow stop a run so
    try:
        stack.wait_running(job_cid)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode in (130, 143) and "Traceback" not in stderr, (proc.returncode, stderr)
    stack.assert_cancelled_everywhere(job_cid)
    assert stack.listed(job_cid)["outcome"] == "cancelled"


def test_a_held_down_ctrl_c_cancels_once_and_exits_130(stack: Stack) -> None:
    proc, job_cid = stack.start("ctrl-c held down")
    try:
        stack.wait_running(job_cid)
        while proc.poll() is None:  # a key held down: SIGINT after SIGINT until the process is gone
            proc.send_signal(signal.SIGINT)
            time.sleep(0.01)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in stderr, (proc.returncode, stderr)
    stack.assert_cancelled_everywhere(job_cid)
    assert stack.listed(job_cid)["outcome"] == "cancelled"


def test_two_ctrl_cs_cancel_once_with_no_traceback(stack: Stack) -> None:
    proc, job_cid = stack.start("ctrl-c twice")
    try:
        stack.wait_running(job_cid)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)  # a person pressing Ctrl-C again while the first one cancels (not a timing assertion)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    stack.assert_cancelled_everywhere(job_cid)
    assert stack.listed(job_cid)["outcome"] == "cancelled"


NOOP_WAT = '(module (memory (export "memory") 1) (func (export "_start")))'


def test_cod_cancel_of_a_job_that_finished_meanwhile_cancels_nothing(stack: Stack) -> None:
    module = stack.tmp / "noop.wasm"
    module.write_bytes(wat(NOOP_WAT))
    planned = stack.cod("run", "--verify", "3", "--dry-run", "--json", str(module), "finished")
    job_cid = json.loads(planned.stdout)["job_cid"]
    submitted = stack.cod("run", "--verify", "3", "--detach", str(module), "finished")
    assert submitted.returncode == 0, submitted.stderr
    end = time.monotonic() + SETTLE_S
    while [r.get("state") for r in stack.states(job_cid)] != ["done"] * 3:
        assert time.monotonic() < end, stack.states(job_cid)
        time.sleep(0.2)
    done = stack.cod("cancel", job_cid)
    assert done.returncode == 2 and "finished on every node before the cancel" in done.stderr, done.stderr
    assert "stopped" not in done.stderr.replace("nothing was stopped", "") and "cancelled on" not in done.stderr
    assert stack.listed(job_cid)["outcome"] != "cancelled"
    got = stack.cod("get", job_cid)
    assert got.returncode == 0, got.stderr
