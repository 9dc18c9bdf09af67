"""The HTTP plumbing every cod server shares (cod.web): a tiny application served on loopback.

Each answer is read from a real socket: aiohttp's own refusals, a CodError, a bug and a request
line aiohttp cannot parse all come back as JSON ``{"error", "message", "hint"}`` bodies; the
expected bodies are written out here by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cod.errors import CodError, ConfigError, SpecError
from cod.web import answers
from cod.web.body import check_strings, parse_json
from cod.web.connections import ConnectionLimits
from cod.web.server import Listening, listen

from ..helpers import ROOT, cod_env

HINTS = {404: "see the routes", 405: "see the methods"}
RELEASE = web.AppKey("release", asyncio.Event)
BIG_BYTES = 64 << 20
"""The body of /big: more than loopback's socket buffers hold (a few MiB each way)."""


def _answer(exc: CodError) -> web.Response:
    return web.json_response({"error": type(exc).__name__, "message": exc.message, "hint": exc.hint or "-"},
                             status=418)


def _app() -> web.Application:
    errors = answers.json_errors(_answer, log=logging.getLogger("test.web"), service="test server", hints=HINTS,
                                 after_bug="it is still up")
    application = web.Application(middlewares=[errors], client_max_size=64)
    application[RELEASE] = asyncio.Event()
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

    @routes.get("/slow")
    async def slow(request: web.Request) -> web.Response:
        await request.app[RELEASE].wait()
        return web.json_response({"slow": True})

    @routes.get("/big")
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=bytes(BIG_BYTES), content_type="application/octet-stream")

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


# -- slow clients (Stage 9 point 10) ---------------------------------------------------------
PATIENCE_S = 30.0
"""How long a test waits for something that must happen: a bound against hanging, not a speed."""
SHORT = ConnectionLimits(header_timeout=0.5, body_timeout=0.5, body_min_rate=1000, keepalive_timeout=30,
                         max_connections=8)


async def _open(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _drip(url: str, head: bytes, drops: list[bytes], every: float) -> tuple[int, bytes]:
    """Send ``head``, then one of ``drops`` every ``every`` seconds until the server answers or
    closes; how many drops were sent, and what the server sent back."""
    reader, writer = await _open(url)
    writer.write(head)
    answer = asyncio.ensure_future(reader.read())
    sent = 0
    try:
        for drop in drops:
            done, _ = await asyncio.wait([answer], timeout=every)
            if done:
                break
            writer.write(drop)
            sent += 1
        try:
            return sent, await asyncio.wait_for(answer, PATIENCE_S)
        except ConnectionResetError:
            return sent, b""
    finally:
        answer.cancel()
        writer.close()


async def test_headers_dripped_a_byte_at_a_time_are_timed_out_with_a_json_408() -> None:
    """A client sending a header line every 0.1 s held its connection for ever (400 of them were
    still held after 20 s). Headers must be complete within the header timeout (0.5 s here):
    the answer is 408 RequestTimeout in JSON, and the connection is closed."""
    served = await listen(_app(), "127.0.0.1", 0, limits=SHORT)
    try:
        drops = [b"X-Drip-%d: x\r\n" % i for i in range(300)]  # 30 s of headers at this pace
        sent, raw = await _drip(served.url, b"GET /ok HTTP/1.1\r\nHost: x\r\n", drops, 0.1)
        head, _, payload = raw.partition(b"\r\n\r\n")
        assert sent < len(drops) and head.split(b" ")[1:2] == [b"408"], (sent, raw[:200])
        body = json.loads(payload)
        assert body["error"] == "RequestTimeout" and body["message"] and body["hint"], body
        assert (await _get(f"{served.url}/ok"))[0] == 200  # a prompt client is served
    finally:
        await served.runner.cleanup()


async def test_a_body_dripped_below_the_minimum_rate_is_cut_off() -> None:
    """Headers complete, then a 60-byte body at 5 bytes per second: the body timeout (0.5 s, and
    one second more per 1000 bytes) closes the connection long before the body is in."""
    served = await listen(_app(), "127.0.0.1", 0, limits=SHORT)
    try:
        head = b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n"
        sent, raw = await _drip(served.url, head, [b" "] * 60, 0.2)
        assert sent < 60 and raw == b"", (sent, raw[:200])
        status, _, body = await _get(f"{served.url}/body", "POST", b"[" + b" " * 58 + b"]")
        assert (status, body) == (200, {"got": []})  # a body sent at once is read whole
    finally:
        await served.runner.cleanup()


async def test_past_the_connection_cap_the_oldest_waiting_connections_are_closed() -> None:
    """20 connections that send nothing, with a cap of 8 and a header timeout of 10 minutes:
    only the cap can free them. Each new connection closes the oldest one waiting for a
    request, so a real request is answered at once and at most 8 connections stay open."""
    limits = ConnectionLimits(header_timeout=600, max_connections=8)
    served = await listen(_app(), "127.0.0.1", 0, limits=limits)
    idle = [await _open(served.url) for _ in range(20)]
    try:
        status, _, body = await asyncio.wait_for(_get(f"{served.url}/ok"), PATIENCE_S)
        assert (status, body) == (200, {"ok": True})

        async def closed(reader: asyncio.StreamReader) -> bool:
            try:
                return await asyncio.wait_for(reader.read(), 2) == b""
            except ConnectionResetError:
                return True
            except asyncio.TimeoutError:
                return False

        ended = await asyncio.gather(*(closed(reader) for reader, _ in idle))
        assert sum(ended) >= 20 + 1 - 8, ended
        assert ended[:13] == [True] * 13, ended  # the oldest first
    finally:
        for _, writer in idle:
            writer.close()
        await served.runner.cleanup()


async def test_past_the_cap_with_every_connection_busy_a_new_one_is_refused_503() -> None:
    """8 connections each with a request in hand are never closed for a 9th: it is answered 503
    TooManyConnections in JSON, and the 8 are answered once their handler returns."""
    served = await listen(_app(), "127.0.0.1", 0, limits=ConnectionLimits(max_connections=8))
    app = served.runner.app
    busy = [asyncio.ensure_future(_get(f"{served.url}/slow")) for _ in range(8)]
    try:
        server: Any = served.runner.server
        for _ in range(int(PATIENCE_S / 0.01)):  # until the 8 requests are in hand
            if server.requests_count >= 8:
                break
            await asyncio.sleep(0.01)
        reader, writer = await _open(served.url)
        raw = await asyncio.wait_for(reader.read(), PATIENCE_S)
        writer.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        assert head.split(b" ")[1:2] == [b"503"], raw[:200]
        assert json.loads(payload)["error"] == "TooManyConnections"
        app[RELEASE].set()
        answers = await asyncio.wait_for(asyncio.gather(*busy), PATIENCE_S)
        assert [(status, body) for status, _, body in answers] == [(200, {"slow": True})] * 8
    finally:
        app[RELEASE].set()
        await served.runner.cleanup()


async def test_a_client_that_stops_reading_an_answer_is_cut_off() -> None:
    """A client that asks for a large answer and never reads it held its connection (and the
    handler) for ever: the send buffer full, the server waits to write. Past the send timeout
    (0.5 s here) with writing paused, the server closes the connection: the client gets less
    than the answer."""
    served = await listen(_app(), "127.0.0.1", 0, limits=replace(SHORT, send_timeout=0.5))
    try:
        host, port = served.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        server: Any = served.runner.server
        for _ in range(int(PATIENCE_S / 0.05)):  # until the server has the request, then lets the connection go
            if server.requests_count and not server._open:
                break
            await asyncio.sleep(0.05)
        assert not server._open, "the server still holds a connection that reads nothing"
        got = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := await asyncio.wait_for(reader.read(1 << 20), PATIENCE_S):
                got += len(chunk)
        assert got < BIG_BYTES, got
        writer.close()
        assert (await _get(f"{served.url}/ok"))[0] == 200
    finally:
        await served.runner.cleanup()


async def test_past_the_cap_a_body_dripped_below_the_minimum_rate_makes_room() -> None:
    """8 connections dripping a body (2 bytes a second; the minimum is 1000) fill a cap of 8
    for as long as the body timeout allows (10 minutes here), and a client reopening them held
    the server for ever: every new connection was answered 503. Past the cap, the slowest body
    that is more than a second old and below the minimum rate is closed instead: a real
    request is answered, and the dripper closed for it is one of the slowest (those that sent
    one byte, not four)."""
    limits = ConnectionLimits(header_timeout=600, body_timeout=600, body_min_rate=1000, max_connections=8)
    served = await listen(_app(), "127.0.0.1", 0, limits=limits)
    head = b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 600\r\n\r\n["
    drips = [await _open(served.url) for _ in range(8)]
    try:
        for _, writer in drips:
            writer.write(head)
        server: Any = served.runner.server
        for _ in range(int(PATIENCE_S / 0.05)):  # until the 8 bodies are in hand
            if server.requests_count >= 8:
                break
            await asyncio.sleep(0.05)
        for _ in range(6):  # 1.5 s of dripping, 2 bytes a second
            await asyncio.sleep(0.25)
            for _, writer in drips[::2]:
                writer.write(b" ")
        answers = [await asyncio.wait_for(_get(f"{served.url}/ok"), PATIENCE_S) for _ in range(3)]
        assert [(status, body) for status, _, body in answers] == [(200, {"ok": True})] * 3

        async def closed(reader: asyncio.StreamReader) -> bool:
            try:
                return await asyncio.wait_for(reader.read(), 1) == b""
            except ConnectionResetError:
                return True
            except asyncio.TimeoutError:
                return False

        ended = await asyncio.gather(*(closed(reader) for reader, _ in drips))
        assert 1 <= sum(ended) <= 3 and not any(ended[::2]), ended
    finally:
        for _, writer in drips:
            writer.close()
        await served.runner.cleanup()


def test_connection_limits_from_the_environment_are_ascii_numbers() -> None:
    limits = ConnectionLimits.from_env({"COD_HTTP_HEADER_TIMEOUT": "2.5", "COD_HTTP_MAX_CONNECTIONS": "100"})
    assert (limits.header_timeout, limits.max_connections, limits.body_timeout) == (2.5, 100, 20.0)
    for name, text in (("COD_HTTP_HEADER_TIMEOUT", "\u0661\u0662"), ("COD_HTTP_BODY_TIMEOUT", "NaN"),
                       ("COD_HTTP_KEEPALIVE_TIMEOUT", "0"), ("COD_HTTP_MAX_CONNECTIONS", "1.5"),
                       ("COD_HTTP_HEADER_TIMEOUT", "-1"), ("COD_HTTP_SEND_TIMEOUT", "1e3")):
        with pytest.raises(ConfigError, match=name):
            ConnectionLimits.from_env({name: text})


FD_LIMIT = 256
"""RLIMIT_NOFILE of the server processes below (both soft and hard)."""
SLOW_CLIENTS = 300
"""More sockets than the server has descriptors."""
DRIP_TIMEOUT_S = 2
"""COD_HTTP_HEADER_TIMEOUT and COD_HTTP_BODY_TIMEOUT of the server processes below."""
PROMPT_S = 5.0
"""An answer to /v1/info must come within this: without the guard it never came (every
descriptor was held by a client that would never finish)."""
BODY_BYTES = 1000
"""The Content-Length a body-dripping client announces (it sends 10 of them)."""


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def _serve(tmp_path: Path, kind: str) -> tuple[subprocess.Popen[str], str, str, str]:
    """``cod serve``, ``cod ledger serve`` or ``cod ledger witness`` with at most FD_LIMIT file
    descriptors and header and body timeouts of DRIP_TIMEOUT_S; the process, its URL, the path
    that tells what it is, and a path that reads a POST body."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from cod.identity import Identity
    from cod.ledger.note import vkey_of

    env = cod_env(tmp_path, COD_HTTP_HEADER_TIMEOUT=str(DRIP_TIMEOUT_S), COD_HTTP_BODY_TIMEOUT=str(DRIP_TIMEOUT_S))
    if kind == "node":
        args, info, post = ["serve", "--data-dir", str(tmp_path / "node"), "--port", "0", "--concurrency", "1"], \
            "/v1/info", "/v1/jobs"
    elif kind == "ledger":
        root = Identity.create_key_file(tmp_path / "root.key")
        subprocess.run([sys.executable, "-m", "cod", "ledger", "init", "--data-dir", str(tmp_path / "ledger"),
                        "--root-key", root.node_id, "--threshold", "1"], cwd=ROOT, env=env, check=True,
                       capture_output=True, timeout=120)
        args, info, post = ["ledger", "serve", "--data-dir", str(tmp_path / "ledger"), "--port", "0"], \
            "/v1/info", "/v1/blessings"
    else:
        log_vkey = vkey_of("log.test", Ed25519PrivateKey.generate().public_key().public_bytes_raw())
        args, info, post = ["ledger", "witness", "--data-dir", str(tmp_path / "w"), "--log", log_vkey, "--port",
                            "0"], "/", "/add-checkpoint"
    process = subprocess.Popen([sys.executable, "-m", "cod", *args], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=open(tmp_path / "stderr", "w"),
                               preexec_fn=_low_fd_limit)
    assert process.stdout is not None
    for line in process.stdout:  # the witness prints its vkey first
        if " serving on " in line:
            return process, line.split(" serving on ")[1].strip(), info, post
    process.wait(timeout=30)
    raise AssertionError((tmp_path / "stderr").read_text())


async def _answer_status(url: str) -> int:
    """The status of GET ``url``, over a new connection; AssertionError past PROMPT_S."""
    def get() -> int:
        try:
            with urllib.request.urlopen(url, timeout=PROMPT_S) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:  # 503 while every connection has a request in hand
            return int(exc.code)
        except (TimeoutError, urllib.error.URLError) as exc:
            raise AssertionError(f"{url} did not answer within {PROMPT_S} s: {exc}") from None
    return await asyncio.to_thread(get)


@pytest.mark.parametrize("kind", ["node", "ledger", "witness"])
async def test_300_slow_clients_do_not_starve_a_server_with_256_descriptors(tmp_path: Path, kind: str) -> None:
    """With RLIMIT_NOFILE 256, 300 sockets sending half a request made ``/v1/info`` time out:
    every descriptor was held by a client that would never finish, and the dripping connections
    were held for ever. Half of these clients drip their headers, half a body after whole
    headers. Now the cap (below the descriptor limit) closes the oldest connection waiting for
    a request for each new one, a full server answers 503 at once, and the header and body
    timeouts (2 s here) close the rest: /v1/info always answers within PROMPT_S, 200 once the
    timeouts have run, and every dripping connection is closed by the server."""
    process, url, info, post = _serve(tmp_path, kind)
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        async def slow_client(number: int) -> None:
            try:
                reader, writer = await asyncio.wait_for(_open(url), 10)
            except (OSError, asyncio.TimeoutError):
                return  # the listen backlog was full: that one never got in
            if number % 2:
                writer.write(f"GET {info} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode())
            else:
                writer.write(f"POST {post} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {BODY_BYTES}\r\n\r\n{{\"a\": \"".encode())
            held.append((reader, writer))

        await asyncio.gather(*(slow_client(number) for number in range(SLOW_CLIENTS)))
        assert len(held) > FD_LIMIT, len(held)
        statuses = [await _answer_status(url + info)]
        for _ in range(int((2 * DRIP_TIMEOUT_S + PATIENCE_S) / 0.2)):  # 503 until the body timeout has run
            if statuses[-1] == 200:
                break
            await asyncio.sleep(0.2)
            statuses.append(await _answer_status(url + info))
        assert statuses[-1] == 200 and set(statuses) <= {200, 503}, statuses

        async def closed(reader: asyncio.StreamReader) -> bool:
            try:
                answer = await asyncio.wait_for(reader.read(), DRIP_TIMEOUT_S + PATIENCE_S)
            except (ConnectionResetError, BrokenPipeError):
                return True
            except asyncio.TimeoutError:
                return False
            return answer == b"" or answer.startswith((b"HTTP/1.1 408 ", b"HTTP/1.1 503 "))

        ended = await asyncio.gather(*(closed(reader) for reader, _ in held))
        assert all(ended), f"{ended.count(False)} of {len(held)} dripping connections are still open"
        assert process.poll() is None
        assert "Traceback" not in (tmp_path / "stderr").read_text()
    finally:
        for _, writer in held:
            writer.close()
        process.terminate()
        process.wait(timeout=30)
