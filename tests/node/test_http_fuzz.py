"""HTTP fuzz: generated methods, paths, headers, content types and bodies against a live node.

Every answer is 2xx or 4xx, every error has a JSON body {"error", "message", "hint"}, the
node stays healthy, and the results it stored before are served byte for byte afterwards.
The node runs on its own event loop in a thread; requests go over real sockets (http.client).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings, strategies as st

from cod import JobSpec, module_cid
from cod.content import dagpb
from cod.content.car import write_car
from cod.jobspec import Input
from cod.node.server import RunningNode, start_node

from ..helpers import VECTORS, load_vector
from ..node_kit import CAR_TYPE, car, pb, raw

WORDCOUNT = (VECTORS / "wordcount.wasm").read_bytes()
VECTOR = load_vector("wordcount")
JOB = VECTOR["job_cid"]
INPUT = VECTOR["spec"]["inputs"][0]["cid"]
MODULE = VECTOR["spec"]["module"]


class LiveNode:
    """A node on loopback, served by an event loop in a thread of its own."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.running: RunningNode = self._call(start_node(data_dir, concurrency=1, queue_size=2))
        parts = urlsplit(self.running.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type") or "", resp.read()
        finally:
            conn.close()

    def close(self) -> None:
        self._call(self.running.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, dict[str, bytes]]]:
    """A node that already ran wordcount; returns what it served before the fuzz."""
    tmp = tmp_path_factory.mktemp("fuzz")
    node = LiveNode(tmp / "node")
    try:
        assert node.request("PUT", f"/v1/blobs/{MODULE}", WORDCOUNT,
                            {"Content-Type": "application/octet-stream"})[0] == 201
        write_car(VECTORS / "data" / "wordcount", tmp / "in.car")
        assert node.request("PUT", f"/v1/blobs/{INPUT}", (tmp / "in.car").read_bytes(),
                            {"Content-Type": CAR_TYPE})[0] == 201
        status, _, body = node.request("POST", "/v1/jobs?wait=true", json.dumps({"spec": VECTOR["spec"]}).encode(),
                                       {"Content-Type": "application/json"})
        assert status == 200 and json.loads(body)["result_cid"] == VECTOR["expect"]["result_cid"]
        yield node, _stored(node)
    finally:
        node.close()


def _stored(node: LiveNode) -> dict[str, bytes]:
    out = {}
    for path in (f"/v1/jobs/{JOB}/results.car", f"/v1/jobs/{JOB}/results/stdout",
                 f"/v1/jobs/{JOB}/results/outputs/count.txt", f"/v1/blobs/{MODULE}", f"/v1/blobs/{INPUT}"):
        status, _, body = node.request("GET", path)
        assert status == 200, path
        out[path] = body
    status, _, body = node.request("GET", f"/v1/jobs/{JOB}")
    job = json.loads(body)
    out["statement"] = json.dumps(job["statement"], sort_keys=True).encode()
    return out


# -- strategies ----------------------------------------------------------------------------
SEGMENT = st.one_of(
    st.sampled_from(["v1", "jobs", "blobs", "results", "results.car", "info", "health", "openapi.json", JOB, INPUT,
                     MODULE, "..", ".", "%2e%2e", "%00", "%ff", "node.key", "bafy", "b" + "a" * 300, ""]),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e, exclude_characters="#?%"),
            max_size=20),
)
PATH = st.one_of(
    st.sampled_from(["/v1/jobs", f"/v1/jobs/{JOB}", f"/v1/jobs/{JOB}/results.car", f"/v1/blobs/{INPUT}",
                     f"/v1/blobs/{MODULE}", "/v1/info", "/v1/health", "/v1/openapi.json", f"/v1/blobs/{JOB}",
                     f"/v1/jobs/{JOB}/results/%00", f"/v1/jobs/{JOB}/results/a%00b",
                     f"/v1/jobs/{JOB}/results/" + "a" * 5000]),
    st.lists(SEGMENT, min_size=1, max_size=6).map(lambda parts: "/" + "/".join(parts)),
).flatmap(lambda p: st.sampled_from([p, p + "?wait=true", p + "?wait=1&x=%ff", p + "?"]))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
SPECISH = st.fixed_dictionaries({}, optional={
    "module": st.sampled_from([MODULE, INPUT, "x"]), "args": st.lists(st.text(max_size=5), max_size=3),
    "limits": st.dictionaries(st.sampled_from(["fuel", "memory_bytes", "timeout_ms", "cpu"]),
                              st.integers(min_value=-1, max_value=2**64), max_size=3),
    "inputs": st.lists(st.fixed_dictionaries({"cid": st.sampled_from([INPUT, MODULE, JOB])}), max_size=2),
})
leaf, leaf_block = raw(b"fuzz")
link, link_block = pb(dagpb.SYMLINK, data=b"../..")
CARS = [car([leaf], [(leaf, leaf_block)]), car([link], [(link, link_block)]), car([], []), car([leaf, link], [])]
BODY = st.one_of(
    st.none(),
    st.binary(max_size=512),
    JSON.map(lambda v: json.dumps(v).encode()),
    SPECISH.map(lambda s: json.dumps({"spec": s}).encode()),
    st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from(CARS).flatmap(lambda c: st.integers(0, len(c)).map(lambda n: c[:n])),
    st.just(b'{"spec": {"module": "\\udc00"}}'),
)
CONTENT_TYPE = st.sampled_from([None, "application/json", CAR_TYPE, "application/octet-stream", "text/plain",
                                "application/json; charset=latin-1", "multipart/form-data; boundary=x", "x/y"])
HEADER_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(
    lambda n: n not in ("content-length", "transfer-encoding", "host", "connection", "expect", "content-type"))
HEADERS = st.dictionaries(HEADER_NAME, st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                                                max_size=30), max_size=3)
METHOD = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"])


@settings(max_examples=300, deadline=None, database=None)
@given(method=METHOD, path=PATH, body=BODY, content_type=CONTENT_TYPE, headers=HEADERS)
def test_fuzzed_requests_get_json_4xx_never_5xx(live: tuple[LiveNode, dict[str, bytes]], method: str, path: str,
                                                body: bytes | None, content_type: str | None,
                                                headers: dict[str, str]) -> None:
    node, _ = live
    if content_type is not None:
        headers = {**headers, "Content-Type": content_type}
    status, kind, answer = node.request(method, path, body, headers)
    assert 200 <= status < 500, (status, answer[:300])
    if status >= 400 and method != "HEAD":
        assert kind.startswith("application/json"), (status, kind, answer[:300])
        error = json.loads(answer)
        assert {"error", "message", "hint"} <= set(error) and isinstance(error["error"], str), error


def test_after_the_fuzz_the_node_is_healthy_and_its_results_intact(
        live: tuple[LiveNode, dict[str, bytes]]) -> None:
    node, before = live
    status, _, body = node.request("GET", "/v1/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert _stored(node) == before
    spec = JobSpec(module=module_cid(WORDCOUNT), inputs=(Input(INPUT, "/inputs"),), args=("wc", "/inputs"))
    status, _, body = node.request("POST", "/v1/jobs?wait=1", json.dumps({"spec": spec.to_dict()}).encode())
    assert status == 200 and json.loads(body)["state"] == "done"  # still runs jobs
