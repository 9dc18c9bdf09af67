"""The checkpoint transform (SPEC 11.6): deterministic bytes, the hook and Asyncify's exports, every
global exported, and the modules it refuses with a reason."""

from __future__ import annotations

import wasmtime
import pytest

from cod.checkpoint import CHECKPOINT_TRANSFORM, CheckpointError, available, instrument
from cod.checkpoint.transform import export_globals

from ..helpers import VECTORS

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


def test_the_transform_names_the_pinned_binaryen() -> None:
    assert CHECKPOINT_TRANSFORM == "cod-checkpoint-1+binaryen-108"


def test_instrument_is_deterministic_and_exports_what_checkpoints_need() -> None:
    wasm = (VECTORS / "wordcount.wasm").read_bytes()
    first, second = instrument(wasm), instrument(wasm)
    assert first == second
    module = wasmtime.Module(wasmtime.Engine(), first)
    imports = {(i.module, i.name) for i in module.imports}
    assert ("env", "log_execution") in imports
    exports = {e.name: e.type for e in module.exports}
    for name in ("_start", "asyncify_start_unwind", "asyncify_stop_unwind", "asyncify_start_rewind",
                 "asyncify_stop_rewind", "asyncify_get_state"):
        assert isinstance(exports[name], wasmtime.FuncType), name
    globals_ = sorted(name for name, ty in exports.items() if isinstance(ty, wasmtime.GlobalType))
    # wasi-libc's stack pointer, the hook's countdown and stride, Asyncify's state and data pointer
    assert globals_ == ["cod:global:0", "cod:global:1", "cod:global:2", "cod:global:3", "cod:global:4",
                        "cod:stride"]


def test_export_globals_adds_an_export_section_when_there_is_none() -> None:
    wasm = bytes(wasmtime.wat2wasm("(module (global (mut i32) (i32.const 7)) (global i64 (i64.const 1)) "
                                    "(func))"))
    out = export_globals(wasm)
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, out)
    assert [e.name for e in module.exports] == ["cod:global:0", "cod:global:1"]
    store = wasmtime.Store(engine)
    instance = wasmtime.Instance(store, module, [])
    g = instance.exports(store)["cod:global:0"]
    assert isinstance(g, wasmtime.Global) and g.value(store) == 7


@pytest.mark.parametrize("source, match", [
    ('(module (func $s) (start $s) (memory (export "memory") 1) (func (export "_start")))', "start function"),
    ('(module (import "bafkreib6zozpwou6bnn2qsivozqxrjgybppbswmjjsjdaloy7gp3buga54" "mix" (func)) '
     '(memory (export "memory") 1) (func (export "_start")))', "by CID"),
    ('(module (import "env" "log_execution" (func (param i32))) (memory (export "memory") 1) '
     '(func (export "_start")))', "log_execution"),
])
def test_refused_modules_say_why(source: str, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        instrument(bytes(wasmtime.wat2wasm(source)))


def test_the_linked_vector_is_refused_for_now() -> None:
    with pytest.raises(CheckpointError, match="not supported yet"):
        instrument((VECTORS / "mixer.wasm").read_bytes())


def test_hook_text_in_a_data_segment_is_left_alone() -> None:
    from cod.checkpoint.transform import add_stride

    text = ('(module\n (import "env" "log_execution" (func $fimport$1 (param i32)))\n'
            ' (data (i32.const 0) "(call $fimport$1\\0a")\n'
            ' (func $0\n  (call $fimport$1\n   (i32.const 0)\n  )\n )\n)\n')
    out = add_stride(text)
    assert '"(call $fimport$1\\0a"' in out  # the data's bytes as they were
    assert "  (call $cod_checkpoint_hook\n   (i32.const 0)" in out
    assert out.count("(call $fimport$1 (local.get $where))") == 1  # only the stride function calls the host


def test_a_module_using_the_transform_export_names_is_refused() -> None:
    wasm = bytes(wasmtime.wat2wasm('(module (global (export "cod:global:0") i32 (i32.const 1)) '
                                    '(memory (export "memory") 1) (func (export "_start")))'))
    with pytest.raises(CheckpointError, match="cod:global:"):
        instrument(wasm)
