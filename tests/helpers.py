"""Shared helpers: paths, the independent CID implementations, built-in WASI runs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import wasmtime
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "vectors"
JS = ROOT / "tests" / "js"
IPFS_CAR = JS / "node_modules" / ".bin" / "ipfs-car"


def _require_node_tools() -> None:
    if not IPFS_CAR.exists():
        raise RuntimeError("the node cross-check tools are missing: run `make node-tools` (make test does)")


def js_unixfs_cid(path: Path) -> str:
    """Root CID from js-ipfs-unixfs's importer, profile unixfs-v1-2025 (keeps empty dirs)."""
    _require_node_tools()
    out = subprocess.run(["node", str(JS / "unixfs-cid.mjs"), str(path)], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def ipfs_car_cid(path: Path, car: Path) -> str:
    """Root CID from `ipfs-car pack --no-wrap -H` (ipfs-car v3 drops empty directories)."""
    _require_node_tools()
    out = subprocess.run([str(IPFS_CAR), "pack", str(path), "--no-wrap", "-H", "--output", str(car)], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def ipfs_car(*args: str) -> subprocess.CompletedProcess[str]:
    _require_node_tools()
    return subprocess.run([str(IPFS_CAR), *args], check=True, capture_output=True, text=True)


def chacha_bytes(size: int, seed: str) -> bytes:
    """The deterministic bytes of kubo's and js-ipfs-unixfs's IPIP-499 fixtures."""
    key = hashlib.sha256(seed.encode()).digest()
    return Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(bytes(size))


def load_vector(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / f"{name}.json").read_text())


def vector_modules(vector: dict[str, Any]) -> dict[str, bytes]:
    """The bytes of the modules a vector's module imports by CID (SPEC 5.4), by CID."""
    return {cid: (VECTORS / name).read_bytes() for cid, name in vector.get("modules", {}).items()}


def vector_names() -> list[str]:
    return sorted(p.stem for p in VECTORS.glob("*.json"))


def run_builtin_wasi(wasm: bytes, args: list[str], preopen: Path | None, workdir: Path,
                     outputs: Path | None = None) -> bytes:
    """Run a module under wasmtime's own WASI (define_wasi), as a contrast; returns stdout.

    ``preopen`` is /inputs and ``outputs`` /outputs (both read-write: that WASI has no read-only mount)."""
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, wasm)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    config = wasmtime.WasiConfig()
    config.argv = args
    stdout = workdir / f"builtin-stdout-{os.getpid()}-{len(list(workdir.iterdir()))}"
    config.stdout_file = str(stdout)
    if preopen is not None:
        config.preopen_dir(str(preopen), "/inputs")
    if outputs is not None:
        config.preopen_dir(str(outputs), "/outputs")
    store.set_wasi(config)
    instance = linker.instantiate(store, module)
    try:
        instance.exports(store)["_start"](store)  # type: ignore[operator]
    except wasmtime.ExitTrap as exc:
        if exc.code != 0:
            raise
    return stdout.read_bytes()


def cod_env(tmp: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any COD_ variable, with cod's own directories in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COD_")}
    env.update(COD_HOME=str(tmp / "home"), XDG_CONFIG_HOME=str(tmp / "config"), PYTHONPATH=str(ROOT), **extra)
    return env


def run_cod(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m cod ARGS`` in ``tmp`` under :func:`cod_env` (with ``env``); text, two minutes at most."""
    return subprocess.run([sys.executable, "-m", "cod", *args], cwd=tmp, env=cod_env(tmp, **env), capture_output=True,
                          text=True, timeout=120)


@contextlib.contextmanager
def devstack(env: dict[str, str], cwd: Path, nodes: int = 3, bad: int = 0, *extra: str,
             stderr: Any = subprocess.DEVNULL) -> Iterator[list[tuple[str, str, bool]]]:
    """A real `cod devstack` process; yields (node ID, URL, lies) of each node, stops it after."""
    proc = subprocess.Popen([sys.executable, "-m", "cod", "devstack", "--nodes", str(nodes), "--bad-nodes", str(bad),
                             *extra], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    found: list[tuple[str, str, bool]] = []
    try:
        assert proc.stdout is not None
        while len(found) < nodes:
            line = proc.stdout.readline()
            assert line, "devstack ended early"
            if line.startswith("node "):
                found.append((line.split()[1], line.split()[3], "(lies)" in line))
        yield found
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
