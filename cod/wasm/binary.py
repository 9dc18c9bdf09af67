"""The WebAssembly binary format, as far as cod reads it without an engine.

A node reads a job's module before it compiles it: to find the modules it imports by CID (so
that it can ask for the blobs it lacks, :mod:`cod.wasm.linking`), and to read the declared
sizes of its tables and memories, which wasmtime-py shows only for exported ones. Every reader
here is linear in the binary and raises nothing but ModuleError on bytes it cannot read.
"""

from __future__ import annotations

from ..errors import ModuleError
from .leb128 import read_u as _leb, read_u32

WASM_MAGIC = b"\x00asm"
CORE_VERSION = b"\x01\x00\x00\x00"
HEADER = WASM_MAGIC + CORE_VERSION
CUSTOM_SECTION = 0
IMPORT_SECTION = 2
TABLE_SECTION = 4
MEMORY_SECTION = 5
DATA_SECTION = 11
DATA_COUNT_SECTION = 12
LAST_SECTION = 13  # the tag section: ids above it are no section of the core format
FUNCREF, EXTERNREF = 0x70, 0x6F
IMPORT_KINDS = {0: "function", 1: "table", 2: "memory", 3: "global", 4: "tag"}


def check_binary(wasm: bytes) -> None:
    """Refuse what is not a core WebAssembly binary, naming what it is instead."""
    if wasm[:4] != WASM_MAGIC:
        raise ModuleError("not a WebAssembly module (no \\0asm magic at the start)",
                          "pass a .wasm file built for wasm32-wasi")
    if wasm[4:8] != CORE_VERSION:
        raise ModuleError("a WebAssembly component, not a core module",
                          "cod runs WASI preview1 core modules (wasm32-wasi / wasm32-wasip1)")


def sections(wasm: bytes) -> list[tuple[int, int, int, int]]:
    """(id, start, payload start, payload end) of each section of a core module, in order.

    Raises ModuleError unless ``wasm`` is the 8-byte header, then sections that each are an id
    (0 to LAST_SECTION), a ``u32`` size and exactly that many bytes, ending at its end.
    """
    if wasm[:8] != HEADER:
        raise ModuleError("not a core WebAssembly module (no \\0asm version 1 header)")
    found, offset = [], len(HEADER)
    while offset < len(wasm):
        start, kind = offset, wasm[offset]
        try:
            size, offset = read_u32(wasm, offset + 1, len(wasm))
        except ValueError as exc:
            raise ModuleError(f"section at byte {start}: its size cannot be read ({exc})") from exc
        if kind > LAST_SECTION or offset + size > len(wasm):
            raise ModuleError(f"section at byte {start}: unknown id {kind} or past the end of the module")
        found.append((kind, start, offset, offset + size))
        offset += size
    return found


def table_minimums(wasm: bytes) -> list[int] | None:
    """The declared minimum size of each table the module defines, from its table section.

    Read from the binary because wasmtime-py shows only exported tables. ``None`` when the
    section uses an encoding this reader does not know (a table with an initializer
    expression); wasmtime's instantiation then applies the same limits. Call it only on
    a module the engine validated.
    """
    offset = 8
    while offset < len(wasm):
        section, offset = wasm[offset], offset + 1
        size, offset = _leb(wasm, offset)
        if section != TABLE_SECTION:
            offset += size
            continue
        count, offset = _leb(wasm, offset)
        minimums = []
        for _ in range(count):
            if wasm[offset] not in (FUNCREF, EXTERNREF):  # e.g. 0x40: a table with an initializer
                return None
            flags = wasm[offset + 1]  # after the reference type byte
            minimum, offset = _leb(wasm, offset + 2)
            if flags & 1:
                _, offset = _leb(wasm, offset)
            minimums.append(minimum)
        return minimums
    return []


def imports(wasm: bytes, what: str = "module") -> list[tuple[str, str, str]]:
    """(module, name, kind) of each import, in the order of the import section.

    Raises ModuleError for bytes that are not a core module or whose import section cannot be
    read (``what`` names the module in the message).
    """
    if wasm[:4] != WASM_MAGIC or wasm[4:8] != CORE_VERSION:
        raise ModuleError(f"{what} is not a core WebAssembly module", "a dependency must be a wasm32 core module")
    try:
        return _read_imports(wasm)
    except (IndexError, UnicodeDecodeError, ValueError) as exc:
        raise ModuleError(f"{what} is malformed: its import section cannot be read ({type(exc).__name__})") from exc


def _read_imports(wasm: bytes) -> list[tuple[str, str, str]]:
    offset = 8
    while offset < len(wasm):
        section, offset = wasm[offset], offset + 1
        size, offset = _leb(wasm, offset)
        if section != IMPORT_SECTION:
            if section not in (0, 1):  # sections after the import section: there is none
                return []
            offset += size
            continue
        end = offset + size
        count, offset = _leb(wasm, offset)
        found = []
        for _ in range(count):
            module, offset = _name(wasm, offset)
            name, offset = _name(wasm, offset)
            kind, offset = wasm[offset], offset + 1
            if kind == 0:
                _, offset = _leb(wasm, offset)
            elif kind == 1:
                offset = _limits(wasm, offset + 1)
            elif kind == 2:
                offset = _limits(wasm, offset)
            elif kind == 3:
                offset += 2
            elif kind == 4:
                _, offset = _leb(wasm, offset + 1)
            else:
                raise ValueError(f"import kind {kind}")
            found.append((module, name, IMPORT_KINDS[kind]))
        if offset > end:
            raise IndexError("import section overrun")
        return found
    return []


def _name(data: bytes, offset: int) -> tuple[str, int]:
    length, offset = _leb(data, offset)
    if offset + length > len(data):
        raise IndexError("name past the end")
    return data[offset:offset + length].decode("utf-8"), offset + length


def _limits(data: bytes, offset: int) -> int:
    flags, offset = data[offset], offset + 1
    _, offset = _leb(data, offset)
    if flags & 1:
        _, offset = _leb(data, offset)
    return offset


def memory_minimums(wasm: bytes) -> list[int]:
    """The declared minimum (in 64 KiB pages) of each memory the module defines (its memory
    section). Call it only on a module the engine validated."""
    offset = 8
    while offset < len(wasm):
        section, offset = wasm[offset], offset + 1
        size, offset = _leb(wasm, offset)
        if section != MEMORY_SECTION:
            offset += size
            continue
        count, offset = _leb(wasm, offset)
        minimums = []
        for _ in range(count):
            flags, offset = wasm[offset], offset + 1
            minimum, offset = _leb(wasm, offset)
            if flags & 1:
                _, offset = _leb(wasm, offset)
            minimums.append(minimum)
        return minimums
    return []
