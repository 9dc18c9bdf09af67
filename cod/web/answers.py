"""JSON error answers: every refusal of a cod server is a body ``{"error", "message", "hint"}``.

A server supplies how its own errors (CodError) are answered; what aiohttp refuses itself (no
route, wrong method, a body over the cap) and what a bug raises are answered here, the same way
for every server: a bug is logged and answered as a JSON 500, and the server stays up.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..errors import CodError
from ..text import printable, printable_lines

DEFAULT_HINT = "see /v1/openapi.json"
HTTP_NAMES = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 408: "RequestTimeout", 413: "TooLarge",
              415: "UnsupportedMediaType", 431: "HeadersTooLarge", 500: "InternalError", 503: "TooManyConnections"}
"""The ``error`` of an HTTP-level refusal, by status."""
STATUS_HINTS = {408: "send each request's headers and body without pauses (see SPEC.md 9.2 for the timeouts)",
                503: "retry in a moment: every connection the server can hold has a request in hand"}
"""The hint of a refusal no server names its own hint for."""
KEPT_HEADERS = ("allow", "retry-after")
"""Headers of aiohttp's own refusals that the JSON answer keeps."""
MAX_LOGGED = 300
"""Characters of a request's method or path that a log line repeats."""


def http_error_body(status: int, message: str, hints: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The JSON body of an HTTP-level refusal (no route, wrong method, unparsable request)."""
    return {"error": HTTP_NAMES.get(status, "HTTPError"), "message": message,
            "hint": (hints or {}).get(status) or STATUS_HINTS.get(status, DEFAULT_HINT)}


def json_errors(answer: Callable[[CodError], web.Response], *, log: logging.Logger, service: str,
                hints: Mapping[int, str] | None = None, after_bug: str) -> Middleware:
    """A middleware answering every error in JSON: a CodError as ``answer`` decides, aiohttp's own
    refusals by :func:`http_error_body` with ``hints``, and anything else as a logged 500 that says
    ``the {service} failed to answer this request`` with the hint ``after_bug``."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except CodError as exc:
            return answer(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k.lower() in KEPT_HEADERS}
            return web.json_response(http_error_body(exc.status, exc.reason, hints), status=exc.status,
                                     headers=headers)
        except ConnectionResetError:  # the client left (or was timed out) mid-body: nobody to answer, no bug
            raise
        except Exception:
            # the path is the requester's text, decoded (%1b is ESC): never raw into the operator's terminal
            log.error("unexpected error answering %s %s\n%s", printable(request.method, MAX_LOGGED),
                      printable(request.path, MAX_LOGGED), _traceback())
            return web.json_response({"error": "InternalError", "message": f"the {service} failed to answer this request",
                                      "hint": after_bug}, status=500)

    return errors


def _traceback() -> str:
    """The exception being handled: its frames (cod's own text) as lines, and what it says (which
    may hold a requester's text) on one line, both with "?" for every control character."""
    kind, exc, frames = sys.exc_info()
    said = "".join(traceback.format_exception_only(kind, exc)).strip()
    frames_text = "Traceback (most recent call last):\n" + "".join(traceback.format_tb(frames))
    return printable_lines(frames_text) + printable(said)
