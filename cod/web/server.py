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

MAX_PORT = 65535
UNPARSABLE = "the request could not be parsed as HTTP"

ErrorBody = Callable[[int, str], dict[str, Any]]


class _JsonErrorsServer(web.Server):
    error_body: ErrorBody  # set by JsonErrorsRunner

    def __call__(self) -> RequestHandler:
        return _JsonErrorsHandler(self, loop=self._loop, **self._kwargs)


class _JsonErrorsHandler(RequestHandler):
    """aiohttp's connection handler, answering what its HTTP parser refuses (an unknown method,
    a malformed request line or header) with a JSON error body instead of text."""

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
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
    """An AppRunner whose server answers unparsable HTTP with ``error_body(status, message)``."""

    def __init__(self, application: web.Application, error_body: ErrorBody = http_error_body,
                 **kwargs: Any) -> None:
        super().__init__(application, **kwargs)
        self._error_body = error_body

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorsServer  # same state, one method more
        assert isinstance(server, _JsonErrorsServer)
        server.error_body = self._error_body
        return server


@dataclass
class Listening:
    """A served application: its runner (``cleanup()`` stops it) and its base URL."""

    runner: web.AppRunner
    url: str


async def listen(application: web.Application, host: str, port: int,
                 error_body: ErrorBody = http_error_body) -> Listening:
    """Serve ``application`` on ``host:port`` (0: any free port).

    Raises OSError when the address cannot be bound; nothing is left running then.
    """
    runner = JsonErrorsRunner(application, error_body, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    sockets = getattr(site._server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return Listening(runner, f"http://{host}:{bound}")


async def until_interrupted() -> None:
    """Wait for SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
