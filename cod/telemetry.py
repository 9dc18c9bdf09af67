"""Tracing and metrics (OpenTelemetry): off unless configured, and never on the result path.

Tracing is on in a process when ``COD_TRACING`` is ``1``/``true``/``on``, or an OTLP endpoint
is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), unless
``OTEL_SDK_DISABLED=true`` or ``COD_TRACING=0``. With an endpoint, spans and the requester's
metrics go out by OTLP over HTTP (the exporter reads the standard ``OTEL_*`` variables:
headers, timeout, protocol paths), in the background and never delaying a run, a node or an
exit: a dead collector costs at most a second at exit and one warning line (cod.otlp); without
one, spans are made but not exported (tests install their own exporters with :func:`configure`). When tracing is off, nothing imports
opentelemetry: every helper here is a no-op costing one attribute check.

A requester's span context travels to nodes in the W3C ``traceparent`` header (injected by
``verifier.client``, extracted by the node's handlers). What a node reads from a request is
bounded before opentelemetry's propagator sees it: one header of at most
MAX_TRACEPARENT_CHARS characters, no ``tracestate`` and no baggage. A header that does not
parse starts a fresh trace. Nothing here is read by anything that reaches a job spec, a
result, a CID, a signature or a fuel count.

Nodes' metrics (``/metrics``, cod.node.metrics) are always on; they use this module's
:func:`node_meter_provider` for their provider, so OTLP export covers them too when configured.
"""

from __future__ import annotations

import atexit
import os
import weakref
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.metrics.view import View
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

TRACING_ENV = "COD_TRACING"
ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
TRACEPARENT = "traceparent"
MAX_TRACEPARENT_CHARS = 128  # version 00 is 55 characters; later versions may append fields
SERVICE_NAME = "cod"
INSTRUMENTATION = "cod"


def configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment turns tracing on (see the module docstring)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    flag = env.get(TRACING_ENV, "").strip().lower()
    if flag in ("0", "false", "off"):
        return False
    return flag in ("1", "true", "on") or any(env.get(name, "").strip() for name in ENDPOINT_ENVS)


def otlp_configured(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return any(env.get(name, "").strip() for name in ENDPOINT_ENVS)


class _State:
    """The process's tracer and requester meter provider (None while tracing is off), and the
    providers that export by OTLP, which the exit closes (cod.otlp: bounded)."""

    def __init__(self) -> None:
        self.decided = False
        self.tracer: Tracer | None = None
        self.tracer_provider: TracerProvider | None = None
        self.meter_provider: MeterProvider | None = None
        self.exporting: weakref.WeakSet[Any] = weakref.WeakSet()
        self.at_exit = False


_state = _State()


def _decide() -> None:
    if not _state.decided:
        _state.decided = True
        if configured():
            configure(otlp=otlp_configured())


def configure(span_exporters: Sequence[SpanExporter] = (), metric_readers: Sequence[MetricReader] = (), *,
              otlp: bool = False) -> None:
    """Turn tracing on in this process: spans go to ``span_exporters`` (as they end) and, with
    ``otlp``, to the OTLP endpoint of the environment (batched); requester metrics go to
    ``metric_readers`` and to OTLP. Replaces an earlier configuration (tests)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    shutdown()
    resource = Resource.create({"service.name": SERVICE_NAME})
    provider = TracerProvider(resource=resource, shutdown_on_exit=not otlp)  # with OTLP: _at_exit, bounded
    for exporter in span_exporters:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if otlp:
        from .otlp import GuardedSpanExporter

        provider.add_span_processor(BatchSpanProcessor(GuardedSpanExporter()))  # in the background
    _state.decided = True
    _state.tracer_provider = provider
    _state.tracer = provider.get_tracer(INSTRUMENTATION)
    _state.meter_provider = MeterProvider(resource=resource, metric_readers=_readers(otlp, metric_readers),
                                          shutdown_on_exit=not otlp)
    if otlp:
        _exporting(provider, _state.meter_provider)


def _readers(otlp: bool, extra: Sequence[MetricReader]) -> list[MetricReader]:
    readers = list(extra)
    if otlp:
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        from .otlp import GuardedMetricExporter

        readers.append(PeriodicExportingMetricReader(GuardedMetricExporter()))
    return readers


def _exporting(*providers: Any) -> None:
    """Close ``providers`` at the exit, waiting on the collector at most cod.otlp.SHUTDOWN_TIMEOUT_S."""
    _state.exporting.update(providers)
    if not _state.at_exit:
        _state.at_exit = True
        atexit.register(_at_exit)


def _at_exit() -> None:
    from . import otlp

    otlp.close([provider.shutdown for provider in list(_state.exporting)])


def close(provider: Any) -> None:
    """Stop ``provider`` (a tracer or meter provider of this module); one exporting by OTLP is
    waited on at most cod.otlp.SHUTDOWN_TIMEOUT_S, so a dead collector never delays a stop."""
    if provider in _state.exporting:
        from . import otlp

        _state.exporting.discard(provider)
        otlp.close([provider.shutdown])
    else:
        provider.shutdown()


def shutdown() -> None:
    """Flush and stop what :func:`configure` started (bounded, cod.otlp); afterwards the
    environment decides again."""
    for provider in (_state.tracer_provider, _state.meter_provider):
        if provider is not None:
            close(provider)
    _state.tracer = _state.tracer_provider = _state.meter_provider = None
    _state.decided = False  # the environment decides again


def enabled() -> bool:
    _decide()
    return _state.tracer is not None


def requester_meter_provider() -> MeterProvider | None:
    """The meter provider of the requester's metrics, None while tracing is off."""
    _decide()
    return _state.meter_provider


def node_meter_provider(readers: Sequence[MetricReader], views: Sequence[View] = ()) -> MeterProvider:
    """A meter provider of its own for one node (several nodes may share a process, and a
    reader serves one provider): ``readers`` (its Prometheus reader), and OTLP when tracing is
    configured with an endpoint."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource

    _decide()
    otlp = _state.tracer is not None and otlp_configured()
    provider = MeterProvider(resource=Resource.create({"service.name": "cod-node"}), views=list(views),
                             metric_readers=_readers(otlp, readers), shutdown_on_exit=not otlp)
    if otlp:
        _exporting(provider)
    return provider


@contextmanager
def _span(name: str, attributes: Mapping[str, Any] | None, parent: Context | None) -> Iterator[Span]:
    assert _state.tracer is not None
    with _state.tracer.start_as_current_span(name, context=parent, attributes=dict(attributes or {})) as span:
        yield span


def span(name: str, attributes: Mapping[str, Any] | None = None,
         parent: Context | None = None) -> Any:
    """A context manager: the span ``name`` (current inside it), or nothing while tracing is off.
    It yields the span or None."""
    _decide()
    if _state.tracer is None:
        return nullcontext(None)
    return _span(name, attributes, parent)


def record(name: str, start_ns: int, end_ns: int, attributes: Mapping[str, Any] | None = None) -> None:
    """A finished span under the current one, timed elsewhere (an executor process's phases)."""
    if _state.tracer is None:
        return
    child = _state.tracer.start_span(name, start_time=start_ns, attributes=dict(attributes or {}))
    child.end(end_time=max(start_ns, end_ns))


def guest(report: Mapping[str, Any]) -> None:
    """Replay a job's guest telemetry (a cod.wasm.observe report, SPEC 5.5) as spans under the
    current span (the node's job span); nothing while tracing is off. The report's times are
    the host's monotonic clock (shared by the node and its executor processes); they are moved
    onto the wall clock here. The report never reaches a result."""
    if _state.tracer is None:
        return
    import time

    from opentelemetry import trace

    from .wasm import observe

    records = observe.to_spans(dict(report))
    shift = time.time_ns() - time.monotonic_ns()
    for item in records["spans"]:
        item["start_ns"] += shift
        item["end_ns"] = (item["end_ns"] if item["end_ns"] is not None else item["start_ns"] - shift) + shift
    for item in records["logs"] + records["metrics"]:
        item["ns"] += shift
    observe.replay(records, _state.tracer, trace.get_current_span(), trace.set_span_in_context)


def inject(headers: MutableMapping[str, str]) -> None:
    """Add ``traceparent`` for the current span to ``headers`` (nothing while tracing is off)."""
    if _state.tracer is None:
        return
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    TraceContextTextMapPropagator().inject(headers)


def extract(headers: Mapping[str, str]) -> Context | None:
    """The parent context a request's ``traceparent`` names, or None (tracing off, no header,
    or one that is too long or malformed: the request then starts a trace of its own)."""
    _decide()
    if _state.tracer is None:
        return None
    value = headers.get(TRACEPARENT)
    if value is None or len(value) > MAX_TRACEPARENT_CHARS:
        return None
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = TraceContextTextMapPropagator().extract({TRACEPARENT: value})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def current_ids() -> tuple[str, str] | None:
    """(trace ID, span ID) in hex of the current span, for log lines; None while off or outside one."""
    if _state.tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def ids_of(span_: Any) -> tuple[str, str] | None:
    """(trace ID, span ID) in hex of ``span_`` (as yielded by :func:`span`), None for None."""
    if span_ is None:
        return None
    context = span_.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


__all__ = ["close", "configure", "configured", "current_ids", "enabled", "extract", "guest", "ids_of", "inject",
           "node_meter_provider", "record", "requester_meter_provider", "shutdown", "span"]
