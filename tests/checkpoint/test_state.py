"""The state hash of SPEC 11.6, derived by hand with hashlib and struct for a tiny module, and the
snapshot's canonical form: every byte of memory counts, junk is refused."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
import wasmtime

from cod import Engine, JobSpec, module_cid, run
from cod.checkpoint import FINAL, CheckpointError, available, snapshot_hash, trace
from cod.wasm import abi, rights

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

TINY = bytes(wasmtime.wat2wasm("""
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $g (export "g") (mut i32) (i32.const 0))
  (global $h (export "h") (mut i64) (i64.const 5))
  (data (i32.const 16) "hi\\n")
  (func (export "_start")
    (loop $l
      (global.set $g (i32.add (global.get $g) (i32.const 1)))
      (i32.store8 (i32.add (i32.const 100) (global.get $g)) (global.get $g))
      (br_if $l (i32.lt_u (global.get $g) (i32.const 10))))
    (global.set $h (i64.const -2))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 3))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""))


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def blob(data: bytes) -> bytes:
    return u64(len(data)) + data


def text(data: bytes) -> bytes:
    return u32(len(data)) + data


def stream_fd(fd: int, name: bytes, base: int) -> bytes:
    # u32 fd, u8 filetype (unknown), u8 kind 0, str name, no components, rights, inheriting 0,
    # append 0, kept flags 0, position 0, preopen 0, no listing
    return u32(fd) + bytes([abi.FILETYPE_UNKNOWN, 0]) + text(name) + u32(0) + u64(base) + u64(0) + b"\x00" + \
        u32(0) + u64(0) + b"\x00" + b"\x00"


def test_hand_derived_final_state_hash(engine: Engine, tmp_path: Path) -> None:
    spec = JobSpec(module=module_cid(TINY))
    traced = trace(spec, TINY, {}, engine, 10**9, keep={FINAL})
    plain = run(spec, TINY, {}, tmp_path / "plain", engine)
    assert (traced.exit_code, traced.trap, traced.result_cid) == (0, None, plain.result_cid)

    memory = bytearray(65536)  # what the module leaves in its one page
    memory[0:12] = struct.pack("<III", 16, 3, 3)  # the iovec (buf 16, len 3), then nwritten = 3
    memory[16:19] = b"hi\n"
    for n in range(1, 11):
        memory[100 + n] = n
    leaf = hashlib.sha256(b"\x00" + bytes(memory)).digest()  # one page: the root is its leaf
    # g, h; the hook's countdown: 1 at the start, the host saw the first of the 12 hook calls (the
    # entry, 10 loop headers, the end of the body), reset to the stride 1024, 11 calls since; the
    # stride; Asyncify's state and data pointer
    globals_ = [(0x7F, 10), (0x7E, (1 << 64) - 2), (0x7F, 1024 - 11), (0x7F, 1024), (0x7F, 0), (0x7F, 0)]
    fds = (stream_fd(0, b"stdin", rights.STDIN) + stream_fd(1, b"stdout", rights.STDOUT)
           + stream_fd(2, b"stderr", rights.STDOUT)
           + u32(3) + bytes([abi.FILETYPE_DIRECTORY, 1]) + text(b"/outputs") + u32(0)
           + u64(rights.PREOPEN_BASE) + u64(rights.PREOPEN_INHERITING) + b"\x00" + u32(0) + u64(0) + b"\x01" + b"\x00")
    body_tail = (u32(len(globals_)) + b"".join(bytes([t]) + u64(v) for t, v in globals_)
                 + blob(b"")  # no Asyncify data at the end
                 + u64(spec.epoch_ns)  # the clock was never read
                 + u64(0)  # nor the random stream
                 + blob(b"hi\n") + blob(b"")
                 + u64(0) + u64(0)  # nothing written under /outputs
                 + u32(4) + fds
                 + u32(0)  # /outputs is empty
                 + u32(0))  # no node with several names or times set
    expected = hashlib.sha256(b"cod-state-v1" + u64(traced.fuel_used) + u32(1) + leaf + body_tail).hexdigest()
    assert traced.final_hash == expected
    snapshot = b"cod-snapshot-v1" + u64(traced.fuel_used) + u32(1) + bytes(memory) + body_tail
    assert traced.final_snapshot == snapshot
    assert snapshot_hash(snapshot) == expected


def _root(pages: list[bytes]) -> bytes:
    """RFC 6962's MTH, written out as the RFC does (recursive on a list)."""
    if len(pages) == 1:
        return hashlib.sha256(b"\x00" + pages[0]).digest()
    k = 1
    while k * 2 < len(pages):
        k *= 2
    return hashlib.sha256(b"\x01" + _root(pages[:k]) + _root(pages[k:])).digest()


def test_a_single_memory_byte_changes_the_hash(engine: Engine) -> None:
    spec = JobSpec(module=module_cid(TINY))
    snapshot = trace(spec, TINY, {}, engine, 10**9, keep={FINAL}).final_snapshot
    assert snapshot is not None
    at = len(b"cod-snapshot-v1") + 8 + 4 + 40000  # a byte of the page no one wrote
    changed = snapshot[:at] + b"\x01" + snapshot[at + 1:]
    assert snapshot_hash(changed) != snapshot_hash(snapshot)


def test_memory_root_of_several_pages_is_rfc6962() -> None:
    from cod.checkpoint.merkle import memory_root

    for count in (1, 2, 3, 5, 8):
        pages = [bytes([n]) * 65536 for n in range(count)]
        assert memory_root(b"".join(pages)) == _root(pages)
    assert memory_root(b"") == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("damage", ["truncate", "trailing", "magic", "flag"])
def test_malformed_snapshots_are_refused(engine: Engine, damage: str) -> None:
    spec = JobSpec(module=module_cid(TINY))
    snapshot = trace(spec, TINY, {}, engine, 10**9, keep={FINAL}).final_snapshot
    assert snapshot is not None
    if damage == "truncate":
        bad = snapshot[:-1]
    elif damage == "trailing":
        bad = snapshot + b"\x00"
    elif damage == "magic":
        bad = b"cod-snapshot-v2" + snapshot[15:]
    else:  # the preopen flag of fd 3, before its no-listing flag, the empty tree and no nodes: set to 2
        at = len(snapshot) - 4 - 4 - 1 - 1
        assert snapshot[at] == 1
        bad = snapshot[:at] + b"\x02" + snapshot[at + 1:]
    with pytest.raises(CheckpointError, match="snapshot"):
        snapshot_hash(bad)
