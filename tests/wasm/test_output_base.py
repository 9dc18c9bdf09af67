"""A writable root at ``/`` and an ``output_base`` it starts from (SPEC 2, 4.5), and the WASI
fixes the official test suite showed (SPEC 4.5, 4.7).

Expected values are derived by hand in each test: errno numbers from the preview1 witx
(ENOENT 44, ENAMETOOLONG 37, EINVAL 28, EISDIR 31, ENOTCAPABLE 76, ENOSPC 51), inode numbers
from SPEC 4.5's definition (first 8 bytes, little-endian, of SHA-256 of the virtual path).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import pytest

from cod import Engine, JobSpec, module_cid, run
from cod.content.unixfs import Importer
from cod.errors import InputError, OutputLimitExceeded, SpecError
from cod.jobspec import Input
from cod.local import prepare
from cod.wasm import vfs

from ..helpers import VECTORS, js_unixfs_cid
from .wasi_harness import Harness

ENOENT, ENAMETOOLONG, EINVAL, EISDIR, ENOTCAPABLE, ENOSPC = 44, 37, 28, 31, 76, 51
O_DIRECTORY, O_TRUNC = 2, 8
FST_ATIM, FST_ATIM_NOW, FST_MTIM, FST_MTIM_NOW = 1, 2, 4, 8
FSPROG = (VECTORS / "fsprog.wasm").read_bytes()
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"  # any valid CID


# -- the spec ----------------------------------------------------------------------------------
def test_outputs_may_be_the_root_but_then_nothing_else_is_mounted() -> None:
    assert JobSpec(module=CID, outputs="/").validate().outputs == "/"
    with pytest.raises(SpecError) as exc:
        JobSpec(module=CID, outputs="/", inputs=(Input(cid=CID, path="/inputs"),)).validate()
    assert exc.value.field == "outputs"
    with pytest.raises(SpecError):  # an input is never the root
        JobSpec(module=CID, inputs=(Input(cid=CID, path="/"),)).validate()
    with pytest.raises(SpecError):  # docker binds /outputs: no root mount, no base
        JobSpec(engine="docker", image="alpine", outputs="/").validate()
    with pytest.raises(SpecError) as exc:
        JobSpec(engine="docker", image="alpine", output_base=CID).validate()
    assert exc.value.field == "output_base"


def test_output_base_is_left_out_of_the_canonical_bytes_when_absent() -> None:
    plain = JobSpec(module=CID)
    assert b"output_base" not in plain.canonical_bytes()
    based = JobSpec(module=CID, output_base=CID)
    # by hand: keys sort as ... "module" < "output_base" < "outputs" ...
    want = plain.canonical_bytes().replace(b'"outputs":', b'"output_base":"' + CID.encode() + b'","outputs":')
    assert based.canonical_bytes() == want
    assert JobSpec.from_json(want) == based and based.cid != plain.cid
    with pytest.raises(SpecError) as exc:
        JobSpec.from_dict({"module": CID, "output_base": "not-a-cid"})
    assert exc.value.field == "output_base"


# -- the VFS at / --------------------------------------------------------------------------------
@pytest.fixture()
def root(engine: Engine, tmp_path: Path) -> Harness:
    h = Harness(engine, tmp_path / "h", output_path="/")
    yield h  # type: ignore[misc]
    h.close()


def _ino(h: Harness, path: bytes, dirfd: int = 3) -> int:
    h.write(0x100, path)
    assert h.call("path_filestat_get", dirfd, 0, 0x100, len(path), 0x200) == 0
    return h.u64(0x208)


def test_virtual_paths_at_the_root_have_one_slash(root: Harness) -> None:
    assert root.call("fd_prestat_dir_name", 3, 0x300, 1) == 0 and root.read(0x300, 1) == b"/"
    assert root.path_call("path_create_directory", b"a") == 0
    assert _ino(root, b"a") == int.from_bytes(hashlib.sha256(b"/a").digest()[:8], "little")
    assert _ino(root, b".") == int.from_bytes(hashlib.sha256(b"/").digest()[:8], "little")


def test_path_length_at_the_root_counts_one_slash(root: Harness) -> None:
    # "/" + 1023 bytes is 1024 bytes: within MAX_PATH_BYTES, so resolution goes on (ENOENT)
    path = (b"x" * 255 + b"/") * 3 + b"y" * 255
    assert len(path) == 1023
    assert root.open(path)[0] == ENOENT
    assert root.open(path + b"y")[0] == ENAMETOOLONG  # 1025 bytes


# -- WASI fixes ----------------------------------------------------------------------------------
def test_dotdot_may_not_climb_above_the_directory_fd(engine: Engine, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    (inputs / "b").mkdir(parents=True)
    (inputs / "a.txt").write_bytes(b"hello")
    os.symlink("../a.txt", inputs / "b" / "up")
    h = Harness(engine, tmp_path / "h", inputs)
    try:
        assert h.open(b"b/../a.txt", dirfd=h.inputs_fd)[0] == 0  # stays below the fd
        errno, b = h.open(b"b", dirfd=h.inputs_fd, oflags=O_DIRECTORY)
        assert errno == 0
        assert h.open(b"../a.txt", dirfd=b)[0] == ENOTCAPABLE
        assert h.open(b"up", dirfd=b, follow=True)[0] == ENOTCAPABLE  # a link's target neither
        assert h.open(b"up", dirfd=h.inputs_fd)[0] == ENOENT  # no such entry at the root
    finally:
        h.close()


def test_a_directory_opens_to_read_but_not_to_write_or_truncate(root: Harness) -> None:
    # POSIX open(2) and wasmtime: a directory opened for writing is EISDIR (rust/path_open_preopen)
    assert root.path_call("path_create_directory", b"d") == 0
    assert root.open(b"d", oflags=O_DIRECTORY, write=True)[0] == EISDIR
    errno, fd = root.open(b"d", oflags=O_DIRECTORY)
    assert errno == 0 and fd == 4
    assert root.open(b"d", oflags=O_TRUNC)[0] == EISDIR


@pytest.mark.parametrize("flags,want", [(FST_ATIM | FST_ATIM_NOW, EINVAL), (FST_MTIM | FST_MTIM_NOW, EINVAL),
                                        (FST_ATIM | FST_MTIM_NOW, 0), (FST_ATIM_NOW | FST_MTIM, 0)])
def test_set_times_refuses_a_time_both_given_and_now(root: Harness, flags: int, want: int) -> None:
    errno, fd = root.open(b"f", oflags=1, write=True)  # O_CREAT
    assert errno == 0
    assert root.call("fd_filestat_set_times", fd, 5, 6, flags) == want
    root.write(0x100, b"f")
    assert root.call("path_filestat_set_times", 3, 0, 0x100, 1, 5, 6, flags) == want


# -- runs from a base ------------------------------------------------------------------------------
PROGRAM = b"open 3 f 0 0 1\npwrite 4 5 3 65\nmkdir 3 new\nmkdir 3 newer\n"


def _base(tmp_path: Path) -> Path:
    base = tmp_path / "base"
    (base / "d").mkdir(parents=True)
    (base / "d" / "g").write_bytes(b"deep")
    (base / "f").write_bytes(b"hello")
    (base / "prog").write_bytes(PROGRAM)
    return base


def _spec(base: Path, **limits: int) -> JobSpec:
    from cod.jobspec import Limits

    cid = str(Importer().tree(base, mount="/").cid)
    return JobSpec(module=module_cid(FSPROG), args=("fsprog", "/prog"), outputs="/", output_base=cid,
                   limits=Limits(**limits))


def test_a_job_starts_from_its_base_and_its_outputs_are_the_final_tree(engine: Engine, tmp_path: Path) -> None:
    base = _base(tmp_path)
    result = run(_spec(base, output_bytes=3), FSPROG, {"/": str(base)}, tmp_path / "r", engine)
    # fsprog prints "N op -> errno values"; fd 4 is the first after the preopen "/" at 3
    assert (tmp_path / "r" / "stdout").read_bytes() == b"1 open -> 0 4\n2 pwrite -> 0 3\n3 mkdir -> 0\n4 mkdir -> 0\n"
    out = tmp_path / "r" / "outputs"
    assert (out / "f").read_bytes() == b"helloAAA"  # 3 bytes of growth: exactly the cap
    assert (out / "d" / "g").read_bytes() == b"deep" and (out / "new").is_dir()
    assert sorted(os.listdir(out)) == ["d", "f", "new", "newer", "prog"]
    assert (base / "f").read_bytes() == b"hello"  # the base itself is never changed
    assert result.result_cid == str(Importer().tree(tmp_path / "r").cid)


def test_the_output_cap_counts_growth_beyond_the_base(engine: Engine, tmp_path: Path) -> None:
    base = _base(tmp_path)
    with pytest.raises(OutputLimitExceeded):
        run(_spec(base, output_bytes=2), FSPROG, {"/": str(base)}, tmp_path / "r", engine)


def test_the_creation_cap_counts_only_new_entries(engine: Engine, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vfs, "MAX_OUTPUT_ENTRIES", 1)  # the base's 4 entries do not count
    base = _base(tmp_path)
    run(_spec(base), FSPROG, {"/": str(base)}, tmp_path / "r", engine)
    assert (tmp_path / "r" / "stdout").read_bytes().endswith(b"3 mkdir -> 0\n4 mkdir -> 51\n")  # ENOSPC


def test_a_base_holding_symlinks_is_copied_with_them_never_followed(engine: Engine, tmp_path: Path) -> None:
    """Results hold symlinks (SPEC 4.5), so a base may: each is copied as a link with its
    target's bytes, and the results hash as js-ipfs-unixfs hashes the same tree."""
    base = _base(tmp_path)
    os.symlink("f", base / "d" / "link")
    os.symlink("../../outside", base / "up")
    job = prepare(VECTORS / "fsprog.wasm", ["/prog"], outputs="/", output_base=str(base))
    result = run(job.spec, job.wasm, job.sources, tmp_path / "r", engine)
    outputs = tmp_path / "r" / "outputs"
    assert os.readlink(outputs / "d" / "link") == "f" and os.readlink(outputs / "up") == "../../outside"
    assert not (tmp_path / "outside").exists()
    assert result.result_cid == js_unixfs_cid(tmp_path / "r")


def test_a_missing_base_is_an_input_error(engine: Engine, tmp_path: Path) -> None:
    base = _base(tmp_path)
    with pytest.raises(InputError, match="output base"):
        run(_spec(base), FSPROG, {}, tmp_path / "r", engine)


def test_prepare_hashes_the_base_like_an_input(tmp_path: Path) -> None:
    base = _base(tmp_path)
    job = prepare(VECTORS / "fsprog.wasm", ["/prog"], outputs="/", output_base=str(base))
    assert job.spec.output_base == str(Importer().tree(base).cid) and job.sources == {"/": str(base.resolve())}


async def test_nodes_fetch_the_base_like_an_input_and_agree(engine: Engine, tmp_path: Path) -> None:
    from verifier import Devstack, Records, verify

    base = _base(tmp_path)
    job = prepare(VECTORS / "fsprog.wasm", ["/prog"], argv0="fsprog", outputs="/", output_base=str(base))
    local = run(job.spec, job.wasm, job.sources, tmp_path / "local", engine)
    async with Devstack(2, base_dir=tmp_path / "stack") as stack:  # nodes start without the base: 409, upload
        result = await verify(job, stack.urls, 2, records=Records(tmp_path / "r.db"), output_dir=tmp_path / "out")
    assert result.outcome == "verified" and result.result_cid == local.result_cid
    assert (tmp_path / "out" / "outputs" / "f").read_bytes() == b"helloAAA"


def test_cod_run_output_base(tmp_path: Path) -> None:
    from ..cli.test_cli import cod

    base = _base(tmp_path)
    done = cod("run", str(VECTORS / "fsprog.wasm"), "/prog", "--outputs", "/", "--output-base", str(base),
               "--output-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "cache"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["spec"]["output_base"] == str(Importer().tree(base).cid)
    assert (tmp_path / "r" / "outputs" / "f").read_bytes() == b"helloAAA"


def test_fdstat_reports_the_sync_and_nonblock_flags_given_at_open(root: Harness) -> None:
    dsync, nonblock, rsync, sync, append = 2, 4, 8, 16, 1  # preview1 fdflags bits
    errno, fd = root.open(b"f", oflags=1, fdflags=sync | dsync | append, write=True)
    assert errno == 0
    assert root.call("fd_fdstat_get", fd, 0x300) == 0
    assert struct.unpack_from("<H", root.read(0x302, 2))[0] == sync | dsync | append  # fs_flags at offset 2
    assert root.call("fd_fdstat_set_flags", fd, 0) == 0  # clears APPEND only
    assert root.call("fd_fdstat_get", fd, 0x300) == 0
    assert struct.unpack_from("<H", root.read(0x302, 2))[0] == sync | dsync
    errno, fd = root.open(b"f", fdflags=nonblock | rsync)
    assert root.call("fd_fdstat_get", fd, 0x300) == 0
    assert struct.unpack_from("<H", root.read(0x302, 2))[0] == nonblock | rsync


def test_prepare_refuses_a_base_that_is_no_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    for missing in (tmp_path / "nothing", tmp_path / "file"):
        with pytest.raises(InputError, match="output base"):
            prepare(VECTORS / "fsprog.wasm", [], outputs="/", output_base=str(missing))
