"""The WASI state a checkpoint carries that the vectors do not all reach: hard links (the virtual
inode number and link count) and times the job set, restored so that the run goes on the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from cod import Engine, JobSpec, module_cid, run
from cod.checkpoint import FINAL, available, resume, trace
from cod.checkpoint.state import decode

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

W = "wasi_snapshot_preview1"
LINKS_AND_TIMES = bytes(wasmtime.wat2wasm(f"""
(module
  (import "{W}" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "{W}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "{W}" "path_link" (func $link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "{W}" "path_filestat_set_times" (func $times (param i32 i32 i32 i32 i64 i64 i32) (result i32)))
  (import "{W}" "path_filestat_get" (func $stat (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  (data (i32.const 0) "\\10\\00\\00\\00\\02\\00\\00\\00")  ;; iovec: "ab" at 16
  (data (i32.const 16) "ab")
  (data (i32.const 32) "\\c8\\00\\00\\00\\40\\00\\00\\00")  ;; iovec: the 64-byte filestat at 200
  (data (i32.const 100) "fg")
  (func $spin (loop $l (global.set $n (i32.add (global.get $n) (i32.const 1)))
                       (br_if $l (i32.lt_u (global.get $n) (i32.const 5)))))
  (func (export "_start")
    ;; /outputs/f, created, written "ab" through fd 4
    (drop (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 1)
                      (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 8)))
    (drop (call $write (i32.load (i32.const 8)) (i32.const 0) (i32.const 1) (i32.const 12)))
    (drop (call $link (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 1)
                      (i32.const 3) (i32.const 101) (i32.const 1)))
    (drop (call $times (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 1)
                       (i64.const 7) (i64.const 9) (i32.const 5)))
    (call $spin)
    ;; the filestat of g (ino, nlink 2, size 2, atim 7, mtim 9) to stdout
    (drop (call $stat (i32.const 3) (i32.const 0) (i32.const 101) (i32.const 1) (i32.const 200)))
    (drop (call $write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 12)))))
"""))


def test_links_and_times_are_state_and_come_back(engine: Engine, tmp_path: Path) -> None:
    spec = JobSpec(module=module_cid(LINKS_AND_TIMES))
    plain = run(spec, LINKS_AND_TIMES, {}, tmp_path / "plain", engine)
    stat = (tmp_path / "plain" / "stdout").read_bytes()
    assert plain.exit_code == 0 and len(stat) == 64
    assert [int.from_bytes(stat[at:at + 8], "little") for at in (24, 32, 40, 48)] == [2, 2, 7, 9]

    traced = trace(spec, LINKS_AND_TIMES, {}, engine, 1, stride=1, keep=set(range(100)) | {FINAL})
    assert traced.result_cid == plain.result_cid
    later = [i for i, snapshot in traced.snapshots.items() if decode(snapshot).nodes]
    assert later, "no checkpoint after the link"
    node = decode(traced.snapshots[later[0]]).nodes[0]
    assert node.paths == ((b"f",), (b"g",)) and node.nlink == 2 and node.times == (7, 9)
    for i in later[:-1]:
        reached, _ = resume(spec, LINKS_AND_TIMES, {}, engine, traced.snapshots[i], traced.checkpoints[i + 1][1])
        assert reached == traced.checkpoints[i + 1][2]
    # from the first checkpoint after the link to the end: the restored link count and times are
    # what path_filestat_get shows (stdout is part of the final state)
    reached, _ = resume(spec, LINKS_AND_TIMES, {}, engine, traced.snapshots[later[0]], traced.fuel_used + 1)
    assert reached == traced.final_hash
    assert traced.final_snapshot is not None and decode(traced.final_snapshot).stdout == stat
