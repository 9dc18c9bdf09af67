"""The execution state at a checkpoint, its snapshot (canonical bytes) and its hash (SPEC 11.6).

A snapshot is ``"cod-snapshot-v1"`` followed by the body with the memory's pages in full; the
state hash is SHA-256 of ``"cod-state-v1"`` followed by the same body with the pages replaced by
their Merkle root (:mod:`cod.checkpoint.merkle`). So a snapshot's hash needs no other input,
and two states hash alike exactly when every component is equal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..wasm.vfs import MAX_OUTPUT_COMPONENTS
from . import merkle
from .codec import Reader, Writer
from .errors import CheckpointError

SNAPSHOT_MAGIC = b"cod-snapshot-v1"
STATE_MAGIC = b"cod-state-v1"
VALTYPES = {0x7F: 4, 0x7E: 8, 0x7D: 4, 0x7C: 8}  # i32, i64, f32, f64: the bytes of their bits
KIND_STREAM, KIND_DIRECTORY, KIND_FILE = 0, 1, 2
DIR, FILE, SYMLINK = 3, 4, 7  # WASI filetypes
MAX_DEPTH = MAX_OUTPUT_COMPONENTS  # how deep the writable mount's tree may be (255)


@dataclass(frozen=True)
class Fd:
    """One entry of the fd table."""

    fd: int
    filetype: int
    kind: int  # KIND_STREAM, KIND_DIRECTORY, KIND_FILE
    where: bytes  # the stream's name (stdin, stdout, stderr) or the mount's path
    comps: tuple[bytes, ...] = ()
    rights: int = 0
    inheriting: int = 0
    append: bool = False
    kept_flags: int = 0
    position: int = 0
    preopen: bool = False
    listing: tuple[tuple[bytes, int, int], ...] | None = None


@dataclass(frozen=True)
class Entry:
    """An entry of the writable mount: a directory (``children``), a file (``data``) or a
    symlink (``data`` is its target)."""

    name: bytes
    filetype: int
    data: bytes = b""
    children: tuple["Entry", ...] = ()


@dataclass(frozen=True)
class Node:
    """A file, directory or symlink of the writable mount that has more than the tree shows: several
    names (``paths``, hard links made by path_link, with the virtual inode number and link count
    the WASI layer keeps), or times the job set (``times``: atim, mtim)."""

    paths: tuple[tuple[bytes, ...], ...]
    ino: int = 0
    nlink: int = 0
    times: tuple[int, int] | None = None


@dataclass
class State:
    fuel: int
    memory: bytes
    globals: list[tuple[int, int]]  # (valtype byte, bits)
    asyncify: bytes
    clock: int
    random: int
    stdout: bytes
    stderr: bytes
    output_bytes: int
    entries: int
    fds: list[Fd] = field(default_factory=list)
    tree: tuple[Entry, ...] = ()
    nodes: tuple[Node, ...] = ()


def _head(state: State) -> bytes:
    w = Writer()
    w.u64(state.fuel)
    if len(state.memory) % merkle.PAGE:
        raise CheckpointError("a linear memory is whole 64 KiB pages")
    w.u32(len(state.memory) // merkle.PAGE)
    return w.bytes()


def _rest(state: State) -> bytes:
    w = Writer()
    w.u32(len(state.globals))
    for valtype, bits in state.globals:
        if valtype not in VALTYPES:
            raise CheckpointError(f"a global of value type 0x{valtype:02x} cannot be checkpointed")
        w.u8(valtype)
        w.u64(bits)
    w.blob(state.asyncify)
    w.u64(state.clock)
    w.u64(state.random)
    w.blob(state.stdout)
    w.blob(state.stderr)
    w.u64(state.output_bytes)
    w.u64(state.entries)
    w.u32(len(state.fds))
    for fd in sorted(state.fds, key=lambda f: f.fd):
        _fd(w, fd)
    _dir(w, state.tree)
    w.u32(len(state.nodes))
    for node in state.nodes:
        w.u32(len(node.paths))
        for path in node.paths:
            w.u32(len(path))
            for comp in path:
                w.text(comp)
        w.u64(node.ino)
        w.u64(node.nlink)
        if node.times is None:
            w.u8(0)
        else:
            w.u8(1)
            w.u64(node.times[0])
            w.u64(node.times[1])
    return w.bytes()


def _fd(w: Writer, fd: Fd) -> None:
    w.u32(fd.fd)
    w.u8(fd.filetype)
    w.u8(fd.kind)
    w.text(fd.where)
    w.u32(len(fd.comps))
    for comp in fd.comps:
        w.text(comp)
    w.u64(fd.rights)
    w.u64(fd.inheriting)
    w.u8(int(fd.append))
    w.u32(fd.kept_flags)
    w.u64(fd.position)
    w.u8(int(fd.preopen))
    if fd.listing is None:
        w.u8(0)
        return
    w.u8(1)
    w.u32(len(fd.listing))
    for name, ino, filetype in fd.listing:
        w.text(name)
        w.u64(ino)
        w.u8(filetype)


def _dir(w: Writer, entries: tuple[Entry, ...]) -> None:
    ordered = sorted(entries, key=lambda e: e.name)
    w.u32(len(ordered))
    for entry in ordered:
        w.text(entry.name)
        w.u8(entry.filetype)
        if entry.filetype == DIR:
            _dir(w, entry.children)
        elif entry.filetype == FILE:
            w.blob(entry.data)
        else:
            w.text(entry.data)


def encode(state: State) -> bytes:
    """The snapshot of ``state``."""
    return SNAPSHOT_MAGIC + _head(state) + bytes(state.memory) + _rest(state)


def state_hash(state: State) -> str:
    """The state hash of ``state`` (hex), computed without building its snapshot."""
    digest = hashlib.sha256(STATE_MAGIC + _head(state) + merkle.memory_root(state.memory) + _rest(state))
    return digest.hexdigest()


def decode(snapshot: bytes) -> State:
    """The state a snapshot holds; CheckpointError for bytes that are not exactly one snapshot."""
    if not snapshot.startswith(SNAPSHOT_MAGIC):
        raise CheckpointError("not a cod snapshot (no cod-snapshot-v1 magic)")
    r = Reader(snapshot, len(SNAPSHOT_MAGIC))
    fuel = r.u64()
    pages = r.u32()
    memory = bytes(r.take(pages * merkle.PAGE))
    globals_: list[tuple[int, int]] = []
    for _ in range(r.u32()):
        valtype = r.u8()
        if valtype not in VALTYPES:
            raise CheckpointError(f"malformed snapshot: a global of value type 0x{valtype:02x}")
        bits = r.u64()
        if bits >> (8 * VALTYPES[valtype]):
            raise CheckpointError("malformed snapshot: a 32-bit global with bits above 32")
        globals_.append((valtype, bits))
    state = State(fuel=fuel, memory=memory, globals=globals_, asyncify=r.blob(), clock=r.u64(), random=r.u64(),
                  stdout=r.blob(), stderr=r.blob(), output_bytes=r.u64(), entries=r.u64())
    last = -1
    for _ in range(r.u32()):
        fd = _read_fd(r)
        if fd.fd <= last:
            raise CheckpointError("malformed snapshot: the fd table is not in ascending order")
        last = fd.fd
        state.fds.append(fd)
    state.tree = _read_dir(r, 0)
    state.nodes = tuple(_read_node(r) for _ in range(r.u32()))
    r.end()
    return state


def _read_fd(r: Reader) -> Fd:
    fd, filetype, kind, where = r.u32(), r.u8(), r.u8(), r.text()
    if kind not in (KIND_STREAM, KIND_DIRECTORY, KIND_FILE):
        raise CheckpointError(f"malformed snapshot: fd {fd} of kind {kind}")
    comps = tuple(r.text() for _ in range(r.u32()))
    rights, inheriting, append, kept, position, preopen = r.u64(), r.u64(), r.flag(), r.u32(), r.u64(), r.flag()
    listing = None
    if r.flag():
        listing = tuple((r.text(), r.u64(), r.u8()) for _ in range(r.u32()))
    return Fd(fd, filetype, kind, where, comps, rights, inheriting, append, kept, position, preopen, listing)


def _read_node(r: Reader) -> Node:
    paths = []
    for _ in range(r.u32()):
        count = r.u32()
        if count > MAX_DEPTH:
            raise CheckpointError("malformed snapshot: a node's path is too deep")
        paths.append(tuple(r.text() for _ in range(count)))
    ino, nlink = r.u64(), r.u64()
    times = (r.u64(), r.u64()) if r.flag() else None
    return Node(tuple(paths), ino, nlink, times)


def _read_dir(r: Reader, depth: int) -> tuple[Entry, ...]:
    if depth > MAX_DEPTH:
        raise CheckpointError(f"malformed snapshot: the output tree is over {MAX_DEPTH} deep")
    out: list[Entry] = []
    for _ in range(r.u32()):
        name, filetype = r.text(), r.u8()
        if out and name <= out[-1].name:
            raise CheckpointError("malformed snapshot: output entries not in ascending name order")
        if not name or b"/" in name or b"\x00" in name or name in (b".", b".."):
            raise CheckpointError(f"malformed snapshot: an output entry named {name!r}")
        if filetype == DIR:
            out.append(Entry(name, DIR, children=_read_dir(r, depth + 1)))
        elif filetype == FILE:
            out.append(Entry(name, FILE, r.blob()))
        elif filetype == SYMLINK:
            out.append(Entry(name, SYMLINK, r.text()))
        else:
            raise CheckpointError(f"malformed snapshot: an output entry of type {filetype}")
    return tuple(out)


def snapshot_hash(snapshot: bytes) -> str:
    """The state hash (hex) of the state ``snapshot`` holds; CheckpointError if malformed."""
    return state_hash(decode(snapshot))
