"""Modules that import modules by CID (SPEC 5.4): resolution, order, checks and running.

Modules are written in WAT; a dependency's CID is computed with ``module_cid`` and put into
the importing module's text, as a compiler would. Expected exit codes, outputs and fuel
differences are derived by hand in each test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from cod import Engine, JobSpec, Limits, RunResult, module_cid, run
from cod.content.cid import CID
from cod.errors import ImportRefused, MissingModules, ModuleError
from cod.wasm import linking

EXIT = '(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))'
WRITE = '(import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))'
PAGE = 65536


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def lib(body: str, head: str = "", memory: int = 1) -> bytes:
    mem = f'(memory (export "memory") {memory})' if memory else ""
    return wat(f"(module {head} {body} {mem})")


MIX = lib('(func (export "mix") (param i32 i32) (result i32) '
          '(i32.add (i32.mul (local.get 0) (i32.const 31)) (local.get 1)))')


def root(imports: str, start: str, memory: int = 1, extra: str = "") -> bytes:
    return wat(f'(module {EXIT} {WRITE} {imports} (memory (export "memory") {memory}) {extra} '
               f'(func (export "_start") {start}))')


def _run(engine: Engine, tmp: Path, wasm: bytes, modules: dict[str, bytes] | None, **limits: int) -> RunResult:
    spec = JobSpec(module=module_cid(wasm), limits=Limits(**limits))
    return run(spec, wasm, {}, tmp / "results", engine, modules=modules)


def _mix_root() -> bytes:
    cid = module_cid(MIX)
    return root(f'(import "{cid}" "mix" (func $mix (param i32 i32) (result i32)))',
                "(call $exit (call $mix (i32.const 3) (i32.const 4)))")


def test_a_function_imported_by_cid_runs(engine: Engine, tmp_path: Path) -> None:
    result = _run(engine, tmp_path, _mix_root(), {module_cid(MIX): MIX})
    assert result.exit_code == 3 * 31 + 4


def test_linking_is_deterministic_across_fresh_engines(tmp_path: Path) -> None:
    wasm, modules = _mix_root(), {module_cid(MIX): MIX}
    first = _run(Engine(tmp_path / "c1"), tmp_path / "a", wasm, modules)
    second = _run(Engine(tmp_path / "c2"), tmp_path / "b", wasm, modules)
    assert (first.result_cid, first.fuel_used, first.exit_code) == (second.result_cid, second.fuel_used, 97)


def test_a_missing_dependency_names_its_cid_and_nothing_is_staged(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(MissingModules) as info:
        _run(engine, tmp_path, _mix_root(), None)
    assert info.value.missing == [module_cid(MIX)]
    assert info.value.code == 4 and "cod add FILE" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_the_root_cid_commits_to_the_closure(engine: Engine, tmp_path: Path) -> None:
    other = lib('(func (export "mix") (param i32 i32) (result i32) (i32.sub (local.get 0) (local.get 1)))')
    wasm = _mix_root()
    # a changed dependency has another CID: given under the old name, its bytes are refused
    with pytest.raises(ModuleError, match="hash to " + module_cid(other)):
        _run(engine, tmp_path, wasm, {module_cid(MIX): other})
    assert list(tmp_path.iterdir()) == []
    # the only way to use it is to change the import name, and so the root's bytes and CID
    changed = wasm.replace(module_cid(MIX).encode(), module_cid(other).encode())
    assert module_cid(changed) != module_cid(wasm)
    assert _run(engine, tmp_path / "x", changed, {module_cid(other): other}).exit_code == 3 - 4 & 0xFFFFFFFF


def test_a_cycle_is_refused(engine: Engine) -> None:
    # content addresses cannot form a cycle: a resolver that ignores hashes is refused by the
    # hash check, and a cycle is refused by the cycle check when hashes are (wrongly) skipped
    name_a, name_b = str(CID.of(0x55, b"a")), str(CID.of(0x55, b"b"))
    a = lib(f'(import "{name_b}" "f" (func $f)) (func (export "f") (call $f))', memory=0)
    b = lib(f'(import "{name_a}" "f" (func $f)) (func (export "f") (call $f))', memory=0)
    fake = {name_a: a, name_b: b}
    top = root(f'(import "{name_a}" "f" (func $f))', "(call $f)")
    with pytest.raises(ModuleError, match="hash to"):
        linking.closure(top, fake.get)
    real_check = linking._check_bytes
    linking._check_bytes = lambda cid, wasm: None  # type: ignore[assignment]
    try:
        with pytest.raises(ModuleError, match=f"cycle: {name_a} -> {name_b} -> {name_a}"):
            linking.closure(top, fake.get)
    finally:
        linking._check_bytes = real_check  # type: ignore[assignment]


def test_order_is_depth_first_post_order_each_cid_once(engine: Engine, tmp_path: Path) -> None:
    # root imports B then C; both import D. D's start function writes "D" once: instantiated once
    d = lib(f'{WRITE} (data (i32.const 16) "D") (func $s (i32.store (i32.const 0) (i32.const 16)) '
            '(i32.store (i32.const 4) (i32.const 1)) (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) '
            '(i32.const 8)))) (start $s) (func (export "d") (result i32) (i32.const 5))')
    cd = module_cid(d)
    b = lib(f'(import "{cd}" "d" (func $d (result i32))) (func (export "b") (result i32) '
            '(i32.add (call $d) (i32.const 10)))', memory=0)
    c = lib(f'(import "{cd}" "d" (func $d (result i32))) (func (export "c") (result i32) '
            '(i32.add (call $d) (i32.const 20)))', memory=0)
    cb, cc = module_cid(b), module_cid(c)
    top = root(f'(import "{cb}" "b" (func $b (result i32))) (import "{cc}" "c" (func $c (result i32))) '
               f'(import "{cb}" "b" (func $b2 (result i32)))',
               "(call $exit (i32.add (call $b) (i32.add (call $c) (call $b2))))")
    modules = {cb: b, cc: c, cd: d}
    found = linking.closure(top, modules.get)
    assert found.order == (cd, cb, cc)
    assert found.imports[linking.ROOT] == (cb, cc)
    result = _run(engine, tmp_path, top, modules)
    assert result.exit_code == (5 + 10) + (5 + 20) + (5 + 10)
    assert (tmp_path / "results" / "stdout").read_bytes() == b"D"


def test_signature_mismatch_is_refused_before_running(engine: Engine, tmp_path: Path) -> None:
    cid = module_cid(MIX)
    top = root(f'(import "{cid}" "mix" (func $mix (param i32) (result i32)))', "(call $exit (i32.const 1))")
    with pytest.raises(ModuleError, match=r"imports 'mix' from .* as \(i32\) -> \(i32\), but it is "
                                          r"\(i32, i32\) -> \(i32\) there"):
        _run(engine, tmp_path, top, {cid: MIX})
    assert list(tmp_path.iterdir()) == []


def test_an_import_the_dependency_does_not_export_is_refused(engine: Engine, tmp_path: Path) -> None:
    cid = module_cid(MIX)
    top = root(f'(import "{cid}" "blend" (func $b (param i32 i32) (result i32)))', "(call $exit (i32.const 1))")
    with pytest.raises(ModuleError, match="exports no such function"):
        _run(engine, tmp_path, top, {cid: MIX})


def test_an_extra_export_of_the_dependency_is_fine(engine: Engine, tmp_path: Path) -> None:
    extra = lib('(func (export "mix") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))) '
                '(func (export "secret") (result i32) (i32.const 9)) (global (export "g") i32 (i32.const 1))')
    cid = module_cid(extra)
    top = root(f'(import "{cid}" "mix" (func $mix (param i32 i32) (result i32)))',
               "(call $exit (call $mix (i32.const 3) (i32.const 4)))")
    assert _run(engine, tmp_path, top, {cid: extra}).exit_code == 7


def test_a_dependency_may_import_only_wasi_and_cids(engine: Engine, tmp_path: Path) -> None:
    env = lib('(import "env" "x" (func $x)) (func (export "mix") (param i32 i32) (result i32) (local.get 0))')
    cid = module_cid(env)
    top = root(f'(import "{cid}" "mix" (func $mix (param i32 i32) (result i32)))', "(call $exit (i32.const 1))")
    with pytest.raises(ImportRefused, match="env::x"):
        _run(engine, tmp_path, top, {cid: env})
    sock = lib('(import "wasi_snapshot_preview1" "sock_open" (func $x (param i32 i32 i32) (result i32))) '
               '(func (export "mix") (param i32 i32) (result i32) (local.get 0))')
    cid = module_cid(sock)
    top = root(f'(import "{cid}" "mix" (func $mix (param i32 i32) (result i32)))', "(call $exit (i32.const 1))")
    with pytest.raises(ModuleError, match=f"dependency {cid}: .*sock_open"):
        _run(engine, tmp_path, top, {cid: sock})
    assert list(tmp_path.iterdir()) == []


def test_memories_tables_and_globals_cannot_come_from_a_cid(engine: Engine, tmp_path: Path) -> None:
    cid = module_cid(MIX)
    own = '(memory (export "memory") 1)'
    for kind, decl, mem in (("memory", '(memory 1)', '(export "memory" (memory 0))'),
                            ("table", "(table 1 funcref)", own), ("global", "(global i32)", own)):
        top = wat(f'(module {EXIT} (import "{cid}" "memory" {decl}) {mem} (func (export "_start")))')
        with pytest.raises(ModuleError, match=f"imports a {kind} .* from a module by CID"):
            _run(engine, tmp_path, top, {cid: MIX})
    # a dependency importing a memory from WASI is refused by the root's rules (SPEC 4.1)
    mem = lib('(import "wasi_snapshot_preview1" "memory" (memory 1)) (func (export "mix") (param i32 i32) '
              '(result i32) (local.get 0))', memory=0)
    cid = module_cid(mem)
    top = root(f'(import "{cid}" "mix" (func $mix (param i32 i32) (result i32)))', "(call $exit (i32.const 1))")
    with pytest.raises(ModuleError, match="wasi_snapshot_preview1::memory"):
        _run(engine, tmp_path, top, {cid: mem})


def _chain(length: int) -> tuple[bytes, dict[str, bytes]]:
    """A root importing f from a chain of ``length`` modules, each f adding 1 to the next's."""
    modules: dict[str, bytes] = {}
    below = lib('(func (export "f") (result i32) (i32.const 0))', memory=0)
    for _ in range(length - 1):
        cid = module_cid(below)
        modules[cid] = below
        below = lib(f'(import "{cid}" "f" (func $f (result i32))) (func (export "f") (result i32) '
                    '(i32.add (call $f) (i32.const 1)))', memory=0)
    cid = module_cid(below)
    modules[cid] = below
    return root(f'(import "{cid}" "f" (func $f (result i32)))', "(call $exit (call $f))"), modules


def test_closure_depth_and_size_caps(engine: Engine, tmp_path: Path) -> None:
    top, modules = _chain(linking.MAX_DEPTH)
    assert _run(engine, tmp_path / "ok", top, modules).exit_code == linking.MAX_DEPTH - 1
    top, modules = _chain(linking.MAX_DEPTH + 1)
    with pytest.raises(ModuleError, match=f"nested deeper than {linking.MAX_DEPTH}"):
        _run(engine, tmp_path / "deep", top, modules)
    many = {}
    for n in range(linking.MAX_MODULES):  # one more than the root leaves room for
        dep = lib(f'(func (export "f") (result i32) (i32.const {n}))', memory=0)
        many[module_cid(dep)] = dep
    names = list(many)
    imports = " ".join(f'(import "{c}" "f" (func $f{i} (result i32)))' for i, c in enumerate(names))
    with pytest.raises(ModuleError, match=f"more than {linking.MAX_MODULES} modules"):
        _run(engine, tmp_path / "big", root(imports, "(call $exit (call $f0))"), many)
    fits = " ".join(f'(import "{c}" "f" (func $f{i} (result i32)))' for i, c in enumerate(names[:-1]))
    sums = "(i32.const 0) " + " ".join(f"(call $f{i}) i32.add" for i in range(len(names) - 1))
    result = _run(engine, tmp_path / "fits", root(fits, f"{sums} (call $exit)"), many)
    assert result.exit_code == sum(range(linking.MAX_MODULES - 1))
    assert not list(tmp_path.glob("*/.cod-*"))


def test_a_dependency_start_function_trap_is_a_result(engine: Engine, tmp_path: Path) -> None:
    bad = lib('(func $s unreachable) (start $s) (func (export "mix") (param i32 i32) (result i32) (local.get 0))')
    cid = module_cid(bad)
    top = root(f'(import "{cid}" "mix" (func $mix (param i32 i32) (result i32)))', "(call $exit (i32.const 1))")
    result = _run(engine, tmp_path, top, {cid: bad})
    assert (result.exit_code, result.trap) == (134, "unreachable")
    # proc_exit in a dependency's start function ends the run with its code
    done = lib(f'{EXIT} (func $s (call $exit (i32.const 42))) (start $s) '
               '(func (export "mix") (param i32 i32) (result i32) (local.get 0))')
    cid = module_cid(done)
    top = root(f'(import "{cid}" "mix" (func $mix (param i32 i32) (result i32)))', "(call $exit (i32.const 1))")
    assert _run(engine, tmp_path / "exit", top, {cid: done}).exit_code == 42


BURN = lib('(func (export "burn") (param $n i32) (loop $l (local.set $n (i32.sub (local.get $n) (i32.const 1))) '
           '(br_if $l (local.get $n))))', memory=0)


def test_fuel_counts_every_module(engine: Engine, tmp_path: Path) -> None:
    cid = module_cid(BURN)

    def burner(n: int) -> bytes:
        return root(f'(import "{cid}" "burn" (func $burn (param i32)))', f"(call $burn (i32.const {n}))")

    small = _run(engine, tmp_path / "a", burner(1000), {cid: BURN})
    large = _run(engine, tmp_path / "b", burner(3000), {cid: BURN})
    # each iteration: local.get, i32.const, i32.sub, local.set, local.get, br_if = 6 units
    assert large.fuel_used - small.fuel_used == 2000 * 6
    starved = _run(engine, tmp_path / "c", burner(100_000), {cid: BURN}, fuel=10_000)
    assert (starved.exit_code, starved.trap, starved.fuel_used) == (134, "out_of_fuel", 10_000)


def test_memory_limit_bounds_the_sum_of_memories(engine: Engine, tmp_path: Path) -> None:
    grower = lib('(func (export "grow") (result i32) (memory.grow (i32.const 1)))', memory=2)
    cid = module_cid(grower)
    # lib grows (2 -> 3 pages: returns 2, encoded as 3), then again (4 + 2 > 5: -1, encoded 0),
    # then the root (2 -> 3 would make 6 > 5: -1, encoded 0): exit 3*100 + 0*10 + 0 = 300 -> 300 & 255
    top = root(f'(import "{cid}" "grow" (func $grow (result i32)))',
               "(call $exit (i32.add (i32.mul (i32.add (call $grow) (i32.const 1)) (i32.const 100)) "
               "(i32.add (i32.mul (i32.add (call $grow) (i32.const 1)) (i32.const 10)) "
               "(i32.add (memory.grow (i32.const 1)) (i32.const 1)))))", memory=2)
    assert _run(engine, tmp_path / "a", top, {cid: grower}, memory_bytes=5 * PAGE).exit_code == 300
    # with room for both: 3*100 + 4*10 + 3 (lib 2->3->4, root 2->3: 7 pages)
    assert _run(engine, tmp_path / "b", top, {cid: grower}, memory_bytes=7 * PAGE).exit_code == 343
    with pytest.raises(ModuleError, match=f"declare {4 * PAGE} bytes of initial memory together"):
        _run(engine, tmp_path / "c", top, {cid: grower}, memory_bytes=3 * PAGE)


GREET = lib(f'{WRITE} (data (i32.const 16) "hi from lib\\n") (func (export "greet") '
            '(i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 12)) '
            '(drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))')


def test_wasi_calls_of_a_dependency_use_its_own_memory(engine: Engine, tmp_path: Path) -> None:
    cid = module_cid(GREET)
    # the root holds other bytes at the same addresses; it writes its own line after the lib's
    top = root(f'(import "{cid}" "greet" (func $greet))',
               "(call $greet) (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 5)) "
               "(drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (call $greet)",
               extra='(data (i32.const 16) "root\\nXXXXXXX")')
    _run(engine, tmp_path, top, {cid: GREET})
    assert (tmp_path / "results" / "stdout").read_bytes() == b"hi from lib\nroot\nhi from lib\n"


def test_a_dependency_calling_wasi_must_export_its_memory(engine: Engine, tmp_path: Path) -> None:
    hidden = lib(f'{WRITE} (memory 1) (func (export "greet") (drop (call $write (i32.const 1) (i32.const 0) '
                 '(i32.const 0) (i32.const 8))))', memory=0)
    cid = module_cid(hidden)
    top = root(f'(import "{cid}" "greet" (func $greet))', "(call $greet)")
    with pytest.raises(ModuleError, match="exports no memory named 'memory'"):
        _run(engine, tmp_path, top, {cid: hidden})
    assert list(tmp_path.iterdir()) == []


def test_cidv0_names_the_dag_pb_form(engine: Engine, tmp_path: Path) -> None:
    import base58  # type: ignore[import-untyped]  # py-multihash's dependency

    raw = CID.parse(module_cid(MIX))
    v0 = base58.b58encode(raw.multihash).decode()
    assert v0.startswith("Qm") and linking.cid_name(v0) == str(CID(0x70, raw.digest))
    top = root(f'(import "{v0}" "mix" (func $mix (param i32 i32) (result i32)))', "(call $exit (i32.const 1))")
    with pytest.raises(ModuleError, match="a CIDv0 .* names a dag-pb node"):
        _run(engine, tmp_path, top, {str(CID(0x70, raw.digest)): MIX})
    # a module over 1 MiB is a dag-pb file: its CIDv0 names the same node as module_cid
    big = lib(f'(data (i32.const 0) "{"x" * (1 << 20)}") (func (export "f") (result i32) (i32.const 6))',
              memory=17)
    big_cid = CID.parse(module_cid(big))
    assert big_cid.codec == 0x70
    big_v0 = base58.b58encode(big_cid.multihash).decode()
    top = root(f'(import "{big_v0}" "f" (func $f (result i32)))', "(call $exit (call $f))")
    assert _run(engine, tmp_path / "big", top, {module_cid(big): big}).exit_code == 6


def test_names_that_are_not_cids() -> None:
    assert linking.cid_name("wasi_snapshot_preview1") is None
    assert linking.cid_name("env") is None
    assert linking.cid_name("bad") is None
    assert linking.cid_name("Qm" + "x" * 44) is None
    assert linking.cid_name(module_cid(MIX)) == module_cid(MIX)


def test_dependencies_that_are_not_modules_are_refused(engine: Engine, tmp_path: Path) -> None:
    for data, message in ((b"#!/bin/sh\n", "not a core WebAssembly module"),
                          (b"\0asm\1\0\0\0\2\5\xff\xff\xff\xff\x0f", "import section cannot be read"),
                          (b"\0asm\1\0\0\0\2\3\1\1", "import section cannot be read")):
        cid = module_cid(data)
        top = root(f'(import "{cid}" "f" (func $f))', "(call $f)")
        with pytest.raises(ModuleError, match=message):
            _run(engine, tmp_path, top, {cid: data})
    # bytes that read but do not validate are refused by the engine, naming no crash
    bad = b"\0asm\1\0\0\0\1\4\1\x60\0\0\3\2\1\5"
    cid = module_cid(bad)
    with pytest.raises(ModuleError, match="not a valid WebAssembly module"):
        _run(engine, tmp_path, root(f'(import "{cid}" "f" (func $f))', "(call $f)"), {cid: bad})
    assert list(tmp_path.iterdir()) == []


def test_host_work_of_a_dependency_is_paid_from_the_one_store(engine: Engine, tmp_path: Path) -> None:
    rand = lib('(import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32))) '
               '(import "wasi_snapshot_preview1" "proc_exit" (func $x (param i32))) '
               '(func (export "fill") (param $n i32) (drop (call $r (i32.const 0) (local.get $n)))) '
               '(func (export "quit") (call $x (i32.const 9)))')
    cid = module_cid(rand)

    def filler(n: int) -> bytes:
        return root(f'(import "{cid}" "fill" (func $fill (param i32)))', f"(call $fill (i32.const {n}))")

    small = _run(engine, tmp_path / "a", filler(100), {cid: rand})
    large = _run(engine, tmp_path / "b", filler(4100), {cid: rand})
    assert large.fuel_used - small.fuel_used == 4000  # FUEL_PER_RANDOM_BYTE = 1 (SPEC 5.3)
    # proc_exit called by a dependency ends the whole run with its code
    quit_root = root(f'(import "{cid}" "quit" (func $quit))', "(call $quit) (call $exit (i32.const 1))")
    assert _run(engine, tmp_path / "c", quit_root, {cid: rand}).exit_code == 9
