"""Run one job spec on the deterministic WASI layer and leave its results directory.

The results directory is laid out like Bacalhau's: ``stdout``, ``stderr``, ``exitCode``
(decimal, no newline) and ``outputs/`` (what the job wrote under the spec's output path),
plus ``trap`` (the wasmtime trap code and a newline) when the job trapped. It is written in a
staging directory beside the destination and renamed into place only when the run ended
with a result, so nothing is ever left half-written.

Outcomes that are not portable never become results: a stack overflow (its depth depends on
code generation and the machine) and the wall-clock timeout raise Indeterminate.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from ..errors import CodError, Indeterminate, InputError, ModuleError, SpecError
from ..jobspec import ENGINE_WASM, JobSpec
from ..unixfs import Importer
from . import hostcall
from .engine import Engine
from .entropy import RandomStream, VirtualClock
from .vfs import Budget, FileSystem, Mount
from .wasi import ProcExit, Stream, Wasi, check_imports

TRAP_EXIT_CODE = 134
WASM_PAGE = 65536
RESULT_ENTRIES = frozenset({"stdout", "stderr", "exitCode", "outputs", "trap"})
NOT_PORTABLE = {
    wasmtime.TrapCode.STACK_OVERFLOW: ("stack-overflow", "the wasm stack overflowed; its depth is machine-dependent"),
    wasmtime.TrapCode.INTERRUPT: ("timeout", "the wall-clock safety timeout fired"),
}


@dataclass(frozen=True)
class RunResult:
    """What a run produced. ``result_cid`` names the results directory; the rest sits beside it."""

    job_cid: str
    result_cid: str
    exit_code: int
    trap: str | None
    fuel_used: int
    profile: str
    results_dir: Path


def module_cid(wasm: bytes) -> str:
    """The module's CID: the UnixFS CID of its bytes, as ``ipfs add`` would give it."""
    return str(Importer().add_bytes(wasm).cid)


def run(
    spec: JobSpec,
    wasm: bytes,
    inputs: Mapping[str, str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    engine: Engine,
) -> RunResult:
    """Run ``spec`` with module bytes ``wasm`` and leave its results at ``output_dir``.

    ``inputs`` maps each input's mount path to a host directory; for an input named by CID
    the caller vouches that the directory hashes to it (see :func:`cod.unixfs.cid_of_tree`). ``output_dir``
    must not exist, be empty, or hold an earlier cod result (which is replaced only once
    the new one is complete). Raises SpecError, ModuleError, InputError,
    OutputLimitExceeded or Indeterminate; in each case nothing is written.
    """
    spec.validate()
    if spec.engine != ENGINE_WASM:
        raise SpecError("engine", f"{spec.engine!r} jobs do not run on the WASM executor")
    actual = module_cid(wasm)
    if actual != spec.module:
        raise ModuleError(f"module bytes hash to {actual}, not to the spec's module {spec.module}")
    destination = Path(output_dir)
    check_destination(destination)
    mounts = [_input_mount(spec, n, inputs) for n in range(len(spec.inputs))]
    module = engine.module(wasm)
    check_imports(module)
    _check_exports(module, spec)

    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=".cod-staging-"))
    try:
        exit_code, trap, fuel_used = _execute(spec, module, engine, mounts, staging)
        (staging / "exitCode").write_text(str(exit_code))
        if trap is not None:
            (staging / "trap").write_text(trap + "\n")
        result_cid = Importer().tree(staging).cid
        install(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RunResult(
        job_cid=str(spec.cid),
        result_cid=str(result_cid),
        exit_code=exit_code,
        trap=trap,
        fuel_used=fuel_used,
        profile=engine.profile,
        results_dir=destination,
    )


def _execute(
    spec: JobSpec, module: wasmtime.Module, engine: Engine, mounts: list[Mount], staging: Path
) -> tuple[int, str | None, int]:
    outputs = staging / "outputs"
    outputs.mkdir(mode=0o755)
    mounts = mounts + [Mount(spec.outputs, os.fsencode(outputs), writable=True)]
    limits = spec.limits
    wasi = Wasi(
        args=list(spec.args),
        env=list(spec.env),
        clock=VirtualClock(spec.epoch_ns, spec.tick_ns),
        random=RandomStream(spec.effective_seed),
        fs=FileSystem(mounts, limits.output_bytes),
        stdout=Stream(str(staging / "stdout"), Budget("stdout", limits.stdout_bytes)),
        stderr=Stream(str(staging / "stderr"), Budget("stderr", limits.stderr_bytes)),
        epoch_ns=spec.epoch_ns,
    )
    store = wasmtime.Store(engine.engine)
    if engine.fuel:
        store.set_fuel(limits.fuel)
    store.set_limits(memory_size=limits.memory_bytes)
    if engine.epochs:
        store.set_epoch_deadline(engine.ticks_for(limits.timeout_ms))
    linker = wasmtime.Linker(engine.engine)
    wasi.define(linker, engine.functypes)
    exit_code, trap = 0, None
    try:
        try:
            with hostcall.reraise_pending():
                instance = linker.instantiate(store, module)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"module cannot be instantiated: {' '.join(str(exc).split())[:300]}") from exc
        exports = instance.exports(store)
        memory = exports.get("memory")
        wasi.memory = memory if isinstance(memory, wasmtime.Memory) else None
        entry = exports[spec.entry_point]
        assert isinstance(entry, wasmtime.Func)
        try:
            with hostcall.reraise_pending():
                entry(store)
        except ProcExit as done:
            exit_code = done.code
        except wasmtime.Trap as exc:
            code = exc.trap_code
            if code in NOT_PORTABLE:
                raise Indeterminate(*NOT_PORTABLE[code]) from exc
            if code is None:
                raise Indeterminate("trap", f"a trap without a trap code: {exc.message[:200]}") from exc
            exit_code, trap = TRAP_EXIT_CODE, code.name.lower()
        except wasmtime.WasmtimeError as exc:
            raise Indeterminate("engine-error", " ".join(str(exc).split())[:300]) from exc
    finally:
        wasi.close()
    fuel_used = limits.fuel - store.get_fuel() if engine.fuel else 0
    return exit_code, trap, fuel_used


def _input_mount(spec: JobSpec, n: int, inputs: Mapping[str, str | os.PathLike[str]]) -> Mount:
    item = spec.inputs[n]
    source = inputs.get(item.path)
    if source is None:
        raise InputError(
            f"input {item.cid or item.local} (mounted at {item.path}) is not available on this machine",
            "give its local directory with -i SRC:DST",
        )
    host = os.path.abspath(os.fspath(source))
    if not os.path.isdir(host):
        raise InputError(
            f"input {host!r} for {item.path} is not a directory",
            "cod mounts directories: put the file in a directory and mount that",
        )
    return Mount(item.path, os.fsencode(host), writable=False)


def _check_exports(module: wasmtime.Module, spec: JobSpec) -> None:
    exports = {e.name: e.type for e in module.exports}
    entry = exports.get(spec.entry_point)
    if not isinstance(entry, wasmtime.FuncType):
        raise ModuleError(
            f"module exports no function {spec.entry_point!r}",
            "a WASI command exports _start; name another with --entry-point",
        )
    if list(entry.params) or list(entry.results):
        raise ModuleError(f"entry point {spec.entry_point!r} must take no parameters and return nothing")
    memory = exports.get("memory")
    if not isinstance(memory, wasmtime.MemoryType):
        raise ModuleError("module exports no memory named 'memory'; WASI needs it")
    minimum = memory.limits.min * WASM_PAGE
    if minimum > spec.limits.memory_bytes:
        raise ModuleError(
            f"module declares {minimum} bytes of initial memory, over the limit of {spec.limits.memory_bytes}",
            "raise the limit with --memory",
        )


def check_destination(destination: Path) -> None:
    if not destination.exists():
        return
    if not destination.is_dir():
        raise CodError(f"output directory {destination} exists and is not a directory", "choose another path")
    entries = set(os.listdir(destination))
    if entries and not ("exitCode" in entries and entries <= RESULT_ENTRIES):
        raise CodError(
            f"output directory {destination} holds files that are not a cod result",
            "choose an empty or new directory; cod never overwrites other files",
        )


def install(staging: Path, destination: Path) -> None:
    """Move the finished results into place; an earlier result there goes only after."""
    if destination.exists() and not any(destination.iterdir()):
        destination.rmdir()
    if not destination.exists():
        os.rename(staging, destination)
        return
    old = Path(tempfile.mkdtemp(dir=destination.parent, prefix=".cod-old-"))
    os.rename(destination, old / "result")
    os.rename(staging, destination)
    shutil.rmtree(old, ignore_errors=True)


__all__ = ["RunResult", "module_cid", "run"]
