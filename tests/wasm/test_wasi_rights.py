"""Per-fd rights (SPEC 4.5): what each fd may do, what it hands on, and that rights only shrink.

Expected values come from preview1's definition (the witx ``rights`` flags, bit n = the n-th
flag; ``fd_fdstat_set_rights`` "can only be used to remove rights, and returns
errno::notcapable if called in a way that would attempt to add rights"), from the rights
wasi-testsuite requires of a preopened directory (rust/path_open_preopen), and from wasmtime's
answers: EBADF for a read or write an fd is not open for, EISDIR for a directory opened for
writing. Errnos from the witx: EBADF 8, EISDIR 31, EROFS 69, ENOTCAPABLE 76.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from cod import Engine, JobSpec, module_cid, run

from ..helpers import run_builtin_wasi
from .wasi_harness import Harness

EBADF, EISDIR, EROFS, ENOTCAPABLE = 8, 31, 69, 76
O_CREAT, O_DIRECTORY, O_TRUNC = 1, 2, 8
WHENCE_SET, WHENCE_CUR = 0, 1
FST_MTIM = 4
(FD_DATASYNC, FD_READ, FD_SEEK, FD_FDSTAT_SET_FLAGS, FD_SYNC, FD_TELL, FD_WRITE, FD_ADVISE, FD_ALLOCATE,
 PATH_CREATE_DIRECTORY, PATH_CREATE_FILE, PATH_LINK_SOURCE, PATH_LINK_TARGET, PATH_OPEN, FD_READDIR,
 PATH_READLINK, PATH_RENAME_SOURCE, PATH_RENAME_TARGET, PATH_FILESTAT_GET, PATH_FILESTAT_SET_SIZE,
 PATH_FILESTAT_SET_TIMES, FD_FILESTAT_GET, FD_FILESTAT_SET_SIZE, FD_FILESTAT_SET_TIMES, PATH_SYMLINK,
 PATH_REMOVE_DIRECTORY, PATH_UNLINK_FILE, POLL_FD_READWRITE, SOCK_SHUTDOWN, SOCK_ACCEPT) = (1 << n for n in range(30))
# rust/path_open_preopen: the base rights every preopened directory must have, and the file
# rights its inheriting set must add
DIRECTORY_BASE = (PATH_CREATE_DIRECTORY | PATH_CREATE_FILE | PATH_LINK_SOURCE | PATH_LINK_TARGET | PATH_OPEN
                  | FD_READDIR | PATH_READLINK | PATH_RENAME_SOURCE | PATH_RENAME_TARGET | PATH_SYMLINK
                  | PATH_REMOVE_DIRECTORY | PATH_UNLINK_FILE | PATH_FILESTAT_GET | PATH_FILESTAT_SET_TIMES
                  | FD_FILESTAT_GET | FD_FILESTAT_SET_TIMES)
FILE_INHERITED = (FD_DATASYNC | FD_READ | FD_SEEK | FD_FDSTAT_SET_FLAGS | FD_SYNC | FD_TELL | FD_WRITE | FD_ADVISE
                  | FD_ALLOCATE | FD_FILESTAT_GET | FD_FILESTAT_SET_SIZE | FD_FILESTAT_SET_TIMES | POLL_FD_READWRITE)


@pytest.fixture()
def h(engine: Engine, tmp_path: Path) -> Iterator[Harness]:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "data").write_bytes(b"input bytes")
    harness = Harness(engine, tmp_path / "run", inputs)
    yield harness
    harness.close()


def _fdstat(h: Harness, fd: int) -> tuple[int, int, int, int]:
    """(filetype, flags, rights_base, rights_inheriting) of fd_fdstat_get."""
    assert h.call("fd_fdstat_get", fd, 0x300) == 0
    filetype, flags, base, inheriting = struct.unpack("<BxHxxxxQQ", h.read(0x300, 24))
    return filetype, flags, base, inheriting


def _set_rights(h: Harness, fd: int, base: int, inheriting: int) -> int:
    return h.call("fd_fdstat_set_rights", fd, base, inheriting)


def _file(h: Harness, name: bytes, data: bytes = b"") -> None:
    (h.outputs / name.decode()).write_bytes(data)


def test_a_preopen_holds_the_directory_rights_and_hands_on_file_rights(h: Harness) -> None:
    for fd in (h.inputs_fd, h.outputs_fd):
        filetype, flags, base, inheriting = _fdstat(h, fd)
        assert filetype == 3 and flags == 0
        assert base & DIRECTORY_BASE == DIRECTORY_BASE
        assert inheriting & (DIRECTORY_BASE | FILE_INHERITED) == DIRECTORY_BASE | FILE_INHERITED
        # rights that do not apply to a directory (rust/directory_seek, rust/truncation_rights)
        assert base & (FD_SEEK | FD_TELL | FD_READ | FD_WRITE | FD_FILESTAT_SET_SIZE | FD_ALLOCATE) == 0
        assert base & (SOCK_SHUTDOWN | SOCK_ACCEPT) == 0


def test_stdio_rights_follow_the_stream(h: Harness) -> None:
    stdin, stdout, stderr = (_fdstat(h, fd)[2:] for fd in (0, 1, 2))
    assert stdin[0] & (FD_READ | FD_WRITE | FD_SEEK | FD_TELL) == FD_READ
    assert stdout[0] & (FD_READ | FD_WRITE | FD_SEEK | FD_TELL) == FD_WRITE
    assert stderr == stdout
    assert stdin[1] == stdout[1] == 0


def test_an_fd_opened_read_only_refuses_writes_and_write_only_refuses_reads(h: Harness) -> None:
    _file(h, b"f", b"abc")
    errno, ro = h.open(b"f", rights=FD_READ)
    assert errno == 0
    assert _fdstat(h, ro)[2] == FD_READ  # exactly what was asked (held by the preopen's inheriting set)
    assert h.fd_read(ro, 10) == (0, b"abc")
    assert h.fd_write(ro, b"x")[0] == EBADF
    assert h.fd_pwrite(ro, b"x", 0)[0] == EBADF
    errno, wo = h.open(b"f", rights=FD_WRITE)
    assert errno == 0 and _fdstat(h, wo)[2] == FD_WRITE
    assert h.fd_read(wo, 10)[0] == EBADF
    assert h.fd_write(wo, b"XY") == (0, 2)
    assert (h.outputs / "f").read_bytes() == b"XYc"
    # created with O_CREAT but without fd_write: the file exists, the fd cannot write to it
    errno, created = h.open(b"new", oflags=O_CREAT, rights=FD_READ)
    assert errno == 0 and (h.outputs / "new").exists()
    assert h.fd_write(created, b"x")[0] == EBADF


def test_rights_only_shrink(h: Harness) -> None:
    errno, fd = h.open(b"f", oflags=O_CREAT, rights=FD_READ | FD_WRITE | FD_SEEK | FD_TELL)
    assert errno == 0
    assert h.fd_write(fd, b"0123") == (0, 4)
    assert _set_rights(h, fd, FD_SEEK | FD_TELL, 0) == 0
    assert _fdstat(h, fd)[2:] == (FD_SEEK | FD_TELL, 0)
    assert h.fd_read(fd, 4)[0] == EBADF and h.fd_write(fd, b"x")[0] == EBADF
    assert h.seek(fd, 0, WHENCE_SET) == (0, 0)
    # adding back what was dropped, or anything never held: ENOTCAPABLE, and nothing changes
    assert _set_rights(h, fd, FD_SEEK | FD_TELL | FD_READ | FD_WRITE, 0) == ENOTCAPABLE
    assert _set_rights(h, fd, FD_SEEK | FD_TELL, FD_READ) == ENOTCAPABLE
    assert _set_rights(h, fd, FD_SEEK | FD_TELL | (1 << 40), 0) == ENOTCAPABLE
    assert _fdstat(h, fd)[2:] == (FD_SEEK | FD_TELL, 0)
    assert h.fd_write(fd, b"x")[0] == EBADF
    assert (h.outputs / "f").read_bytes() == b"0123"
    assert _set_rights(h, 99, 0, 0) == EBADF


def test_rights_belong_to_the_fd_not_the_file(h: Harness) -> None:
    _file(h, b"f", b"abc")
    first, second = h.open(b"f", write=True)[1], h.open(b"f", write=True)[1]
    assert _set_rights(h, first, FD_READ, 0) == 0
    assert h.fd_write(first, b"x")[0] == EBADF
    assert h.fd_write(second, b"x") == (0, 1)


def test_renumber_moves_rights_with_the_description(h: Harness) -> None:
    _file(h, b"f", b"abc")
    limited, other = h.open(b"f", rights=FD_READ)[1], h.open(b"f", write=True)[1]
    assert h.call("fd_renumber", limited, other) == 0
    assert _fdstat(h, other)[2] == FD_READ
    assert h.fd_write(other, b"x")[0] == EBADF
    # a preopen renumbered keeps the preopen's rights; the fd it lands on loses its own
    assert _set_rights(h, h.outputs_fd, _fdstat(h, h.outputs_fd)[2] & ~PATH_CREATE_FILE,
                       _fdstat(h, h.outputs_fd)[3]) == 0
    assert h.call("fd_renumber", h.outputs_fd, other) == 0
    assert _fdstat(h, other)[0] == 3
    assert h.open(b"g", dirfd=other, oflags=O_CREAT)[0] == ENOTCAPABLE
    assert h.open(b"f", dirfd=other)[0] == 0


def test_a_directory_never_holds_file_rights(h: Harness) -> None:
    (h.outputs / "d").mkdir()
    errno, fd = h.open(b"d", oflags=O_DIRECTORY, rights=FD_SEEK | FD_READ | PATH_OPEN)
    assert errno == 0
    assert _fdstat(h, fd)[2] == PATH_OPEN  # fd_seek and fd_read do not apply to a directory
    assert h.seek(fd, 0, WHENCE_CUR)[0] == EBADF
    # opening a directory for writing: EISDIR (POSIX open(2), wasmtime), with O_DIRECTORY or not
    assert h.open(b"d", oflags=O_DIRECTORY, rights=FD_READ | FD_WRITE)[0] == EISDIR
    assert h.open(b"d", rights=FD_WRITE)[0] == EISDIR
    assert h.open(b"d", oflags=O_DIRECTORY, rights=FD_READ)[0] == 0
    assert h.open(b"d", oflags=O_DIRECTORY, rights=0)[0] == 0


def test_a_new_fd_gets_at_most_the_directory_s_inheriting_rights(h: Harness) -> None:
    (h.outputs / "d").mkdir()
    _file(h, b"d/f", b"abc")
    errno, d = h.open(b"d", oflags=O_DIRECTORY, rights=PATH_OPEN, inheriting=FD_READ | FD_SEEK)
    assert errno == 0 and _fdstat(h, d)[2:] == (PATH_OPEN, FD_READ | FD_SEEK)
    errno, f = h.open(b"f", dirfd=d, rights=FD_READ | FD_WRITE | FD_SEEK | FD_TELL)
    assert errno == 0
    assert _fdstat(h, f)[2] == FD_READ | FD_SEEK  # asked & inheriting: no write, no tell
    assert h.fd_write(f, b"x")[0] == EBADF
    assert h.fd_read(f, 3) == (0, b"abc")
    # the directory itself lacks PATH_CREATE_FILE, PATH_FILESTAT_SET_SIZE, PATH_UNLINK_FILE
    assert h.open(b"g", dirfd=d, oflags=O_CREAT, rights=FD_READ)[0] == ENOTCAPABLE
    assert not (h.outputs / "d" / "g").exists()
    assert h.open(b"f", dirfd=d, oflags=O_TRUNC, rights=FD_READ)[0] == ENOTCAPABLE
    assert (h.outputs / "d" / "f").read_bytes() == b"abc"
    assert h.path_call("path_unlink_file", b"f", d) == ENOTCAPABLE
    assert h.path_call("path_create_directory", b"sub", d) == ENOTCAPABLE
    assert (h.outputs / "d" / "f").exists() and not (h.outputs / "d" / "sub").exists()
    assert h.call("fd_readdir", d, 0x1000, 256, 0, 0x80) == ENOTCAPABLE


def test_truncation_needs_path_filestat_set_size_not_fd_filestat_set_size(h: Harness) -> None:
    _file(h, b"f", b"abc")
    base, inheriting = _fdstat(h, h.outputs_fd)[2:]
    assert _set_rights(h, h.outputs_fd, base, inheriting & ~FD_FILESTAT_SET_SIZE) == 0
    errno, fd = h.open(b"f", oflags=O_TRUNC, rights=0)
    assert errno == 0 and (h.outputs / "f").read_bytes() == b""
    assert h.call("fd_filestat_set_size", fd, 10) == ENOTCAPABLE
    (h.outputs / "f").write_bytes(b"abc")
    assert _set_rights(h, h.outputs_fd, base & ~PATH_FILESTAT_SET_SIZE, inheriting) == ENOTCAPABLE  # added back
    assert _set_rights(h, h.outputs_fd, base & ~PATH_FILESTAT_SET_SIZE, inheriting & ~FD_FILESTAT_SET_SIZE) == 0
    assert h.open(b"f", oflags=O_TRUNC, rights=0)[0] == ENOTCAPABLE
    assert (h.outputs / "f").read_bytes() == b"abc"


def test_each_fd_operation_needs_its_right(h: Harness) -> None:
    _file(h, b"f", b"abc")
    errno, fd = h.open(b"f", rights=FD_READ | FD_WRITE | FD_TELL)
    assert errno == 0
    assert h.tell(fd) == (0, 0)  # fd_tell, and fd_seek(0, CUR), need only FD_TELL
    assert h.seek(fd, 0, WHENCE_CUR) == (0, 0)
    assert h.seek(fd, 1, WHENCE_SET)[0] == ENOTCAPABLE
    assert h.fd_pread(fd, 1, 0)[0] == ENOTCAPABLE  # fd_pread needs FD_READ and FD_SEEK
    assert h.fd_pwrite(fd, b"x", 0)[0] == ENOTCAPABLE
    assert h.call("fd_filestat_get", fd, 0x300) == ENOTCAPABLE
    assert h.call("fd_filestat_set_size", fd, 0) == ENOTCAPABLE
    assert h.call("fd_filestat_set_times", fd, 5, 5, FST_MTIM) == ENOTCAPABLE
    assert h.call("fd_advise", fd, 0, 0, 0) == ENOTCAPABLE
    assert h.call("fd_allocate", fd, 0, 1) == ENOTCAPABLE
    assert h.call("fd_sync", fd) == ENOTCAPABLE
    assert h.call("fd_datasync", fd) == ENOTCAPABLE
    assert h.call("fd_fdstat_set_flags", fd, 0) == ENOTCAPABLE
    assert h.call("fd_fdstat_get", fd, 0x300) == 0  # fd_fdstat_get needs no right
    assert (h.outputs / "f").read_bytes() == b"abc"


def test_a_size_change_needs_the_right_and_an_fd_open_for_writing(h: Harness) -> None:
    _file(h, b"f", b"abc")
    fd = h.open(b"f", rights=FD_READ | FD_FILESTAT_SET_SIZE)[1]
    assert h.call("fd_filestat_set_size", fd, 1) == EBADF  # as ftruncate(2) on a read-only fd
    assert (h.outputs / "f").read_bytes() == b"abc"


def test_inputs_stay_read_only_whatever_rights_are_asked(h: Harness) -> None:
    assert h.open(b"data", dirfd=h.inputs_fd, rights=FD_READ | FD_WRITE)[0] == EROFS
    errno, fd = h.open(b"data", dirfd=h.inputs_fd, rights=FD_READ | FD_FILESTAT_SET_SIZE | FD_FILESTAT_SET_TIMES
                       | FD_FILESTAT_GET)
    assert errno == 0
    assert h.fd_write(fd, b"x")[0] == EBADF
    assert h.call("fd_filestat_set_size", fd, 0) == EBADF
    assert h.call("fd_filestat_set_times", fd, 5, 5, FST_MTIM) == EROFS
    h.write(0x100, b"data")
    assert h.call("path_filestat_set_times", h.inputs_fd, 0, 0x100, 4, 5, 5, FST_MTIM) == EROFS
    # a guest that drops rights on an input and asks them back is refused as anywhere else
    base, inheriting = _fdstat(h, h.inputs_fd)[2:]
    assert _set_rights(h, h.inputs_fd, base & ~PATH_OPEN, inheriting) == 0
    assert h.open(b"data", dirfd=h.inputs_fd, rights=FD_READ)[0] == ENOTCAPABLE
    assert _set_rights(h, h.inputs_fd, base, inheriting) == ENOTCAPABLE


def test_poll_needs_poll_fd_readwrite(h: Harness) -> None:
    _file(h, b"f", b"abc")
    fd = h.open(b"f", rights=FD_READ)[1]
    h.write(0x400, struct.pack("<QB7xI", 7, 1, fd).ljust(48, b"\0"))  # userdata 7, FD_READ on fd
    assert h.call("poll_oneoff", 0x400, 0x500, 1, 0x80) == 0
    userdata, error, kind = struct.unpack("<QHB", h.read(0x500, 11))
    assert (userdata, error, kind) == (7, ENOTCAPABLE, 1)


def test_each_path_operation_needs_its_right_on_its_directory(h: Harness) -> None:
    (h.outputs / "d").mkdir()
    _file(h, b"d/f", b"abc")
    held = DIRECTORY_BASE & ~(PATH_READLINK | PATH_SYMLINK | PATH_LINK_SOURCE | PATH_LINK_TARGET
                              | PATH_RENAME_SOURCE | PATH_RENAME_TARGET | PATH_FILESTAT_GET | PATH_FILESTAT_SET_TIMES)
    errno, d = h.open(b"d", oflags=O_DIRECTORY, rights=held)
    assert errno == 0
    h.write(0x100, b"f")
    h.write(0x600, b"g")
    assert h.call("path_readlink", d, 0x100, 1, 0x1000, 64, 0x80) == ENOTCAPABLE
    assert h.call("path_symlink", 0x100, 1, d, 0x600, 1) == ENOTCAPABLE
    assert h.call("path_link", d, 0, 0x100, 1, h.outputs_fd, 0x600, 1) == ENOTCAPABLE
    assert h.call("path_link", h.outputs_fd, 0, 0x100, 1, d, 0x600, 1) == ENOTCAPABLE
    assert h.call("path_rename", d, 0x100, 1, h.outputs_fd, 0x600, 1) == ENOTCAPABLE
    assert h.call("path_rename", h.outputs_fd, 0x100, 1, d, 0x600, 1) == ENOTCAPABLE
    assert h.call("path_filestat_get", d, 0, 0x100, 1, 0x300) == ENOTCAPABLE
    assert h.call("path_filestat_set_times", d, 0, 0x100, 1, 5, 5, FST_MTIM) == ENOTCAPABLE
    assert sorted(p.name for p in (h.outputs / "d").iterdir()) == ["f"]
    # the right is checked after the fd's kind: a file fd is ENOTDIR, a closed one EBADF
    f = h.open(b"d/f")[1]
    assert h.call("path_readlink", f, 0x100, 1, 0x1000, 64, 0x80) == 54  # ENOTDIR
    assert h.call("path_readlink", 99, 0x100, 1, 0x1000, 64, 0x80) == EBADF


def test_a_dropped_right_stays_dropped_only_where_it_was_dropped(h: Harness) -> None:
    """Base and inheriting are separate (preview1): dropping from the base alone limits that fd;
    fds opened through it are bounded by its inheriting set, so a guest cannot climb above it."""
    base, inheriting = _fdstat(h, h.outputs_fd)[2:]
    assert _set_rights(h, h.outputs_fd, base & ~PATH_CREATE_FILE, inheriting) == 0
    assert h.open(b"a", oflags=O_CREAT, rights=FD_READ)[0] == ENOTCAPABLE
    errno, again = h.open(b".", oflags=O_DIRECTORY, rights=DIRECTORY_BASE)
    assert errno == 0 and _fdstat(h, again)[2] & PATH_CREATE_FILE  # the inheriting set still held it
    assert _set_rights(h, h.outputs_fd, base & ~PATH_CREATE_FILE, inheriting & ~PATH_CREATE_FILE) == 0
    errno, limited = h.open(b".", oflags=O_DIRECTORY, rights=DIRECTORY_BASE, inheriting=(1 << 64) - 1)
    assert errno == 0
    assert _fdstat(h, limited)[2] & PATH_CREATE_FILE == 0
    assert _fdstat(h, limited)[3] == inheriting & ~PATH_CREATE_FILE  # never more than its parent's
    assert h.open(b"a", dirfd=limited, oflags=O_CREAT, rights=FD_READ)[0] == ENOTCAPABLE
    assert not (h.outputs / "a").exists()


# One guest, run under wasmtime's own WASI and under cod: the errnos (and the rights bits and
# the time it reads back) are wasmtime's answers, so they must be cod's too. fd 3 is the one
# preopen in both. Results: 4 bytes each at 0x1000, written to stdout at the end.
CONTRAST_WAT = """(module
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_get" (func $fstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_times" (func $ftimes (param i32 i64 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "f")
  (data (i32.const 272) "d")
  (data (i32.const 768) "\\00\\04\\00\\00\\01\\00\\00\\00")  ;; iovec: 1 byte at 1024
  (data (i32.const 1024) "x")
  (data (i32.const 832) "\\00\\10\\00\\00\\3c\\00\\00\\00")  ;; iovec: 60 bytes of results at 4096
  (func $put (param $i i32) (param $v i32)
    (i32.store (i32.add (i32.const 4096) (i32.shl (local.get $i) (i32.const 2))) (local.get $v)))
  (func (export "_start")
    (call $put (i32.const 0) (call $mkdir (i32.const 3) (i32.const 272) (i32.const 1)))
    (call $put (i32.const 1) (call $open (i32.const 3) (i32.const 0) (i32.const 256) (i32.const 1) (i32.const 1)
      (i64.const 0x0a00046) (i64.const 0) (i32.const 0) (i32.const 512)))  ;; O_CREAT; read write seek filestat*
    (call $put (i32.const 2) (call $open (i32.const 3) (i32.const 0) (i32.const 256) (i32.const 1) (i32.const 0)
      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 516)))  ;; FD_READ only
    (call $put (i32.const 3) (call $write (i32.load (i32.const 516)) (i32.const 768) (i32.const 1) (i32.const 600)))
    (call $put (i32.const 4) (call $open (i32.const 3) (i32.const 0) (i32.const 256) (i32.const 1) (i32.const 0)
      (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 520)))  ;; FD_WRITE only
    (call $put (i32.const 5) (call $read (i32.load (i32.const 520)) (i32.const 768) (i32.const 1) (i32.const 600)))
    (call $put (i32.const 6) (call $open (i32.const 3) (i32.const 0) (i32.const 272) (i32.const 1) (i32.const 2)
      (i64.const 66) (i64.const 0) (i32.const 0) (i32.const 524)))  ;; O_DIRECTORY with FD_READ | FD_WRITE
    (call $put (i32.const 7) (call $open (i32.const 3) (i32.const 0) (i32.const 272) (i32.const 1) (i32.const 2)
      (i64.const 6) (i64.const 0) (i32.const 0) (i32.const 528)))  ;; O_DIRECTORY with FD_READ | FD_SEEK
    (call $put (i32.const 8) (call $fdstat (i32.load (i32.const 528)) (i32.const 1280)))
    (call $put (i32.const 9) (i32.wrap_i64 (i64.and (i64.load (i32.const 1288)) (i64.const 4))))  ;; FD_SEEK held?
    (call $put (i32.const 10)
      (call $ftimes (i32.load (i32.const 512)) (i64.const 0) (i64.const 123456789) (i32.const 4)))
    (call $put (i32.const 11) (call $fstat (i32.load (i32.const 512)) (i32.const 1536)))
    (call $put (i32.const 12) (i32.wrap_i64 (i64.load (i32.const 1584))))  ;; mtim
    (drop (call $fdstat (i32.load (i32.const 516)) (i32.const 1280)))
    (call $put (i32.const 13) (i32.wrap_i64 (i64.and (i64.load (i32.const 1288)) (i64.const 64))))  ;; FD_WRITE?
    (drop (call $fdstat (i32.load (i32.const 520)) (i32.const 1280)))
    (call $put (i32.const 14) (i32.wrap_i64 (i64.and (i64.load (i32.const 1288)) (i64.const 2))))  ;; FD_READ?
    (drop (call $write (i32.const 1) (i32.const 832) (i32.const 1) (i32.const 600)))))
"""


def test_rights_answer_as_wasmtime_s_own_wasi(engine: Engine, tmp_path: Path) -> None:
    wasm = bytes(wasmtime.wat2wasm(CONTRAST_WAT))
    builtin_dir = tmp_path / "builtin"
    builtin_dir.mkdir()
    theirs = struct.unpack("<15I", run_builtin_wasi(wasm, ["contrast"], builtin_dir, tmp_path))
    result = run(JobSpec(module=module_cid(wasm), outputs="/outputs"), wasm, {}, tmp_path / "cod", engine)
    ours = struct.unpack("<15I", (result.results_dir / "stdout").read_bytes())
    assert ours == theirs
    assert ours == (0, 0, 0, EBADF, 0, EBADF, EISDIR, 0, 0, 0, 0, 0, 123456789, 0, 0)  # as read off wasmtime 50
