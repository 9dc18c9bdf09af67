"""Paths, permissions, fds and faults under cod's WASI: virtual limits on depth and path bytes
(renames of whole directories included), virtual permissions and fixed modes, sockets,
fd_renumber, path_readlink, fd_readdir, and host faults that end a run as Indeterminate.

Expected values are derived by hand in each test from SPEC.md section 4 and POSIX.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from cod import Engine, JobSpec, module_cid, run
from cod.errors import Indeterminate
from cod.wasm import abi
from cod.wasm.wasi import Wasi

from .wasi_harness import Harness

MAX_COMPONENTS = 255  # limits.MAX_TREE_DEPTH - 1: outputs/ is at depth 1 of the results tree


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    (root / "b").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"hello")
    (root / "b" / "c").write_bytes(b"")
    os.symlink("a.txt", root / "link")
    return root


@pytest.fixture()
def h(engine: Engine, tmp_path: Path, inputs: Path) -> Iterator[Harness]:
    harness = Harness(engine, tmp_path / "run", inputs)
    yield harness
    harness.close()


def _depth(root: Path) -> int:
    deepest = 0
    for dirpath, dirs, files in os.walk(root):
        rel = Path(dirpath).relative_to(root).parts
        if dirs or files:
            deepest = max(deepest, len(rel) + 1)
    return deepest


# -- hole 4: output depth and path bytes --------------------------------------------------
def test_output_entries_have_at_most_255_components(h: Harness) -> None:
    for k in range(1, MAX_COMPONENTS + 1):
        assert h.path_call("path_create_directory", b"/".join([b"d"] * k)) == 0, k
    assert h.path_call("path_create_directory", b"/".join([b"d"] * (MAX_COMPONENTS + 1))) == abi.ENAMETOOLONG
    deep_file = b"/".join([b"d"] * MAX_COMPONENTS) + b"/f"
    assert h.open(deep_file, oflags=abi.O_CREAT, write=True)[0] == abi.ENAMETOOLONG
    assert h.open(b"/".join([b"d"] * (MAX_COMPONENTS - 1)) + b"/f", oflags=abi.O_CREAT, write=True)[0] == 0
    assert _depth(h.outputs) == MAX_COMPONENTS


def test_renaming_a_directory_checks_its_deepest_entry(h: Harness) -> None:
    for k in range(1, 201):  # a/a/.../a: 200 levels, so 199 below the top
        assert h.path_call("path_create_directory", b"/".join([b"a"] * k)) == 0
    for k in range(1, 61):  # b: 60 levels
        assert h.path_call("path_create_directory", b"/".join([b"b"] * k)) == 0
    # moved under 60 b's, the top a has 61 components and its deepest entry 61 + 199 = 260
    assert h.rename(b"a", b"/".join([b"b"] * 60) + b"/a") == abi.ENAMETOOLONG
    assert h.rename(b"a", b"/".join([b"b"] * 56) + b"/a") == abi.ENAMETOOLONG  # 57 + 199 = 256
    assert h.rename(b"a", b"/".join([b"b"] * 55) + b"/a") == 0  # 56 + 199 = 255
    assert _depth(h.outputs) == MAX_COMPONENTS
    # and it cannot go one deeper by moving the chain it now hangs from
    assert h.rename(b"b", b"x") == 0
    assert h.path_call("path_create_directory", b"y") == 0
    assert h.rename(b"x", b"y/x") == abi.ENAMETOOLONG
    assert _depth(h.outputs) == MAX_COMPONENTS


def test_renaming_a_directory_checks_its_longest_virtual_path(h: Harness) -> None:
    name = b"n" * 250
    assert h.path_call("path_create_directory", b"p") == 0
    for k in range(1, 4):  # p/N/N/N: the deepest entry is 3 * (1 + 250) = 753 bytes below p
        assert h.path_call("path_create_directory", b"/".join([b"p"] + [name] * k)) == 0
    top = b"q/" + b"m" * 255
    assert h.path_call("path_create_directory", b"q") == 0
    assert h.path_call("path_create_directory", top) == 0
    # "/outputs/q/<255 m>/" is 8 + 2 + 1 + 255 + 1 = 267 bytes; + 4-byte name + 753 = 1024: allowed
    assert len(b"/outputs/" + top + b"/pppp") + 753 == 1024
    assert h.rename(b"p", top + b"/ppppp") == abi.ENAMETOOLONG  # 1025
    assert h.rename(b"p", top + b"/pppp") == 0
    longest = max(len(os.fsencode(os.path.join(d, n))) - len(os.fsencode(h.outputs)) for d, ds, fs in
                  os.walk(h.outputs) for n in ds + fs)
    assert len(b"/outputs") + longest == 1024


def test_rename_outcomes_are_decided_virtually(h: Harness) -> None:
    for path in (b"d", b"d/sub", b"e", b"full", b"full/x"):
        assert h.path_call("path_create_directory", path) == 0
    assert h.open(b"f", oflags=abi.O_CREAT, write=True)[0] == 0
    assert h.rename(b"d", b"d/sub/d") == abi.EINVAL  # into itself
    assert h.rename(b"d", b"full") == abi.ENOTEMPTY  # POSIX allows EEXIST too: cod says ENOTEMPTY
    assert h.rename(b"d", b"f") == abi.ENOTDIR
    assert h.rename(b"f", b"e") == abi.EISDIR
    assert h.rename(b"f", b"f") == 0
    assert h.rename(b"d", b"e") == 0  # onto an empty directory: replaces it
    assert sorted(os.listdir(h.outputs)) == ["e", "f", "full"]
    assert h.rename(b"nope", b"x") == abi.ENOENT
    assert h.path_call("path_remove_directory", b"full") == abi.ENOTEMPTY
    assert h.path_call("path_remove_directory", b"f") == abi.ENOTDIR
    assert h.path_call("path_remove_directory", b"e/sub") == 0


# -- hole 3: permissions are virtual ------------------------------------------------------
_CREATOR = """(module
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "f")
  (data (i32.const 110) "d")
  (data (i32.const 120) "d/g")
  (data (i32.const 200) "data")
  (func $check (param i32) (if (local.get 0) (then (call $exit (local.get 0)))))
  (func (export "_start")
    (call $check (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 1)
                             (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 300)))
    (call $check (call $mkdir (i32.const 3) (i32.const 110) (i32.const 1)))
    (call $check (call $open (i32.const 3) (i32.const 0) (i32.const 120) (i32.const 3) (i32.const 1)
                             (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 304)))
    (i32.store (i32.const 0) (i32.const 200))
    (i32.store (i32.const 4) (i32.const 4))
    (call $check (call $write (i32.load (i32.const 304)) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $check (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


@pytest.mark.parametrize("umask", [0o777, 0o077, 0o000])
def test_created_entries_get_fixed_modes_whatever_the_umask(engine: Engine, tmp_path: Path, umask: int) -> None:
    wasm = bytes(wasmtime.wat2wasm(_CREATOR))
    spec = JobSpec(module=module_cid(wasm))
    old = os.umask(umask)
    try:
        result = run(spec, wasm, {}, tmp_path / "r", engine)
    finally:
        os.umask(old)
    out = tmp_path / "r"
    assert result.exit_code == 0
    modes = {p: stat.S_IMODE(os.stat(out / p).st_mode) for p in ("outputs", "outputs/f", "outputs/d",
                                                                 "outputs/d/g", "stdout")}
    assert modes == {"outputs": 0o755, "outputs/f": 0o644, "outputs/d": 0o755, "outputs/d/g": 0o644,
                     "stdout": 0o644}
    # the result does not depend on the umask: the same CID as under the usual 022
    os.umask(0o022)
    try:
        again = run(spec, wasm, {}, tmp_path / "r2", engine)
    finally:
        os.umask(old)
    assert again.result_cid == result.result_cid


def test_host_permission_errors_are_the_hosts_fault(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def no_access(path: bytes, flags: int, mode: int = 0o777) -> int:
        if path.endswith(b"a.txt"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, mode)

    def no_perm(path: bytes, mode: int = 0o777) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "open", no_access)
    monkeypatch.setattr(os, "mkdir", no_perm)
    with pytest.raises(Indeterminate, match="host-io"):
        h.open(b"a.txt", dirfd=h.inputs_fd)  # the job would have seen EACCES: a fact about the node
    with pytest.raises(Indeterminate, match="host-io"):
        h.path_call("path_create_directory", b"new")
    monkeypatch.undo()
    assert h.open(b"a.txt", dirfd=h.inputs_fd)[0] == 0
    # virtual permissions are the job's business: writing to an input is EROFS, as always
    assert h.open(b"a.txt", dirfd=h.inputs_fd, write=True)[0] == abi.EROFS


# -- hole 5: sockets ----------------------------------------------------------------------
def test_sockets_answer_enotsock_on_open_fds_and_ebadf_on_closed(h: Harness) -> None:
    err, fd = h.open(b"a.txt", dirfd=h.inputs_fd)
    assert err == 0
    calls = {"sock_accept": (0, 0x80), "sock_recv": (0x800, 1, 0, 0x80, 0x84), "sock_send": (0x800, 1, 0, 0x80),
             "sock_shutdown": (0,)}
    for name, rest in calls.items():
        for open_fd in (0, 1, 2, h.inputs_fd, h.outputs_fd, fd):
            assert h.call(name, open_fd, *rest) == abi.ENOTSOCK == 57, (name, open_fd)
        assert h.call(name, 99, *rest) == abi.EBADF == 8, name


# -- hole 6: host faults ------------------------------------------------------------------
_FILESTAT_JOB = """(module
  (import "wasi_snapshot_preview1" "fd_filestat_get" (func $stat (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (drop (call $stat (i32.const 1) (i32.const 0)))))"""


@pytest.mark.parametrize("fault", [OverflowError("int too big"), struct.error("bad pack"), ValueError("bug"),
                                   KeyError("x"), ZeroDivisionError("oops")])
def test_an_unforeseen_exception_in_a_host_function_is_indeterminate(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: Exception) -> None:
    def broken(self: Wasi, *args: int) -> int:
        raise fault

    monkeypatch.setattr(Wasi, "fd_filestat_get", broken)
    wasm = bytes(wasmtime.wat2wasm(_FILESTAT_JOB))
    with pytest.raises(Indeterminate) as info:
        run(JobSpec(module=module_cid(wasm)), wasm, {}, tmp_path / "r", engine)
    assert info.value.reason == "host-fault"
    assert f"{type(fault).__name__} in fd_filestat_get" in str(info.value)
    assert not (tmp_path / "r").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging left behind


# -- hole 7: fd_renumber, path_readlink, fd_readdir ------------------------------------
def test_fd_renumber(h: Harness) -> None:
    _, a = h.open(b"a.txt", dirfd=h.inputs_fd)
    _, c = h.open(b"b/c", dirfd=h.inputs_fd)
    assert (a, c) == (5, 6)  # lowest free numbers after 0-2 and the preopens 3, 4
    assert h.call("fd_renumber", a, a) == 0  # onto itself: nothing changes
    assert h.fd_read(a, 2) == (0, b"he")
    assert h.call("fd_renumber", a, 99) == abi.EBADF  # onto a closed fd
    assert h.call("fd_renumber", 99, a) == abi.EBADF
    assert h.call("fd_renumber", a, c) == 0  # c now is a's description, position included
    assert h.fd_read(c, 10) == (0, b"llo")
    assert h.fd_read(a, 1) == (abi.EBADF, b"")
    # a preopen moved onto an open fd takes its prestat along; the old number is closed
    assert h.call("fd_renumber", h.inputs_fd, c) == 0
    assert h.call("fd_prestat_get", h.inputs_fd, 0x80) == abi.EBADF
    assert h.call("fd_prestat_get", c, 0x80) == 0
    assert h.call("fd_prestat_dir_name", c, 0x90, 7) == 0 and h.read(0x90, 7) == b"/inputs"
    assert h.open(b"a.txt", dirfd=c)[0] == 0  # opens the lowest free fd: 3
    # a file moved onto a preopen replaces it: no prestat there any more
    assert h.call("fd_renumber", 3, h.outputs_fd) == 0
    assert h.call("fd_prestat_get", h.outputs_fd, 0x80) == abi.EBADF
    assert h.fd_read(h.outputs_fd, 5) == (0, b"hello")
    # onto stdout: fd 1 now names the file
    assert h.call("fd_renumber", h.outputs_fd, 1) == 0
    assert h.fd_pread(1, 5, 0) == (0, b"hello")


def test_path_readlink_truncates_to_the_buffer(h: Harness) -> None:
    h.write(0x100, b"link")
    for buf_len, expected in ((0, b""), (1, b"a"), (3, b"a.t"), (5, b"a.txt"), (64, b"a.txt")):
        h.write(0x200, b"\xee" * 8)
        assert h.call("path_readlink", h.inputs_fd, 0x100, 4, 0x200, buf_len, 0x80) == 0
        assert h.u32(0x80) == len(expected)
        assert h.read(0x200, 8) == expected + b"\xee" * (8 - len(expected))  # nothing past the used bytes
    h.write(0x100, b"a.txt")
    assert h.call("path_readlink", h.inputs_fd, 0x100, 5, 0x200, 10, 0x80) == abi.EINVAL
    h.write(0x100, b"nope")
    assert h.call("path_readlink", h.inputs_fd, 0x100, 4, 0x200, 10, 0x80) == abi.ENOENT


def _dirent(next_cookie: int, virtual: bytes, name: bytes, filetype: int) -> bytes:
    ino = int.from_bytes(hashlib.sha256(virtual).digest()[:8], "little")  # SPEC 4.5
    return struct.pack("<QQIB3x", next_cookie, ino, len(name), filetype) + name


def test_fd_readdir_truncates_and_resumes_from_cookies(h: Harness) -> None:
    entries = [(b"/inputs", b".", 3), (b"/inputs", b"..", 3), (b"/inputs/a.txt", b"a.txt", 4),
               (b"/inputs/b", b"b", 3), (b"/inputs/link", b"link", 7)]
    listing = b"".join(_dirent(i + 1, v, n, t) for i, (v, n, t) in enumerate(entries))
    fd = h.inputs_fd
    assert h.call("fd_readdir", fd, 0x1000, 4096, 0, 0x80) == 0
    assert h.u32(0x80) == len(listing) and h.read(0x1000, len(listing)) == listing
    for length in (0, 1, 23, 24, 25, 26, 24 + 1 + 24 + 2 + 10, len(listing) - 1):
        assert h.call("fd_readdir", fd, 0x1000, length, 0, 0x80) == 0
        assert h.u32(0x80) == length  # full buffer: the last entry is cut, preview1 style
        assert h.read(0x1000, length) == listing[:length]
    after_two = b"".join(_dirent(i + 1, v, n, t) for i, (v, n, t) in enumerate(entries) if i >= 2)
    assert h.call("fd_readdir", fd, 0x1000, 4096, 2, 0x80) == 0
    assert h.read(0x1000, h.u32(0x80)) == after_two
    for cookie in (5, 6, (1 << 64) - 1):
        assert h.call("fd_readdir", fd, 0x1000, 4096, cookie, 0x80) == 0
        assert h.u32(0x80) == 0
