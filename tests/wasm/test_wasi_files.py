"""Files under cod's WASI: virtual positions, the virtual maximum file size, iovec and byte
caps, positional host I/O and the calls that were never exercised before (fd_seek, fd_tell,
fd_pread/fd_pwrite, APPEND, fd_filestat_set_size).

Expected values are derived by hand in each test from SPEC.md section 4 (and POSIX), never
read back from the code under test.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from cod import Engine
from cod.errors import OutputLimitExceeded
from cod.wasm import abi, vfs

from .wasi_harness import Harness

TIB = 1 << 40  # limits.MAX_FILE_SIZE, written out: 1 TiB
EXT4_MAX = 1 << 44  # ext4's maximum file size with 4 KiB blocks (16 TiB); tmpfs allows more
U64 = (1 << 64) - 1


@pytest.fixture()
def h(engine: Engine, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(engine, tmp_path / "run", output_limit=1 << 41)
    yield harness
    harness.close()


def _new_file(h: Harness, name: bytes = b"f", data: bytes = b"", fdflags: int = 0) -> int:
    err, fd = h.open(name, oflags=abi.O_CREAT, write=True, fdflags=fdflags)
    assert err == 0
    if data:
        assert h.fd_write(fd, data) == (0, len(data))
    return fd


def test_seek_is_virtual_and_bounded_by_max_file_size(h: Harness) -> None:
    fd = _new_file(h, data=b"hello")  # position 5, size 5
    assert h.tell(fd) == (0, 5)
    assert h.seek(fd, 3, abi.WHENCE_SET) == (0, 3)
    assert h.seek(fd, -1, abi.WHENCE_CUR) == (0, 2)
    assert h.seek(fd, 0, abi.WHENCE_END) == (0, 5)
    assert h.seek(fd, -5, abi.WHENCE_END) == (0, 0)
    assert h.seek(fd, -6, abi.WHENCE_END) == (abi.EINVAL, -1)  # before the start
    assert h.tell(fd) == (0, 0)  # a failed seek leaves the position alone
    assert h.seek(fd, TIB, abi.WHENCE_SET) == (0, TIB)  # exactly at the limit: allowed
    assert h.seek(fd, 1, abi.WHENCE_CUR) == (abi.EINVAL, -1)
    assert h.seek(fd, TIB + 1, abi.WHENCE_SET) == (abi.EINVAL, -1)  # ext4 and tmpfs would both allow it
    assert h.seek(fd, EXT4_MAX + 1, abi.WHENCE_SET) == (abi.EINVAL, -1)  # ext4 refuses, tmpfs allows
    assert h.seek(fd, (1 << 63) - 1, abi.WHENCE_SET) == (abi.EINVAL, -1)
    assert h.seek(fd, -(1 << 63), abi.WHENCE_CUR) == (abi.EINVAL, -1)
    assert h.seek(fd, TIB - 5, abi.WHENCE_END) == (0, TIB)
    assert h.seek(fd, 0, 3) == (abi.EINVAL, -1)  # no such whence
    assert h.tell(fd) == (0, TIB)


def test_reads_at_or_past_the_end_return_nothing(h: Harness) -> None:
    fd = _new_file(h, data=b"abc")
    assert h.seek(fd, TIB, abi.WHENCE_SET) == (0, TIB)
    assert h.fd_read(fd, 10) == (0, b"")
    assert h.tell(fd) == (0, TIB)  # reading nothing does not move the position
    for offset in (3, 4, TIB, TIB + 1, 1 << 63, U64):
        assert h.fd_pread(fd, 10, offset) == (0, b""), offset
    assert h.fd_pread(fd, 10, 1) == (0, b"bc")


def test_writes_past_max_file_size_are_efbig(h: Harness) -> None:
    fd = _new_file(h, data=b"abc")
    assert h.fd_pwrite(fd, b"xy", TIB - 1) == (abi.EFBIG, -1)  # would end at TIB + 1
    assert h.fd_pwrite(fd, b"", TIB + 1) == (abi.EFBIG, -1)  # the end, not the length, decides
    for offset in (1 << 63, U64, EXT4_MAX):
        assert h.fd_pwrite(fd, b"z", offset) == (abi.EFBIG, -1), offset
    assert h.seek(fd, TIB, abi.WHENCE_SET) == (0, TIB)
    assert h.fd_write(fd, b"q") == (abi.EFBIG, -1)
    assert os.path.getsize(h.outputs / "f") == 3  # nothing was written by any of them
    assert h.fd_pwrite(fd, b"z", TIB - 1) == (0, 1)  # ends exactly at the limit: a sparse 1 TiB file
    assert os.path.getsize(h.outputs / "f") == TIB
    assert h.fd_pread(fd, 4, TIB - 2) == (0, b"\x00z")


def test_pwrite_and_pread_leave_the_position_alone(h: Harness) -> None:
    fd = _new_file(h, data=b"0123456789")
    assert h.seek(fd, 4, abi.WHENCE_SET) == (0, 4)
    assert h.fd_pwrite(fd, b"AB", 1) == (0, 2)
    assert h.fd_pread(fd, 3, 0) == (0, b"0AB")
    assert h.tell(fd) == (0, 4)
    assert h.fd_read(fd, 3) == (0, b"456")
    assert h.fd_pwrite(fd, b"Z", 12) == (0, 1)  # past the end: a hole of zero bytes
    assert (h.outputs / "f").read_bytes() == b"0AB3456789\x00\x00Z"
    assert h.tell(fd) == (0, 7)


def test_append_writes_go_to_the_virtual_end(h: Harness) -> None:
    _new_file(h, data=b"abc")
    err, fd = h.open(b"f", write=True, fdflags=abi.FDFLAG_APPEND)
    assert err == 0
    assert h.tell(fd) == (0, 0)
    assert h.fd_write(fd, b"de") == (0, 2)
    assert h.tell(fd) == (0, 5)  # POSIX: after an append the position is the new end
    assert h.seek(fd, 0, abi.WHENCE_SET) == (0, 0)
    assert h.fd_write(fd, b"f") == (0, 1)
    assert h.fd_pwrite(fd, b"X", 0) == (0, 1)  # pwrite writes where it is told, APPEND or not
    assert (h.outputs / "f").read_bytes() == b"Xbcdef"
    # clearing APPEND with fd_fdstat_set_flags writes at the position again
    assert h.call("fd_fdstat_set_flags", fd, 0) == 0
    assert h.seek(fd, 1, abi.WHENCE_SET) == (0, 1)
    assert h.fd_write(fd, b"Y") == (0, 1)
    assert (h.outputs / "f").read_bytes() == b"XYcdef"


def test_filestat_set_size(h: Harness) -> None:
    fd = _new_file(h, data=b"abcdef")
    assert h.call("fd_filestat_set_size", fd, TIB + 1) == abi.EFBIG
    assert h.call("fd_filestat_set_size", fd, U64) == abi.EFBIG  # arrives as i64 -1
    assert h.call("fd_filestat_set_size", fd, 1 << 63) == abi.EFBIG
    assert h.call("fd_filestat_set_size", fd, 2) == 0
    assert h.tell(fd) == (0, 6)  # the position stays past the new end
    assert h.fd_read(fd, 4) == (0, b"")
    assert h.call("fd_filestat_set_size", fd, 4) == 0
    assert (h.outputs / "f").read_bytes() == b"ab\x00\x00"
    assert h.call("fd_filestat_set_size", fd, TIB) == 0
    assert os.path.getsize(h.outputs / "f") == TIB


def test_set_size_counts_against_the_outputs_cap(engine: Engine, tmp_path: Path) -> None:
    h = Harness(engine, tmp_path / "run", output_limit=100)
    fd = _new_file(h, data=b"x" * 10)
    assert h.call("fd_filestat_set_size", fd, 100) == 0
    with pytest.raises(OutputLimitExceeded):
        h.call("fd_filestat_set_size", fd, 101)
    h.close()


def test_more_than_max_iovecs_is_einval_before_the_host(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    fd = _new_file(h)
    calls: list[int] = []
    real = os.pwritev

    def small_iov_max(fd: int, bufs: list[memoryview], offset: int) -> int:
        # a host whose IOV_MAX is POSIX's minimum, 16: cod must still accept 1024 iovecs
        calls.append(len(bufs))
        if len(bufs) > 16:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, bufs, offset)

    monkeypatch.setattr(os, "pwritev", small_iov_max)
    h.write(0x4000, b"ab")
    h.write(0x8000, struct.pack("<II", 0x4000, 2) * 1025)
    assert h.call("fd_write", fd, 0x8000, 1024, 0x80) == 0
    assert h.u32(0x80) == 2048
    assert (h.outputs / "f").read_bytes() == b"ab" * 1024
    calls.clear()
    assert h.call("fd_write", fd, 0x8000, 1025, 0x80) == abi.EINVAL
    assert h.call("fd_write", 1, 0x8000, 1025, 0x80) == abi.EINVAL  # stdout too
    assert h.call("fd_write", fd, 0xFFF8, 1025, 0x80) == abi.EINVAL  # the count is checked before the bounds
    assert calls == []  # decided by cod, not by the host
    assert os.path.getsize(h.outputs / "f") == 2048


def test_short_host_transfers_never_reach_the_guest(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    fd = _new_file(h)
    real_w, real_r = os.pwritev, os.preadv

    def three(bufs: list[memoryview]) -> list[memoryview]:
        return [bufs[0][:3]]

    def short_write(fd: int, bufs: list[memoryview], offset: int) -> int:
        return real_w(fd, three(bufs), offset)  # a host that writes at most 3 bytes per call

    def short_read(fd: int, bufs: list[memoryview], offset: int) -> int:
        return real_r(fd, three(bufs), offset)

    monkeypatch.setattr(os, "pwritev", short_write)
    monkeypatch.setattr(os, "preadv", short_read)
    data = bytes(range(200))
    assert h.fd_write(fd, data) == (0, 200)
    assert h.fd_pread(fd, 300, 0) == (0, data)
    monkeypatch.undo()
    assert (h.outputs / "f").read_bytes() == data


def test_one_call_transfers_at_most_max_io_bytes(engine: Engine, tmp_path: Path) -> None:
    # 1024 iovecs of 2 MiB over the same memory ask for 2 GiB: Linux alone would give 0x7ffff000
    inputs = tmp_path / "in"
    inputs.mkdir()
    with open(inputs / "big", "wb") as f:
        f.truncate((1 << 31) + 10)  # sparse: reading it costs no disk
    h = Harness(engine, tmp_path / "run", inputs, pages=34)  # 0x20000 + 2 MiB = 34 pages
    err, fd = h.open(b"big", dirfd=h.inputs_fd)
    assert err == 0
    h.write(0x10000, struct.pack("<II", 0x20000, 2 << 20) * 1024)
    assert h.call("fd_read", fd, 0x10000, 1024, 0x80) == 0
    assert h.u32(0x80) == 1 << 30  # vfs.MAX_IO_BYTES, written out
    assert h.tell(fd) == (0, 1 << 30)
    assert h.call("fd_pread", fd, 0x10000, 1024, (1 << 31) - 5, 0x80) == 0
    assert h.u32(0x80) == 15  # only 15 bytes are left from there
    h.close()
    assert vfs.MAX_IO_BYTES == 1 << 30


def test_fd_seek_on_streams_dirs_and_closed_fds(h: Harness) -> None:
    assert h.seek(1, 0, abi.WHENCE_CUR) == (abi.ESPIPE, -1)
    assert h.tell(0) == (abi.ESPIPE, -1)
    assert h.seek(h.outputs_fd, 0, abi.WHENCE_SET) == (abi.EBADF, -1)
    assert h.seek(99, 0, abi.WHENCE_SET) == (abi.EBADF, -1)
    assert h.fd_pread(1, 1, 0) == (abi.ESPIPE, b"")
    assert h.fd_pwrite(2, b"x", 0) == (abi.ESPIPE, -1)


def test_poll_reports_bytes_from_the_virtual_position(h: Harness) -> None:
    fd = _new_file(h, data=b"0123456789")
    assert h.seek(fd, 4, abi.WHENCE_SET) == (0, 4)
    sub = struct.pack("<QB7xI", 7, abi.EVENTTYPE_FD_READ, fd).ljust(abi.SUBSCRIPTION_SIZE, b"\0")
    h.write(0x3000, sub)
    assert h.call("poll_oneoff", 0x3000, 0x3100, 1, 0x80) == 0
    userdata, error, kind, nbytes = struct.unpack("<QHB5xQ", h.read(0x3100, 24))
    assert (h.u32(0x80), userdata, error, kind, nbytes) == (1, 7, 0, abi.EVENTTYPE_FD_READ, 6)


def test_a_bad_result_pointer_fails_before_any_effect(h: Harness) -> None:
    fd = _new_file(h, data=b"abc")
    assert h.seek(fd, 0, abi.WHENCE_SET) == (0, 0)
    h.write(0x1000, b"xyz")
    h.write(0x800, struct.pack("<II", 0x1000, 3))
    assert h.call("fd_write", fd, 0x800, 1, 0xFFFE) == abi.EFAULT  # 4 bytes at 0xFFFE leave the page
    assert h.call("fd_pwrite", fd, 0x800, 1, 0, 0x10000) == abi.EFAULT
    assert h.call("fd_read", fd, 0x800, 1, 0xFFFD) == abi.EFAULT
    assert h.call("fd_readdir", h.outputs_fd, 0x1000, 10, 0, 0xFFFF) == abi.EFAULT
    assert h.call("fd_write", 1, 0x800, 1, 0xFFFE) == abi.EFAULT
    assert (h.outputs / "f").read_bytes() == b"abc"
    assert (h.root / "stdout").read_bytes() == b""
    assert h.tell(fd) == (0, 0)


def _complete_dirents(h: Harness, buf: int, used: int) -> list[tuple[int, bytes]]:
    """The (d_next, name) of every whole dirent in ``buf[:used]`` (the last may be cut, preview1)."""
    entries, at = [], 0
    while at + 24 <= used:
        d_next, _ino, namlen, _type = struct.unpack("<QQIB", h.read(buf + at, 21))
        if at + 24 + namlen > used:
            break
        entries.append((d_next, h.read(buf + at + 24, namlen)))
        at += 24 + namlen
    return entries


def test_a_listing_read_while_its_entries_go_sees_each_once(h: Harness) -> None:
    """Rust's remove_dir_all (and Go's RemoveAll) delete entries between fd_readdir calls that go on
    from the last cookie. The listing is taken at cookie 0 (SPEC 4.5), so each name comes once and
    the directory ends empty; wasmtime's own WASI lists the changed host directory again at each call,
    skips entries, and Rust 1.63's remove_dir_all fails there with ENOTEMPTY."""
    assert h.path_call("path_create_directory", b"d") == 0
    names = [b"n%02d" % i for i in range(40)]
    for name in reversed(names):
        os.close(os.open(h.outputs / "d" / name.decode(), os.O_CREAT | os.O_WRONLY))
    err, dfd = h.open(b"d", oflags=abi.O_DIRECTORY)
    assert err == 0
    seen: list[bytes] = []
    cookie, buf, size = 0, 0x2000, 100  # room for three 27-byte names and a cut one
    for _ in range(100):
        assert h.call("fd_readdir", dfd, buf, size, cookie, 0x80) == 0
        entries = _complete_dirents(h, buf, h.u32(0x80))
        if not entries:
            break
        for d_next, name in entries:
            if name not in (b".", b".."):
                seen.append(name)
                assert h.path_call("path_unlink_file", b"d/" + name) == 0
                # a file made meanwhile is in no listing taken before it
                os.close(os.open(h.outputs / "d" / ("new-" + name.decode()), os.O_CREAT | os.O_WRONLY))
            cookie = d_next
    assert seen == names
    assert sorted(os.listdir(h.outputs / "d")) == sorted("new-" + n.decode() for n in names)
    # reading from cookie 0 again takes a new listing
    assert h.call("fd_readdir", dfd, buf, 0x1000, 0, 0x80) == 0
    listed = [name for _, name in _complete_dirents(h, buf, h.u32(0x80))]
    assert listed[:3] == [b".", b"..", b"new-n00"]
