"""The module transform cod-merge-data-segments-1 (SPEC 5.6): its rules, its vector, and the engine using it.

Expected values are independent of the code under test: modules are written in WAT or byte by
byte, merged data sections are written out by hand, the SPEC's hex vector is compared byte for
byte, and memory contents and traps are those of the untransformed module instantiated under
stock wasmtime (default Config). Fuel figures are derived by hand from SPEC 5.6's accounting.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
import wasmtime

from cod import Engine, JobSpec, Limits, module_cid, run
from cod.wasm import binary, engine as engine_mod, segments
from cod.wasm.segments import merge_data_segments as merge_pinned

from ..helpers import VECTORS
from .test_linking import EXIT, WRITE

# SPEC 5.6 "Test vector" (min_segments 0): a 2-page memory, segments (70000,"z") (3,"ab") (0,"xyz") (70066,"q") (2,"\0")
VECTOR_IN = ("0061736d010000000503010002070a01066d656d6f727902000b26050041f0a2040b017a0041030b02"
             "61620041000b0378797a0041b2a3040b01710041020b0100")
VECTOR_OUT = ("0061736d010000000503010002070a01066d656d6f727902000b1b030041000b0578790061620041f0"
              "a2040b017a0041b2a3040b0171")
# SPEC 5.6: 1,024 one-byte segments 0x2a at 0, 16, 32, ... in a 1-page memory exported as "memory"
PINNED_IN_SHA256 = "66168288fad3ae7cd0bdaa86fc1b1237b1efc43183122f328d1392b193661c36"
PINNED_OUT_SHA256 = "dddf11c6115a671100e2cf545f8c55146310bb15510aee8c593747f83952809d"


def merge_data_segments(wasm: bytes) -> bytes:
    """The transform with no segment threshold: the rules, on small hand-made modules."""
    return merge_pinned(wasm, min_segments=0)


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def escaped(chunk: bytes) -> str:
    return "".join("\\%02x" % b for b in chunk)


def module_bytes(offsets: list[tuple[int, bytes]], pages: int = 1, extra: str = "") -> bytes:
    body = " ".join(f'(data (i32.const {o}) "{escaped(d)}")' for o, d in offsets)
    return wat(f'(module (memory (export "memory") {pages}) {body} {extra})')


def data_section(wasm: bytes) -> bytes:
    """The data section of ``wasm`` (id, size, payload) as bytes, found by wasmtime's own
    section order: it is the last non-custom section of these modules."""
    found = [(kind, start, end) for kind, start, _, end in binary.sections(wasm) if kind == binary.DATA_SECTION]
    assert len(found) == 1
    return wasm[found[0][1]:found[0][2]]


def segment(offset: int, chunk: bytes) -> bytes:
    """One active segment written by hand: flags 0, i32.const (offsets < 64 here: one byte), end."""
    assert 0 <= offset < 64 and len(chunk) < 128
    return b"\x00\x41" + bytes([offset]) + b"\x0b" + bytes([len(chunk)]) + chunk


def section(*segs: bytes) -> bytes:
    payload = bytes([len(segs)]) + b"".join(segs)
    assert len(payload) < 128
    return b"\x0b" + bytes([len(payload)]) + payload


def outcome(wasm: bytes) -> tuple[str, bytes | str]:
    """('memory', its contents) after instantiation under stock wasmtime, or ('trap', the trap code).
    A module importing WASI gets wasmtime's own (instantiated, never started)."""
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store.set_wasi(wasmtime.WasiConfig())
    try:
        instance = linker.instantiate(store, wasmtime.Module(engine, wasm))
    except wasmtime.Trap as exc:
        return "trap", str(exc.trap_code)
    memory = instance.exports(store)["memory"]
    assert isinstance(memory, wasmtime.Memory)
    return "memory", bytes(memory.read(store, 0, memory.data_len(store)))


def cod_instantiation(engine: Engine, wasm: bytes) -> tuple[bytes, int]:
    """(memory contents, fuel charged) of instantiating ``wasm`` as cod's engine compiles it."""
    store = wasmtime.Store(engine.engine)
    store.set_fuel(10**9)
    instance = wasmtime.Instance(store, engine.module(wasm), [])
    memory = instance.exports(store)["memory"]
    assert isinstance(memory, wasmtime.Memory)
    return bytes(memory.read(store, 0, memory.data_len(store))), 10**9 - store.get_fuel()


def stock_fuel(wasm: bytes) -> int:
    """Instantiation fuel under cod's settings but without the transform (stock wasmtime compiling ``wasm``)."""
    config = wasmtime.Config()
    for name, value in engine_mod.ENGINE_SETTINGS.items():
        setattr(config, name, value)
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    store.set_fuel(10**9)
    wasmtime.Instance(store, wasmtime.Module(engine, wasm), [])
    return 10**9 - store.get_fuel()


def check_merged(wasm: bytes) -> bytes:
    """Merge, then check: valid, same instantiation outcome, idempotent, deterministic."""
    merged = merge_data_segments(wasm)
    wasmtime.Module.validate(wasmtime.Engine(), merged)
    assert outcome(merged) == outcome(wasm)
    assert merge_data_segments(merged) == merged
    assert merge_data_segments(bytes(wasm)) == merged
    return merged


# -- the rules, on hand-made modules ---------------------------------------------------------


def test_the_spec_vector_byte_for_byte() -> None:
    wasm = bytes.fromhex(VECTOR_IN)
    assert wasm == module_bytes([(70000, b"z"), (3, b"ab"), (0, b"xyz"), (70066, b"q"), (2, b"\0")], pages=2)
    assert merge_data_segments(wasm).hex() == VECTOR_OUT
    assert outcome(bytes.fromhex(VECTOR_OUT)) == outcome(wasm)


def test_the_pinned_threshold_vector() -> None:
    wasm = module_bytes([(16 * i, b"\x2a") for i in range(segments.MIN_SEGMENTS)])
    assert hashlib.sha256(wasm).hexdigest() == PINNED_IN_SHA256
    merged = merge_pinned(wasm)
    assert hashlib.sha256(merged).hexdigest() == PINNED_OUT_SHA256
    image = bytearray(16 * (segments.MIN_SEGMENTS - 1) + 1)
    image[::16] = b"\x2a" * segments.MIN_SEGMENTS
    assert data_section(merged) == segments.encode_data([(0, bytes(image))])  # one segment
    assert outcome(merged) == outcome(wasm)


def test_gaps_up_to_max_gap_are_filled_with_zeros() -> None:
    assert segments.MAX_GAP == 64  # pinned by the profile
    wasm = module_bytes([(0, b"ab"), (2 + 64, b"c"), (3 + 64 + 65, b"d")])
    merged = check_merged(wasm)
    # a gap of 64 zeros joins; a gap of 65 does not. Run 1: 67 bytes at 0; run 2: "d" at 132
    head = b"\x00\x41\x00\x0b\x43ab" + bytes(64) + b"c"
    tail = b"\x00\x41\x84\x01\x0b\x01d"  # 132 = sleb 84 01
    payload = b"\x02" + head + tail
    assert data_section(merged) == b"\x0b" + bytes([len(payload)]) + payload


def test_adjacent_and_out_of_order_segments() -> None:
    merged = check_merged(module_bytes([(40, b"late"), (0, b"ab"), (2, b"cd"), (44, b"er")]))
    assert data_section(merged) == section(segment(0, b"abcd" + bytes(36) + b"lateer"))


def test_overlaps_later_bytes_win() -> None:
    merged = check_merged(module_bytes([(0, b"aaaaaaaa"), (4, b"bb"), (2, b"c"), (6, b"dddd"), (5, b"\0")]))
    assert data_section(merged) == section(segment(0, b"aacab\0dddd"))


def test_explicit_zero_bytes_are_kept_and_empty_segments_dropped() -> None:
    merged = check_merged(module_bytes([(10, b"\0\0"), (65536, b""), (20, b"")]))
    assert data_section(merged) == section(segment(10, b"\0\0"))


def test_all_empty_segments_leave_an_empty_data_section() -> None:
    merged = check_merged(module_bytes([(0, b""), (65536, b"")]))
    assert data_section(merged) == b"\x0b\x01\x00"


@pytest.mark.parametrize("offsets", [
    [(65534, b"abcd")],  # crosses the end
    [(0, b"ok"), (65536, b"x")],  # starts at the end, after an in-bounds one (written before the trap)
    [(65537, b"")],  # an empty segment past the end traps too
    [(-1, b"x")],  # offset 0xFFFFFFFF
    [(-2147483648, b"y"), (0, b"z")],
])
def test_out_of_bounds_segment_leaves_the_module_unchanged(offsets: list[tuple[int, bytes]]) -> None:
    wasm = module_bytes(offsets)
    assert merge_data_segments(wasm) is wasm
    assert outcome(wasm)[0] == "trap"


def test_random_modules_trap_exactly_when_the_original_does() -> None:
    rng = random.Random(20261207)
    traps = merges = 0
    for _ in range(300):
        pages = rng.choice([0, 1, 1, 2])
        segs = []
        for _ in range(rng.randint(0, 10)):
            offset = rng.choice([rng.randrange(0, 300)] * 6 + [rng.randrange(0, 3 * 65536),
                                                               65536 * pages - rng.randrange(0, 8)])
            segs.append((max(offset, 0), rng.randbytes(rng.choice([0, 1, 3, 40]))))
        wasm = module_bytes(segs, pages)
        merged = merge_data_segments(wasm)
        assert outcome(merged) == outcome(wasm)
        traps += outcome(wasm)[0] == "trap"
        merges += merged is not wasm
        if merged is not wasm:
            assert merge_data_segments(merged) == merged
            wasmtime.Module.validate(wasmtime.Engine(), merged)
    assert traps > 50 and merges > 50  # both paths exercised


@pytest.mark.parametrize("text", [
    '(module (memory 1) (data "passive") (data (i32.const 0) "a") (data (i32.const 1) "b"))',
    '(module (memory 1) (data (i32.const 0) "a") (data (i32.const 1) "b") (data "p")'
    '  (func (memory.init 2 (i32.const 0) (i32.const 0) (i32.const 1))))',  # a data count section
    '(module (memory 1) (data (i32.const 0) "a") (data (i32.const 1) "b") (func (data.drop 0)))',
    '(module (global $g (import "m" "g") i32) (memory 1) (data (global.get $g) "a") (data (i32.const 1) "b"))',
    '(module (import "m" "mem" (memory 1)) (data (i32.const 0) "a") (data (i32.const 1) "b"))',
    '(module (memory 1 2 shared) (data (i32.const 0) "a") (data (i32.const 1) "b"))',
    '(module (memory i64 1) (data (i64.const 0) "a") (data (i64.const 1) "b"))',
    '(module (memory 1) (data (i32.add (i32.const 0) (i32.const 0)) "a") (data (i32.const 1) "b"))',
    '(module (memory 1))',  # no data section: nothing to do
    '(module (func))',  # no memory
])
def test_refused_modules_come_back_unchanged(text: str) -> None:
    wasm = wat(text)
    assert merge_data_segments(wasm) is wasm


def test_a_data_count_section_without_memory_init_is_refused() -> None:
    wasm = module_bytes([(0, b"a"), (1, b"b")])
    cut = wasm.index(data_section(wasm))
    with_count = wasm[:cut] + b"\x0c\x01\x02" + wasm[cut:]  # id 12, count 2, before the data section
    wasmtime.Module.validate(wasmtime.Engine(), with_count)
    assert merge_data_segments(with_count) is with_count


def test_imports_other_than_a_memory_are_read_and_allowed() -> None:
    wasm = wat('(module (import "m" "f" (func)) (import "m" "t" (table 1 2 funcref)) '
               '(import "m" "g" (global (mut i64))) (memory (export "memory") 1) '
               '(data (i32.const 0) "a") (data (i32.const 1) "b"))')
    assert data_section(merge_data_segments(wasm)) == section(segment(0, b"ab"))


def test_malformed_input_comes_back_unchanged() -> None:
    wasm = module_bytes([(0, b"a"), (1, b"b")])
    for broken in (wasm[:-1], wasm[:9], b"\x00asm\x0d\x00\x01\x00", wasm + b"\x0b", b"", b"not wasm",
                   b"\x00asm\x01\x00\x00\x00\x0b\x80\x80\x80\x80\x80\x00"):  # a 6-byte section size
        assert merge_data_segments(broken) is broken


def test_non_minimal_input_encodings_and_other_sections_byte_for_byte() -> None:
    # a data section written by hand with padded LEB128s: flag 2 (memory 0 explicit), offset 1 as 5 bytes
    head = wat('(module (memory (export "memory") 1) (func (export "f")) (@custom "note" "hi"))')
    payload = b"\x82\x80\x80\x80\x00" + b"\x02\x00\x41\x81\x80\x80\x80\x00\x0b\x81\x80\x00a" + b"\x00\x41\x02\x0b\x01b"
    wasm = head + b"\x0b\x98\x80\x80\x80\x00" + payload + b"\x00\x05\x04tail"
    wasmtime.Module.validate(wasmtime.Engine(), wasm)
    merged = check_merged(wasm)
    assert merged == head + b"\x0b\x08\x01\x00\x41\x01\x0b\x02ab" + b"\x00\x05\x04tail"


def test_modules_with_fewer_than_min_segments_are_left_alone() -> None:
    assert segments.MIN_SEGMENTS == 1024  # pinned by the profile
    few = module_bytes([(16 * i, b"x") for i in range(1023)])
    many = module_bytes([(16 * i, b"x") for i in range(1024)])
    assert merge_pinned(few) is few
    merged = merge_pinned(many)
    assert outcome(merged) == outcome(many)
    assert merge_pinned(merged) is merged  # one segment now: below the threshold


def test_high_offsets_encode_as_negative_i32() -> None:
    assert segments.encode_data([(0x80000000, b"a"), (0xFFFFFFFF, b"")]) == (
        b"\x0b\x10\x02" + b"\x00\x41\x80\x80\x80\x80\x78\x0b\x01a" + b"\x00\x41\x7f\x0b\x00")


def test_fuel_of_instantiation_is_one_plus_one_per_segment_plus_one_per_byte() -> None:
    """SPEC 5.6 "Fuel": 1 to enter the startup function, 1 per segment, 1 per byte copied."""
    wasm = module_bytes([(0, b"abc"), (50, b"de"), (5000, b"f" * 100)])
    merged = merge_data_segments(wasm)
    assert stock_fuel(wasm) == 1 + 3 + (3 + 2 + 100)
    assert stock_fuel(merged) == 1 + 2 + (52 + 100)  # the zero gap (47 bytes) is paid for, per byte
    assert stock_fuel(module_bytes([])) == 0  # no startup work at all


@pytest.mark.parametrize("path", sorted(VECTORS.glob("*.wasm")), ids=lambda p: p.name)
def test_vector_modules(path: Path) -> None:
    """LLVM-built vectors have 1-3 segments and keep their bytes; a module with many (Go's) merges
    to a valid, idempotent module of the same memory image under stock wasmtime."""
    check_module(path.read_bytes())


def check_module(wasm: bytes) -> None:
    merged = merge_pinned(wasm)
    if merged is wasm:
        return
    wasmtime.Module.validate(wasmtime.Engine(), merged)
    assert merge_pinned(merged) is merged or merge_pinned(merged) == merged
    assert [k for k, *_ in binary.sections(wasm)] == [k for k, *_ in binary.sections(merged)]
    for (kind, start, _, end), (_, start2, _, end2) in zip(binary.sections(wasm), binary.sections(merged)):
        if kind != binary.DATA_SECTION:
            assert wasm[start:end] == merged[start2:end2]
    assert outcome(merged) == outcome(wasm)


# -- the engine: every module it compiles is transformed; CIDs name the user's bytes ---------


def test_the_engine_compiles_the_merged_module(tmp_path: Path) -> None:
    """1,100 adjacent one-byte segments: cod's engine charges the fuel of one segment (the merged
    module), while stock wasmtime, given the same bytes, charges one per segment; the memory is the
    same as stock wasmtime's untransformed instantiation."""
    message = bytes(random.Random(5).randrange(1, 256) for _ in range(1100))
    wasm = module_bytes([(i, message[i:i + 1]) for i in range(1100)])
    assert stock_fuel(wasm) == 1 + 1100 + 1100
    memory, fuel = cod_instantiation(Engine(tmp_path / "cache", wall_clock=False), wasm)
    assert fuel == 1 + 1 + 1100
    assert ("memory", memory) == outcome(wasm)
    # from the disk cache (keyed by the user's bytes and the profile): the same module
    again = Engine(tmp_path / "cache", wall_clock=False)
    assert cod_instantiation(again, wasm) == (memory, fuel) and again.compiled == 0


def test_an_invalid_module_is_reported_as_given(engine: Engine) -> None:
    """A module the transform could rewrite but that fails validation (an unknown function in its
    export) is refused with wasmtime's own complaint about it."""
    bad = module_bytes([(16 * i, b"x") for i in range(1024)], extra='(export "f" (func 7))')
    from cod.errors import ModuleError

    with pytest.raises(ModuleError, match="not a valid WebAssembly module") as info:
        engine.module(bad)
    assert "func" in str(info.value).lower()


def test_a_module_wasmtime_refuses_is_never_transformed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """More data segments than any valid module may hold (wasmtime's limit: 100,000) is refused
    by validating the user's bytes first (SPEC 5.6), before the transform reads a segment: merging
    first cost 12 s and 700 MB for a 24 MB module of 4M segments that wasmtime refuses in 6 ms
    (a node takes modules of up to max_upload_bytes, 8 GiB)."""
    from cod.errors import ModuleError

    count = 100_001
    payload = segments.write_u(count) + b"\x00\x41\x00\x0b\x00" * count  # empty segments at offset 0
    bad = (binary.HEADER + b"\x05\x03\x01\x00\x01" + b"\x0b" + segments.write_u(len(payload)) + payload)
    merged: list[bytes] = []
    monkeypatch.setattr(segments, "merge_data_segments", lambda wasm: merged.append(wasm) or wasm)
    with pytest.raises(ModuleError, match="data segments count exceeds limit"):
        Engine(tmp_path / "cache", wall_clock=False).module(bad)
    assert len(merged) == 0


def _say(cid_imports: str, call: str) -> bytes:
    return wat(f'(module {EXIT} {WRITE} {cid_imports} (memory (export "memory") 1) '
               f'(func (export "_start") {call}))')


def _printer(count: int, pieces: list[tuple[int, bytes]]) -> bytes:
    """A WASI command that writes ``count`` bytes from offset 16 of its memory to stdout; its data is ``pieces``."""
    body = " ".join(f'(data (i32.const {o}) "{escaped(d)}")' for o, d in pieces)
    return wat(f'(module {EXIT} {WRITE} (memory (export "memory") 1) (data (i32.const 0) "\\10\\00\\00\\00'
               f'{escaped(count.to_bytes(4, "little"))}") {body} '
               '(func (export "_start") (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) '
               '(i32.const 8)))))')


def test_a_run_uses_the_merged_module_and_its_job_cid_names_the_original(tmp_path: Path) -> None:
    """The same program twice: its message in 1,200 one-byte segments, or in one segment as the
    transform writes it. Runs through cod: the same stdout, result CID and fuel (the merged data
    sections are byte-equal), while the job CIDs name two different modules, each the user's bytes."""
    message = b"".join(b"%04d\n" % i for i in range(240))  # 1,200 bytes
    many = _printer(len(message), [(16 + i, message[i:i + 1]) for i in range(len(message))])
    one = _printer(len(message), [(16, message)])
    # the hand-derived merge: the iovec (8 bytes at 0) and the message (at 16) are 8 zeros apart
    iovec = b"\x10\0\0\0" + len(message).to_bytes(4, "little")
    assert data_section(merge_pinned(many)) == segments.encode_data([(0, iovec + bytes(8) + message)])
    engine = Engine(tmp_path / "cache")
    results = []
    for name, wasm in (("many", many), ("one", one)):
        spec = JobSpec(module=module_cid(wasm), limits=Limits())
        results.append(run(spec, wasm, {}, tmp_path / name, engine))
        assert results[-1].job_cid == str(spec.cid)  # the spec names the user's bytes
        assert (tmp_path / name / "stdout").read_bytes() == message
    first, second = results
    assert first.job_cid != second.job_cid
    assert one == merge_pinned(one)  # two segments: below the threshold, unchanged
    # "one" has 2 segments (iovec, message), the merged "many" 1: one segment less, 8 gap bytes more
    assert first.fuel_used == second.fuel_used - 1 + 8
    assert first.result_cid == second.result_cid


def test_a_module_linked_by_cid_is_merged_too(tmp_path: Path) -> None:
    """A dependency with 1,100 adjacent one-byte segments and the same library with one segment:
    the root that reads a byte from it costs the same fuel with either (old code: 1,099 more)."""
    image = bytes((7 * i + 1) % 251 for i in range(1100))
    getter = '(func (export "get") (param i32) (result i32) (i32.load8_u (local.get 0)))'
    many = module_bytes([(i, image[i:i + 1]) for i in range(1100)], extra=getter)
    one = module_bytes([(0, image)], extra=getter)
    engine = Engine(tmp_path / "cache")
    fuel = []
    for name, lib in (("many", many), ("one", one)):
        root = _say(f'(import "{module_cid(lib)}" "get" (func $get (param i32) (result i32)))',
                    "(call $exit (call $get (i32.const 1000)))")
        result = run(JobSpec(module=module_cid(root), limits=Limits()), root, {}, tmp_path / name, engine,
                     modules={module_cid(lib): lib})
        assert result.exit_code == image[1000]
        fuel.append(result.fuel_used)
    assert fuel[0] == fuel[1]


def test_the_profile_pins_the_transform_by_name_and_constants(monkeypatch: pytest.MonkeyPatch) -> None:
    assert engine_mod.MODULE_TRANSFORM == {"name": "cod-merge-data-segments-1", "max_gap": 64, "min_segments": 1024}
    described = dict(engine_mod.ENGINE_SETTINGS, wasi_contract=engine_mod.WASI_CONTRACT,
                     module_transform={"name": "cod-merge-data-segments-1", "max_gap": 64, "min_segments": 1024},
                     wasmtime="50.0.1")
    digest = hashlib.sha256(json.dumps(described, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert engine_mod.profile_id() == "wasmtime-50.0.1+" + digest[:16]
    monkeypatch.setitem(engine_mod.MODULE_TRANSFORM, "max_gap", 65)
    assert engine_mod.profile_id() != "wasmtime-50.0.1+" + digest[:16]
