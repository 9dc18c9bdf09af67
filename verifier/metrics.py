"""The requester's metrics (OpenTelemetry, exported by OTLP): made only while tracing is on.

Verifications by outcome and their latency, mismatches by the node ID that disagreed, bytes
moved by direction (upload, download). Labels are outcomes, directions and node IDs: never a
job CID, a URL or other text a node sent. Nothing here is read on the result path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cod import telemetry

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram
    from opentelemetry.sdk.metrics import MeterProvider

UPLOAD, DOWNLOAD = "upload", "download"


class RequesterMetrics:
    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("cod.requester")
        self.provider = provider
        self.verifications: Counter = meter.create_counter(
            "cod.verifications", description="verifications finished, by outcome")
        self.duration: Histogram = meter.create_histogram(
            "cod.verification.duration", unit="s", description="time of one verification, node selection to download")
        self.mismatches: Counter = meter.create_counter(
            "cod.mismatches", description="signed results that disagreed with the accepted or majority result, by node")
        self.bytes: Counter = meter.create_counter(
            "cod.bytes", unit="By", description="bytes moved by the requester, by direction (upload, download)")

    def verified(self, outcome: str, seconds: float, disagreeing: list[str]) -> None:
        self.verifications.add(1, {"outcome": outcome})
        self.duration.record(seconds, {"outcome": outcome})
        for node_id in disagreeing:
            self.mismatches.add(1, {"node": node_id})

    def moved(self, direction: str, size: int) -> None:
        if size > 0:
            self.bytes.add(size, {"direction": direction})


_made: list[RequesterMetrics] = []


def current() -> RequesterMetrics | None:
    """The requester's metrics, or None while tracing is off (then nothing is counted)."""
    provider = telemetry.requester_meter_provider()
    if provider is None:
        return None
    if not _made or _made[0].provider is not provider:
        _made[:] = [RequesterMetrics(provider)]
    return _made[0]


__all__ = ["RequesterMetrics", "current"]
