"""JSON error answers: every refusal of a cod server is a body ``{"error", "message", "hint"}``.

A server supplies how its own errors (CodError) are answered; what aiohttp refuses itself (no
route, wrong method, a body over the cap) and what a bug raises are answered here, the same way
for every server: a bug is logged and answered as a JSON 500, and the server stays up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..errors import CodError

DEFAULT_HINT = "see /v1/openapi.json"
HTTP_NAMES = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 413: "TooLarge",
              415: "UnsupportedMediaType", 431: "HeadersTooLarge", 500: "InternalError"}
"""The ``error`` of an HTTP-level refusal, by status."""
KEPT_HEADERS = ("allow", "retry-after")
"""Headers of aiohttp's own refusals that the JSON answer keeps."""


def http_error_body(status: int, message: str, hints: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The JSON body of an HTTP-level refusal (no route, wrong method, unparsable request)."""
    return {"error": HTTP_NAMES.get(status, "HTTPError"), "message": message,
            "hint": (hints or {}).get(status, DEFAULT_HINT)}


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
        except Exception:
            log.exception("unexpected error answering %s %s", request.method, request.path)
            return web.json_response({"error": "InternalError", "message": f"the {service} failed to answer this request",
                                      "hint": after_bug}, status=500)

    return errors
