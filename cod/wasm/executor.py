"""Run one job spec on the deterministic WASI layer and leave its results directory.

The results directory is laid out like Bacalhau's: ``stdout``, ``stderr``, ``exitCode``
(decimal, no newline) and ``outputs/`` (what the job wrote under the spec's output path),
plus ``trap`` (the wasmtime trap code and a newline) when the job trapped. It is written in a
staging directory beside the destination and renamed into place only when the run ended
with a result, so nothing is ever left half-written.

Outcomes that are not portable never become results: a stack overflow (its depth depends on
code generation and the machine), the wall-clock timeout and a host that refused memory
raise Indeterminate. A wasm ``start`` function runs under exactly the rules of the entry
point. Nothing that wasmtime or Python raises reaches the caller as itself: link and
instantiation errors become ModuleError, anything else Indeterminate; the staging directory
is always removed, however deep.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import wasmtime

from ..content.unixfs import Importer, module_cid, mount_file, mount_root
from ..errors import CodError, Indeterminate, InputError, ModuleError, SpecError
from ..jobspec import ENGINE_WASM, JobSpec
from ..limits import MAX_PATH_BYTES, MAX_TABLES as MAX_TABLES  # per module (re-exported)
from ..resultsdir import (DIR_MODE, FILE_MODE, RESULT_ENTRIES, check_destination, fix_modes, install, remove_tree,
                          staging_prefix)
from . import hostcall, linking, memory
from .binary import table_minimums
from .engine import Engine
from .entropy import RandomStream, VirtualClock
from .fault import Fault
from .imports import check_imports
from .observe import Telemetry
from .vfs import MAX_OUTPUT_COMPONENTS, Budget, FileSystem, Mount
from .wasi import ProcExit, Stream, Wasi

TRAP_EXIT_CODE = 134
WASM_PAGE = 65536
MAX_INSTANCES = linking.MAX_MODULES  # the job's module and its closure; host functions are not instances
MAX_STORE_TABLES = MAX_TABLES + linking.MAX_CLOSURE_TABLES  # the root's and its dependencies'
MAX_MEMORIES = linking.MAX_MODULES  # multi-memory is off: at most one a module
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
    telemetry: dict[str, Any] | None = field(default=None, compare=False)
    """The guest's telemetry events (:meth:`cod.wasm.observe.Telemetry.report`) when asked for:
    never part of the results."""


def run(
    spec: JobSpec,
    wasm: bytes,
    inputs: Mapping[str, str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    engine: Engine,
    modules: Mapping[str, bytes] | None = None,
    telemetry: bool = False,
    fault: Fault | None = None,
) -> RunResult:
    """Run ``spec`` with module bytes ``wasm`` and leave its results at ``output_dir``.

    ``modules`` gives the bytes of the modules ``wasm`` imports by CID (SPEC 5.4), keyed by
    CID text; each is checked against its CID, and a missing one is MissingModules.
    ``telemetry``: collect the guest's Observe API events into ``RunResult.telemetry`` (SPEC
    5.5); the results, the fuel and the outcome are the same either way.
    ``fault``: a devstack liar's deterministic fault (:mod:`cod.wasm.fault`, SPEC 11.8), told of
    the run's countable calls (its ``calls`` and ``fired`` say what happened); None is an
    honest run.

    ``inputs`` maps each input's mount path to a host directory; for an input named by CID
    the caller vouches that the directory hashes to it (see :func:`cod.content.unixfs.cid_of_tree`). ``output_dir``
    must not exist, be empty, or hold an earlier cod result (which is replaced only once
    the new one is complete). Raises SpecError, ModuleError, InputError,
    OutputLimitExceeded, Indeterminate (also for any host fault) or CodError (an unusable
    destination); in each case nothing is written and no staging is left.
    """
    spec.validate()
    if spec.engine != ENGINE_WASM:
        raise SpecError("engine", f"{spec.engine!r} jobs do not run on the WASM executor")
    actual = module_cid(wasm)
    if actual != spec.module:
        raise ModuleError(f"module bytes hash to {actual}, not to the spec's module {spec.module}")
    destination = Path(output_dir)
    check_destination(destination)
    mounts, file_inputs = _input_mounts(spec, inputs)
    base = _base_root(spec, inputs)
    module = engine.module(wasm)
    check_imports(module)
    _check_exports(module, spec)
    _check_tables(wasm, spec)
    linked = _link(wasm, module, modules, engine, spec)  # check_module: these same checks, alone
    staging = _make_staging(destination)
    empty: Path | None = None
    try:
        if file_inputs:  # the directories holding single-file inputs: an empty one, plus the files
            empty = _make_staging(destination)
            mounts += [Mount(parent, os.fsencode(empty), writable=False, files=files)
                       for parent, files in sorted(file_inputs.items())]
        observed = Telemetry(telemetry)
        exit_code, trap, fuel_used = _execute(spec, module, engine, mounts, staging, base, linked, observed, wasm,
                                              fault)
        result_cid = _finish(staging, exit_code, trap)
        install(staging, destination)
    except CodError:
        raise
    except Exception as exc:  # a host fault while writing, hashing or installing the results
        raise Indeterminate("host-fault", _describe(exc)) from exc
    finally:
        remove_tree(staging)  # gone already when installed
        if empty is not None:
            remove_tree(empty)
    return RunResult(
        job_cid=str(spec.cid),
        result_cid=str(result_cid),
        exit_code=exit_code,
        trap=trap,
        fuel_used=fuel_used,
        profile=engine.profile,
        results_dir=destination,
        telemetry=observed.report(),
    )


def check_module(spec: JobSpec, wasm: bytes, engine: Engine, modules: Mapping[str, bytes] | None = None,
                 link: bool = True) -> None:
    """What :func:`run` checks of the module before anything runs, alone: it is a WASI preview1
    command cod's engine compiles, with the entry point, memory and tables a run needs, and
    (``link``: every module it imports by CID is in ``modules``) its closure links. Raises
    ModuleError with the words a local run would give. A requester calls it before sending a
    job to nodes (``cod run --verify``), so a file that is no module fails here, not on N nodes."""
    module = engine.module(wasm)
    check_imports(module)
    _check_exports(module, spec)
    _check_tables(wasm, spec)
    if link:
        _link(wasm, module, modules, engine, spec)


def _link(wasm: bytes, module: wasmtime.Module, modules: Mapping[str, bytes] | None, engine: Engine,
          spec: JobSpec) -> linking.Checked | None:
    """The module's closure, resolved from ``modules`` and checked (SPEC 5.4); None without
    CID imports. Raises ModuleError (MissingModules) before anything runs."""
    found = linking.closure(wasm, linking.resolver(modules))
    if not found.order:
        return None
    for cid in found.order:
        _check_tables(found.modules[cid], spec, f"dependency {cid}")
    return linking.check(wasm, module, found, engine, spec.limits.memory_bytes)


def _execute(
    spec: JobSpec, module: wasmtime.Module, engine: Engine, mounts: list[Mount], staging: Path,
    base: bytes | None = None, linked: linking.Checked | None = None, observed: Telemetry | None = None,
    wasm: bytes = b"", fault: Fault | None = None,
) -> tuple[int, str | None, int]:
    """Instantiate (running any start function) and call the entry point: (exit code, trap, fuel).

    The writable mount starts as a copy of ``base`` when given. Raises InputError for a base
    the results could not hold, ModuleError when the module cannot be linked or
    instantiated, Indeterminate for an outcome that is not portable or a host fault, and
    what host functions raise (caps).
    """
    outputs = staging / "outputs"
    outputs.mkdir(mode=DIR_MODE)
    if base is not None:
        copy_base(base, os.fsencode(outputs), spec.outputs)
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
        metered=engine.fuel,
        fault=fault,
    )
    store = wasmtime.Store(engine.engine)
    if engine.fuel:
        store.set_fuel(limits.fuel)
    store.set_limits(memory_size=limits.memory_bytes, table_elements=limits.table_elements,
                     instances=MAX_INSTANCES, tables=MAX_STORE_TABLES, memories=MAX_MEMORIES)
    if engine.epochs:
        store.set_epoch_deadline(engine.ticks_for(limits.timeout_ms))
    linker = wasmtime.Linker(engine.engine)
    wasi.define(linker, engine.functypes)
    observed = observed or Telemetry()
    observed.define(linker, wasm)
    with memory.watch() as refused, memory.shared_limit(limits.memory_bytes):
        try:
            try:
                outcome = _call(spec, module, store, linker, wasi, engine, linked, observed)
            finally:
                wasi.close()
        except CodError as exc:
            _no_host_refusal(refused(), exc)
            raise
        _no_host_refusal(refused(), None)
    fuel_used = limits.fuel - store.get_fuel() if engine.fuel else 0
    return outcome[0], outcome[1], fuel_used


def _call(
    spec: JobSpec, module: wasmtime.Module, store: wasmtime.Store, linker: wasmtime.Linker, wasi: Wasi,
    engine: Engine, linked: linking.Checked | None = None, observed: Telemetry | None = None,
) -> tuple[int, str | None]:
    """Run the start functions and the entry point under one set of rules: (exit code, trap)."""
    instantiated = False
    try:
        with hostcall.reraise_pending():
            if linked is not None:
                _instantiate_closure(linked, store, linker, wasi, engine, observed or Telemetry())
            instance = linker.instantiate(store, module)  # runs the start function, if any
            instantiated = True
            exports = instance.exports(store)
            found = exports.get("memory")
            wasi.memory = found if isinstance(found, wasmtime.Memory) else None
            entry = exports[spec.entry_point]
            if not isinstance(entry, wasmtime.Func):
                raise ModuleError(f"entry point {spec.entry_point!r} is not a function")
            entry(store)
    except ProcExit as done:
        return done.code, None
    except wasmtime.Trap as exc:
        return TRAP_EXIT_CODE, _trap_name(exc)
    except wasmtime.WasmtimeError as exc:
        if not instantiated:  # a link or resource-limit error: nothing of the module ran
            raise ModuleError(f"module cannot be instantiated: {_describe(exc)}",
                              "check limits.table_elements and limits.memory_bytes against what the "
                              "module declares") from exc
        raise Indeterminate("engine-error", _describe(exc)) from exc
    except CodError:
        raise
    except Exception as exc:  # wasmtime-py or Python itself failed: not the guest's outcome
        raise Indeterminate("host-fault", _describe(exc)) from exc
    return 0, None


def _instantiate_closure(linked: linking.Checked, store: wasmtime.Store, linker: wasmtime.Linker, wasi: Wasi,
                         engine: Engine, observed: Telemetry) -> None:
    """Instantiate the dependencies in the closure's order (running their start functions), each
    with its own Linker whose WASI functions work on its own memory; define the root's CID
    imports on ``linker``."""
    found = linked.closure
    instances: dict[str, wasmtime.Instance] = {}
    for cid in found.order:
        own = wasmtime.Linker(engine.engine)
        wasi.define_own(own, engine.functypes, linked.wasi_imports[cid])
        observed.define(own, found.modules[cid])
        for name in found.imports[cid]:
            own.define_instance(store, name, instances[found.names[name]])
        instances[cid] = own.instantiate(store, linked.compiled[cid])
    for name in found.imports[linking.ROOT]:
        linker.define_instance(store, name, instances[found.names[name]])


def _no_host_refusal(refusal: str | None, cause: BaseException | None) -> None:
    """Raise Indeterminate if the host refused memory during the run: whatever the guest did
    after seeing -1 (or failing to instantiate) is not a result another host would give."""
    if refusal is not None:
        raise Indeterminate("host-memory", refusal) from cause


def _trap_name(exc: wasmtime.Trap) -> str:
    """The trap's name for the results; raises Indeterminate for traps that are not portable."""
    code = exc.trap_code
    if code in NOT_PORTABLE:
        raise Indeterminate(*NOT_PORTABLE[code]) from exc
    if code is None:
        raise Indeterminate("trap", f"a trap without a trap code: {exc.message[:200]}") from exc
    return code.name.lower()


def _describe(exc: BaseException) -> str:
    """One line about an unexpected exception, for an error message."""
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _make_staging(destination: Path) -> Path:
    """A fresh staging directory beside ``destination``; CodError if the host will not give one."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=destination.parent, prefix=staging_prefix(destination)))
    except OSError as exc:
        raise CodError(f"cannot create a staging directory beside {destination}: {exc.strerror}",
                       "choose an output directory in a writable place") from exc


def _finish(staging: Path, exit_code: int, trap: str | None) -> str:
    """Write exitCode (and trap), give every entry its fixed mode, and hash: the result CID."""
    (staging / "exitCode").write_text(str(exit_code))
    if trap is not None:
        (staging / "trap").write_text(trap + "\n")
    fix_modes(staging)
    return str(Importer().tree(staging).cid)


def _input_mounts(spec: JobSpec, inputs: Mapping[str, str | os.PathLike[str]]
                  ) -> tuple[list[Mount], dict[str, tuple[tuple[bytes, bytes], ...]]]:
    """The directory inputs as mounts, and the file inputs grouped by the directory that
    holds them (SPEC 4.6): {parent path: ((name, host file), ...)} sorted by name bytes."""
    mounts: list[Mount] = []
    files: dict[str, list[tuple[bytes, bytes]]] = {}
    for item in spec.inputs:
        source = inputs.get(item.path)
        if source is None:
            raise InputError(
                f"input {item.cid or item.local} (mounted at {item.path}) is not available on this machine",
                "add it to the local store (cod add PATH) or give it with -i SRC:DST",
            )
        if os.path.isdir(source) or item.local is not None:
            mounts.append(Mount(item.path, mount_root(source), writable=False))  # a real directory, never a link
            continue
        parent, name = posixpath.split(item.path)
        files.setdefault(parent, []).append((name.encode(), mount_file(source)))
    return mounts, {parent: tuple(sorted(group)) for parent, group in files.items()}


def _base_root(spec: JobSpec, inputs: Mapping[str, str | os.PathLike[str]]) -> bytes | None:
    """The host directory holding the spec's output base (keyed by the output path), or None."""
    if spec.output_base is None:
        return None
    source = inputs.get(spec.outputs)
    if source is None:
        raise InputError(f"output base {spec.output_base} (mounted at {spec.outputs}) is not available on "
                         "this machine", "give its directory with --output-base DIR")
    return mount_root(source)


def copy_base(source: bytes, target: bytes, mount_path: str) -> None:
    """Copy the output base's tree at ``source`` into the empty directory ``target``.

    Depth-first, names in byte order, without following links: a symlink is copied as a link
    with its target's bytes (at most MAX_PATH_BYTES, as the importer hashed it). Raises
    InputError for an entry the results could not hold: anything that is not a regular file,
    directory or symlink, an entry deeper than MAX_OUTPUT_COMPONENTS or whose virtual path
    under ``mount_path`` is over MAX_PATH_BYTES. Files get FILE_MODE and directories
    DIR_MODE. Iterative; raises Indeterminate when the host fails to read or write.
    """
    mount = Mount(mount_path, target, writable=True)
    stack: list[tuple[bytes, tuple[bytes, ...]]] = [(source, ())]
    try:
        while stack:
            host, comps = stack.pop()
            for name in sorted(os.listdir(host)):
                _copy_entry(os.path.join(host, name), mount, comps + (name,), stack)
    except OSError as exc:
        raise Indeterminate("host-io", f"cannot copy the output base: {exc.strerror}") from exc


def _copy_entry(host: bytes, mount: Mount, comps: tuple[bytes, ...],
                stack: list[tuple[bytes, tuple[bytes, ...]]]) -> None:
    """Copy one entry of the base (a directory is queued on ``stack``); raises InputError."""
    shown = os.fsdecode(mount.virtual_path(comps))
    if len(comps) > MAX_OUTPUT_COMPONENTS or len(mount.virtual_path(comps)) > MAX_PATH_BYTES:
        raise InputError(f"output base entry {shown!r} is too deep or its path too long for the results",
                         f"keep the base within {MAX_OUTPUT_COMPONENTS} components and {MAX_PATH_BYTES} bytes")
    info = os.lstat(host)
    dest = mount.host_path(comps)
    if stat.S_ISDIR(info.st_mode):
        os.mkdir(dest, DIR_MODE)
        os.chmod(dest, DIR_MODE)
        stack.append((host, comps))
    elif stat.S_ISREG(info.st_mode):
        with open(os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as src, \
                open(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE), "wb") as out:
            shutil.copyfileobj(src, out)
        os.chmod(dest, FILE_MODE)
    elif stat.S_ISLNK(info.st_mode):
        target = os.readlink(host)
        if len(target) > MAX_PATH_BYTES:
            raise InputError(f"output base symlink {shown!r} has a target over {MAX_PATH_BYTES} bytes",
                             "shorten the link's target")
        os.symlink(target, dest)
    else:
        raise InputError(f"output base entry {shown!r} is not a regular file, directory or symlink",
                         "give an output base of regular files, directories and symlinks only")


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
    exported = exports.get("memory")
    if not isinstance(exported, wasmtime.MemoryType):
        raise ModuleError("module exports no memory named 'memory'; WASI needs it")
    minimum = exported.limits.min * WASM_PAGE
    if minimum > spec.limits.memory_bytes:
        raise ModuleError(
            f"module declares {minimum} bytes of initial memory, over the limit of {spec.limits.memory_bytes}",
            "raise the limit with --memory",
        )


def _check_tables(wasm: bytes, spec: JobSpec, what: str = "module") -> None:
    """Refuse, before anything runs, a module with too many tables or a table too large."""
    minimums = table_minimums(wasm)
    if minimums is None:
        return  # an encoding read only by wasmtime: its instantiation applies the same limits
    if len(minimums) > MAX_TABLES:
        raise ModuleError(f"{what} defines {len(minimums)} tables, over cod's limit of {MAX_TABLES}")
    for n, minimum in enumerate(minimums):
        if minimum > spec.limits.table_elements:
            raise ModuleError(
                f"{what} declares table {n} with {minimum} initial elements, over the limit of "
                f"{spec.limits.table_elements}",
                "raise limits.table_elements in the spec",
            )


__all__ = ["DIR_MODE", "FILE_MODE", "RESULT_ENTRIES", "RunResult", "check_destination", "fix_modes", "install",
           "module_cid", "remove_tree", "run", "staging_prefix"]
