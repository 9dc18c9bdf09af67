from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cod.errors import CacheError
from cod.wasm import engine as engine_mod
from cod.wasm.engine import Engine, profile_id

from .helpers import ROOT, VECTORS

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
