"""Timestamps a job sets (SPEC 4.5): kept virtually, shown back, owned by the file, never the host's.

Expected values are derived by hand: the harness clock starts at EPOCH_NS and each
clock_time_get read advances it by TICK_NS, so after n reads ``now`` is EPOCH_NS + n * TICK_NS;
preview1's fstflags are ATIM 1, ATIM_NOW 2, MTIM 4, MTIM_NOW 8 (witx); a filestat is dev, ino,
filetype (u8, 7 bytes padding), nlink, size, atim, mtim, ctim (64 bytes). POSIX: times belong to
the file (rename keeps them, every hard link shows them), a new file starts afresh.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from cod import Engine, JobSpec, module_cid, run

from ..helpers import run_builtin_wasi
from .wasi_harness import EPOCH_NS, TICK_NS, Harness

EROFS, EINVAL = 69, 28
O_CREAT, O_DIRECTORY = 1, 2
FST_ATIM, FST_ATIM_NOW, FST_MTIM, FST_MTIM_NOW = 1, 2, 4, 8
U64_MAX = (1 << 64) - 1


@pytest.fixture()
def h(engine: Engine, tmp_path: Path) -> Iterator[Harness]:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "data").write_bytes(b"x")
    harness = Harness(engine, tmp_path / "run", inputs)
    yield harness
    harness.close()


def _times(h: Harness, name: bytes, dirfd: int | None = None) -> tuple[int, int, int]:
    """(atim, mtim, ctim) by path_filestat_get."""
    h.write(0x100, name)
    assert h.call("path_filestat_get", h.outputs_fd if dirfd is None else dirfd, 0, 0x100, len(name), 0x300) == 0
    return struct.unpack("<QQQ", h.read(0x300 + 40, 24))


def _fd_times(h: Harness, fd: int) -> tuple[int, int, int]:
    assert h.call("fd_filestat_get", fd, 0x300) == 0
    return struct.unpack("<QQQ", h.read(0x300 + 40, 24))


def _set(h: Harness, name: bytes, atim: int, mtim: int, flags: int, dirfd: int | None = None) -> int:
    h.write(0x100, name)
    return h.call("path_filestat_set_times", h.outputs_fd if dirfd is None else dirfd, 0, 0x100, len(name),
                  atim, mtim, flags)


def _create(h: Harness, name: bytes) -> int:
    errno, fd = h.open(name, oflags=O_CREAT, write=True)
    assert errno == 0
    return fd


def test_set_times_show_back_and_the_rest_stays_the_epoch(h: Harness) -> None:
    fd = _create(h, b"f")
    assert _fd_times(h, fd) == (EPOCH_NS, EPOCH_NS, EPOCH_NS)
    assert h.call("fd_filestat_set_times", fd, 0, EPOCH_NS - 100, FST_MTIM) == 0
    assert _fd_times(h, fd) == (EPOCH_NS, EPOCH_NS - 100, EPOCH_NS)  # atim untouched, ctim the epoch
    assert _times(h, b"f") == (EPOCH_NS, EPOCH_NS - 100, EPOCH_NS)
    assert _set(h, b"f", 7, 0, FST_ATIM) == 0
    assert _fd_times(h, fd) == (7, EPOCH_NS - 100, EPOCH_NS)
    assert h.fd_write(fd, b"data") == (0, 4)  # writes do not move a time
    assert _fd_times(h, fd) == (7, EPOCH_NS - 100, EPOCH_NS)
    assert _set(h, b"f", 1, 2, 0) == 0  # no flag: nothing changes
    assert _times(h, b"f") == (7, EPOCH_NS - 100, EPOCH_NS)


def test_now_is_the_virtual_clock_and_setting_does_not_move_it(h: Harness) -> None:
    fd = _create(h, b"f")
    assert h.call("clock_time_get", 0, 0, 0x80) == 0 and h.call("clock_time_get", 0, 0, 0x80) == 0
    assert h.call("fd_filestat_set_times", fd, 0, 0, FST_ATIM_NOW | FST_MTIM_NOW) == 0
    now = EPOCH_NS + 2 * TICK_NS
    assert _fd_times(h, fd) == (now, now, EPOCH_NS)
    assert h.call("clock_time_get", 0, 0, 0x80) == 0 and h.u64(0x80) == now
    assert _set(h, b"f", 0, 0, FST_MTIM_NOW) == 0
    assert _times(h, b"f")[1] == now + TICK_NS


def test_any_u64_time_is_kept(h: Harness) -> None:
    fd = _create(h, b"f")
    assert h.call("fd_filestat_set_times", fd, U64_MAX, 0, FST_ATIM | FST_MTIM) == 0
    assert _fd_times(h, fd) == (U64_MAX, 0, EPOCH_NS)


def test_a_time_both_given_and_now_changes_nothing(h: Harness) -> None:
    fd = _create(h, b"f")
    assert h.call("fd_filestat_set_times", fd, 5, 6, FST_MTIM | FST_MTIM_NOW | FST_ATIM) == EINVAL
    assert _set(h, b"f", 5, 6, FST_ATIM | FST_ATIM_NOW) == EINVAL
    assert _fd_times(h, fd) == (EPOCH_NS, EPOCH_NS, EPOCH_NS)


def test_times_follow_the_file_through_a_rename(h: Harness) -> None:
    fd = _create(h, b"a")
    assert _set(h, b"a", 11, 12, FST_ATIM | FST_MTIM) == 0
    (h.outputs / "d").mkdir()
    assert h.rename(b"a", b"d/b") == 0
    assert _times(h, b"d/b") == (11, 12, EPOCH_NS)
    assert _fd_times(h, fd) == (11, 12, EPOCH_NS)
    # renamed onto a file that had its own times: the name now shows the moved file's
    _create(h, b"c")
    assert _set(h, b"c", 21, 22, FST_ATIM | FST_MTIM) == 0
    assert h.rename(b"d/b", b"c") == 0
    assert _times(h, b"c") == (11, 12, EPOCH_NS)


def test_a_new_file_at_an_old_name_starts_at_the_epoch(h: Harness) -> None:
    for n in range(20):  # hosts reuse a freed inode number at once: none may carry its times over
        fd = _create(h, b"f")
        assert _fd_times(h, fd)[:2] == (EPOCH_NS, EPOCH_NS), n
        assert _set(h, b"f", n + 1, n + 1, FST_ATIM | FST_MTIM) == 0
        assert h.call("fd_close", fd) == 0
        assert h.path_call("path_unlink_file", b"f") == 0
    # replaced by a rename: the replaced file is gone, a new one starts afresh
    _create(h, b"g")
    assert _set(h, b"g", 5, 5, FST_ATIM | FST_MTIM) == 0
    _create(h, b"h")
    assert h.rename(b"h", b"g") == 0
    assert _times(h, b"g")[:2] == (EPOCH_NS, EPOCH_NS)
    for n in range(20):
        _create(h, f"n{n}".encode())
        assert _times(h, f"n{n}".encode())[:2] == (EPOCH_NS, EPOCH_NS)


def test_an_unlinked_file_keeps_its_times_while_open(h: Harness) -> None:
    fd = _create(h, b"f")
    assert h.call("fd_filestat_set_times", fd, 3, 4, FST_ATIM | FST_MTIM) == 0
    assert h.path_call("path_unlink_file", b"f") == 0
    assert _fd_times(h, fd)[:2] == (3, 4)
    assert h.call("fd_close", fd) == 0
    for n in range(20):
        assert _fd_times(h, _create(h, f"n{n}".encode()))[:2] == (EPOCH_NS, EPOCH_NS)


def test_directory_times_and_a_directory_made_again(h: Harness) -> None:
    assert h.path_call("path_create_directory", b"d") == 0
    assert _set(h, b"d", 8, 9, FST_ATIM | FST_MTIM) == 0
    assert _times(h, b"d")[:2] == (8, 9)
    errno, fd = h.open(b"d", oflags=O_DIRECTORY)
    assert errno == 0 and _fd_times(h, fd)[:2] == (8, 9)
    assert h.path_call("path_remove_directory", b"d") == 0
    for _ in range(5):
        assert h.path_call("path_create_directory", b"d") == 0
        assert _times(h, b"d")[:2] == (EPOCH_NS, EPOCH_NS)
        assert h.path_call("path_remove_directory", b"d") == 0


def test_every_name_of_a_file_shows_its_times(h: Harness) -> None:
    """Times are the file's: a second host name of the same file (a hard link) shows them too."""
    _create(h, b"f")
    os.link(h.outputs / "f", h.outputs / "g")
    assert _set(h, b"f", 31, 32, FST_ATIM | FST_MTIM) == 0
    assert _times(h, b"g")[:2] == (31, 32)
    assert h.path_call("path_unlink_file", b"f") == 0  # one name left: the file and its times stay
    assert _times(h, b"g")[:2] == (31, 32)


def test_inputs_refuse_times(h: Harness) -> None:
    assert _set(h, b"data", 1, 1, FST_MTIM, dirfd=h.inputs_fd) == EROFS
    assert _times(h, b"data", dirfd=h.inputs_fd) == (EPOCH_NS, EPOCH_NS, EPOCH_NS)


def test_guest_set_times_reach_neither_the_host_nor_the_result(engine: Engine, tmp_path: Path) -> None:
    def job(set_times: bool) -> tuple[str, int]:
        setter = """(drop (call $ptimes (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 1)
                       (i64.const 123) (i64.const 456) (i32.const 5)))""" if set_times else ""
        wasm = wasmtime.wat2wasm(f"""(module
          (import "wasi_snapshot_preview1" "path_open" (func $open
            (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "path_filestat_set_times" (func $ptimes
            (param i32 i32 i32 i32 i64 i64 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 100) "f")
          (func (export "_start")
            (drop (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 1)
                              (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 200)))
            {setter}))""")
        results = tmp_path / ("set" if set_times else "unset")
        result = run(JobSpec(module=module_cid(wasm)), wasm, {}, results, engine)
        assert result.exit_code == 0
        return str(result.result_cid), (results / "outputs" / "f").stat().st_mtime_ns

    with_times, host_mtime = job(True)
    without_times, _ = job(False)
    assert with_times == without_times
    assert host_mtime not in (123, 456)


def test_the_last_fd_closing_on_an_unlinked_file_forgets_its_times(h: Harness) -> None:
    first = _create(h, b"f")
    second = h.open(b"f", write=True)[1]
    assert h.call("fd_filestat_set_times", first, 0, 77, FST_MTIM) == 0
    assert h.path_call("path_unlink_file", b"f") == 0
    assert h.call("fd_close", first) == 0
    assert _fd_times(h, second)[1] == 77  # another fd still holds the file
    other = _create(h, b"g")
    assert h.call("fd_renumber", other, second) == 0  # closes the last fd on the unlinked file
    for n in range(20):
        assert _fd_times(h, _create(h, f"n{n}".encode()))[:2] == (EPOCH_NS, EPOCH_NS)


def test_the_output_root_and_streams(h: Harness) -> None:
    assert h.call("fd_filestat_set_times", h.outputs_fd, 1, 2, FST_ATIM | FST_MTIM) == 0
    assert _times(h, b".")[:2] == (1, 2)
    assert _fd_times(h, h.outputs_fd)[:2] == (1, 2)
    for fd in (0, 1, 2):  # no stream holds fd_filestat_set_times
        assert h.call("fd_filestat_set_times", fd, 1, 2, FST_ATIM | FST_MTIM) == 76
        assert _fd_times(h, fd) == (EPOCH_NS, EPOCH_NS, EPOCH_NS)


# Set times by path, rename, read them back by path: wasmtime's own WASI (host times, which POSIX
# keeps with the file) and cod (virtual times) must read back the same values.
CONTRAST_WAT = """(module
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_set_times"
    (func $ptimes (param i32 i32 i32 i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get" (func $pstat (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename" (func $rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "f")
  (data (i32.const 272) "g")
  (data (i32.const 832) "\\00\\10\\00\\00\\24\\00\\00\\00")  ;; iovec: 36 bytes of results at 4096
  (func (export "_start")
    (i32.store (i32.const 4096) (call $open (i32.const 3) (i32.const 0) (i32.const 256) (i32.const 1) (i32.const 1)
      (i64.const 66) (i64.const 0) (i32.const 0) (i32.const 512)))
    (i32.store (i32.const 4100) (call $ptimes (i32.const 3) (i32.const 0) (i32.const 256) (i32.const 1)
      (i64.const 5000000000) (i64.const 7000000000) (i32.const 5)))
    (i32.store (i32.const 4104) (call $rename (i32.const 3) (i32.const 256) (i32.const 1) (i32.const 3)
      (i32.const 272) (i32.const 1)))
    (i32.store (i32.const 4108)
      (call $pstat (i32.const 3) (i32.const 0) (i32.const 272) (i32.const 1) (i32.const 1536)))
    (i64.store (i32.const 4112) (i64.load (i32.const 1576)))  ;; atim
    (i64.store (i32.const 4120) (i64.load (i32.const 1584)))  ;; mtim
    (i32.store (i32.const 4128) (call $ptimes (i32.const 3) (i32.const 0) (i32.const 272) (i32.const 1)
      (i64.const 1) (i64.const 2) (i32.const 12)))  ;; MTIM with MTIM_NOW: EINVAL
    (drop (call $write (i32.const 1) (i32.const 832) (i32.const 1) (i32.const 600)))))
"""


def test_times_read_back_as_under_wasmtime_s_own_wasi(engine: Engine, tmp_path: Path) -> None:
    wasm = bytes(wasmtime.wat2wasm(CONTRAST_WAT))
    builtin_dir = tmp_path / "builtin"
    builtin_dir.mkdir()
    theirs = struct.unpack("<4IQQI", run_builtin_wasi(wasm, ["contrast"], builtin_dir, tmp_path))
    result = run(JobSpec(module=module_cid(wasm), outputs="/outputs"), wasm, {}, tmp_path / "cod", engine)
    ours = struct.unpack("<4IQQI", (result.results_dir / "stdout").read_bytes())
    assert ours == theirs == (0, 0, 0, 0, 5_000_000_000, 7_000_000_000, EINVAL)
