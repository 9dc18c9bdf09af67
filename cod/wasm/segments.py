"""The module transform ``cod-merge-data-segments-1``: a module's active data segments, merged (SPEC 5.6).

Go's linker emits ~30,000 data segments. With fuel on and copy-on-write images off (cod's
profile, 5.1) wasmtime compiles one bounds-checked, fuel-checked copy per segment into the
module's startup function, and compiling that function grows worse than linearly with their
number (1,024 segments 0.1 s, 8,192 2.6 s, Go's 29,595 25-38 s). This transform rewrites
only the data section: it computes the bytes the segments leave in the freshly zeroed memory
(later segments win where they overlap) and writes them back as the fewest segments whose
zero gaps are at most MAX_GAP bytes. Every other section is kept byte for byte.

When any rule of SPEC 5.6 does not hold, the input comes back unchanged (the same object),
so the transform never changes what a module computes: only how many data segments it has,
hence the fuel its instantiation costs. The engine applies it to every module it compiles,
after validating the module as given; the module's CID (and the job CID) name the bytes the
user gave, never these.
"""

from __future__ import annotations

from ..errors import ModuleError
from .binary import (DATA_COUNT_SECTION, DATA_SECTION, EXTERNREF, FUNCREF, HEADER, IMPORT_SECTION, MEMORY_SECTION,
                     sections)
from .leb128 import read_s32, read_u32, write_s, write_u

TRANSFORM = "cod-merge-data-segments-1"  # the name the execution profile pins (SPEC 5.2)
MAX_GAP = 64  # bytes of zeros a merged segment may fill between two written ranges
MIN_SEGMENTS = 1024  # fewer segments compile in < 0.1 s: such modules keep their bytes (and fuel)
WASM_PAGE = 65536
PROFILE: dict[str, object] = {"name": TRANSFORM, "max_gap": MAX_GAP, "min_segments": MIN_SEGMENTS}
"""What the profile ID hashes of the transform (SPEC 5.2): its name and its constants."""

I32_CONST, END = 0x41, 0x0B
VALTYPES = (0x7F, 0x7E, 0x7D, 0x7C, 0x7B, FUNCREF, EXTERNREF)  # i32 i64 f32 f64 v128 funcref externref
ACTIVE, ACTIVE_WITH_MEMORY = 0, 2  # data segment flags read here (1, passive, is refused)
Segment = tuple[int, bytes]  # (offset as a u32, the bytes written there)


class Unsupported(ValueError):
    """A rule of SPEC 5.6 does not hold: the module is returned unchanged."""


def merge_data_segments(wasm: bytes, *, min_segments: int = MIN_SEGMENTS) -> bytes:
    """``wasm`` with its active data segments merged (SPEC 5.6), or ``wasm`` itself (the same
    object) when any rule there does not hold. Deterministic: a function of ``wasm`` alone.

    Call it on a module the engine validated (it reads only what SPEC 5.6 lists, never the
    code). ``min_segments`` is pinned by the profile; tests lower it to see the rules on small
    modules.
    """
    try:
        found = sections(wasm)
        kinds = [kind for kind, *_ in found]
        if (kinds.count(DATA_SECTION) != 1 or DATA_COUNT_SECTION in kinds or kinds.count(MEMORY_SECTION) != 1
                or kinds.count(IMPORT_SECTION) > 1):
            return wasm  # no data; segment indices usable by code; not exactly one defined memory
        size = 0
        for kind, _, pos, end in found:
            if kind == IMPORT_SECTION:
                _check_imports(wasm, pos, end)
            elif kind == MEMORY_SECTION:
                size = _memory_bytes(wasm, pos, end)
        out = bytearray(HEADER)
        for kind, start, pos, end in found:
            if kind != DATA_SECTION:
                out += wasm[start:end]  # byte for byte, with its size encoding as found
                continue
            segments = data_segments(wasm, pos, end)
            if len(segments) < min_segments:
                return wasm
            if any(offset + len(chunk) > size for offset, chunk in segments):
                return wasm  # it traps at instantiation: keep exactly that trap (and its fuel)
            out += encode_data(merge(segments))
        return bytes(out)
    except (Unsupported, ValueError, ModuleError):
        return wasm


def data_segments(wasm: bytes, pos: int, end: int) -> list[Segment]:
    """(offset as u32, bytes) of each segment of the data section payload ``wasm[pos:end]``.

    Raises Unsupported for all but active segments of memory 0 at an ``i32.const`` offset,
    and for a payload that is not consumed exactly."""
    count, pos = read_u32(wasm, pos, end)
    found = []
    for _ in range(count):
        flags, pos = read_u32(wasm, pos, end)
        if flags == ACTIVE_WITH_MEMORY:
            memory, pos = read_u32(wasm, pos, end)
            if memory != 0:
                raise Unsupported("a segment of another memory")
        elif flags != ACTIVE:
            raise Unsupported("a passive or unknown segment")
        if pos >= end or wasm[pos] != I32_CONST:
            raise Unsupported("an offset that is not i32.const")
        offset, pos = read_s32(wasm, pos + 1, end)
        if pos >= end or wasm[pos] != END:
            raise Unsupported("an offset expression longer than i32.const")
        length, pos = read_u32(wasm, pos + 1, end)
        if pos + length > end:
            raise Unsupported("a segment past the end of the section")
        found.append((offset & 0xFFFFFFFF, wasm[pos:pos + length]))
        pos += length
    if pos != end:
        raise Unsupported("data section size mismatch")
    return found


def merge(segments: list[Segment], max_gap: int = MAX_GAP) -> list[Segment]:
    """The written ranges of ``segments`` (all in bounds) as (offset, bytes), ascending (SPEC 5.6, rule 7).

    Non-empty segments sorted by offset (ties in section order) are swept: one joins the
    current run when it starts at most ``max_gap`` bytes after the run's end. A run starts
    as zeros; its segments are then written into it in section order, so later bytes win.
    """
    order = sorted((i for i, (_, chunk) in enumerate(segments) if chunk), key=lambda i: segments[i][0])
    runs: list[list[int]] = []  # [start, end) of each run
    run_of: dict[int, int] = {}
    for i in order:
        start, stop = segments[i][0], segments[i][0] + len(segments[i][1])
        if runs and start <= runs[-1][1] + max_gap:
            runs[-1][1] = max(runs[-1][1], stop)
        else:
            runs.append([start, stop])
        run_of[i] = len(runs) - 1
    images = [bytearray(stop - start) for start, stop in runs]
    for i in sorted(run_of):  # section order: later bytes win
        offset, chunk = segments[i]
        at = offset - runs[run_of[i]][0]
        images[run_of[i]][at:at + len(chunk)] = chunk
    return [(run[0], bytes(image)) for run, image in zip(runs, images)]


def encode_data(segments: list[Segment]) -> bytes:
    """A data section (id, size, payload) of active segments: flags 0, ``i32.const offset end``,
    the length and the bytes, every LEB128 minimal (SPEC 5.6, rule 8)."""
    payload = bytearray(write_u(len(segments)))
    for offset, chunk in segments:
        signed = offset - (1 << 32) if offset >= 1 << 31 else offset  # a u32 offset as its i32 immediate
        payload += bytes([ACTIVE, I32_CONST]) + write_s(signed) + bytes([END]) + write_u(len(chunk)) + chunk
    return bytes([DATA_SECTION]) + write_u(len(payload)) + bytes(payload)


def _limits(wasm: bytes, pos: int, end: int) -> tuple[int, int]:
    """Limits with flags 0 (min) or 1 (min, max): (min, next pos); any other flags are refused."""
    if pos >= end or wasm[pos] not in (0, 1):
        raise Unsupported("limits other than a plain 32-bit min or min/max")
    flags = wasm[pos]
    minimum, pos = read_u32(wasm, pos + 1, end)
    if flags:
        _, pos = read_u32(wasm, pos, end)
    return minimum, pos


def _skip_name(wasm: bytes, pos: int, end: int) -> int:
    length, pos = read_u32(wasm, pos, end)
    if pos + length > end:
        raise Unsupported("a name past the end of the section")
    return pos + length


def _check_imports(wasm: bytes, pos: int, end: int) -> None:
    """Refuse an import section that imports a memory (its size and contents are not the module's)
    or that this reader cannot read entry by entry (SPEC 5.6, rule 2)."""
    count, pos = read_u32(wasm, pos, end)
    for _ in range(count):
        pos = _skip_name(wasm, _skip_name(wasm, pos, end), end)
        if pos >= end:
            raise Unsupported("an import past the end of the section")
        kind, pos = wasm[pos], pos + 1
        if kind == 0:  # function: a type index
            _, pos = read_u32(wasm, pos, end)
        elif kind == 1 and pos < end and wasm[pos] in (FUNCREF, EXTERNREF):  # table: reference type, limits
            _, pos = _limits(wasm, pos + 1, end)
        elif kind == 3 and pos + 1 < end and wasm[pos] in VALTYPES and wasm[pos + 1] in (0, 1):
            pos += 2  # global: value type, mutability
        elif kind == 4 and pos < end and wasm[pos] == 0:  # tag: attribute 0, a type index
            _, pos = read_u32(wasm, pos + 1, end)
        else:
            raise Unsupported("an imported memory, or an import this reader does not know")
    if pos != end:
        raise Unsupported("import section size mismatch")


def _memory_bytes(wasm: bytes, pos: int, end: int) -> int:
    """The size in bytes at instantiation of the one memory the memory section defines."""
    count, pos = read_u32(wasm, pos, end)
    if count != 1:
        raise Unsupported("not exactly one memory")
    minimum, pos = _limits(wasm, pos, end)
    if pos != end:
        raise Unsupported("memory section size mismatch")
    return minimum * WASM_PAGE
