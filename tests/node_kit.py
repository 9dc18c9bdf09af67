"""Shared parts of the node tests: fixtures' helpers, hand-built CARs and a WAT `cat`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import wasmtime

from cod.content import dagpb
from cod.content.car import header
from cod.content.cid import CID, DAG_PB, RAW, varint
from cod.content.unixfs import module_cid
from cod.jobspec import Input, JobSpec
from cod.node.server import RunningNode, start_node

CAR_TYPE = "application/vnd.ipld.car"


def cat_wat(name: str) -> str:
    """Opens ``name`` under fd 3 (following links), prints up to 4096 bytes of it, or exits
    100 + errno."""
    return r"""
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "%s")
  (func (export "_start")
    (local $err i32)
    (local.set $err (call $path_open (i32.const 3) (i32.const 1) (i32.const 256) (i32.const %d)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0)))
    (if (local.get $err) (then (call $proc_exit (i32.add (i32.const 100) (local.get $err)))))
    (i32.store (i32.const 32) (i32.const 1024))
    (i32.store (i32.const 36) (i32.const 4096))
    (drop (call $fd_read (i32.load (i32.const 0)) (i32.const 32) (i32.const 1) (i32.const 40)))
    (i32.store (i32.const 36) (i32.load (i32.const 40)))
    (drop (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 44)))))
""" % (name, len(name.encode()))


# The node-key theft of Stage 3, as a real job: node.key under the first preopen (/inputs) to stdout.
CAT_KEY_WAT = cat_wat("node.key")


# busy: loops for ever (until fuel or the timeout ends it); a job that holds a worker.
BUSY_WAT = r"""
(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))
"""


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def block(codec: int, data: bytes) -> tuple[CID, bytes]:
    return CID.of(codec, data), data


def pb(kind: int, links: list[dagpb.Link] | None = None, *, data: bytes = b"", filesize: int | None = None,
       blocksizes: list[int] | None = None) -> tuple[CID, bytes]:
    """A dag-pb UnixFS block, built by hand (no importer), so it may say anything."""
    meta = dagpb.unixfs_data(kind, data=data, filesize=filesize, blocksizes=blocksizes or [])
    return block(DAG_PB, dagpb.encode_node(meta, links or []))


def raw(data: bytes) -> tuple[CID, bytes]:
    return block(RAW, data)


def car(roots: list[CID], blocks: list[tuple[CID, bytes]]) -> bytes:
    """A CARv1 with any roots (cod.content.car.header writes one; more are written here by hand)."""
    if len(roots) == 1:
        head = header(roots[0])
    else:
        body = b"\xa2\x65roots" + bytes((0x80 + len(roots),))
        for root in roots:
            cid_bytes = b"\x00" + root.binary
            body += b"\xd8\x2a" + bytes((0x58, len(cid_bytes))) + cid_bytes
        body += b"\x67version\x01"
        head = varint(len(body)) + body
    out = [head]
    for cid, data in blocks:
        out.append(varint(len(cid.binary) + len(data)) + cid.binary + data)
    return b"".join(out)


async def put(http: aiohttp.ClientSession, url: str, cid: CID | str, data: bytes,
              content_type: str = CAR_TYPE) -> tuple[int, Any]:
    async with http.put(f"{url}/v1/blobs/{cid}", data=data, headers={"Content-Type": content_type}) as resp:
        return resp.status, await resp.json(content_type=None)


async def start_node_in(tmp_path: Path, name: str, **options: Any) -> RunningNode:
    return await start_node(tmp_path / name, concurrency=1, **options)


async def put_module(http: aiohttp.ClientSession, url: str, wasm: bytes) -> str:
    cid = module_cid(wasm)
    async with http.put(f"{url}/v1/blobs/{cid}", data=wasm) as resp:
        assert resp.status in (200, 201), await resp.text()
    return cid


async def submit_spec(http: aiohttp.ClientSession, url: str, spec: JobSpec) -> tuple[int, Any]:
    async with http.post(f"{url}/v1/jobs", json={"spec": spec.to_dict()}) as resp:
        return resp.status, await resp.json(content_type=None)


async def job_state(http: aiohttp.ClientSession, url: str, job: str) -> dict[str, Any]:
    async with http.get(f"{url}/v1/jobs/{job}") as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def until_state(http: aiohttp.ClientSession, url: str, job: str, states: set[str],
                 timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = await job_state(http, url, job)
        if body["state"] in states:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.02)


# Loops: open /inputs/f (fd 3), read up to 64 bytes, close; while the first byte is 'A' it
# loops again; then writes what it read to stdout. A job that reads its dataset late.
WAIT_FOR_CHANGE_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "f")
  (func (export "_start")
    (local $err i32)
    (loop $again
      (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1)
        (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 32)))
      (if (local.get $err) (then (call $proc_exit (i32.add (i32.const 100) (local.get $err)))))
      (i32.store (i32.const 16) (i32.const 64))
      (i32.store (i32.const 20) (i32.const 64))
      (drop (call $fd_read (i32.load (i32.const 32)) (i32.const 16) (i32.const 1) (i32.const 40)))
      (drop (call $fd_close (i32.load (i32.const 32))))
      (br_if $again (i32.eq (i32.load8_u (i32.const 64)) (i32.const 65))))
    (i32.store (i32.const 20) (i32.load (i32.const 40)))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 44)))))
"""


# prints /inputs/f (when its first byte is not 'A'): a job on one single-file input
CAT_F = wat(WAIT_FOR_CHANGE_WAT)


def file_job(module: str, cid: str, tag: str = "") -> JobSpec:
    return JobSpec(module=module, args=("cat", tag) if tag else ("cat",), inputs=(Input(cid=cid, path="/inputs/f"),))


async def health_under_load(url: str, load: Sequence[Awaitable[Any]]) -> float:
    """The worst latency of GET /v1/health, asked from another thread (its own clock, its own
    connections) every 0.1 s while ``load`` runs on this loop."""
    import threading
    import urllib.request

    worst = [0.0]
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            began = time.monotonic()
            with urllib.request.urlopen(f"{url}/v1/health", timeout=30) as resp:
                assert resp.status == 200
            worst[0] = max(worst[0], time.monotonic() - began)
            time.sleep(0.1)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        await asyncio.gather(*load, return_exceptions=True)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)
    return worst[0]


