"""Export to an OTLP collector that may be dead: never a delay, one warning line (SPEC 9.10).

OpenTelemetry's OTLP/HTTP exporters wait up to 10 s per export and retry with backoff, and
log every retry; a process exits only once its last batch is exported. Against a collector
that refuses connections or never answers, that made every ``cod run`` 9 to 11 s longer and
printed 8 SDK lines. Here:

- each export waits at most EXPORT_TIMEOUT_S (unless ``OTEL_EXPORTER_OTLP_TIMEOUT`` or its
  per-signal variable says otherwise), in the SDK's background threads only;
- once an export failed, batches are dropped at once for RETRY_AFTER_S, then tried again;
- the SDK's exporter loggers are silenced; the first failure (or an exit that could not wait
  for the last export) prints one line to the ``cod.telemetry`` logger, once per process;
- :func:`close` stops providers in a thread of its own and waits at most SHUTDOWN_TIMEOUT_S,
  so neither an exit nor a node's stop waits on a collector.

This module imports opentelemetry: cod.telemetry imports it only once tracing is on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .text import printable

EXPORT_TIMEOUT_S = 3.0
"""Seconds one export may wait on the collector (the SDK's default is 10 s)."""
RETRY_AFTER_S = 30.0
"""Seconds after a failed export during which batches are dropped without trying."""
SHUTDOWN_TIMEOUT_S = 1.0
"""Seconds an exit (or a node's stop) waits for the last export."""
SILENCED = ("opentelemetry.exporter.otlp", "opentelemetry.sdk._shared_internal")
"""The SDK's loggers of export retries, failures and full queues."""
TIMEOUT_ENVS = ("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT")

log = logging.getLogger("cod.telemetry")
R = TypeVar("R")


def endpoint() -> str:
    """The collector named by the environment, as the warning line shows it."""
    env = os.environ
    named = (env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
             or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip())
    return printable(named, 200)


class _Health:
    """Whether this process's collector failed lately, and whether the warning was printed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down_until = 0.0
        self.warned = False

    def allows(self) -> bool:
        return time.monotonic() >= self.down_until

    def succeeded(self) -> None:
        self.down_until = 0.0

    def failed(self, why: str) -> None:
        with self.lock:
            self.down_until = time.monotonic() + RETRY_AFTER_S
            self.warn(why)

    def warn(self, why: str) -> None:
        """The one warning line of this process; the caller holds ``lock``."""
        if self.warned:
            return
        self.warned = True
        log.warning("telemetry: cannot export to the OTLP collector at %s (%s); spans and metrics are dropped "
                    "while it fails (check OTEL_EXPORTER_OTLP_ENDPOINT, or unset it)", endpoint(), why)


health = _Health()


def silence_sdk() -> None:
    """Silence the SDK's export loggers: a dead collector is this module's one warning line."""
    for name in SILENCED:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def _timeout() -> float | None:
    """EXPORT_TIMEOUT_S, or None when the environment sets an OTLP timeout (the SDK reads it)."""
    return None if any(os.environ.get(name, "").strip() for name in TIMEOUT_ENVS) else EXPORT_TIMEOUT_S


def guarded(export: Callable[[], R], success: R, failure: R) -> R:
    """``export()`` unless the collector failed lately; a failure (or an exception of the SDK,
    which must not reach its worker thread) is recorded in ``health``."""
    if not health.allows():
        return failure
    try:
        result = export()
    except Exception as exc:
        result, why = failure, type(exc).__name__
    else:
        why = "unreachable, too slow or refusing"
    if result is success:
        health.succeeded()
    else:
        health.failed(why)
    return result


class GuardedSpanExporter(SpanExporter):
    """The OTLP/HTTP span exporter, dropping batches while the collector fails."""

    def __init__(self) -> None:
        silence_sdk()
        self.inner = OTLPSpanExporter(timeout=_timeout())

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return guarded(lambda: self.inner.export(spans), SpanExportResult.SUCCESS, SpanExportResult.FAILURE)

    def shutdown(self) -> None:
        self.inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class GuardedMetricExporter(MetricExporter):
    """The OTLP/HTTP metric exporter, dropping exports while the collector fails."""

    def __init__(self) -> None:
        silence_sdk()
        self.inner = OTLPMetricExporter(timeout=_timeout())
        super().__init__(preferred_temporality=self.inner._preferred_temporality,
                         preferred_aggregation=self.inner._preferred_aggregation)

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        return guarded(lambda: self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs),
                       MetricExportResult.SUCCESS, MetricExportResult.FAILURE)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def close(stops: Sequence[Callable[[], object]], timeout: float = SHUTDOWN_TIMEOUT_S) -> bool:
    """Call each of ``stops`` (providers' ``shutdown``) in a daemon thread, waiting at most
    ``timeout`` seconds; True when they all returned. When they did not (the collector holds
    the last export), the warning line says so, once, and the process goes on (or exits)."""
    def run() -> None:
        for stop in stops:
            try:
                stop()
            except Exception:  # a provider's shutdown failing must not print a thread traceback
                pass

    worker = threading.Thread(target=run, name="cod-telemetry-close", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        with health.lock:
            health.warn(f"no answer within {timeout:g} s")
        return False
    return True


__all__ = ["EXPORT_TIMEOUT_S", "RETRY_AFTER_S", "SHUTDOWN_TIMEOUT_S", "GuardedMetricExporter", "GuardedSpanExporter",
           "close", "endpoint", "health", "silence_sdk"]
