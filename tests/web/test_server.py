"""The HTTP plumbing every cod server shares (cod.web): a tiny application served on loopback.

Each answer is read from a real socket: aiohttp's own refusals, a CodError, a bug and a request
line aiohttp cannot parse all come back as JSON ``{"error", "message", "hint"}`` bodies; the
expected bodies are written out here by hand.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from cod.errors import CodError, SpecError
from cod.web import answers
from cod.web.body import check_strings, parse_json
from cod.web.server import Listening, listen

HINTS = {404: "see the routes", 405: "see the methods"}


def _answer(exc: CodError) -> web.Response:
    return web.json_response({"error": type(exc).__name__, "message": exc.message, "hint": exc.hint or "-"},
                             status=418)


def _app() -> web.Application:
    errors = answers.json_errors(_answer, log=logging.getLogger("test.web"), service="test server", hints=HINTS,
                                 after_bug="it is still up")
    application = web.Application(middlewares=[errors], client_max_size=64)
    routes = web.RouteTableDef()

    @routes.get("/ok")
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    @routes.get("/refused")
    async def refused(request: web.Request) -> web.Response:
        raise CodError("no such thing", "ask for another")

    @routes.get("/bug")
    async def bug(request: web.Request) -> web.Response:
        raise ZeroDivisionError("a bug")

    @routes.get(r"/bug/{rest:[\s\S]*}")
    async def bug_saying(request: web.Request) -> web.Response:
        raise ValueError(f"a bug about {request.match_info['rest']}")

    @routes.post("/body")
    async def body(request: web.Request) -> web.Response:
        value = parse_json(await request.read())
        check_strings(value)
        return web.json_response({"got": value})

    application.add_routes(routes)
    return application


@pytest.fixture()
async def served() -> AsyncIterator[Listening]:
    running = await listen(_app(), "127.0.0.1", 0)
    yield running
    await running.runner.cleanup()


async def _get(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, dict[str, str], object]:
    async with aiohttp.ClientSession() as http, http.request(method, url, data=data) as resp:
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


async def test_every_refusal_is_a_json_body(served: Listening) -> None:
    status, _, body = await _get(f"{served.url}/ok")
    assert (status, body) == (200, {"ok": True})
    status, _, body = await _get(f"{served.url}/nowhere")
    assert (status, body) == (404, {"error": "NotFound", "message": "Not Found", "hint": "see the routes"})
    status, headers, body = await _get(f"{served.url}/ok", "DELETE")
    assert (status, body) == (405, {"error": "MethodNotAllowed", "message": "Method Not Allowed",
                                    "hint": "see the methods"})
    assert headers["Allow"] == "GET,HEAD"  # kept from aiohttp's own answer
    status, _, body = await _get(f"{served.url}/refused")
    assert (status, body) == (418, {"error": "CodError", "message": "no such thing", "hint": "ask for another"})
    status, _, body = await _get(f"{served.url}/body", "POST", b"x" * 65)
    assert status == 413 and body == {"error": "TooLarge", "message": "Request Entity Too Large",
                                      "hint": answers.DEFAULT_HINT}


async def test_a_bug_is_a_logged_json_500_and_the_server_stays_up(served: Listening,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    status, _, body = await _get(f"{served.url}/bug")
    assert (status, body) == (500, {"error": "InternalError", "message": "the test server failed to answer this request",
                                    "hint": "it is still up"})
    assert "ZeroDivisionError" in caplog.text
    assert (await _get(f"{served.url}/ok"))[0] == 200


async def test_a_bug_logs_the_request_path_with_no_control_bytes(served: Listening,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A path with %1b (ESC) and %07 (BEL) is decoded by aiohttp; logged raw it cleared the
    operator's terminal and set its title. The log shows "?" for each, as job logs do."""
    status, _, body = await _get(f"{served.url}/bug/%1b[2J%1b]0;owned%07%0d%0aforged")
    assert status == 500
    (record,) = [r for r in caplog.records if r.name == "test.web"]
    logged = logging.Formatter().format(record)
    assert not any(ch in logged for ch in "\x1b\x07\r"), repr(logged)
    assert "/bug/?[2J?]0;owned???forged" in logged  # the request line, on one line
    assert "ValueError: a bug about ?[2J?]0;owned???forged" in logged  # and the traceback's text


async def test_strict_bodies_are_refused_by_the_shared_parser(served: Listening) -> None:
    for raw in (b'{"a": 1, "a": 2}', b'{"a": 1.5}', b'"\\ud800"', b"\xff", b'{"a": NaN}', b'[Infinity]',
                b'{"a": -Infinity}'):
        status, _, body = await _get(f"{served.url}/body", "POST", raw)
        assert status == 418 and body["error"] == "SpecError", (raw, body)  # type: ignore[index]
    with pytest.raises(SpecError):
        check_strings({"k": ["\ud800"]})


async def test_a_request_aiohttp_cannot_parse_is_answered_in_json(served: Listening) -> None:
    host, port = served.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /ok HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n")
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400"
    assert json.loads(payload) == {"error": "BadRequest", "message": "the request could not be parsed as HTTP",
                                   "hint": answers.DEFAULT_HINT}


async def test_an_unparsable_request_logs_one_line_and_no_traceback(served: Listening,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A second round of Stage 9 point 9: raw control bytes in the request line (``GET /ESC[31m``, an
    OSC title sequence, a 100 kB query) are refused by aiohttp's parser, which logged a 10-line
    traceback per request (anyone could fill the operator's log with them). One line now, no
    traceback, nothing raw."""
    host, port = served.url.removeprefix("http://").split(":")
    lines = (b"GET /\x1b[31mred HTTP/1.1", b"GET /ok\x1b]0;owned\x07 HTTP/1.1",
             b"GET /ok?" + b"a" * 100_000 + b" HTTP/1.1")
    for line in lines:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(line + b"\r\nHost: x\r\n\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert raw.split(b" ")[1] == b"400", raw[:100]
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(logged) == 3, [r.getMessage() for r in logged]
    for record in logged:
        text = logging.Formatter().format(record)
        assert record.exc_info is None and "Traceback" not in text and "\n" not in text, text
        assert not any(ch in text for ch in "\x1b\x07\r"), repr(text)


async def test_an_address_in_use_is_an_os_error_and_nothing_is_left_listening() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(OSError):
            await listen(_app(), "127.0.0.1", port)
    finally:
        taken.close()
    again = await listen(_app(), "127.0.0.1", port)  # the failed attempt holds nothing
    await again.runner.cleanup()
