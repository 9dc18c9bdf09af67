"""Connections a cod server holds: timeouts for slow clients and a cap on how many are open.

A client that opens a connection and sends its request's headers (or its body) a byte at a
time would hold a file descriptor for ever; a few hundred of them and the server can accept
nothing more (SPEC.md 9.2). So every connection is guarded:

- the headers of a request must be complete within ``header_timeout`` seconds, counted from
  the connection's start (its first request) or from the first byte of a later request;
  otherwise the server answers 408 ``RequestTimeout`` and closes the connection;
- a body must arrive within ``body_timeout`` seconds plus one second per ``body_min_rate``
  bytes received (as Apache's mod_reqtimeout counts); time while the server itself has
  stopped reading (its buffer is full) does not count; otherwise the connection is closed;
- between requests a connection is closed after ``keepalive_timeout`` idle seconds;
- a connection whose send buffer stays full (the client reads nothing of an answer) for
  ``send_timeout`` seconds is closed;
- at most ``max_connections`` are open (and never more than the process's file descriptor
  limit leaves room for, FD_RESERVE and ACCEPT_BATCH kept free): one more evicts the oldest
  connection that is waiting for a request (idle, or still sending its headers), or else
  the slowest body arriving below ``body_min_rate`` (more than BODY_GRACE_S old), and is
  itself refused (503) when every connection has a request in hand that is not such a body.

The limits are named constants below; ``COD_HTTP_HEADER_TIMEOUT``, ``COD_HTTP_BODY_TIMEOUT``,
``COD_HTTP_KEEPALIVE_TIMEOUT``, ``COD_HTTP_SEND_TIMEOUT`` (seconds) and ``COD_HTTP_MAX_CONNECTIONS``
override them for a server process (an operator's setting, and how the tests make them short).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import logging
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from ..errors import ConfigError

HEADER_TIMEOUT_S = 10.0
"""Seconds a request's line and headers may take to arrive."""
BODY_TIMEOUT_S = 20.0
"""Seconds a request's body may take, before the allowance its size earns (BODY_MIN_RATE)."""
BODY_MIN_RATE = 16384
"""Bytes per second a body must average: each this many bytes earn one second more."""
KEEPALIVE_TIMEOUT_S = 30.0
"""Idle seconds after which a kept-alive connection is closed (aiohttp's client keeps 15)."""
SEND_TIMEOUT_S = 60.0
"""Seconds the server's send buffer may stay full (the client reads nothing of an answer)."""
MAX_CONNECTIONS = 1024
"""Connections open at once, at most."""
FD_RESERVE = 64
"""File descriptors kept free, beyond those open when the server starts, for the server's own
files, databases, executors and outgoing connections: the cap is at most RLIMIT_NOFILE minus
those."""
LISTEN_BACKLOG = 128
"""The listening socket's queue (connections the kernel holds until they are accepted)."""
ACCEPT_BATCH = 16
"""Connections accepted per wake-up; each may evict one whose descriptor closes a moment later,
so the cap leaves this many descriptors free as well."""
ACCEPT_RETRY_S = 1.0
"""Seconds accepting pauses after the process ran out of descriptors (as asyncio's own loop)."""
BODY_GRACE_S = 1.0
"""Seconds a body must have been arriving before its rate may make it the one evicted."""
MIN_CONNECTIONS = 8
"""The cap is never below this, whatever the descriptor limit."""

log = logging.getLogger("cod.web")

ENV = {"header_timeout": "COD_HTTP_HEADER_TIMEOUT", "body_timeout": "COD_HTTP_BODY_TIMEOUT",
       "keepalive_timeout": "COD_HTTP_KEEPALIVE_TIMEOUT", "send_timeout": "COD_HTTP_SEND_TIMEOUT",
       "max_connections": "COD_HTTP_MAX_CONNECTIONS"}
_SECONDS = re.compile(r"[0-9]{1,6}(\.[0-9]{1,3})?")
_COUNT = re.compile(r"[0-9]{1,6}")

HEADERS, BODY, IDLE = "headers", "body", "idle"
"""What a connection waits for: a request's headers (timed), its body (timed), or nothing
from the client (a request in hand, or idle between requests: aiohttp's keep-alive)."""
TIMED_OUT = "the request's headers did not arrive in time"
OVER_CAP = "the server holds as many connections as it can"


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = HEADER_TIMEOUT_S
    body_timeout: float = BODY_TIMEOUT_S
    body_min_rate: int = BODY_MIN_RATE
    keepalive_timeout: float = KEEPALIVE_TIMEOUT_S
    send_timeout: float = SEND_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConnectionLimits:
        """The defaults, with what ``COD_HTTP_*`` variables set; ConfigError for a value that is not
        a positive number (ASCII digits, for seconds with at most three decimals)."""
        environ = os.environ if environ is None else environ
        limits = cls()
        for field, name in ENV.items():
            text = environ.get(name)
            if text is None:
                continue
            pattern = _COUNT if field == "max_connections" else _SECONDS
            if not pattern.fullmatch(text) or float(text) <= 0:  # ASCII digits only
                raise ConfigError(f"{name}={text[:40]!r} is not a positive "
                                  f"{'count' if pattern is _COUNT else 'number of seconds'}",
                                  f"set {name} to e.g. {getattr(cls, field)!s}, or unset it")
            value: Any = int(text) if pattern is _COUNT else float(text)
            limits = replace(limits, **{field: value})
        return limits

    def cap(self) -> int:
        """``max_connections``, lowered to what the descriptor limit leaves room for."""
        return max(MIN_CONNECTIONS, min(self.max_connections, _free_descriptors() - FD_RESERVE - ACCEPT_BATCH))


def _free_descriptors() -> int:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS + FD_RESERVE + ACCEPT_BATCH
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:  # no /proc: count as if only stdio were open
        used = 3
    return soft - used


class GuardedServerMixin:
    """The connection cap, for a ``web.Server`` subclass: the connections open, oldest first, and
    those accepted whose handler does not exist yet."""

    limits: ConnectionLimits
    cap: int
    error_body: Callable[[int, str], dict[str, Any]]
    _open: dict[GuardedHandler, None]
    _pending: int

    def make_room(self) -> bool:
        """Room for one connection more: True when under the cap, or once the oldest connection
        waiting for a request is closed, or else the slowest body below the minimum rate (more
        than BODY_GRACE_S old); False when every connection has a request in hand that is not
        such a body."""
        if len(self._open) + self._pending < self.cap:
            return True
        victim = next((handler for handler in self._open if handler.waiting_for_request()), None)
        if victim is None:
            slow = [(rate, handler) for handler in self._open
                    if (rate := handler.body_rate()) is not None and rate < self.limits.body_min_rate]
            victim = min(slow, key=lambda pair: pair[0])[1] if slow else None
        if victim is None:
            return False
        self.release(victim)
        victim.evict()
        return True

    def register(self, handler: GuardedHandler) -> None:
        self._open[handler] = None

    def release(self, handler: GuardedHandler) -> None:
        self._open.pop(handler, None)

    def refusal(self, status: int, message: str) -> bytes:
        """A whole HTTP answer: ``status`` with this server's JSON error body, closing the connection."""
        body = json.dumps(self.error_body(status, message)).encode()
        reason = {408: "Request Timeout", 503: "Service Unavailable"}[status]
        return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class GuardedSite(web.BaseSite):
    """A listening TCP socket whose connections are counted as they are accepted (asyncio's own
    accept loop takes up to its backlog at once, before a protocol sees any): past the cap the
    oldest waiting connection is closed, or the new one is answered 503 and closed at once."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int) -> None:
        super().__init__(runner, backlog=LISTEN_BACKLOG)
        self._host, self._port = host, port
        self._listener: socket.socket | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1]) if self._listener is not None else self._port

    async def start(self) -> None:
        """Bind and listen; OSError when the address cannot be bound."""
        family = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        self._listener = socket.create_server((self._host, self._port), family=family, backlog=self._backlog)
        self._listener.setblocking(False)
        await super().start()
        asyncio.get_running_loop().add_reader(self._listener.fileno(), self._accept)

    async def stop(self) -> None:
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        await super().stop()

    def _guarded(self) -> GuardedServerMixin:
        server = self._runner.server
        assert isinstance(server, GuardedServerMixin)
        return server

    def _accept(self) -> None:
        listener, server, loop = self._listener, self._guarded(), asyncio.get_running_loop()
        assert listener is not None
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("out of file descriptors (%s): not accepting for %s s", exc.strerror, ACCEPT_RETRY_S)
                    server.make_room()
                    loop.remove_reader(listener.fileno())
                    loop.call_later(ACCEPT_RETRY_S, self._resume, listener)
                    return
                continue  # ECONNABORTED and the like: that client is gone
            conn.setblocking(False)
            if not server.make_room():
                try:
                    conn.send(server.refusal(503, OVER_CAP))
                except OSError:
                    pass
                conn.close()
                continue
            server._pending += 1
            task = loop.create_task(loop.connect_accepted_socket(cast(web.Server, server), conn))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._made, conn=conn))

    def _made(self, task: asyncio.Task[Any], conn: socket.socket) -> None:
        self._tasks.discard(task)
        self._guarded()._pending -= 1
        if task.cancelled() or task.exception() is not None:
            conn.close()

    def _resume(self, listener: socket.socket) -> None:
        if self._listener is listener:
            asyncio.get_running_loop().add_reader(listener.fileno(), self._accept)


class GuardedHandler(RequestHandler):
    """aiohttp's connection handler with the header and body timeouts and the cap of this module."""

    _phase = HEADERS
    _since = 0.0
    _body: Any = None
    _body_bytes = 0
    _guard: asyncio.TimerHandle | None = None
    _stall: asyncio.TimerHandle | None = None
    _counted = False

    def _guarded(self) -> GuardedServerMixin | None:
        manager = self._manager
        return manager if isinstance(manager, GuardedServerMixin) else None

    # -- the connection's life ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        server = self._guarded()
        if server is None:
            return
        self._counted = True
        server.register(self)
        self._enter(HEADERS)

    def connection_lost(self, exc: BaseException | None) -> None:
        server = self._guarded()
        if server is not None and self._counted:
            server.release(self)
        self._counted = False
        self._cancel_guard()
        self._cancel_stall()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The send buffer is full: the client must read some of it within ``send_timeout``."""
        super().pause_writing()
        server = self._guarded()
        if server is not None and self._stall is None:
            self._stall = self._loop.call_later(server.limits.send_timeout, self._stalled)

    def resume_writing(self) -> None:
        self._cancel_stall()
        super().resume_writing()

    def _stalled(self) -> None:
        self._stall = None
        self._close_now()  # the handler's pending write then fails as the client's leaving would

    def _cancel_stall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def data_received(self, data: bytes) -> None:
        if self._phase == IDLE and self._waiting():
            self._enter(HEADERS)  # the first byte of the next request
        elif self._phase == BODY:
            self._body_bytes += len(data)
        before = self._request_count
        super().data_received(data)
        if self._request_count > before and self._messages:  # a request's headers are complete
            payload = self._messages[-1][1]
            if payload.is_eof():
                self._enter(IDLE)
            else:
                self._body, self._body_bytes = payload, 0
                self._enter(BODY)
        elif self._phase == BODY and self._body is not None and self._body.is_eof():
            self._enter(IDLE)

    # -- what the cap asks -------------------------------------------------------------
    def waiting_for_request(self) -> bool:
        """True when no request is in hand: idle, or its headers still arriving."""
        return self._phase == HEADERS or (self._phase == IDLE and self._waiting())

    def body_rate(self) -> float | None:
        """Bytes per second of the body arriving, None when no body arrives or it began less than
        BODY_GRACE_S ago (or the server paused its reading since)."""
        if self._phase != BODY:
            return None
        age = self._loop.time() - self._since
        return self._body_bytes / age if age >= BODY_GRACE_S else None

    def evict(self) -> None:
        self._close_now()

    # -- the guard -------------------------------------------------------------------------
    def _waiting(self) -> bool:
        """aiohttp's loop waits for the next request (no handler runs)."""
        return self._waiter is not None and not self._waiter.done()

    def _enter(self, phase: str) -> None:
        self._phase, self._since = phase, self._loop.time()
        self._cancel_guard()
        if phase != IDLE:
            self._guard = self._loop.call_at(self._deadline(), self._check)
        else:
            self._body = None

    def _deadline(self) -> float:
        server = self._guarded()
        limits = server.limits if server is not None else ConnectionLimits()
        if self._phase == HEADERS:
            return self._since + limits.header_timeout
        return self._since + limits.body_timeout + self._body_bytes / limits.body_min_rate

    def _check(self) -> None:
        self._guard = None
        if self._phase == IDLE or self.transport is None:
            return
        now = self._loop.time()
        if self._phase == BODY and (self._reading_paused or self._buffer_paused):
            self._since, self._body_bytes = now, 0  # the server stopped reading: not the client's time
        deadline = self._deadline()
        if now < deadline:
            self._guard = self._loop.call_at(deadline, self._check)
            return
        server = self._guarded()
        if self._phase == HEADERS and self._waiting() and server is not None:
            self._refuse(server, 408, TIMED_OUT)
        else:
            self._close_now()

    def _cancel_guard(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _refuse(self, server: GuardedServerMixin, status: int, message: str) -> None:
        """Answer ``status`` with the server's JSON error body and close, before any request was read."""
        transport = self.transport
        if transport is None:
            return
        self._cancel_guard()
        transport.write(server.refusal(status, message))
        if transport.get_write_buffer_size():  # a client that reads nothing: do not wait on it
            transport.abort()
        self.force_close()  # closes the transport once what was written is sent

    def _close_now(self) -> None:
        self._cancel_guard()
        if self.transport is not None:
            self.transport.abort()  # nothing buffered is worth waiting for a stalled client
        self.force_close()


__all__ = ["BODY_MIN_RATE", "BODY_TIMEOUT_S", "ENV", "FD_RESERVE", "HEADER_TIMEOUT_S", "KEEPALIVE_TIMEOUT_S",
           "LISTEN_BACKLOG", "MAX_CONNECTIONS", "SEND_TIMEOUT_S", "ConnectionLimits", "GuardedHandler",
           "GuardedServerMixin", "GuardedSite"]
