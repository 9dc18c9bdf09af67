"""Every answer of a node that is not a success is a JSON error, and the node serves on.

Real aiohttp servers on loopback, real executor processes, real `cod serve` subprocesses.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cod import JobSpec, Limits, module_cid
from cod.errors import NodeError
from cod.node.pool import Worker
from cod.node.server import RunningNode, start_node

from ..helpers import ROOT, VECTORS
from ..node_kit import BUSY_WAT, put, wat

HELLO = (VECTORS / "hello.wasm").read_bytes()


async def _answer(resp: aiohttp.ClientResponse) -> tuple[int, Any]:
    assert resp.content_type == "application/json", (resp.status, await resp.text())
    body = await resp.json()
    assert {"error", "message", "hint"} <= set(body) and all(isinstance(body[k], str) for k in
                                                             ("error", "message", "hint")), body
    return resp.status, body


async def test_routes_methods_and_sizes_answer_json(node: RunningNode, http: aiohttp.ClientSession) -> None:
    async with http.get(node.url + "/v2/nothing") as resp:
        assert await _answer(resp) == (404, await resp.json()) and (await resp.json())["error"] == "NotFound"
    async with http.patch(node.url + "/v1/jobs") as resp:
        status, body = await _answer(resp)
        assert status == 405 and body["error"] == "MethodNotAllowed" and "POST" in resp.headers["Allow"]
    async with http.post(node.url + "/v1/jobs", data=b"{" * (2 << 20)) as resp:
        status, body = await _answer(resp)
        assert status == 413 and body["error"] == "TooLarge"
    async with http.get(node.url + "/v1/jobs/bafynothing") as resp:
        assert (await _answer(resp))[0] == 404


@pytest.mark.parametrize("raw, what", [
    (b'{"spec": {"module": "\\ud800"}}', "lone surrogate"),
    (b'{"spec": {"module": "a"}, "spec": {"module": "b"}}', "appears twice"),
    (b'{"spec": {"args": ["\xff"]}}', "UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "deeper"),
    (b'{"spec": {}, "extra": 1}', "unknown member"),
    (b'{"spec": {"limits": {"fuel": 1.5}}}', "integer"),
    (b"not json", "not valid JSON"),
    (b"[]", "JSON object"),
])
async def test_request_bodies_are_parsed_strictly(node: RunningNode, http: aiohttp.ClientSession,
                                                  raw: bytes, what: str) -> None:
    async with http.post(node.url + "/v1/jobs", data=raw, headers={"Content-Type": "application/json"}) as resp:
        status, body = await _answer(resp)
    assert status == 400 and body["error"] == "SpecError" and what in body["message"], body


async def test_an_unexpected_exception_is_a_logged_json_500(node: RunningNode, http: aiohttp.ClientSession,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    def broken(limit: int = 100) -> list[dict[str, Any]]:
        raise RuntimeError("a bug in the node")

    node.node.jobs.list = broken  # type: ignore[method-assign]
    async with http.get(node.url + "/v1/jobs") as resp:
        status, body = await _answer(resp)
    assert status == 500 and body["error"] == "InternalError" and "a bug" not in body["message"]
    assert "a bug in the node" in caplog.text
    async with http.get(node.url + "/v1/health") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ok"


async def test_a_worker_that_raises_answers_an_error_line(tmp_path: Path) -> None:
    """A request the executor cannot even read (no module) used to kill the worker process."""
    worker = await Worker.start(str(tmp_path / "cache"))
    try:
        answer = await worker.ask({"spec": JobSpec(module=module_cid(HELLO)).canonical_bytes().decode()}, 30)
        assert answer is not None and answer["error"] == "ExecutorCrashed" and "KeyError" in answer["message"]
        module = tmp_path / "hello.wasm"
        module.write_bytes(HELLO)
        answer = await worker.ask({"spec": JobSpec(module=module_cid(HELLO), args=("hello.wasm",))
                                   .canonical_bytes().decode(), "module": str(module), "sources": {},
                                   "out": str(tmp_path / "out")}, 30)
        assert answer is not None and answer["exit_code"] == 0, answer  # the same worker serves on
        assert (tmp_path / "out" / "stdout").read_bytes() == b"hello from cod\n"
    finally:
        worker.kill()
        await worker.process.wait()


# -- cancel ------------------------------------------------------------------------------------
async def test_cancel_kills_a_running_job_and_a_queued_one(node: RunningNode, http: aiohttp.ClientSession) -> None:
    busy = wat(BUSY_WAT)
    await put(http, node.url, module_cid(busy), busy, "application/octet-stream")
    specs = [JobSpec(module=module_cid(busy), args=(str(n),), limits=Limits(fuel=10**12, timeout_ms=600_000))
             for n in range(2)]
    for spec in specs:
        async with http.post(node.url + "/v1/jobs", json={"spec": spec.to_dict()}) as resp:
            assert resp.status == 202
    (pid,) = node.node.pool.worker_pids()
    for spec in reversed(specs):  # the queued one first, then the running one
        async with http.delete(f"{node.url}/v1/jobs/{spec.cid}") as resp:
            job = await resp.json()
        assert resp.status == 200 and job["state"] == "failed" and job["error"]["error"] == "Cancelled", job
    assert node.node.pool.worker_pids() != [pid]  # the executor of the running job was killed
    assert os.listdir(node.node.results) == []  # nothing of the killed run is left (no staging dir)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    async with http.delete(f"{node.url}/v1/jobs/{specs[0].cid}") as resp:
        status, body = await _answer(resp)
    assert status == 409 and body["error"] == "NotCancellable"
    async with http.delete(f"{node.url}/v1/jobs/bafynothing") as resp:
        assert (await _answer(resp))[0] == 404
    await put(http, node.url, module_cid(HELLO), HELLO, "application/octet-stream")
    async with http.post(node.url + "/v1/jobs?wait=1", json={"spec": JobSpec(
            module=module_cid(HELLO), args=("hello.wasm",)).to_dict()}) as resp:
        assert (await resp.json())["state"] == "done"  # the node serves on with a new executor
    async with http.get(f"{node.url}/v1/jobs/{specs[1].cid}/results/stdout") as resp:
        assert (await _answer(resp))[0] == 404  # a cancelled job has no results


# -- hole 6: bind and data-dir errors --------------------------------------------------------
async def test_start_node_refuses_bad_ports_and_data_dirs(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(NodeError, match=f"cannot listen on 127.0.0.1:{port}") as info:
            await start_node(tmp_path / "a", port=port, concurrency=1)
        assert info.value.hint and "--port" in info.value.hint
    with pytest.raises(NodeError, match="port 70000 is out of range"):
        await start_node(tmp_path / "b", port=70000, concurrency=1)
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(NodeError, match="data directory"):
        await start_node(tmp_path / "file", concurrency=1)
    with pytest.raises(NodeError, match="data directory"):
        await start_node(Path("/proc/cod-node"), concurrency=1)  # not writable, even for root


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cod", "serve", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_cod_serve_reports_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cases = [("--port", str(taken.getsockname()[1])), ("--data-dir", str(tmp_path / "file" / "sub"))]
        for args in cases:
            data_dir = [] if "--data-dir" in args else ["--data-dir", str(tmp_path / "d")]
            done = _serve(*data_dir, *args, "--concurrency", "1")
            assert done.returncode == NodeError.code, done.stderr
            lines = done.stderr.splitlines()
            assert lines[0].startswith("error: ") and lines[1].startswith("hint: ") and len(lines) == 2, done.stderr
            assert "Traceback" not in done.stderr
        out_of_range = _serve("--data-dir", str(tmp_path / "d"), "--port", "70000")  # checked where parsed
        assert out_of_range.returncode == 2 and out_of_range.stderr.startswith("error: "), out_of_range.stderr
        assert "Traceback" not in out_of_range.stderr
        done = _serve("--data-dir", str(tmp_path / "file"))  # click's own check: a usage error
        assert done.returncode == 2 and "is a file" in done.stderr and "Traceback" not in done.stderr


def test_the_cap_options_are_documented() -> None:
    done = _serve("--help")
    for name in ("max-fuel", "max-memory-bytes", "max-timeout-ms", "max-stdout-bytes", "max-stderr-bytes",
                 "max-output-bytes", "max-upload-bytes", "max-unpacked-bytes", "max-car-blocks", "max-tree-depth",
                 "max-entries", "max-table-elements", "max-fetch-cids"):
        assert f"--{name}" in done.stdout

