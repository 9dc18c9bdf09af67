"""Inputs never escape, and every input tree cod accepts is one the rest of cod can handle.

Ingest (``cod run -i``, the importer) decides what an input is (SPEC section 3): a link given
as ``-i LINK`` names the directory it points to; a root that is a link or a special file is
refused; trees past the virtual limits of ``cod.limits`` or holding anything unreadable, a
fifo, a socket or a device are refused with an InputError naming the path, never a
RecursionError, a hang or an errno at run time.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from cod.content.car import CarWriter, header as car_header
from cod.content.unixfs import Importer, check_entry, cid_of_tree, module_cid, mount_root
from cod.errors import InputError
from cod.limits import MAX_FILE_SIZE, MAX_NAME_BYTES, MAX_PATH_BYTES, MAX_TREE_DEPTH
from cod.local import prepare, run_prepared
from cod.wasm.engine import Engine
from verifier import Devstack, Records, verify

from ..helpers import VECTORS, js_unixfs_cid, load_vector

WORDCOUNT = load_vector("wordcount")
WORDCOUNT_DATA = VECTORS / "data" / "wordcount"


# -- the LINK rule: -i LINK names the directory it points to -------------------------------


def test_link_input_hashes_the_directory_it_names(tmp_path: Path, engine: Engine) -> None:
    link = tmp_path / "data-link"
    link.symlink_to(WORDCOUNT_DATA.resolve(), target_is_directory=True)
    job = prepare(VECTORS / "wordcount.wasm", [], inputs=[str(link)])
    # the input CID is the directory's (as the vector pins it), not the CID of a symlink node
    assert job.spec.inputs[0].cid == WORDCOUNT["spec"]["inputs"][0]["cid"]
    assert str(job.spec.cid) == WORDCOUNT["job_cid"]
    # and what is mounted is the real directory, never the link
    assert job.sources["/inputs"] == os.path.realpath(WORDCOUNT_DATA)
    result = run_prepared(job, tmp_path / "out", engine)
    assert result.result_cid == WORDCOUNT["expect"]["result_cid"]


async def test_link_input_is_verified_as_the_directory(tmp_path: Path, records: Records) -> None:
    # the attack: -i LINK gave the CID of a symlink node, each node mounted its own target and
    # the run still reported VERIFIED. Now every node receives the directory's bytes.
    link = tmp_path / "data-link"
    link.symlink_to(os.path.relpath(WORDCOUNT_DATA.resolve(), tmp_path))
    job = prepare(VECTORS / "wordcount.wasm", [], inputs=[f"{link}:/inputs"])
    async with Devstack(2, base_dir=tmp_path / "stack") as stack:
        result = await verify(job, stack.urls, 2, records=records, output_dir=tmp_path / "out")
        for node in stack.nodes:
            tree = node.node.blobs.tree(str(job.spec.inputs[0].cid))
            assert tree is not None and not tree.is_symlink() and tree.is_dir()
    assert result.outcome == "verified"
    assert result.job_cid == WORDCOUNT["job_cid"]
    assert result.result_cid == WORDCOUNT["expect"]["result_cid"]


async def test_node_refuses_a_car_whose_root_is_a_symlink(tmp_path: Path) -> None:
    # the node side of the same hole: a requester uploads, as an input, a CAR holding only a
    # symlink node pointing at the node's own /etc; unpacked, the node would mount its target
    buffer = io.BytesIO()
    writer = CarWriter(buffer)
    root = Importer(sink=writer.block).symlink(b"/etc").cid
    car = car_header(root) + buffer.getvalue()
    async with Devstack(1, base_dir=tmp_path / "stack") as stack:
        async with aiohttp.ClientSession() as session:
            async with session.put(f"{stack.urls[0]}/v1/blobs/{root}", data=car,
                                   headers={"Content-Type": "application/vnd.ipld.car"}) as response:
                body = await response.json()
                assert response.status == 400, body  # SPEC 9.4: the root is checked before a byte is written
        assert body["error"] == "CIDError" and "is a symlink" in body["message"]
        blobs = stack.nodes[0].node.blobs
        assert blobs.tree(str(root)) is None and not os.path.lexists(blobs.trees / str(root))


def test_link_to_a_file_is_that_file_and_to_nothing_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "to-file").symlink_to("file")
    (tmp_path / "dangling").symlink_to("nowhere")
    job = prepare(VECTORS / "hello.wasm", [], inputs=[str(tmp_path / "to-file")])  # the LINK rule: its target
    assert [(i.cid, i.path) for i in job.spec.inputs] == [(module_cid(b"x"), "/inputs/file")]
    assert job.sources == {"/inputs/file": str(tmp_path / "file")}
    with pytest.raises(InputError, match="does not exist"):
        prepare(VECTORS / "hello.wasm", [], inputs=[str(tmp_path / "dangling")])


@pytest.mark.parametrize("target", ["dir", "file", "nowhere"])
def test_importer_refuses_a_symlink_root(tmp_path: Path, target: str) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(InputError, match="is a symlink"):
        Importer().tree(tmp_path / "link")
    with pytest.raises(InputError, match="is a symlink"):
        cid_of_tree(tmp_path / "link")


def test_importer_refuses_special_roots(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InputError, match="is a fifo"):
        Importer().tree(tmp_path / "fifo")
    with _bound_socket(tmp_path / "sock"):
        with pytest.raises(InputError, match="is a socket"):
            Importer().tree(tmp_path / "sock")
    with pytest.raises(InputError, match="No such file"):
        Importer().tree(tmp_path / "missing")


def test_mount_root_is_a_real_directory_checked_without_following_links(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "link").symlink_to("real")
    (tmp_path / "parent-link").symlink_to(".")
    assert mount_root(real) == os.fsencode(os.path.realpath(real))
    # links before the last component are the host's business: resolved once, here
    assert mount_root(tmp_path / "parent-link" / "real") == os.fsencode(os.path.realpath(real))
    with pytest.raises(InputError, match="is a symlink; cod mounts only real directories"):
        mount_root(tmp_path / "link")
    with pytest.raises(InputError, match="is not a directory"):
        mount_root(tmp_path / "file")
    with pytest.raises(InputError, match="No such file"):
        mount_root(tmp_path / "missing")


# -- trees past the virtual limits ----------------------------------------------------------


def _nest(root: Path, depth: int) -> Path:
    """A chain of ``depth`` directories named ``d`` under ``root``; returns the deepest.
    Made one level at a time (pathlib's and os.makedirs's mkdir recurse per level)."""
    root.mkdir()
    path = root
    for _ in range(depth):
        path = path / "d"
        os.mkdir(path)
    return path


def _unnest(deepest: Path, root: Path) -> None:
    """Remove a chain made by _nest bottom-up (shutil.rmtree, and so pytest, recurse per level)."""
    path = deepest
    while path != root.parent:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
        path = path.parent


def test_a_1000_level_tree_is_refused_without_recursion_error() -> None:
    # made outside pytest's shared temporary root: its clean-up recurses once per level
    scratch = Path(tempfile.mkdtemp(prefix="cod-deep-"))
    deepest = _nest(scratch / "deep", 1000)
    try:
        with pytest.raises(InputError, match=f"lies {MAX_TREE_DEPTH + 1} levels deep, over the limit of 256"):
            cid_of_tree(scratch / "deep")
    finally:
        _unnest(deepest, scratch / "deep")
        scratch.rmdir()


def test_depth_limit_is_exact_and_agrees_with_js_importer(tmp_path: Path) -> None:
    # an entry at depth 256 is accepted (and hashed as js-ipfs-unixfs hashes it); at 257 refused
    (_nest(tmp_path / "ok", MAX_TREE_DEPTH - 1) / "leaf").write_bytes(b"deepest file")
    assert str(cid_of_tree(tmp_path / "ok")) == js_unixfs_cid(tmp_path / "ok")
    (_nest(tmp_path / "over", MAX_TREE_DEPTH) / "leaf").write_bytes(b"one too deep")
    with pytest.raises(InputError, match="/leaf' lies 257 levels deep"):
        cid_of_tree(tmp_path / "over")


def test_virtual_path_limit_counts_the_mount_path(tmp_path: Path) -> None:
    # "/inputs" (7 bytes) + 5 x ("/" + 200) = 1012 bytes, then "/" + 11 = 1024: the limit exactly
    deep = tmp_path / "data"
    for i in range(5):
        deep = deep / (chr(ord("a") + i) * 200)
    deep.mkdir(parents=True)
    (deep / ("f" * 11)).write_bytes(b"fits")
    job = prepare(VECTORS / "hello.wasm", [], inputs=[f"{tmp_path / 'data'}:/inputs"])
    assert job.spec.inputs[0].cid == str(cid_of_tree(tmp_path / "data"))
    with pytest.raises(InputError, match="1025 bytes, over the limit of 1024"):
        prepare(VECTORS / "hello.wasm", [], inputs=[f"{tmp_path / 'data'}:/inputs2"])
    (deep / ("g" * 12)).write_bytes(b"one byte too long")
    with pytest.raises(InputError, match=r"gggggggggggg' would be '/inputs/aaa.*1025 bytes, over the limit of 1024"):
        prepare(VECTORS / "hello.wasm", [], inputs=[f"{tmp_path / 'data'}:/inputs"])
    # without a mount path (e.g. `cod cid`) only the tree's own limits apply
    assert cid_of_tree(tmp_path / "data")


def test_name_limits() -> None:
    # ext4 and tmpfs cannot even hold a 256-byte name, so the check is exercised directly
    check_entry((b"n" * MAX_NAME_BYTES,), b"/inputs", b"/host/n")
    with pytest.raises(InputError, match="is 256 bytes, over the limit of 255"):
        check_entry((b"n" * (MAX_NAME_BYTES + 1),), None, b"/host/nnn")
    # 85 three-byte characters: 255 bytes; one more is over, though only 86 characters
    check_entry((("€" * 85).encode(),), None, b"/h")
    with pytest.raises(InputError, match="258 bytes"):
        check_entry((("€" * 86).encode(),), None, b"/h")
    with pytest.raises(InputError, match="not valid UTF-8"):
        check_entry((b"caf\xe9",), None, b"/h/caf\xe9")


def test_non_utf8_name_in_a_tree_is_refused_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / os.fsdecode(b"caf\xe9")).write_bytes(b"latin-1 name")
    with pytest.raises(InputError, match=r"b'caf\\xe9' in '.*/tree/sub' is not valid UTF-8"):
        cid_of_tree(root)


def test_symlink_target_limit(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "fits").symlink_to("x/" * (MAX_PATH_BYTES // 2))
    assert cid_of_tree(root)
    (root / "long").symlink_to("x/" * (MAX_PATH_BYTES // 2) + "y")
    with pytest.raises(InputError, match="/long' has a target of 1025 bytes, over the limit of 1024"):
        cid_of_tree(root)


def test_file_over_max_file_size_is_refused_before_reading(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    try:
        with open(root / "huge", "wb") as f:
            f.truncate(MAX_FILE_SIZE + 1)  # sparse: costs no disk, and is never read
    except OSError as exc:
        pytest.skip(f"this file system cannot hold a sparse file of 1 TiB + 1: {exc.strerror}")
    with pytest.raises(InputError, match="/huge' is larger than 1099511627776 bytes"):
        cid_of_tree(root)


# -- special files and permissions ------------------------------------------------------------


def _bound_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock


def test_fifo_socket_and_device_in_a_tree_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "a-file").write_bytes(b"fine")
    os.mkfifo(root / "b-fifo")
    # a fifo is refused, and opening it never blocks the import
    with pytest.raises(InputError, match="/b-fifo' is a fifo"):
        cid_of_tree(root)
    os.unlink(root / "b-fifo")
    with _bound_socket(root / "c-sock"):
        with pytest.raises(InputError, match="/c-sock' is a socket"):
            cid_of_tree(root)
    os.unlink(root / "c-sock")
    try:
        os.mknod(root / "d-null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        return  # only root may make device nodes
    with pytest.raises(InputError, match="/d-null' is a character device"):
        cid_of_tree(root)


@pytest.fixture()
def open_dir() -> Iterator[Path]:
    """A directory an unprivileged user can reach (tmp_path's parents are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="cod-perm-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for sub, dirs, _ in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(sub, d), 0o755)
        shutil.rmtree(path)


def _unprivileged(action: Callable[[], object]) -> object:
    """Run ``action`` as a user the file permissions apply to; returns its result or error.

    Root reads everything, so under root the action runs in a forked child that drops to
    nobody (a real process; permissions are the kernel's), and the outcome comes back pickled."""
    if os.geteuid() != 0:
        try:
            return action()
        except InputError as exc:
            return exc
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                outcome: object = action()
            except InputError as exc:
                outcome = ("InputError", str(exc))
            except BaseException as exc:  # noqa: BLE001 - anything else is reported, not swallowed
                outcome = ("other", repr(exc))
            os.write(write, pickle.dumps(outcome))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    outcome = pickle.loads(data)
    if isinstance(outcome, tuple) and outcome and outcome[0] == "InputError":
        return InputError(outcome[1])
    return outcome


@pytest.mark.parametrize(
    ("where", "mode"),
    [("secret.txt", 0o000), ("locked", 0o000), ("locked", 0o644), ("locked", 0o311)],
    ids=["file-unreadable", "dir-no-access", "dir-not-searchable", "dir-not-listable"],
)
def test_unreadable_entries_are_refused_at_ingest(open_dir: Path, where: str, mode: int) -> None:
    root = open_dir / "tree"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "inside").write_bytes(b"in a locked directory")
    (root / "secret.txt").write_bytes(b"not for you")
    os.chmod(root / where, mode)
    outcome = _unprivileged(lambda: str(cid_of_tree(root)))
    assert isinstance(outcome, InputError), outcome
    assert "Permission denied" in str(outcome) and "input permissions are decided at ingest" in str(outcome)
    assert f"/tree/{where}" in str(outcome)
