"""Tracing and metrics against real nodes on loopback: one trace per verification joined by
``traceparent``, metrics counted where they happen, hostile headers, /metrics kept small, and
a real Prometheus scraping a node."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from cod import telemetry
from cod.local import prepare
from cod.node.joblog import writer
from verifier import Devstack, Records, verify
from verifier.client import NodeClient

from .cli.test_startup import loaded
from .helpers import VECTORS, load_vector
from .hostile import Hostile

WORDCOUNT = load_vector("wordcount")


def _wordcount() -> Any:
    return prepare(VECTORS / "wordcount.wasm", [], inputs=[str(VECTORS / "data" / "wordcount")])


class Traced:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.metrics = InMemoryMetricReader()

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    def points(self, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
        """The data points of the requester's metric ``name`` by their sorted attributes."""
        found: dict[tuple[tuple[str, Any], ...], Any] = {}
        data = self.metrics.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            key = tuple(sorted((point.attributes or {}).items()))
                            found[key] = getattr(point, "value", None) or getattr(point, "count", None)
        return found


@pytest.fixture()
def traced() -> Iterator[Traced]:
    on = Traced()
    telemetry.configure([on.spans], [on.metrics])
    yield on
    telemetry.shutdown()


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """A node's /metrics as {series with labels: value}, parsed by prometheus_client."""
    async with http.get(url + "/metrics") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            series[f"{sample.name}{{{labels}}}"] = sample.value
    return series


async def test_a_verification_is_one_trace_with_the_nodes_spans_under_the_requesters(
        traced: Traced, tmp_path: Path) -> None:
    log = io.StringIO()
    async with Devstack(3, bad_nodes=1, base_dir=tmp_path / "stack", job_log=writer("json", log)) as stack:
        liar = stack.nodes[-1].node.identity.node_id
        node_ids = sorted(n.node.identity.node_id for n in stack.nodes)
        result = await verify(_wordcount(), stack.urls, 3, records=Records(tmp_path / "r.db"))
        async with aiohttp.ClientSession() as http:
            scraped = [await scrape(http, url) for url in stack.urls]
    assert result.outcome == "mismatch"
    spans = traced.spans.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1  # one trace: the requester's and the nodes' spans
    (root,) = traced.named("cod.verify")
    assert root.parent is None
    by_id = {s.context.span_id: s for s in spans}
    per_node = traced.named("cod.node")
    assert sorted(str((s.attributes or {})["cod.node_id"]) for s in per_node) == node_ids
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in per_node)
    for name in ("cod.select", "cod.compare"):
        assert [s.parent.span_id for s in traced.named(name) if s.parent] == [root.context.span_id]
    # every node span hangs, through traceparent, under one of the requester's per-node spans
    jobs = traced.named("node.job")
    assert len(jobs) == 3
    for job in jobs:
        submit = by_id[job.parent.span_id]  # type: ignore[union-attr]
        assert submit.name == "node.submit" and submit.parent is not None and submit.parent.is_remote
        assert by_id[submit.parent.span_id].name == "cod.node"
        children = {s.name for s in spans if s.parent is not None and s.parent.span_id == job.context.span_id}
        assert {"node.queue", "node.execute", "node.sign"} <= children
    for upload in traced.named("node.upload"):
        assert by_id[upload.parent.span_id].name == "cod.upload"  # type: ignore[union-attr]
    # metrics: the run by outcome, the lying node's mismatch and no one else's, bytes uploaded
    assert traced.points("cod.verifications") == {(("outcome", "mismatch"),): 1}
    assert traced.points("cod.mismatches") == {(("node", liar),): 1}
    assert traced.points("cod.bytes")[(("direction", "upload"),)] > 0
    for node_metrics in scraped:
        assert node_metrics["cod_node_jobs_total{outcome=done}"] == 1
        assert node_metrics["cod_node_fuel_used_total{}"] > 0
        assert node_metrics["cod_node_bytes_total{direction=upload}"] > 0
        assert node_metrics["cod_node_queue_depth{}"] == 0
    # the job log lines name the job's span
    records = [json.loads(line) for line in log.getvalue().splitlines()]
    assert sorted((r["trace_id"], r["span_id"]) for r in records) == sorted(
        (f"{j.context.trace_id:032x}", f"{j.context.span_id:016x}") for j in jobs)


async def test_telemetry_never_reaches_a_result(traced: Traced, tmp_path: Path) -> None:
    async with Devstack(3, base_dir=tmp_path / "stack") as stack:
        result = await verify(_wordcount(), stack.urls, 3, records=Records(tmp_path / "r.db"),
                              output_dir=tmp_path / "out")
        stored = [n.node.jobs.get(result.job_cid) for n in stack.nodes]
    assert result.outcome == "verified" and result.result_cid == WORDCOUNT["expect"]["result_cid"]
    assert result.job_cid == str(_wordcount().spec.cid)
    for row in stored:
        assert row is not None and "timings" not in json.dumps(row) and "traceparent" not in json.dumps(row)
    assert traced.points("cod.verifications") == {(("outcome", "verified"),): 1}
    assert traced.points("cod.bytes")[(("direction", "download"),)] > 0
    assert [s.parent.span_id for s in traced.named("cod.download") if s.parent] == [
        traced.named("cod.verify")[0].context.span_id]


class _Recorder(Hostile):
    """A server on loopback that records the traceparent of each request and answers {}."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str | None] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request.headers.get("traceparent"))
        return web.json_response({})


async def _headers_sent() -> list[str | None]:
    """The traceparent of a request a NodeClient sends inside a span "outer"."""
    async with _Recorder() as recorder, aiohttp.ClientSession() as http:
        with telemetry.span("outer"):
            await NodeClient(http, recorder.url).holdings(["x"])
    return recorder.seen


async def test_off_means_no_spans_and_no_traceparent(tmp_path: Path) -> None:
    telemetry.shutdown()
    assert not telemetry.enabled() and telemetry.requester_meter_provider() is None
    assert await _headers_sent() == [None]
    async with Devstack(2, base_dir=tmp_path / "stack") as stack:
        async with aiohttp.ClientSession() as http:
            result = await verify(_wordcount(), stack.urls, 2, records=Records(tmp_path / "r.db"))
            series = await scrape(http, stack.urls[0])
    assert result.outcome == "verified"
    assert series["cod_node_jobs_total{outcome=done}"] == 1  # /metrics is always on


async def test_on_the_client_sends_the_current_span_as_traceparent(traced: Traced) -> None:
    (header,) = await _headers_sent()
    (outer,) = traced.named("outer")
    assert header is not None and header[:-2] == f"00-{outer.context.trace_id:032x}-{outer.context.span_id:016x}-"
    assert int(header[-2:], 16) & 1  # sampled


@pytest.mark.parametrize("header", [
    "00-" + "f" * 32 + "-" + "1" * 16 + "-01",  # all-f trace ID: valid shape
    "00-" + "0" * 32 + "-" + "1" * 16 + "-01",  # an all-zero trace ID is invalid
    "zz-not-a-traceparent",
    "00-" + "a" * 32 + "-" + "b" * 16 + "-01" + "x" * 4000,  # long
    "\u00ff" * 50,
])
async def test_a_hostile_traceparent_neither_crashes_nor_joins_wrongly(
        traced: Traced, tmp_path: Path, header: str) -> None:
    async with Devstack(1, base_dir=tmp_path / "stack") as stack:
        async with aiohttp.ClientSession() as http:
            body = {"spec": _wordcount().spec.to_dict()}
            many = [("traceparent", header)] * 50 + [("tracestate", "k=" + "v" * 4000)]
            started = time.monotonic()
            for _ in range(20):
                async with http.post(stack.urls[0] + "/v1/jobs", json=body, headers=many) as resp:
                    assert resp.status == 409  # the blobs are missing: answered as without the header
            assert time.monotonic() - started < 10
            async with http.get(stack.urls[0] + "/v1/health") as resp:
                assert resp.status == 200
    submits = traced.named("node.submit")
    assert len(submits) == 20
    for submit in submits:
        if header.startswith("00-" + "f" * 32) and len(header) == 55:
            assert submit.parent is not None and f"{submit.context.trace_id:032x}" == "f" * 32
        else:
            assert submit.parent is None  # a fresh trace of its own


async def test_metrics_carry_no_job_cids_and_their_series_do_not_grow_with_jobs(tmp_path: Path) -> None:
    from .node_kit import wat

    async with Devstack(1, base_dir=tmp_path / "stack") as stack:
        url = stack.urls[0]
        async with aiohttp.ClientSession() as http:
            counts = []
            for k in range(3):
                module = wat(f'(module (memory (export "memory") 1) (func (export "_start") (drop (i32.const {k}))))')
                (tmp_path / f"m{k}.wasm").write_bytes(module)
                job = prepare(tmp_path / f"m{k}.wasm", [])
                result = await verify(job, [url], 1, records=Records(tmp_path / "r.db"))
                assert result.outcome == "unverifiable"
                async with http.get(url + "/metrics") as resp:
                    text = await resp.text()
                assert result.job_cid not in text and str(job.spec.module) not in text
                assert stack.nodes[0].node.identity.public_key.hex() not in text
                counts.append(len([line for line in text.splitlines() if not line.startswith("#")]))
            assert counts[0] == counts[1] == counts[2]
            series = await scrape(http, url)
    assert series["cod_node_jobs_total{outcome=done}"] == 3


def test_neither_help_nor_a_local_run_loads_opentelemetry(tmp_path: Path) -> None:
    for args in (("--help",), ("run", str(VECTORS / "hello.wasm"))):
        code, modules = loaded(tmp_path, *args)
        assert code == 0
        assert not {m for m in modules if m.startswith(("opentelemetry", "prometheus_client"))}, args
    code, modules = loaded(tmp_path, "run", "--verify", "1", str(VECTORS / "hello.wasm"),
                           COD_NODES="http://127.0.0.1:9")
    assert "verifier.verify" in modules and not {m for m in modules if m.startswith("opentelemetry")}
    code, modules = loaded(tmp_path, "run", "--verify", "1", str(VECTORS / "hello.wasm"),
                           COD_NODES="http://127.0.0.1:9", COD_TRACING="1")
    assert "opentelemetry.sdk.trace" in modules  # on: the requester traces


def test_what_turns_tracing_on() -> None:
    assert not telemetry.configured({})
    assert telemetry.configured({"COD_TRACING": "1"})
    assert telemetry.configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert not telemetry.configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"})
    assert not telemetry.configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "COD_TRACING": "0"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
async def test_a_real_prometheus_scrapes_a_node(tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (make prometheus-tools installs it)")
    async with Devstack(3, base_dir=tmp_path / "stack") as stack:
        result = await verify(_wordcount(), stack.urls, 3, records=Records(tmp_path / "r.db"))
        assert result.outcome == "verified"
        target = stack.urls[0].removeprefix("http://")
        (tmp_path / "p.yml").write_text(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: cod\n"
            f"    static_configs:\n      - targets: ['{target}']\n")
        port = _free_port()
        proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'p.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
        try:
            found: list[Any] = []
            async with aiohttp.ClientSession() as http:
                for _ in range(120):
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/api/v1/query",
                                            params={"query": 'cod_node_jobs_total{outcome="done"}'}) as resp:
                            answer = await resp.json()
                        found = answer["data"]["result"]
                    except (aiohttp.ClientError, KeyError, ValueError):
                        found = []
                    if found:
                        break
                    await asyncio.sleep(0.5)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert len(found) == 1
    assert found[0]["metric"]["instance"] == target and found[0]["value"][1] == "1"
