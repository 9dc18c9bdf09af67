from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime

from cod.errors import CacheError, EngineSettingError
from cod.jobspec import JobSpec
from cod.wasm import engine as engine_mod
from cod.wasm.engine import Engine, profile_id
from cod.wasm.executor import run

from ..helpers import ROOT, VECTORS, load_vector

HELLO = (VECTORS / "hello.wasm").read_bytes()


def test_profile_id_names_version_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    first = profile_id()
    assert first.startswith("wasmtime-50.0.1+") and len(first.split("+")[1]) == 16
    assert profile_id() == first
    monkeypatch.setitem(engine_mod.ENGINE_SETTINGS, "max_wasm_stack", 2 << 20)
    assert profile_id() != first


def test_cached_start_does_not_recompile(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = Engine(cache)
    first.module(HELLO)
    assert first.compiled == 1
    again = Engine(cache)
    again.module(HELLO)
    assert (again.compiled, again.cache.hits if again.cache else None) == (0, 1)
    # and in a separate process sharing the cache
    code = ("import sys; from cod.wasm.engine import Engine; e = Engine(sys.argv[1]); "
            "e.module(open(sys.argv[2], 'rb').read()); print(e.compiled, e.cache.hits)")
    out = subprocess.run([sys.executable, "-c", code, str(cache), str(VECTORS / "hello.wasm")], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "1"]


def _artifact(cache: Path) -> Path:
    (found,) = list(cache.glob("*/*.cwasm"))
    return found


def test_tampered_or_foreign_artifacts_are_never_loaded(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    Engine(cache).module(HELLO)
    path = _artifact(cache)
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(blob)
    engine = Engine(cache)
    engine.module(HELLO)
    assert engine.compiled == 1  # the altered artifact was refused and the module recompiled
    # an artifact compiled elsewhere (another cache key) is refused too
    other = tmp_path / "other"
    Engine(other).module(HELLO)
    _artifact(cache).write_bytes(_artifact(other).read_bytes())
    engine = Engine(cache)
    engine.module(HELLO)
    assert engine.compiled == 1


def test_cache_directory_must_be_private(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    Engine(cache)
    os.chmod(cache, 0o777)
    with pytest.raises(CacheError, match="not private"):
        Engine(cache)


# -- Stage 3: engine settings are real wasmtime.Config properties ------------------------------


def _settable_by_inspection() -> set[str]:
    """wasmtime.Config's settable properties, read from the class by inspect (not by cod)."""
    return {name for name, member in inspect.getmembers(wasmtime.Config)
            if isinstance(member, property) and member.fset is not None}


def test_every_engine_setting_is_a_wasmtime_config_property() -> None:
    settable = _settable_by_inspection()
    assert {"consume_fuel", "max_wasm_stack", "memory_reservation"} <= settable  # the reader works
    assert set(engine_mod.ENGINE_SETTINGS) <= settable
    assert engine_mod.config_properties() == settable


@pytest.mark.parametrize(
    ("settings", "text"),
    [
        ({"wasm_simdd": True}, "'wasm_simdd' is not a wasmtime.Config property"),
        ({"ptr": True}, "'ptr' is not a wasmtime.Config property"),  # a method, not a setting
        ({"wasm_simd": "yes"}, "'wasm_simd' = 'yes' is refused by wasmtime"),
    ],
)
def test_misspelled_or_mistyped_settings_are_refused(settings: dict[str, object], text: str) -> None:
    with pytest.raises(EngineSettingError, match=text):
        engine_mod.make_config(dict(engine_mod.ENGINE_SETTINGS, **settings))
    with pytest.raises(EngineSettingError):
        Engine(settings=dict(engine_mod.ENGINE_SETTINGS, **settings))


def test_profile_names_the_wasi_contract() -> None:
    assert engine_mod.WASI_CONTRACT == "cod-wasi-3"
    described = dict(engine_mod.ENGINE_SETTINGS, wasi_contract="cod-wasi-3", wasmtime="50.0.1")
    digest = hashlib.sha256(json.dumps(described, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert profile_id() == "wasmtime-50.0.1+" + digest[:16]  # SPEC 5.2, recomputed with json by hand


def test_copy_on_write_memory_images_are_refused() -> None:
    # wasmtime charges fuel for data-segment initialization only when no copy-on-write image
    # is used, and whether one is used depends on the host (wasmtime issue #14331: 0 fuel on
    # Linux, 16385 on macOS for the same module); wasmtime 50 also aborts the process when
    # such images meet a host memory creator. cod always initializes by copying.
    assert engine_mod.ENGINE_SETTINGS["memory_init_cow"] is False
    with pytest.raises(EngineSettingError, match="memory_init_cow"):
        engine_mod.make_config(dict(engine_mod.ENGINE_SETTINGS, memory_init_cow=True))


def test_epoch_interruption_is_not_a_profile_setting() -> None:
    with pytest.raises(EngineSettingError, match="epoch_interruption"):
        engine_mod.make_config(dict(engine_mod.ENGINE_SETTINGS, epoch_interruption=True))
    assert "epoch_interruption" not in engine_mod.ENGINE_SETTINGS


def test_wall_clock_changes_no_result_and_shares_no_artifact(tmp_path: Path) -> None:
    """With and without epoch checks: one profile, the same result CID and fuel; separate caches."""
    vector = load_vector("hello")
    wasm = (VECTORS / vector["module"]).read_bytes()
    spec = JobSpec.from_json(json.dumps(vector["spec"]))
    inside = Engine(tmp_path / "cache", wall_clock=True)
    outside = Engine(tmp_path / "cache", wall_clock=False)
    a = run(spec, wasm, {}, tmp_path / "a", inside)
    b = run(spec, wasm, {}, tmp_path / "b", outside)
    assert inside.profile == outside.profile == a.profile == b.profile
    assert (a.result_cid, a.fuel_used) == (b.result_cid, b.fuel_used) == (vector["expect"]["result_cid"],
                                                                           vector["expect"]["fuel_used"])
    assert inside.compiled == outside.compiled == 1  # neither loaded the other's artifact
