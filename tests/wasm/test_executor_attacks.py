"""Attacks on how the executor mounts inputs (cod.wasm.executor, SPEC 3): a single-file mount and
a file at the root must be read-only and hide nothing.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from cod.content.cid import CID, RAW
from cod.content.unixfs import cid_of_tree, module_cid
from cod.jobspec import Input, JobSpec
from cod.wasm import abi
from cod.wasm.engine import Engine
from cod.wasm.executor import run

from ..node_kit import wat

# Prints what the guest can learn of the directory preopened at fd 3: its listing (fd_readdir
# from cookie 0, then from cookie 2), filestat of ".", of "f", of the fd itself, fdstat of the
# fd, the prestat name, then the errnos of every write it tries there and of escapes.
PROBE_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "fd_readdir" (func $readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get" (func $pstat (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_get" (func $fstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $pname (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file" (func $unlink (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_remove_directory" (func $rmdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename" (func $rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink" (func $symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_link" (func $link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_set_times"
    (func $ptimes (param i32 i32 i32 i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $truncate (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_times" (func $ftimes (param i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "f")
  (data (i32.const 4) ".")
  (data (i32.const 8) "new")
  (data (i32.const 12) "..")
  (data (i32.const 16) "f/..")
  (data (i32.const 24) "../outputs/x")
  (global $at (mut i32) (i32.const 8192))
  (func $out (param $ptr i32) (param $len i32)
    (i32.store (i32.const 40) (local.get $ptr))
    (i32.store (i32.const 44) (local.get $len))
    (drop (call $write (i32.const 1) (i32.const 40) (i32.const 1) (i32.const 48))))
  (func $err (param $code i32)
    (i32.store16 (global.get $at) (local.get $code))
    (call $out (global.get $at) (i32.const 2))
    (global.set $at (i32.add (global.get $at) (i32.const 2))))
  (func (export "_start")
    (local $fd i32)
    (call $err (call $readdir (i32.const 3) (i32.const 1024) (i32.const 1024) (i64.const 0) (i32.const 56)))
    (call $out (i32.const 1024) (i32.load (i32.const 56)))
    (call $err (call $readdir (i32.const 3) (i32.const 1024) (i32.const 1024) (i64.const 2) (i32.const 56)))
    (call $out (i32.const 1024) (i32.load (i32.const 56)))
    (call $err (call $pstat (i32.const 3) (i32.const 0) (i32.const 4) (i32.const 1) (i32.const 4096)))
    (call $out (i32.const 4096) (i32.const 64))
    (call $err (call $pstat (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 4096)))
    (call $out (i32.const 4096) (i32.const 64))
    (call $err (call $fstat (i32.const 3) (i32.const 4096)))
    (call $out (i32.const 4096) (i32.const 64))
    (call $err (call $fdstat (i32.const 3) (i32.const 4096)))
    (call $out (i32.const 4096) (i32.const 24))
    (call $err (call $pname (i32.const 3) (i32.const 4096) (i32.const 7)))
    (call $out (i32.const 4096) (i32.const 7))
    ;; writes: create, mkdir, unlink, rmdir ".", rename f->new, symlink, link, set times
    (call $err (call $open (i32.const 3) (i32.const 0) (i32.const 8) (i32.const 3) (i32.const 1)
      (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 60)))
    (call $err (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)
      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 60)))
    (call $err (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0)
      (i64.const 64) (i64.const 0) (i32.const 1) (i32.const 60)))
    (call $err (call $mkdir (i32.const 3) (i32.const 8) (i32.const 3)))
    (call $err (call $unlink (i32.const 3) (i32.const 0) (i32.const 1)))
    (call $err (call $rmdir (i32.const 3) (i32.const 4) (i32.const 1)))
    (call $err (call $rename (i32.const 3) (i32.const 0) (i32.const 1) (i32.const 3) (i32.const 8) (i32.const 3)))
    (call $err (call $symlink (i32.const 0) (i32.const 1) (i32.const 3) (i32.const 8) (i32.const 3)))
    (call $err (call $link (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 3) (i32.const 8)
      (i32.const 3)))
    (call $err (call $ptimes (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1) (i64.const 5) (i64.const 5)
      (i32.const 5)))
    ;; escapes: "..", "f/..", "../outputs/x"
    (call $err (call $open (i32.const 3) (i32.const 0) (i32.const 12) (i32.const 2) (i32.const 0)
      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 60)))
    (call $err (call $open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 4) (i32.const 0)
      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 60)))
    (call $err (call $open (i32.const 3) (i32.const 0) (i32.const 24) (i32.const 12) (i32.const 1)
      (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 60)))
    ;; the file itself, opened read-only: truncate, set times, write
    (call $err (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0)
      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 60)))
    (local.set $fd (i32.load (i32.const 60)))
    (call $err (call $truncate (local.get $fd) (i64.const 0)))
    (call $err (call $ftimes (local.get $fd) (i64.const 5) (i64.const 5) (i32.const 5)))
    (i32.store (i32.const 40) (i32.const 0))
    (i32.store (i32.const 44) (i32.const 1))
    (call $err (call $write (local.get $fd) (i32.const 40) (i32.const 1) (i32.const 48)))
    (call $err (call $fstat (local.get $fd) (i32.const 4096)))
    (call $out (i32.const 4096) (i32.const 64))))
"""


def _probe(engine: Engine, tmp_path: Path, name: str, spec_input: Input, source: Path) -> tuple[bytes, str]:
    wasm = wat(PROBE_WAT)
    spec = JobSpec(module=module_cid(wasm), args=("probe",), inputs=(spec_input,))
    result = run(spec, wasm, {spec_input.path: source}, tmp_path / name, engine)
    assert result.exit_code == 0, (result.results_dir / "stderr").read_bytes()
    return (result.results_dir / "stdout").read_bytes(), result.result_cid


def test_a_single_file_mount_is_read_only_and_indistinguishable_from_a_real_directory(tmp_path: Path,
                                                                                      engine: Engine) -> None:
    """Attack 1: everything a guest can ask of the synthetic directory that holds a file input
    (listing, cookies, stats, fdstat, prestat name, every write, every escape) answers as a
    real read-only directory holding only that file does, from whatever host path the file
    comes; nothing is written, and the result CIDs agree."""
    text = b"single file bytes\n"
    one, two, real_dir = tmp_path / "a" / "x.bin", tmp_path / "b" / "deep" / "other-name", tmp_path / "real"
    for path in (one, two, real_dir / "f"):
        path.parent.mkdir(parents=True)
        path.write_bytes(text)
    file_cid = str(CID.of(RAW, text))
    first, cid1 = _probe(engine, tmp_path, "r1", Input(cid=file_cid, path="/inputs/f"), one)
    second, cid2 = _probe(engine, tmp_path, "r2", Input(cid=file_cid, path="/inputs/f"), two)
    assert first == second and cid1 == cid2
    dir_cid = str(cid_of_tree(real_dir))
    as_dir, _ = _probe(engine, tmp_path, "r3", Input(cid=dir_cid, path="/inputs"), real_dir)
    assert first == as_dir  # the synthetic directory is a real directory to the guest
    for name, kind in ((b".", abi.FILETYPE_DIRECTORY), (b"..", abi.FILETYPE_DIRECTORY),
                       (b"f", abi.FILETYPE_REGULAR_FILE)):
        assert struct.pack("<IB", len(name), kind) + b"\0\0\0" + name in first
    assert b"new" not in first.split(b"/inputs")[0]
    errors = first.split(b"/inputs", 1)[1][:2 * 16]
    codes = struct.unpack("<16H", errors)
    writes, escapes, on_file = codes[:10], codes[10:13], codes[13:]
    assert all(code in (abi.EROFS, abi.EPERM, abi.EBADF, abi.EACCES) for code in writes), writes
    assert escapes[0] == abi.ENOTCAPABLE and escapes[2] in (abi.ENOTCAPABLE, abi.EROFS) and escapes[1] != 0, escapes
    assert on_file[0] == 0 and all(code != 0 for code in on_file[1:]), on_file
    assert one.read_bytes() == text and two.read_bytes() == text
    assert sorted(os.listdir(one.parent)) == ["x.bin"]
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers  # the empty backing directory is gone


def test_a_file_input_at_the_root_is_a_read_only_root_that_hides_nothing(tmp_path: Path, engine: Engine) -> None:
    """Attack 1: a file input at /f makes a synthetic directory preopened at / (SPEC 3). The
    guest reads f, lists / (only f: the other preopens are not entries of it), and can
    neither escape above / nor create there; the output mount still works."""
    text = b"at the root\n"
    source = tmp_path / "src" / "f"
    source.parent.mkdir()
    source.write_bytes(text)
    wasm = wat(PROBE_WAT)
    spec = JobSpec(module=module_cid(wasm), args=("probe",), inputs=(Input(cid=str(CID.of(RAW, text)), path="/f"),))
    result = run(spec, wasm, {"/f": source}, tmp_path / "out", engine)
    assert result.exit_code == 0
    stdout = (result.results_dir / "stdout").read_bytes()
    for name, kind in ((b".", abi.FILETYPE_DIRECTORY), (b"..", abi.FILETYPE_DIRECTORY),
                       (b"f", abi.FILETYPE_REGULAR_FILE)):
        assert struct.pack("<IB", len(name), kind) + b"\0\0\0" + name in stdout
    assert b"outputs" not in stdout.split(b"\0\0\0f", 1)[0]
    assert sorted(os.listdir(tmp_path / "src")) == ["f"] and source.read_bytes() == text
    assert sorted(os.listdir(result.results_dir / "outputs")) == []


def test_a_results_tree_of_guest_made_links_is_hashed_as_js_does_and_exported_as_links(tmp_path: Path,
                                                                                       engine: Engine) -> None:
    """The escape vector (C, wasi-libc) run for real: its absolute symlink is refused (EPERM,
    as wasmtime), ``up -> ..`` and a hard link are made; the results hash as js-ipfs-unixfs
    hashes the same tree (the link a UnixFS symlink, the hard link a second file entry), and
    a CAR of them unpacks to links that are never followed."""
    from cod.content.car import write_car
    from cod.content.export import unpack_car

    from ..helpers import VECTORS, js_unixfs_cid

    wasm = (VECTORS / "escape.wasm").read_bytes()
    data = VECTORS / "data" / "escape"
    spec = JobSpec(module=module_cid(wasm), args=("escape.wasm",),
                   inputs=(Input(cid=str(cid_of_tree(data)), path="/inputs"),))
    result = run(spec, wasm, {"/inputs": data}, tmp_path / "results", engine)
    out = (result.results_dir / "stdout").read_text()
    assert "symlink /outputs/evil -> /etc/passwd: Operation not permitted\n" in out
    assert "symlink /outputs/up -> ..: ok\n" in out and "link /outputs/hard -> /outputs/file: ok\n" in out
    outputs = result.results_dir / "outputs"
    assert sorted(os.listdir(outputs)) == ["file", "hard", "up"]
    assert os.readlink(outputs / "up") == ".." and not (outputs / "hard").is_symlink()
    assert result.result_cid == js_unixfs_cid(result.results_dir)
    car = tmp_path / "results.car"
    assert str(write_car(result.results_dir, car)) == result.result_cid
    with open(car, "rb") as source:
        unpack_car(source, CID.parse(result.result_cid), tmp_path / "got", tmp_path / "scratch")
    assert os.readlink(tmp_path / "got" / "outputs" / "up") == ".."
    assert str(cid_of_tree(tmp_path / "got")) == result.result_cid
    assert sorted(os.listdir(tmp_path)) == ["got", "results", "results.car", "scratch"]
