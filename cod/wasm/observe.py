"""Guest telemetry: the host side of the Dylibso Observe SDK's guest API (SPEC 5.5).

A module may import the Observe SDK's manual API (``dylibso:observe/api``: span-enter,
span-exit, span-tags, log, metric), the hooks that Dylibso's wasm-instr inserts into
instrumented modules (``dylibso:observe/instrument``: enter, exit, memory-grow) and the
older names of both (``dylibso_observe``). Every job gets every one of them, whether
telemetry is collected or not, and they are result-neutral: they return nothing, charge no
fuel, never trap (a bad pointer, a huge length, invalid UTF-8 or an exit without an enter
is counted as ``invalid`` and otherwise ignored) and touch nothing the guest can see. With
telemetry off they return at once; with it on, events go to a bounded list (MAX_EVENTS
events, MAX_TEXT_BYTES bytes of text, MAX_EVENTS invalid calls; beyond that every call is
counted as ``dropped`` and nothing more is read), stamped
with the host's monotonic clock, which the guest never sees.

This module imports wasmtime only to define the functions, so :mod:`cod.wasm.linking` can
read the table of imports without it.
"""

from __future__ import annotations

import codecs
import ctypes
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .leb128 import read_u as _leb

if TYPE_CHECKING:
    import wasmtime

API = "dylibso:observe/api"
INSTRUMENT = "dylibso:observe/instrument"
LEGACY = "dylibso_observe"
MODULES = frozenset({API, INSTRUMENT, LEGACY})
# (module, name) -> (params, results) in hostcall's letters: i = i32, I = i64
SIGNATURES: dict[tuple[str, str], tuple[str, str]] = {
    (API, "span-enter"): ("ii", ""),
    (API, "span-exit"): ("", ""),
    (API, "span-tags"): ("ii", ""),
    (API, "log"): ("iii", ""),
    (API, "metric"): ("iii", ""),
    (INSTRUMENT, "enter"): ("i", ""),
    (INSTRUMENT, "exit"): ("i", ""),
    (INSTRUMENT, "memory-grow"): ("i", ""),
    (LEGACY, "instrument_enter"): ("i", ""),
    (LEGACY, "instrument_exit"): ("i", ""),
    (LEGACY, "instrument_memory_grow"): ("i", ""),
    (LEGACY, "span_enter"): ("Ii", ""),
    (LEGACY, "span_exit"): ("", ""),
    (LEGACY, "span_tags"): ("Ii", ""),
    (LEGACY, "log"): ("iIi", ""),
    (LEGACY, "metric"): ("iIi", ""),
}
KINDS = {  # what each import records
    "span-enter": "span-enter", "span_enter": "span-enter", "span-exit": "span-exit", "span_exit": "span-exit",
    "span-tags": "tags", "span_tags": "tags", "log": "log", "metric": "metric",
    "enter": "enter", "instrument_enter": "enter", "exit": "exit", "instrument_exit": "exit",
    "memory-grow": "memory-grow", "instrument_memory_grow": "memory-grow",
}
MAX_EVENTS = 1024  # events kept per job
MAX_TEXT_BYTES = 64 * 1024  # bytes of names, tags, logs and metrics kept per job
MAX_TEXT = 1024  # bytes of one string kept (a longer one is cut at a character boundary)
_U32 = 0xFFFFFFFF
_NAME_SECTION = "name"


def check_import(module: str, name: str, params: str, results: str) -> str | None:
    """Why the import ``module::name`` with that signature is not one of the Observe API's,
    or None when it is."""
    wanted = SIGNATURES.get((module, name))
    if wanted is None:
        known = ", ".join(sorted(n for m, n in SIGNATURES if m == module))
        return f"not a function of the Dylibso Observe API (known: {known})"
    if (params, results) != wanted:
        return "its signature differs from the Dylibso Observe API's"
    return None


class Telemetry:
    """The guest telemetry of one run. ``enabled`` False: every call returns at once."""

    def __init__(self, enabled: bool = False, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.enabled = enabled
        self.clock = clock
        self.events: list[dict[str, Any]] = []
        self.dropped = 0
        self.invalid = 0
        self.text_bytes = 0
        self.depth = 0
        self.start_ns = clock() if enabled else 0
        self.end_ns = 0

    # -- linking ------------------------------------------------------------------------
    def define(self, linker: "wasmtime.Linker", wasm: bytes) -> None:
        """Define every Observe import on ``linker`` for the module ``wasm`` (its name section
        names the functions of ``enter``); each call reads that module's own ``memory``."""
        import wasmtime

        from . import hostcall

        kinds = {"i": wasmtime.ValType.i32(), "I": wasmtime.ValType.i64()}
        slot: list[wasmtime.Memory | None] = [None]
        names: list[dict[int, str] | None] = [None]
        for (module, name), (params, results) in SIGNATURES.items():
            ty = wasmtime.FuncType([kinds[c] for c in params], [kinds[c] for c in results])
            hostcall.define(linker, module, name, ty, (params, results),
                            self._function(KINDS[name], slot, names, wasm))

    def _function(self, kind: str, slot: list[Any], names: list[dict[int, str] | None],
                  wasm: bytes) -> Callable[..., None]:
        def call(caller: "wasmtime.Caller", *params: int) -> None:
            if not self.enabled:
                return
            try:
                self._record(kind, caller, params, slot, names, wasm)
            except Exception:  # whatever goes wrong stays out of the run
                self.invalid += 1

        return call

    def _record(self, kind: str, caller: "wasmtime.Caller", params: tuple[int, ...], slot: list[Any],
                names: list[dict[int, str] | None], wasm: bytes) -> None:
        if self.dropped or self.invalid >= MAX_EVENTS:  # past a cap: nothing more is looked at, so a
            self.dropped += 1  # flood of bad calls costs no more host time than with telemetry off
            return
        if kind in ("span-exit", "exit"):
            if self.depth == 0:
                self.invalid += 1
                return
            if self._add({"kind": "exit"}, 0):
                self.depth -= 1
            return
        if kind == "memory-grow":
            self._add({"kind": "memory-grow", "pages": params[0]}, 0)
            return
        if kind == "enter":
            table = names[0]
            if table is None:
                table = names[0] = function_names(wasm)
            found = table.get(params[0])
            name = _clip_text(found) if found is not None else f"func[{params[0]}]"
            if self._add({"kind": "enter", "name": name, "func": params[0]}, len(name.encode())):
                self.depth += 1
            return
        text = self._text(caller, slot, params[-2], params[-1])
        if text is None:
            self.invalid += 1
            return
        size = len(text.encode())
        if kind == "span-enter":
            if self._add({"kind": "enter", "name": text, "func": None}, size):
                self.depth += 1
        elif kind == "tags":
            self._add({"kind": "tags", "tags": text.split(",")}, size)
        elif kind == "log":
            self._add({"kind": "log", "level": params[0], "message": text}, size)
        else:
            self._add({"kind": "metric", "format": params[0], "value": text}, size)

    def _add(self, event: dict[str, Any], size: int) -> bool:
        """Keep ``event`` if the caps allow (once one is dropped, all later ones are)."""
        if len(self.events) >= MAX_EVENTS or self.text_bytes + size > MAX_TEXT_BYTES:
            self.dropped += 1
            return False
        event["ns"] = self.clock()
        self.events.append(event)
        self.text_bytes += size
        return True

    @staticmethod
    def _text(caller: "wasmtime.Caller", slot: list[Any], ptr: int, length: int) -> str | None:
        """The UTF-8 text at ``ptr``/``length`` in the calling module's memory (at most MAX_TEXT
        bytes of it), or None when it is out of bounds or not UTF-8."""
        import wasmtime

        if ptr < 0 or ptr > _U32 or length < 0 or length > _U32:
            return None
        memory = slot[0]
        if memory is None:
            found = caller.get("memory")
            if not isinstance(found, wasmtime.Memory):
                return None
            memory = slot[0] = found
        size = memory.data_len(caller)
        if ptr + length > size:
            return None
        take = min(length, MAX_TEXT)
        data = ctypes.string_at(ctypes.addressof(memory.data_ptr(caller).contents) + ptr, take) if take else b""
        try:
            return codecs.getincrementaldecoder("utf-8")().decode(data, final=take == length)
        except UnicodeDecodeError:
            return None

    def report(self) -> dict[str, Any] | None:
        """What was collected, JSON-able (None when telemetry is off): ``events`` in call
        order, ``dropped``, ``invalid`` and the run's ``start_ns``/``end_ns`` (host monotonic)."""
        if not self.enabled:
            return None
        if not self.end_ns:
            self.end_ns = self.clock()
        return {"events": self.events, "dropped": self.dropped, "invalid": self.invalid,
                "start_ns": self.start_ns, "end_ns": self.end_ns}


def _clip_text(text: str) -> str:
    data = text.encode()
    if len(data) <= MAX_TEXT:
        return text
    return codecs.getincrementaldecoder("utf-8")().decode(data[:MAX_TEXT], final=False)


def function_names(wasm: bytes) -> dict[int, str]:
    """Function index -> name from the module's ``name`` custom section (subsection 1); empty
    when it has none or it cannot be read."""
    offset = 8
    try:
        while offset < len(wasm):
            section, offset = wasm[offset], offset + 1
            size, offset = _leb(wasm, offset)
            end = offset + size
            if section == 0:
                length, start = _leb(wasm, offset)
                if wasm[start:start + length] == _NAME_SECTION.encode():
                    return _function_subsection(wasm, start + length, end)
            offset = end
    except (IndexError, ValueError):
        pass
    return {}


def _function_subsection(wasm: bytes, offset: int, end: int) -> dict[int, str]:
    while offset < end:
        kind, offset = wasm[offset], offset + 1
        size, offset = _leb(wasm, offset)
        if kind != 1:
            offset += size
            continue
        count, offset = _leb(wasm, offset)
        found: dict[int, str] = {}
        for _ in range(count):
            index, offset = _leb(wasm, offset)
            length, offset = _leb(wasm, offset)
            found[index] = wasm[offset:offset + length].decode("utf-8", "replace")
            offset += length
        return found
    return {}


def to_spans(report: dict[str, Any]) -> dict[str, Any]:
    """Plain span records from a :meth:`Telemetry.report`, for a tracer to replay under the
    job's span: ``spans`` (each ``name``, ``start_ns``, ``end_ns``, ``parent`` (index in
    ``spans`` or None), ``attributes``), ``logs`` and ``metrics`` (each with ``ns`` and
    ``span``, the index of the span open when it was recorded, or None), ``dropped`` and
    ``invalid``. A span left open ends at the run's end."""
    spans: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    stack: list[int] = []
    end = report.get("end_ns", 0)
    for event in report.get("events", []):
        kind, ns = event.get("kind"), event.get("ns", 0)
        current = stack[-1] if stack else None
        if kind == "enter":
            attributes: dict[str, Any] = {}
            if event.get("func") is not None:
                attributes["wasm.function.index"] = event["func"]
            spans.append({"name": event["name"], "start_ns": ns, "end_ns": None, "parent": current,
                          "attributes": attributes})
            stack.append(len(spans) - 1)
        elif kind == "exit" and stack:
            spans[stack.pop()]["end_ns"] = ns
        elif kind == "tags" and current is not None:
            for tag in event["tags"]:
                key, _, value = tag.partition(":")
                spans[current]["attributes"][key] = value
        elif kind == "log":
            logs.append({"ns": ns, "level": event["level"], "message": event["message"], "span": current})
        elif kind == "metric":
            metrics.append({"ns": ns, "format": event["format"], "value": event["value"], "span": current})
        elif kind == "memory-grow" and current is not None:
            attributes = spans[current]["attributes"]
            grown = attributes.get("wasm.memory.grow_pages")  # a guest's tag may have set it to text
            attributes["wasm.memory.grow_pages"] = (grown if isinstance(grown, int) else 0) + event["pages"]
    for index in stack:
        spans[index]["end_ns"] = end
    return {"spans": spans, "logs": logs, "metrics": metrics, "dropped": report.get("dropped", 0),
            "invalid": report.get("invalid", 0)}


LOG_LEVELS = {1: "error", 2: "warn", 3: "info", 4: "debug", 5: "trace"}


def replay(records: dict[str, Any], tracer: Any, parent: Any, context_of: Callable[[Any], Any]) -> list[Any]:
    """Start and end the spans of :func:`to_spans` ``records`` on ``tracer`` under ``parent``
    (the node's job span); logs and metrics become span events of the span they were recorded
    in (``parent`` when none). Duck-typed on OpenTelemetry's API: ``tracer.start_span(name,
    context=..., start_time=..., attributes=...)``, ``span.add_event(name, attributes,
    timestamp)``, ``span.end(end_time=...)``; ``context_of(span)`` is the context with that
    span current (``opentelemetry.trace.set_span_in_context``). Returns the spans started."""
    started: list[Any] = []
    for record in records["spans"]:
        above = parent if record["parent"] is None else started[record["parent"]]
        started.append(tracer.start_span(record["name"], context=context_of(above), start_time=record["start_ns"],
                                         attributes=dict(record["attributes"])))
    for log in records["logs"]:
        where = parent if log["span"] is None else started[log["span"]]
        where.add_event("log", {"level": LOG_LEVELS.get(log["level"], str(log["level"])),
                                "message": log["message"]}, log["ns"])
    for metric in records["metrics"]:
        where = parent if metric["span"] is None else started[metric["span"]]
        where.add_event("metric", {"format": "statsd" if metric["format"] == 1 else str(metric["format"]),
                                   "value": metric["value"]}, metric["ns"])
    for span, record in zip(started, records["spans"]):
        span.end(end_time=record["end_ns"])
    if records["dropped"] or records["invalid"]:
        parent.set_attribute("cod.guest_telemetry.dropped", records["dropped"])
        parent.set_attribute("cod.guest_telemetry.invalid", records["invalid"])
    return started
