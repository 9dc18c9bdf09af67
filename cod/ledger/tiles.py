"""C2SP tlog-tiles: tile paths, tile bytes from the stored hashes, entry bundles.

A tile at level L, index N holds up to 256 consecutive hashes: hash i is the root of the complete
subtree of 256^L leaves starting at leaf (N*256 + i) * 256^L, i.e. the stored hash
``stored_hash_index(8*L, N*256 + i)``. A full tile has 256 hashes; a partial tile (path suffix
``.p/W``) the first W of them. An entry bundle holds the entries of a level-0 tile, each as a
big-endian uint16 length and the bytes.

Every function here is pure (no I/O but the ``read`` it is given); every refusal is a TileError.
"""

from __future__ import annotations

from collections.abc import Sequence

from .merkle import HASH_SIZE, HashReader, stored_hash_index

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT   # 256 hashes, 8,192 bytes
MAX_LEVEL = 63
MAX_ENTRY_BYTES = 0xFFFF        # the uint16 length prefix of an entry bundle
MAX_PATH_BYTES = 256
LENGTH_PREFIX = 2


class TileError(ValueError):
    """A tile path, tile or entry bundle is malformed, or the tree does not cover it."""


def _encode_index(index: int) -> str:
    if index < 0:
        raise TileError("a tile index is not negative")
    parts = [f"{index % 1000:03d}"]
    index //= 1000
    while index > 0:
        parts.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(parts))


def _suffix(width: int) -> str:
    if not 1 <= width <= TILE_WIDTH:
        raise TileError(f"a tile width is 1 to {TILE_WIDTH}")
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]``, e.g. ``tile/0/x001/x234/067`` for level 0, index 1234067."""
    if not 0 <= level <= MAX_LEVEL:
        raise TileError(f"a tile level is 0 to {MAX_LEVEL}")
    return f"tile/{level}/{_encode_index(index)}{_suffix(width)}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """``tile/entries/<N>[.p/<W>]``: the entry bundle beside level-0 tile N."""
    return f"tile/entries/{_encode_index(index)}{_suffix(width)}"


def _parse_decimal(text: str, what: str) -> int:
    if not text or not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise TileError(f"{what} {text[:20]!r} is not a decimal without leading zeros")
    return int(text)


def _parse_index_and_width(rest: str) -> tuple[int, int]:
    width = TILE_WIDTH
    if ".p/" in rest:
        rest, _, w = rest.partition(".p/")
        width = _parse_decimal(w, "the partial tile width")
        if not 1 <= width < TILE_WIDTH:
            raise TileError(f"a partial tile is 1 to {TILE_WIDTH - 1} wide")
    elements = rest.split("/")
    index = 0
    for i, element in enumerate(elements):
        last = i == len(elements) - 1
        digits = element if last else element[1:]
        if (not last and not element.startswith("x")) or len(digits) != 3 or not digits.isascii() \
                or not digits.isdigit():
            raise TileError(f"tile index element {element[:10]!r} is not x### (or ### last)")
        index = index * 1000 + int(digits)
    if _encode_index(index) != rest:
        raise TileError(f"tile index {rest[:40]!r} is not in its shortest form")
    return index, width


def _strip(path: str) -> str:
    if len(path) > MAX_PATH_BYTES:
        raise TileError(f"a tile path is at most {MAX_PATH_BYTES} characters")
    path = path[1:] if path.startswith("/") else path
    if not path.startswith("tile/"):
        raise TileError(f"{path[:40]!r} is not a tile path (tile/...)")
    return path[len("tile/"):]


def parse_tile_path(path: str) -> tuple[int, int, int]:
    """(level, index, width) of ``tile/<L>/<N>[.p/<W>]`` (one leading '/' allowed); strict."""
    rest = _strip(path)
    level_text, sep, rest = rest.partition("/")
    if not sep:
        raise TileError("a tile path is tile/<level>/<index>")
    if level_text == "entries":
        raise TileError("tile/entries/... is an entry bundle, not a hash tile")
    level = _parse_decimal(level_text, "the tile level")
    if level > MAX_LEVEL:
        raise TileError(f"a tile level is 0 to {MAX_LEVEL}")
    index, width = _parse_index_and_width(rest)
    return level, index, width


def parse_entries_path(path: str) -> tuple[int, int]:
    """(index, width) of ``tile/entries/<N>[.p/<W>]`` (one leading '/' allowed); strict."""
    rest = _strip(path)
    if not rest.startswith("entries/"):
        raise TileError("an entry bundle path is tile/entries/<index>")
    return _parse_index_and_width(rest[len("entries/"):])


def covered(level: int, index: int, width: int, size: int) -> bool:
    """Whether a tree of ``size`` leaves holds every hash of this tile (or entry of the bundle)."""
    return bool((index * TILE_WIDTH + width) * (1 << (TILE_HEIGHT * level)) <= size)


def tiles_of(size: int) -> list[tuple[int, int, int]]:
    """Every (level, index, width) tile that represents a tree of ``size``: full ones, then at
    most one partial per level (C2SP: floor(size / 256^L) mod 256 hashes)."""
    tiles: list[tuple[int, int, int]] = []
    level = 0
    count = size  # hashes at this tile level: complete subtrees of 256^level leaves
    while count > 0 and level <= MAX_LEVEL:
        full, partial = divmod(count, TILE_WIDTH)
        tiles.extend((level, n, TILE_WIDTH) for n in range(full))
        if partial:
            tiles.append((level, full, partial))
        count //= TILE_WIDTH
        level += 1
    return tiles


def tile_indexes(level: int, index: int, width: int) -> list[int]:
    """The stored-hash indexes of a tile's hashes, in order."""
    if not 0 <= level <= MAX_LEVEL or index < 0 or not 1 <= width <= TILE_WIDTH:
        raise TileError("no such tile")
    first = index * TILE_WIDTH
    return [stored_hash_index(TILE_HEIGHT * level, first + i) for i in range(width)]


def tile_bytes(level: int, index: int, width: int, read: HashReader) -> bytes:
    """The tile's hashes concatenated (32 * width bytes), in one read; the caller checks ``covered``."""
    hashes = list(read(tile_indexes(level, index, width)))
    if len(hashes) != width or any(len(h) != HASH_SIZE for h in hashes):
        raise TileError(f"the hash reader did not return {width} hashes of {HASH_SIZE} bytes")
    return b"".join(hashes)


def tile_hashes(data: bytes, width: int) -> list[bytes]:
    """Split a fetched tile into its hashes; TileError unless it is exactly ``width`` hashes."""
    if not 1 <= width <= TILE_WIDTH or len(data) != width * HASH_SIZE:
        raise TileError(f"a tile of width {width} is {width * HASH_SIZE} bytes, not {len(data)}")
    return [data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length and its bytes (1 to 256 entries)."""
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise TileError(f"an entry bundle holds 1 to {TILE_WIDTH} entries")
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY_BYTES:
            raise TileError(f"an entry of {len(entry)} bytes is over {MAX_ENTRY_BYTES}")
        out += len(entry).to_bytes(LENGTH_PREFIX, "big") + entry
    return bytes(out)


def unbundle(data: bytes, width: int | None = None) -> list[bytes]:
    """The entries of a bundle; TileError if truncated, empty, over 256 entries, or (when
    ``width`` is given) not exactly ``width`` entries."""
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(entries) == TILE_WIDTH:
            raise TileError(f"an entry bundle holds at most {TILE_WIDTH} entries")
        if pos + LENGTH_PREFIX > len(data):
            raise TileError(f"entry {len(entries)} of the bundle is cut inside its length")
        length = int.from_bytes(data[pos:pos + LENGTH_PREFIX], "big")
        pos += LENGTH_PREFIX
        if pos + length > len(data):
            raise TileError(f"entry {len(entries)} of the bundle is cut: {length} bytes announced")
        entries.append(data[pos:pos + length])
        pos += length
    if not entries:
        raise TileError("an entry bundle is not empty")
    if width is not None and len(entries) != width:
        raise TileError(f"the bundle holds {len(entries)} entries, not {width}")
    return entries
