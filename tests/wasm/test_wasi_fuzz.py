"""Every preview1 function, called through real wasm with arbitrary arguments and memory.

For each of the 46 functions hypothesis draws i32/i64 arguments (biased towards fds, small
lengths, in-bounds and edge pointers and the file-size limits) and guest memory contents
(with a path string at 0x100 so path functions reach the file system, and two valid
iovecs at 0x200 so I/O functions reach the file). Each example runs
twice, each time on a fresh copy of the same state: an input mount holding files, a
directory and symlinks, an output mount holding a file, a directory, symlinks and a hard link,
and open fds.

No Python exception may escape (a job's errno, proc_exit and a cap are the only outcomes;
never a host fault), and both runs must end with the same return value, the same memory,
the same stdout/stderr and the same output tree.
"""

from __future__ import annotations

import itertools
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from cod import Engine
from cod.errors import CodError, Indeterminate
from cod.wasm import abi
from cod.wasm.imports import SIGNATURES
from cod.wasm.wasi import ProcExit

from .wasi_harness import Harness

PATHS = [b"a.txt", b"b", b"b/c", b"b/", b"link", b"loop", b"up", b"abs", b".", b"..", b"../x", b"/etc",
         b"new", b"od", b"od/n", b"o.txt", b"a" * 256, b"x\xff", b"b/../a.txt", b"link/",
         b"ol", b"oup", b"oup/x", b"od/hard", b"ol/"]
EDGES32 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 0x80, 0x100, 0x200, 0xFFF0, 0xFFF8, 0xFFFC, 0xFFFF, 0x10000, 1 << 31,
           (1 << 32) - 1]
EDGES64 = [0, 1, -1, 1 << 40, (1 << 40) + 1, 1 << 44, (1 << 63) - 1, -(1 << 63), 1 << 20]
i32s = st.one_of(st.sampled_from(EDGES32), st.integers(0, 64), st.integers(0, 0xFFFF),
                 st.integers(0, (1 << 32) - 1))
i64s = st.one_of(st.sampled_from(EDGES64), st.integers(0, 64), st.integers(-(1 << 63), (1 << 63) - 1))
_COUNTER = itertools.count()


def _inputs(root: Path) -> Path:
    (root / "b").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"hello, world\n")
    (root / "b" / "c").write_bytes(bytes(range(256)))
    os.symlink("a.txt", root / "link")
    os.symlink("loop", root / "loop")
    os.symlink("../..", root / "up")
    os.symlink("/etc/passwd", root / "abs")
    return root


def _snapshot(root: Path) -> list[tuple[str, bytes | None]]:
    out: list[tuple[str, bytes | None]] = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):  # a symlink (os.walk lists one to a directory in dirs): its target
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                out.append((os.path.relpath(path, root), b"-> " + os.fsencode(os.readlink(path))))
            elif name in dirs:
                out.append((os.path.relpath(path, root), None))
            else:
                out.append((os.path.relpath(path, root), Path(path).read_bytes()))
    return out


def _once(engine: Engine, base: Path, inputs: Path, name: str, args: list[int], memory: bytes,
          path: bytes) -> tuple[object, bytes, list[tuple[str, bytes | None]], bytes]:
    h = Harness(engine, base / f"run{next(_COUNTER)}", inputs, output_limit=1 << 20, stdout_limit=1 << 16)
    try:
        (h.outputs / "o.txt").write_bytes(b"output file")
        (h.outputs / "od").mkdir()
        os.symlink("o.txt", h.outputs / "ol")  # links a job could have made (SPEC 4.5)
        os.symlink("..", h.outputs / "oup")
        os.link(h.outputs / "o.txt", h.outputs / "od" / "hard")
        assert h.open(b"a.txt", dirfd=h.inputs_fd)[0] == 0  # fd 5
        assert h.open(b"o.txt", write=True)[0] == 0  # fd 6
        h.write(0, memory)
        h.write(0x100, path)
        h.write(0x200, struct.pack("<IIII", 0x1000, 64, 0x1040, 64))  # two valid iovecs at an edge pointer
        try:
            outcome: object = h.call(name, *args)
        except ProcExit as done:
            outcome = ("exit", done.code)
        except Indeterminate:
            raise  # a host fault: never expected from any arguments a job can pass
        except CodError as err:
            outcome = ("cap", type(err).__name__)
        return outcome, h.memory_bytes(), _snapshot(h.outputs), (h.root / "stdout").read_bytes()
    finally:
        h.close()


@pytest.fixture(scope="module")
def fuzz_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _inputs(tmp_path_factory.mktemp("fuzz-in") / "in")


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_every_function_is_total_and_repeatable(name: str, engine: Engine, tmp_path: Path,
                                                fuzz_inputs: Path) -> None:
    params = SIGNATURES[name][0]
    arguments = st.tuples(*[i32s if kind == "i" else i64s for kind in params])

    @settings(max_examples=8, database=None)
    @given(args=arguments, memory=st.binary(max_size=1024), path=st.sampled_from(PATHS))
    def check(args: tuple[int, ...], memory: bytes, path: bytes) -> None:
        first = _once(engine, tmp_path, fuzz_inputs, name, list(args), memory, path)
        second = _once(engine, tmp_path, fuzz_inputs, name, list(args), memory, path)
        assert first[0] == second[0]
        assert first[1] == second[1], "guest memory differs between two runs of the same call"
        assert first[2:] == second[2:]
        outcome = first[0]
        assert isinstance(outcome, tuple) or (isinstance(outcome, int) and 0 <= outcome <= abi.ENOTCAPABLE)

    check()


def test_the_harness_covers_all_46_functions() -> None:
    assert len(SIGNATURES) == 46


def test_random_get_checks_bounds_before_generating(engine: Engine, tmp_path: Path) -> None:
    # found by this fuzzer: random_get generated `length` bytes (up to 4 GiB, unmetered) before
    # its bounds check, and the failed call still advanced the stream
    from cod.wasm.entropy import RandomStream

    h = Harness(engine, tmp_path / "run")
    assert h.call("random_get", 0x10, 0x10000) == abi.EFAULT  # 16 bytes past the end of memory
    assert h.call("random_get", 0x10, (1 << 32) - 1) == abi.EFAULT
    assert h.call("random_get", 0x10, 16) == 0
    assert h.read(0x10, 16) == RandomStream(bytes(32)).read(16)  # the stream had not moved
    h.close()
