"""The same probe under wasmtime's built-in WASI leaks the host: the suite would see a leak.

Each assertion here is the negative of one the property tests make of cod.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cod import Engine, Input, JobSpec, cid_of_tree, module_cid, run

from ..helpers import VECTORS, run_builtin_wasi

PROBE = (VECTORS / "probe.wasm").read_bytes()


def _lines(stdout: bytes, prefix: str) -> list[str]:
    return [line for line in stdout.decode().splitlines() if line.startswith(prefix)]


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    for n in reversed(range(40)):  # created in reverse order
        (root / f"f{n:02d}").write_bytes(b"x" * n)
    return root


def test_builtin_wasi_leaks_clock_randomness_and_order(tmp_path: Path, data: Path) -> None:
    first = run_builtin_wasi(PROBE, ["probe.wasm"], data, tmp_path)
    second = run_builtin_wasi(PROBE, ["probe.wasm"], data, tmp_path)
    assert _lines(first, "realtime") != _lines(second, "realtime")  # the host clock
    assert _lines(first, "random") != _lines(second, "random")  # host randomness
    entries = [line.split()[1] for line in _lines(first, "entry ")]
    host_order = [f"/inputs/{name}" for name in os.listdir(data)]
    if host_order == sorted(host_order):
        pytest.skip("this file system lists entries sorted, so order cannot be shown to leak here")
    assert entries == host_order  # the host's directory order, not a sorted one
    assert any("mtime=946684800" not in line for line in _lines(first, "entry "))  # host timestamps


def test_cod_closes_the_same_doors(tmp_path: Path, data: Path, engine: Engine) -> None:
    cid = str(cid_of_tree(data))
    spec = JobSpec(module=module_cid(PROBE), inputs=(Input(cid, "/inputs"),))
    one = run(spec, PROBE, {"/inputs": str(data)}, tmp_path / "a", engine)
    two = run(spec, PROBE, {"/inputs": str(data)}, tmp_path / "b", engine)
    assert one.result_cid == two.result_cid
    stdout = (one.results_dir / "stdout").read_bytes()
    entries = [line.split()[1] for line in _lines(stdout, "entry ")]
    assert entries == sorted(entries)
