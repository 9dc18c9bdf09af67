"""Symlinks and hard links a job makes in its output mount (SPEC 4.5), attacked.

Expected errnos are derived by hand from preview1, POSIX (symlinkat, linkat) and what
wasmtime's cap-std does (an absolute symlink target is refused at creation: EPERM; a hard
link to a directory: EPERM; path_link with SYMLINK_FOLLOW: EINVAL); inode numbers and link
counts from SPEC 4.5's rule (a hard link shares its source's inode number, counted virtually).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from cod import Engine
from cod.content.unixfs import cid_of_tree
from cod.errors import OutputLimitExceeded
from cod.wasm import abi
from cod.wasm.vfs import inode

from ..helpers import js_unixfs_cid
from .test_wasi_hosts import two_hosts  # noqa: F401 (a fixture)
from .wasi_harness import Harness


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    (root / "d").mkdir(parents=True)
    (root / "secret.txt").write_bytes(b"input bytes")
    return root


@pytest.fixture()
def h(engine: Engine, tmp_path: Path, inputs: Path) -> Iterator[Harness]:
    harness = Harness(engine, tmp_path / "run", inputs)
    yield harness
    harness.close()


def symlink(h: Harness, target: bytes, path: bytes, dirfd: int | None = None) -> int:
    h.write(0x100, target)
    h.write(0x600, path)
    return h.call("path_symlink", 0x100, len(target), h.outputs_fd if dirfd is None else dirfd, 0x600, len(path))


def link(h: Harness, old: bytes, new: bytes, *, old_fd: int | None = None, new_fd: int | None = None,
         flags: int = 0) -> int:
    h.write(0x100, old)
    h.write(0x600, new)
    return h.call("path_link", h.outputs_fd if old_fd is None else old_fd, flags, 0x100, len(old),
                  h.outputs_fd if new_fd is None else new_fd, 0x600, len(new))


def readlink(h: Harness, path: bytes, size: int = 64) -> tuple[int, bytes]:
    h.write(0x100, path)
    errno = h.call("path_readlink", h.outputs_fd, 0x100, len(path), 0x3000, size, 0x80)
    return errno, h.read(0x3000, h.u32(0x80)) if errno == 0 else b""


def pstat(h: Harness, path: bytes, follow: bool = False, dirfd: int | None = None) -> tuple[int, dict[str, int]]:
    h.write(0x100, path)
    errno = h.call("path_filestat_get", h.outputs_fd if dirfd is None else dirfd, int(follow), 0x100, len(path),
                   0x4000)
    return errno, _filestat(h, 0x4000) if errno == 0 else {}


def fstat(h: Harness, fd: int) -> dict[str, int]:
    assert h.call("fd_filestat_get", fd, 0x4000) == 0
    return _filestat(h, 0x4000)


def _filestat(h: Harness, ptr: int) -> dict[str, int]:
    dev, ino, filetype, nlink, size = struct.unpack("<QQBxxxxxxxQQ", h.read(ptr, 40))
    return {"dev": dev, "ino": ino, "filetype": filetype, "nlink": nlink, "size": size}


def make_file(h: Harness, path: bytes, data: bytes = b"") -> None:
    errno, fd = h.open(path, oflags=abi.O_CREAT, write=True)
    assert errno == 0
    if data:
        assert h.fd_write(fd, data) == (0, len(data))
    assert h.call("fd_close", fd) == 0


# -- symlinks ---------------------------------------------------------------------------
def test_a_symlink_is_made_read_back_stated_and_removed_without_touching_its_target(h: Harness) -> None:
    make_file(h, b"target", b"12345")
    assert symlink(h, b"target", b"link") == 0
    assert os.readlink(h.outputs / "link") == "target"
    assert readlink(h, b"link") == (0, b"target")
    assert readlink(h, b"link", 4) == (0, b"targ")  # a short buffer gets the first bytes
    errno, st = pstat(h, b"link")
    assert errno == 0 and st["filetype"] == abi.FILETYPE_SYMBOLIC_LINK and st["size"] == len(b"target")
    assert st["ino"] == inode(b"/outputs/link") and st["nlink"] == 1
    errno, st = pstat(h, b"link", follow=True)
    assert errno == 0 and st["filetype"] == abi.FILETYPE_REGULAR_FILE and st["size"] == 5
    assert st["ino"] == inode(b"/outputs/target")
    assert h.open(b"link")[0] == abi.ELOOP  # not followed: a symlink is never opened
    errno, fd = h.open(b"link", follow=True)
    assert errno == 0 and h.fd_read(fd, 10) == (0, b"12345")
    assert symlink(h, b"other", b"link") == abi.EEXIST
    assert symlink(h, b"other", b"target") == abi.EEXIST
    assert h.path_call("path_unlink_file", b"link") == 0
    assert (h.outputs / "target").read_bytes() == b"12345" and not os.path.lexists(h.outputs / "link")


def test_symlink_targets_are_bytes_checked_only_as_wasmtime_does(h: Harness) -> None:
    assert symlink(h, b"/", b"abs") == abi.EPERM  # cap-std: an absolute target is an escape attempt
    assert symlink(h, b"/etc/passwd", b"abs") == abi.EPERM
    assert symlink(h, b"", b"empty") == abi.ENOENT  # symlinkat(2) with an empty target
    assert symlink(h, b"a\x00b", b"nul") == abi.EINVAL
    assert symlink(h, b"\xff\xfe", b"bad") == abi.EILSEQ  # UnixFS (and the JS importer) hold text
    assert symlink(h, b"x" * 1025, b"long") == abi.ENAMETOOLONG  # MAX_PATH_BYTES
    assert sorted(os.listdir(h.outputs)) == []
    # climbing, dangling and looping targets are only bytes until followed
    for name, target in ((b"up", b"../.."), (b"to-inputs", b"../inputs/secret.txt"), (b"dangling", b"nowhere"),
                         (b"loop", b"loop"), (b"max", b"y" * 1024)):
        assert symlink(h, target, name) == 0, name
        assert readlink(h, name, 2048) == (0, target)


def test_following_a_symlink_never_leaves_the_directory_fd(h: Harness, inputs: Path) -> None:
    assert symlink(h, b"../inputs/secret.txt", b"to-inputs") == 0
    assert symlink(h, b"..", b"up") == 0
    assert symlink(h, b"up/inputs", b"via-up") == 0
    assert symlink(h, b"loop", b"loop") == 0
    assert symlink(h, b"a", b"b") == 0
    assert symlink(h, b"b", b"a") == 0
    for path in (b"to-inputs", b"up", b"via-up", b"up/x", b"via-up/secret.txt"):
        assert h.open(path, follow=True)[0] == abi.ENOTCAPABLE, path
        assert pstat(h, path, follow=True)[0] == abi.ENOTCAPABLE, path
    assert h.open(b"up/new", oflags=abi.O_CREAT, write=True)[0] == abi.ENOTCAPABLE
    assert h.path_call("path_create_directory", b"up/newdir") == abi.ENOTCAPABLE
    for path in (b"loop", b"a", b"loop/x"):
        assert h.open(path, follow=True)[0] == abi.ELOOP, path
    assert (inputs / "secret.txt").read_bytes() == b"input bytes"
    assert sorted(os.listdir(h.root)) == ["outputs", "stderr", "stdout"]  # nothing created beside outputs/


def test_symlinks_inside_the_mount_are_followed_virtually(h: Harness) -> None:
    assert h.path_call("path_create_directory", b"dir") == 0
    make_file(h, b"dir/f", b"inside")
    assert symlink(h, b"dir", b"to-dir") == 0
    assert symlink(h, b"../dir/f", b"dir/self-up") == 0
    errno, fd = h.open(b"to-dir/self-up", follow=True)
    assert errno == 0 and h.fd_read(fd, 10) == (0, b"inside")
    errno, st = pstat(h, b"to-dir", follow=True)
    assert errno == 0 and st["filetype"] == abi.FILETYPE_DIRECTORY and st["ino"] == inode(b"/outputs/dir")
    # trailing slashes: a new name ending in "/" must be a directory
    assert symlink(h, b"source", b"new/") == abi.ENOENT
    assert symlink(h, b"source", b"dir/") == abi.EEXIST
    assert symlink(h, b"source", b"dir/f/") == abi.ENOTDIR
    assert h.path_call("path_unlink_file", b"to-dir/") == abi.EISDIR  # the slash follows the link
    assert h.path_call("path_remove_directory", b"to-dir") == abi.ENOTDIR
    assert h.path_call("path_unlink_file", b"to-dir") == 0
    assert sorted(os.listdir(h.outputs)) == ["dir"]


def test_a_directory_fd_whose_directory_became_a_link_names_nothing(h: Harness, tmp_path: Path) -> None:
    """A fd names its directory by path: after the guest renames the directory away and puts a
    link climbing out of the mount at its place, the host must not be led through that link."""
    assert h.path_call("path_create_directory", b"d") == 0
    errno, dfd = h.open(b"d", oflags=abi.O_DIRECTORY)
    assert errno == 0
    assert h.rename(b"d", b"moved") == 0
    assert symlink(h, b"../..", b"d") == 0  # the host would follow it to the staging directory's parent
    (tmp_path / "outside.txt").write_bytes(b"host file")
    assert h.open(b"outside.txt", dirfd=dfd)[0] == abi.ENOENT
    assert h.open(b"run/stdout", dirfd=dfd)[0] == abi.ENOENT
    assert h.open(b"planted", dirfd=dfd, oflags=abi.O_CREAT, write=True)[0] == abi.ENOENT
    assert pstat(h, b"outside.txt", dirfd=dfd)[0] == abi.ENOENT
    assert h.call("fd_filestat_get", dfd, 0x4000) == abi.ENOENT
    assert h.call("fd_readdir", dfd, 0x3000, 512, 0, 0x80) == abi.ENOENT
    assert not (tmp_path / "planted").exists() and not (h.root / "planted").exists()
    # a real directory back at that path is what the fd names again (fds name paths, SPEC 4.5)
    assert h.path_call("path_unlink_file", b"d") == 0
    assert h.path_call("path_create_directory", b"d") == 0
    assert h.open(b"new", dirfd=dfd, oflags=abi.O_CREAT, write=True)[0] == 0
    assert (h.outputs / "d" / "new").exists()


def test_renaming_links_moves_the_link_not_its_target(h: Harness) -> None:
    make_file(h, b"f", b"x")
    assert symlink(h, b"f", b"l") == 0
    assert h.rename(b"l", b"m") == 0
    assert os.readlink(h.outputs / "m") == "f" and (h.outputs / "f").read_bytes() == b"x"
    assert h.path_call("path_create_directory", b"dir") == 0
    assert h.rename(b"dir", b"m") == abi.ENOTDIR  # a directory cannot replace a link
    assert h.rename(b"m", b"dir") == abi.EISDIR
    assert h.rename(b"m", b"f") == 0  # a link replaces a file
    assert os.readlink(h.outputs / "f") == "f"
    assert h.open(b"f", follow=True)[0] == abi.ELOOP


# -- hard links -------------------------------------------------------------------------
def test_a_hard_link_shares_inode_and_bytes_and_counts_links_virtually(h: Harness) -> None:
    make_file(h, b"file", b"abc")
    assert h.path_call("path_create_directory", b"sub") == 0
    assert link(h, b"file", b"sub/link") == 0
    original = inode(b"/outputs/file")
    errno, fd = h.open(b"file", write=True)
    assert errno == 0
    errno, lfd = h.open(b"sub/link")
    assert errno == 0
    one, two = fstat(h, fd), fstat(h, lfd)
    assert one == two == {"dev": 0, "ino": original, "filetype": abi.FILETYPE_REGULAR_FILE, "nlink": 2, "size": 3}
    assert h.fd_pwrite(fd, b"Z", 0) == (0, 1)
    assert h.fd_pread(lfd, 10, 0) == (0, b"Zbc")
    assert link(h, b"sub/link", b"third") == 0
    assert pstat(h, b"third")[1]["nlink"] == 3 and pstat(h, b"third")[1]["ino"] == original
    assert h.path_call("path_unlink_file", b"file") == 0
    errno, st = pstat(h, b"sub/link")
    assert errno == 0 and st["nlink"] == 2 and st["ino"] == original  # the inode keeps its number
    assert h.rename(b"sub/link", b"third") == 0  # two names of one file: rename does nothing (POSIX)
    assert pstat(h, b"sub/link")[1]["nlink"] == 2
    assert h.path_call("path_unlink_file", b"third") == 0
    assert pstat(h, b"sub/link")[1]["nlink"] == 1
    make_file(h, b"fresh")  # a new file never inherits a freed link entry
    assert pstat(h, b"fresh")[1] == {"dev": 0, "ino": inode(b"/outputs/fresh"),
                                     "filetype": abi.FILETYPE_REGULAR_FILE, "nlink": 1, "size": 0}


def test_hard_link_errors_are_those_of_wasmtime(h: Harness) -> None:
    make_file(h, b"file")
    assert h.path_call("path_create_directory", b"dir") == 0
    assert link(h, b"file", b"file") == abi.EEXIST
    assert link(h, b"file", b"dir") == abi.EEXIST
    assert link(h, b"dir", b"dlink") == abi.EPERM  # no hard links to directories
    assert link(h, b"file", b"new/") == abi.ENOENT
    assert link(h, b"missing", b"new") == abi.ENOENT
    assert link(h, b"file", b"new", flags=abi.LOOKUP_SYMLINK_FOLLOW) == abi.EINVAL
    assert link(h, b"../inputs/secret.txt", b"stolen") == abi.ENOTCAPABLE
    assert link(h, b"secret.txt", b"stolen", old_fd=h.inputs_fd) == abi.EXDEV  # across mounts
    assert link(h, b"secret.txt", b"again", old_fd=h.inputs_fd, new_fd=h.inputs_fd) == abi.EROFS
    assert link(h, b"file", b"x", new_fd=h.inputs_fd) == abi.EXDEV
    # a link to a symlink (dangling, or a loop) links the symlink itself
    assert symlink(h, b"target", b"dangling") == 0
    assert link(h, b"dangling", b"hard") == 0
    assert os.readlink(h.outputs / "hard") == "target"
    assert symlink(h, b"loop", b"loop") == 0
    assert link(h, b"loop", b"loop2") == 0
    assert link(h, b"file", b"dangling") == abi.EEXIST
    assert sorted(os.listdir(h.outputs)) == ["dangling", "dir", "file", "hard", "loop", "loop2"]


def test_every_name_of_a_file_counts_against_the_output_cap(engine: Engine, tmp_path: Path) -> None:
    """Each name is its own file entry in the results (its bytes hashed and downloaded again),
    so the cap counts a file's bytes once per name: 10 names, then 100 bytes = 1000 bytes."""
    h = Harness(engine, tmp_path / "run", output_limit=999)
    try:
        make_file(h, b"f")
        for n in range(9):
            assert link(h, b"f", b"l%d" % n) == 0
        errno, fd = h.open(b"f", write=True)
        assert errno == 0
        with pytest.raises(OutputLimitExceeded):
            h.fd_write(fd, b"x" * 100)
    finally:
        h.close()
    h = Harness(engine, tmp_path / "run2", output_limit=1000)
    try:
        make_file(h, b"f", b"x" * 500)
        assert link(h, b"f", b"l") == 0  # 500 + 500
        with pytest.raises(OutputLimitExceeded):
            symlink(h, b"t", b"s")  # one more byte
    finally:
        h.close()


def test_a_tree_of_guest_made_links_hashes_as_the_js_importer_does(h: Harness) -> None:
    make_file(h, b"file", b"shared bytes")
    assert h.path_call("path_create_directory", b"dir") == 0
    assert link(h, b"file", b"dir/hard") == 0
    for name, target in ((b"rel", b"file"), (b"dir/up", b"../file"), (b"climb", b"../../x"), (b"loop", b"loop"),
                         (b"to-dir", b"dir"), (b"dir/dangling", b"nowhere"), ("ünï".encode(), "tärget".encode())):
        assert symlink(h, target, name) == 0
    assert str(cid_of_tree(h.outputs)) == js_unixfs_cid(h.outputs)


def test_a_c_guest_s_links_get_what_wasmtime_s_own_wasi_gives(engine: Engine, tmp_path: Path) -> None:
    """wasmtime's built-in WASI (cap-std) as the independent reference: the escape vector's
    symlink and link calls (an absolute target, ``..``, a hard link) answer the same under cod."""
    import shutil

    import wasmtime

    from cod import JobSpec, module_cid, run
    from cod.jobspec import Input

    from ..helpers import VECTORS

    wasm = (VECTORS / "escape.wasm").read_bytes()
    data = VECTORS / "data" / "escape"
    spec = JobSpec(module=module_cid(wasm), args=("escape.wasm",),
                   inputs=(Input(cid=str(cid_of_tree(data)), path="/inputs"),))
    ours = (run(spec, wasm, {"/inputs": data}, tmp_path / "cod", engine).results_dir / "stdout").read_text()
    copy, outputs = tmp_path / "inputs-copy", tmp_path / "builtin-outputs"
    shutil.copytree(data, copy, symlinks=True)
    outputs.mkdir()
    builtin = wasmtime.Engine()
    linker = wasmtime.Linker(builtin)
    linker.define_wasi()
    store = wasmtime.Store(builtin)
    config = wasmtime.WasiConfig()
    config.argv = ["escape.wasm"]
    config.stdout_file = str(tmp_path / "builtin-stdout")
    config.preopen_dir(str(copy), "/inputs")
    config.preopen_dir(str(outputs), "/outputs")
    store.set_wasi(config)
    instance = linker.instantiate(store, wasmtime.Module(builtin, wasm))
    instance.exports(store)["_start"](store)  # type: ignore[operator]
    theirs = (tmp_path / "builtin-stdout").read_text()

    def links(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith(("symlink ", "link "))]

    assert links(ours) == links(theirs) and len(links(ours)) == 3, (links(ours), links(theirs))
    assert os.readlink(outputs / "up") == ".." == os.readlink(tmp_path / "cod" / "outputs" / "up")


def test_a_file_has_at_most_max_links_names_whatever_the_host_allows(engine: Engine, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Hosts differ in how many names a file may have (ext4: 65000): cod's own cap answers
    EMLINK first, so no host limit decides an outcome; a name removed makes room again."""
    from cod.wasm import vfs

    assert vfs.MAX_LINKS == 1000
    monkeypatch.setattr(vfs, "MAX_LINKS", 3)
    h = Harness(engine, tmp_path / "run")
    try:
        make_file(h, b"f")
        assert link(h, b"f", b"a") == 0 and link(h, b"a", b"b") == 0
        assert link(h, b"f", b"c") == abi.EMLINK
        assert pstat(h, b"f")[1]["nlink"] == 3
        assert h.path_call("path_unlink_file", b"b") == 0
        assert link(h, b"f", b"c") == 0
    finally:
        h.close()


NAMES = [b"a", b"b", b"d", b"d/x", b"a/", b"d/", b"..", b"d/..", b"l", b"l/x", b"d/l", b"m"]
TARGETS = [b"a", b"..", b"../..", b"d", b"l", b"d/x", b"/x", b"../outputs/a", b"x/../a", b"m"]
OPS = ["symlink", "link", "unlink", "rename", "mkdir", "rmdir", "create", "write", "stat", "readlink"]


def _apply(h: Harness, op: str, one: bytes, two: bytes) -> int:
    if op == "symlink":
        return symlink(h, two, one)
    if op == "link":
        return link(h, one, two.rstrip(b"/") or b"z")
    if op == "rename":
        return h.rename(one, two)
    if op in ("unlink", "mkdir", "rmdir"):
        return h.path_call({"unlink": "path_unlink_file", "mkdir": "path_create_directory",
                            "rmdir": "path_remove_directory"}[op], one)
    if op in ("create", "write"):
        errno, fd = h.open(one, oflags=abi.O_CREAT if op == "create" else 0, write=True, follow=True)
        if errno == 0:
            errno = h.fd_write(fd, b"x" * len(two))[0]
            assert h.call("fd_close", fd) == 0
        return errno
    if op == "stat":
        return pstat(h, one, follow=True)[0]
    return readlink(h, one)[0]


def _tree(root: Path) -> list[tuple[str, str]]:
    out = []
    for dirpath, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = os.path.join(dirpath, name)
            kind = "-> " + os.readlink(path) if os.path.islink(path) else "dir" if name in dirs else \
                Path(path).read_text()
            out.append((os.path.relpath(path, root), kind))
    return sorted(out)


def test_any_sequence_of_link_operations_is_total_repeatable_and_counted_as_the_host_counts(
        engine: Engine, tmp_path: Path) -> None:
    """Sequences of symlink/link/rename/unlink/... over a few names and hostile targets: no host
    fault, the same errnos and tree twice, nothing outside outputs/, every file's virtual link
    count equal to the host's own (an independent count) and one inode number per host file."""
    from hypothesis import given, settings, strategies as st

    from cod.errors import Indeterminate

    counter = iter(range(1 << 30))
    ops = st.lists(st.tuples(st.sampled_from(OPS), st.sampled_from(NAMES), st.sampled_from(NAMES + TARGETS)),
                   max_size=25)

    def once(steps: list[tuple[str, bytes, bytes]]) -> tuple[list[int], list[tuple[str, str]]]:
        h = Harness(engine, tmp_path / f"run{next(counter)}")
        try:
            errnos = []
            for op, one, two in steps:
                try:
                    errnos.append(_apply(h, op, one, two))
                except Indeterminate:
                    raise
            seen: dict[tuple[int, int], int] = {}
            for dirpath, _dirs, files in os.walk(h.outputs):
                for name in files:
                    host = os.lstat(os.path.join(dirpath, name))
                    rel = os.path.relpath(os.path.join(dirpath, name), h.outputs).encode()
                    errno, st_ = pstat(h, rel)
                    assert errno == 0, rel
                    assert st_["nlink"] == host.st_nlink, (rel, steps)
                    assert seen.setdefault((host.st_dev, host.st_ino), st_["ino"]) == st_["ino"], (rel, steps)
            assert sorted(os.listdir(h.root)) == ["outputs", "stderr", "stdout"]
            cid_of_tree(h.outputs)  # every tree a job can make is importable
            return errnos, _tree(h.outputs)
        finally:
            h.close()

    @settings(max_examples=200, database=None, deadline=None)
    @given(steps=ops)
    def check(steps: list[tuple[str, bytes, bytes]]) -> None:
        assert once(steps) == once(steps)

    check()


def test_mkdir_never_follows_a_final_symlink_even_with_a_trailing_slash(h: Harness) -> None:
    """mkdir(2): an existing name is EEXIST whatever it is; a dangling link named with a
    trailing slash must not make its target appear (Linux answers EEXIST; so does cod)."""
    assert symlink(h, b"target", b"dangling") == 0
    assert h.path_call("path_create_directory", b"dangling/") == abi.EEXIST
    assert h.path_call("path_create_directory", b"dangling") == abi.EEXIST
    assert not os.path.lexists(h.outputs / "target")
    make_file(h, b"file")
    assert h.path_call("path_create_directory", b"file/") == abi.EEXIST
    assert h.path_call("path_create_directory", b"new/") == 0 and (h.outputs / "new").is_dir()


def test_o_creat_of_a_name_with_a_trailing_slash_makes_no_file(h: Harness) -> None:
    """open(2): O_CREAT of ``name/`` is EISDIR (a trailing slash names a directory), so a
    dangling link named so cannot make its target appear as a file."""
    assert symlink(h, b"target", b"dangling") == 0
    assert h.open(b"dangling/", oflags=abi.O_CREAT, write=True)[0] == abi.EISDIR
    assert h.open(b"new/", oflags=abi.O_CREAT, write=True)[0] == abi.EISDIR
    assert sorted(os.listdir(h.outputs)) == ["dangling"]


def test_o_creat_through_a_dangling_link_whose_target_ends_in_a_slash_makes_no_file(h: Harness) -> None:
    """open(2) on Linux: O_CREAT through ``x -> sub/`` (``sub`` missing) is EISDIR, as for
    ``sub/`` itself: the target's slash names a directory, so no regular file ``sub`` appears;
    also at the end of a chain of links, and ENOENT when a directory before it is missing."""
    assert symlink(h, b"sub/", b"x") == 0
    assert symlink(h, b"x", b"chain") == 0
    assert symlink(h, b"missing/sub/", b"deep") == 0
    assert h.open(b"x", oflags=abi.O_CREAT, write=True, follow=True)[0] == abi.EISDIR
    assert h.open(b"chain", oflags=abi.O_CREAT, write=True, follow=True)[0] == abi.EISDIR
    assert h.open(b"deep", oflags=abi.O_CREAT, write=True, follow=True)[0] == abi.ENOENT
    assert h.open(b"x", follow=True)[0] == abi.ENOENT  # without O_CREAT: a dangling link
    assert sorted(os.listdir(h.outputs)) == ["chain", "deep", "x"]


def _host_trace(h: Harness, steps: list[tuple[str, bytes, bytes]]) -> list[object]:
    """Every errno and, after each step, the filestat (inode, link count, times) of a few names
    and of the fds held open: all a guest sees of links and set times."""
    trace: list[object] = []
    held: list[int] = []
    for op, one, two in steps:
        if op == "settimes":
            h.write(0x100, one)
            trace.append(h.call("path_filestat_set_times", h.outputs_fd, 1, 0x100, len(one), 1000 * len(two) + 7,
                                99, abi.FST_ATIM | abi.FST_MTIM))
        elif op == "hold":
            errno, fd = h.open(one, follow=True, write=True)
            trace.append(errno)
            held += [fd] if errno == 0 else []
        elif op == "release" and held:
            trace.append(h.call("fd_close", held.pop(0)))
        elif op == "settimes_fd" and held:
            trace.append(h.call("fd_filestat_set_times", held[-1], 5, len(two), abi.FST_ATIM | abi.FST_MTIM))
        elif op in OPS:
            trace.append(_apply(h, op, one, two))
        seen = []
        for name in (b"a", b"b", b"m", b"d/x", b"l"):
            h.write(0x100, name)
            errno = h.call("path_filestat_get", h.outputs_fd, 0, 0x100, len(name), 0x4000)
            seen.append((errno, h.read(0x4000, 64) if errno == 0 else b""))  # all of it: times too
        for fd in held:
            assert h.call("fd_filestat_get", fd, 0x4000) == 0
            seen.append((0, h.read(0x4000, 64)))
        trace.append(seen)
    return trace


def test_links_and_set_times_look_the_same_on_ext4_and_tmpfs(engine: Engine, request: pytest.FixtureRequest) -> None:
    """Sequences of link, symlink, rename, unlink, times set by path and by fd, with fds held open
    across unlinks: the guest sees the same errnos, inode numbers, link counts and times with its
    outputs on ext4 (which reuses a freed inode number at once) and on tmpfs (which does not), so
    no record kept by host identity outlives its file."""
    import random

    ext4, tmpfs = request.getfixturevalue("two_hosts")  # test_wasi_hosts' fixture (imported above)
    rng = random.Random(20261207)
    ops = OPS + ["settimes", "hold", "release", "settimes_fd"]
    # a file with two names and set times dies (names removed, then its fd closed); ext4 gives the
    # next file its inode number
    reuse = [("create", b"a", b""), ("link", b"a", b"b"), ("settimes", b"a", b"xy"), ("hold", b"b", b""),
             ("unlink", b"a", b""), ("unlink", b"b", b""), ("release", b"", b""), ("create", b"m", b"x"),
             ("link", b"m", b"a"), ("unlink", b"m", b""), ("create", b"b", b""), ("unlink", b"a", b""),
             ("create", b"l", b"")]
    for n in range(61):
        steps = [(rng.choice(ops), rng.choice(NAMES), rng.choice(NAMES + TARGETS)) for _ in range(rng.randint(20, 60))]
        steps = reuse if n == 0 else steps
        traces = []
        for root in (ext4, tmpfs):
            h = Harness(engine, root / f"run{n}")
            try:
                traces.append(_host_trace(h, steps))
            finally:
                h.close()
        assert traces[0] == traces[1], steps


def test_a_file_or_link_renamed_to_a_new_name_with_a_trailing_slash_stays_put(h: Harness) -> None:
    """rename(2) on Linux: only a directory may be named ``new/``; a file or a symlink moved to
    a missing ``g/`` is ENOTDIR and keeps its name (a directory moves)."""
    make_file(h, b"f", b"bytes")
    assert symlink(h, b"nowhere", b"s") == 0
    assert h.path_call("path_create_directory", b"d") == 0
    assert h.rename(b"f", b"g/") == abi.ENOTDIR
    assert h.rename(b"s", b"t/") == abi.ENOTDIR
    assert sorted(os.listdir(h.outputs)) == ["d", "f", "s"]
    assert h.rename(b"d", b"e/") == 0
    assert sorted(os.listdir(h.outputs)) == ["e", "f", "s"]


def test_rename_never_follows_a_link_named_with_a_trailing_slash(h: Harness) -> None:
    """rename(2) on Linux never follows its last components, so a symlink named ``s/`` (to a
    directory, or dangling) is ENOTDIR on either side and nothing moves."""
    assert h.path_call("path_create_directory", b"d") == 0
    assert symlink(h, b"d", b"s") == 0
    assert symlink(h, b"nowhere", b"x") == 0
    assert h.path_call("path_create_directory", b"e") == 0
    assert h.rename(b"s/", b"y") == abi.ENOTDIR
    assert h.rename(b"e", b"s/") == abi.ENOTDIR
    assert h.rename(b"e", b"x/") == abi.ENOTDIR
    assert sorted(os.listdir(h.outputs)) == ["d", "e", "s", "x"]
    assert h.rename(b"e/", b"y/") == 0 and sorted(os.listdir(h.outputs)) == ["d", "s", "x", "y"]


def test_rmdir_of_a_link_named_with_a_trailing_slash_removes_nothing(h: Harness) -> None:
    """rmdir(2) on Linux never follows its last component: ``s/`` for a symlink to an empty
    directory is ENOTDIR, and neither the link nor the directory goes."""
    assert h.path_call("path_create_directory", b"d") == 0
    assert symlink(h, b"d", b"s") == 0
    assert h.path_call("path_remove_directory", b"s/") == abi.ENOTDIR
    assert h.path_call("path_remove_directory", b"s") == abi.ENOTDIR
    assert sorted(os.listdir(h.outputs)) == ["d", "s"]
    assert h.path_call("path_remove_directory", b"d/") == 0 and sorted(os.listdir(h.outputs)) == ["s"]
