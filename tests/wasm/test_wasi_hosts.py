"""One job, two host file systems, one result: staging on ext4 and on tmpfs must agree.

The fs-program interpreter (vectors/src/fsprog.c) runs generated programs of WASI file
operations: opens with every flag, writes, pwrites, seeks and reads at offsets near and past
the virtual maximum file size (1 TiB), ext4's (16 TiB) and 2^63, truncation, directories
up to and past the depth limit, renames, readdir with small buffers, long names and paths.
Each program runs twice with the results staged beside an output directory on ext4 and
beside one on tmpfs (the executor stages beside ``output_dir``), and the result CIDs and
stdout must be equal. Every vector of vectors/ runs on both too.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings, strategies as st

from cod import CodError, Engine, Input, JobSpec, Limits, cid_of_tree, module_cid, run

from ..helpers import VECTORS, load_vector, vector_modules, vector_names

FSPROG = (VECTORS / "fsprog.wasm").read_bytes()
TMPFS = Path("/dev/shm")


def _fs_type(path: Path) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture()
def two_hosts(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A directory on ext4 and one on tmpfs."""
    if not TMPFS.is_dir() or _fs_type(TMPFS) != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm")
    if not _fs_type(tmp_path).startswith("ext"):
        pytest.skip(f"the test directory is on {_fs_type(tmp_path)}, not ext4")
    shm = Path(tempfile.mkdtemp(dir=TMPFS, prefix="cod-test-"))
    try:
        yield tmp_path, shm
    finally:
        shutil.rmtree(shm, ignore_errors=True)


# -- programs -----------------------------------------------------------------------------
TIB, EXT4 = 1 << 40, 1 << 44
OFFSETS = [0, 1, 10, 4095, 4096, TIB - 1, TIB, TIB + 1, EXT4 - 1, EXT4, EXT4 + 1, (1 << 63) - 1, 1 << 63,
           (1 << 64) - 1, -1, -10, -(1 << 63)]
NAMES = ["a", "b", "c", "f", "d" * 255, "e" * 256, "..", ".", "@"]
fds = st.sampled_from([3, 4, 5, 6, 7, 8, 9])
offsets = st.one_of(st.sampled_from(OFFSETS), st.integers(-(1 << 63), (1 << 64) - 1), st.integers(0, 20000))
paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map(lambda p: "/".join(p).replace("@/", ""))
lengths = st.integers(0, 5000)
octet = st.integers(0, 255)

ops = st.one_of(
    st.builds(lambda d, p, o, f, w: f"open {d} {p} {o} {f} {w}", st.sampled_from([3, 4, 4, 5]), paths,
              st.integers(0, 15), st.sampled_from([0, 1]), st.sampled_from([0, 1])),
    st.builds(lambda fd, n, b: f"write {fd} {n} {b}", fds, lengths, octet),
    st.builds(lambda fd, o, n, b: f"pwrite {fd} {o} {n} {b}", fds, offsets, lengths, octet),
    st.builds(lambda fd, n: f"read {fd} {n}", fds, lengths),
    st.builds(lambda fd, o, n: f"pread {fd} {o} {n}", fds, offsets, lengths),
    st.builds(lambda fd, o, w: f"seek {fd} {o} {w}", fds, offsets, st.integers(0, 3)),
    st.builds(lambda fd: f"tell {fd}", fds),
    st.builds(lambda fd, o: f"trunc {fd} {o}", fds, st.one_of(st.sampled_from(OFFSETS), st.integers(0, 9000))),
    st.builds(lambda fd: f"fstat {fd}", fds),
    st.builds(lambda d, p, f: f"stat {d} {p} {f}", st.sampled_from([3, 4]), paths, st.sampled_from([0, 1])),
    st.builds(lambda d, p: f"mkdir {d} {p}", st.sampled_from([4, 4, 3]), paths),
    st.builds(lambda name, n: f"deep 4 {name} {n}", st.sampled_from(["d", "dd", "n" * 100, "a"]),
              st.integers(1, 300)),
    st.builds(lambda a, b: f"rename 4 {a} 4 {b}", paths, paths),
    st.builds(lambda p: f"unlink 4 {p}", paths),
    st.builds(lambda p: f"rmdir 4 {p}", paths),
    st.builds(lambda fd, n, c: f"readdir {fd} {n} {c}", st.sampled_from([3, 4, 5, 6]), st.integers(0, 600),
              st.integers(0, 8)),
    st.builds(lambda a, b: f"renumber {a} {b}", fds, fds),
    st.builds(lambda fd: f"close {fd}", fds),
)
programs = st.lists(ops, min_size=1, max_size=25).map(lambda lines: "\n".join(lines) + "\n")


def _run_on(engine: Engine, spec: JobSpec, wasm: bytes, sources: dict[str, str], out: Path,
            modules: dict[str, bytes] | None = None) -> tuple[str, str]:
    """(result CID, stdout), or ("error", the CodError's class) when the run has no result."""
    try:
        result = run(spec, wasm, sources, out, engine, modules=modules)
    except CodError as err:
        return "error", type(err).__name__
    return result.result_cid, (out / "stdout").read_text("utf-8", "replace")


def _fsprog_on_both(engine: Engine, hosts: tuple[Path, Path], program: str, n: int) -> tuple[tuple[str, str], ...]:
    ext4, shm = hosts
    data = ext4 / f"in{n}"
    data.mkdir()
    (data / "prog").write_text(program)
    (data / "sub").mkdir()
    (data / "sub" / "x").write_bytes(b"input")
    spec = JobSpec(module=module_cid(FSPROG), args=("fsprog",), inputs=(Input(str(cid_of_tree(data)), "/inputs"),),
                   limits=Limits(output_bytes=1 << 24))
    outcomes = tuple(_run_on(engine, spec, FSPROG, {"/inputs": str(data)}, root / f"out{n}") for root in hosts)
    for root in hosts:
        shutil.rmtree(root / f"out{n}", ignore_errors=True)
    return outcomes


SEEK_PAST_EXT4 = "open 4 f 1 0 1\nwrite 5 10 65\nseek 5 17592186044417 0\ntell 5\nread 5 10\npread 5 0 10\n"
BIG_PWRITE = "open 4 f 1 0 1\npwrite 5 17592186044416 1 66\npwrite 5 1099511627776 1 66\nfstat 5\n"
DEEP = "deep 4 d 300\nmkdir 4 x\nrename 4 d 4 x/d\ndeep 4 n 3\n"


def test_fsprog_agrees_on_ext4_and_tmpfs(engine: Engine, two_hosts: tuple[Path, Path]) -> None:
    counter = iter(range(10**6))

    @settings(max_examples=25, database=None)
    @example(program=SEEK_PAST_EXT4)
    @example(program=BIG_PWRITE)
    @example(program=DEEP)
    @given(program=programs)
    def check(program: str) -> None:
        on_ext4, on_tmpfs = _fsprog_on_both(engine, two_hosts, program, next(counter))
        assert on_ext4 == on_tmpfs, program

    check()


def test_seek_past_ext4s_limit_is_einval_on_both(engine: Engine, two_hosts: tuple[Path, Path]) -> None:
    on_ext4, on_tmpfs = _fsprog_on_both(engine, two_hosts, SEEK_PAST_EXT4, 0)
    assert on_ext4 == on_tmpfs
    # hand-derived from SPEC 4.5: 2^44 + 1 > MAX_FILE_SIZE (2^40) is EINVAL (28); the position stays at 10
    assert on_ext4[1] == ("1 open -> 0 5\n2 write -> 0 10\n3 seek -> 28 0\n4 tell -> 0 10\n"
                          f"5 read -> 0 0 {_fnv1a(b''):016x}\n6 pread -> 0 10 {_fnv1a(b'A' * 10):016x}\n")


def _fnv1a(data: bytes) -> int:
    """FNV-1a, 64 bits (offset basis 0xcbf29ce484222325, prime 0x100000001b3)."""
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & ((1 << 64) - 1)
    return h


@pytest.mark.parametrize("name", vector_names())
def test_vectors_agree_on_ext4_and_tmpfs(name: str, engine: Engine, two_hosts: tuple[Path, Path]) -> None:
    vector = load_vector(name)
    spec = JobSpec.from_dict(vector["spec"])
    wasm = (VECTORS / vector["module"]).read_bytes()
    sources = {item.path: str(VECTORS / vector["inputs"][item.path]) for item in spec.inputs}
    modules = vector_modules(vector)
    on_ext4, on_tmpfs = (_run_on(engine, spec, wasm, sources, root / "out", modules) for root in two_hosts)
    assert on_ext4 == on_tmpfs
    expect = vector["expect"]
    assert on_ext4[0] == ("error" if "error" in expect else expect["result_cid"])


def test_fsprog_vector_follows_the_contract() -> None:
    # each expected line derived by hand from SPEC 4.5 (errnos: EINVAL 28, EFBIG 22, ENAMETOOLONG 37)
    lines = load_vector("fsprog")["expect"]["stdout"].splitlines()
    expected = {
        3: "seek -> 28 0",  # 2^44 + 1: past MAX_FILE_SIZE (and past ext4's limit)
        4: "seek -> 28 0",  # 2^40 + 1
        5: "seek -> 0 1099511627776",  # exactly 2^40
        6: "write -> 22 0",  # one byte at 2^40 would end past the limit
        10: "pwrite -> 22 0",  # at 2^63
        11: f"pread -> 0 0 {_fnv1a(b''):016x}",  # at 2^64 - 1: nothing to read
        12: f"pread -> 0 4 {_fnv1a(b'AAAA'):016x}",
        13: "trunc -> 22",  # 2^40 + 1
        20: "tell -> 0 6",  # APPEND: the second write went to the end, not to 0
        23: f"read -> 0 6 {_fnv1a(b'input' + bytes([10])):016x}",
        27: "deep -> 37 255",  # the 256th level is refused
        29: "rename -> 37",  # top/d would hold an entry of 256 components
        30: "rename -> 28",  # a directory into itself
        33: "open -> 37 0",  # a 256-byte name
    }
    for number, text in expected.items():
        assert lines[number - 1] == f"{number} {text}"
