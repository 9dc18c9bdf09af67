"""Serving an aiohttp application: listening, the JSON-answering runner, and shutdown on a signal."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ..text import printable
from .answers import http_error_body
from .connections import ConnectionLimits, GuardedHandler, GuardedServerMixin, GuardedSite

MAX_PORT = 65535
UNPARSABLE = "the request could not be parsed as HTTP"

ErrorBody = Callable[[int, str], dict[str, Any]]


class _JsonErrorsServer(GuardedServerMixin, web.Server):
    """aiohttp's server with the connection cap of cod.web.connections; its state is set by
    JsonErrorsRunner."""

    def __call__(self) -> RequestHandler:
        return _JsonErrorsHandler(self, loop=self._loop, **self._kwargs)


class _JsonErrorsHandler(GuardedHandler):
    """aiohttp's connection handler, answering what its HTTP parser refuses (an unknown method,
    a malformed request line or header) with a JSON error body instead of text, and timing out
    slow clients (cod.web.connections)."""

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if isinstance(exc, ConnectionResetError):  # the client left (or was timed out) mid-body: no bug
            self.logger.debug("client gone during a request from %s: %s", request.remote, exc)
            if request.writer.output_size > 0:
                raise ConnectionError("the client is gone")
        else:
            super().handle_error(request, status, exc, message)  # logs; raises if a response was begun
        server = self._manager
        body = server.error_body if isinstance(server, _JsonErrorsServer) else http_error_body
        response = web.json_response(body(status, UNPARSABLE), status=status)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """What the parser refused is the client's fault: one warning line with no traceback (anyone
        could fill the log with them) and nothing raw of the request line; anything else as aiohttp logs it."""
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            first = str(exc.message).strip().splitlines()[0] if str(exc.message).strip() else type(exc).__name__
            self.logger.warning("refused an unparsable request from %s: %s", args[1] if len(args) > 1 else "?",
                                printable(first, 200))
            return
        super().log_exception(*args, **kw)


class JsonErrorsRunner(web.AppRunner):
    """An AppRunner whose server answers unparsable HTTP with ``error_body(status, message)`` and
    guards its connections with ``limits`` (cod.web.connections)."""

    def __init__(self, application: web.Application, error_body: ErrorBody = http_error_body,
                 limits: ConnectionLimits = ConnectionLimits(), **kwargs: Any) -> None:
        super().__init__(application, keepalive_timeout=limits.keepalive_timeout, **kwargs)
        self._error_body = error_body
        self._limits = limits

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorsServer  # same state, a few methods more
        assert isinstance(server, _JsonErrorsServer)
        server.error_body = self._error_body
        server.limits, server.cap, server._open, server._pending = self._limits, self._limits.cap(), {}, 0
        return server


@dataclass
class Listening:
    """A served application: its runner (``cleanup()`` stops it) and its base URL."""

    runner: web.AppRunner
    url: str


async def listen(application: web.Application, host: str, port: int,
                 error_body: ErrorBody = http_error_body, limits: ConnectionLimits | None = None) -> Listening:
    """Serve ``application`` on ``host:port`` (0: any free port), its connections guarded by
    ``limits`` (default: cod.web.connections' constants, with what ``COD_HTTP_*`` set).

    Raises OSError when the address cannot be bound, ConfigError for a ``COD_HTTP_*`` variable
    that is not a number; nothing is left running then.
    """
    runner = JsonErrorsRunner(application, error_body, limits or ConnectionLimits.from_env(), access_log=None)
    await runner.setup()
    site = GuardedSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    return Listening(runner, f"http://{host}:{site.port}")


async def until_interrupted() -> None:
    """Wait for SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
