"""A node's metrics, served as Prometheus text on ``GET /metrics`` (and by OTLP when configured).

Each node has a meter provider and a Prometheus registry of its own (a devstack runs several
nodes in one process). Labels take a few fixed values only (outcome, direction): never a job
CID, a requester's address or any other text from a request, so the series stay few and
``/metrics`` tells a scraper nothing about who asked for what. Resource attributes (target
info) are not published. Nothing here is read on the result path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DONE, FAILED, CANCELLED = "done", "failed", "cancelled"
UPLOAD, FETCH, DOWNLOAD = "upload", "fetch", "download"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0)


class NodeMetrics:
    """Jobs by outcome, their duration and fuel, the queue's depth, bytes moved by direction."""

    def __init__(self, queue_depth: Callable[[], int]) -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.metrics import Observation
        from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
        from prometheus_client import CollectorRegistry

        from .. import telemetry

        self.registry = CollectorRegistry(auto_describe=True)
        reader = PrometheusMetricReader(disable_target_info=True, scope_info_enabled=False, registry=self.registry)
        duration = View(instrument_name="cod.node.job.duration",
                        aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS))
        self.provider = telemetry.node_meter_provider([reader], views=[duration])
        meter = self.provider.get_meter("cod.node")
        self.jobs = meter.create_counter("cod.node.jobs", description="jobs finished, by outcome (done, failed, "
                                         "cancelled)")
        self.duration = meter.create_histogram("cod.node.job.duration", unit="s",
                                               description="time from queueing to the end of a job")
        self.fuel = meter.create_counter("cod.node.fuel_used", description="fuel used by finished jobs")
        self.bytes = meter.create_counter("cod.node.bytes", unit="By", description="bytes moved, by direction: "
                                          "upload (blobs received), fetch (from peers and gateways), download "
                                          "(results served)")

        def depth(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(queue_depth())]

        meter.create_observable_gauge("cod.node.queue_depth", callbacks=[depth],
                                      description="jobs queued or running on this node")

    def finished(self, outcome: str, seconds: float, fuel: int | None) -> None:
        self.jobs.add(1, {"outcome": outcome})
        self.duration.record(seconds, {"outcome": outcome})
        if fuel:
            self.fuel.add(fuel)

    def moved(self, direction: str, size: int) -> None:
        if size > 0:
            self.bytes.add(size, {"direction": direction})

    def exposition(self) -> bytes:
        """The Prometheus text exposition of this node's metrics now."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def close(self) -> None:
        from .. import telemetry

        telemetry.close(self.provider)  # waits on an OTLP collector at most a second


__all__ = ["CONTENT_TYPE", "NodeMetrics"]
