"""One run of an instrumented module that can stop at a checkpoint, give its state, and go on
(SPEC 11.6): the host side of Asyncify.

At a call of ``env.log_execution`` that is due (:attr:`Machine.due`), the hook saves the bytes of
the scratch area (address 0 to min(memory size, SCRATCH_BYTES)), writes the Asyncify data header
there and starts an unwind; the entry point returns; the machine stops the unwind, copies the
Asyncify data out and puts the saved bytes back, so linear memory is exactly the program's.
Going on is the reverse: the data goes back at the scratch area, a rewind starts, the entry
point is called again, and at the same hook call the rewind stops and the saved bytes return.
Unwinding and rewinding spend fuel of their own: the store's fuel is set back to what it was at
the hook call, so a checkpointed run spends exactly the fuel of an uninterrupted one.
"""

from __future__ import annotations

import ctypes
import inspect
import os
import struct
import tempfile
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import wasmtime
from wasmtime import _ffi as ffi  # type: ignore[attr-defined]

from ..content.unixfs import module_cid
from ..errors import CodError, Indeterminate, ModuleError, SpecError
from ..jobspec import ENGINE_WASM, JobSpec
from ..resultsdir import DIR_MODE, remove_tree
from ..wasm import executor, hostcall, memory
from ..wasm.engine import Engine
from ..wasm.entropy import VirtualClock
from ..wasm.observe import Telemetry
from ..wasm.vfs import Budget, FileSystem, Mount
from ..wasm.wasi import ProcExit, Stream, Wasi
from . import transform, wasistate
from .errors import CheckpointError
from .state import State

SCRATCH_BYTES = 1 << 20
HEADER_BYTES = 8
UNWINDING, REWINDING = 1, 2
FREE_FUEL = 1 << 62  # what unwinding and rewinding may spend; never counted
VALTYPE_BYTES = {"i32": 0x7F, "i64": 0x7E, "f32": 0x7D, "f64": 0x7C}
_INSTRUMENTED: dict[bytes, bytes] = {}


def instrumented(wasm: bytes) -> bytes:
    """:func:`transform.instrument`, kept per process (it takes seconds)."""
    import hashlib

    key = hashlib.sha256(wasm).digest()
    found = _INSTRUMENTED.get(key)
    if found is None:
        found = _INSTRUMENTED[key] = transform.instrument(wasm)
    return found


@dataclass(frozen=True)
class Ending:
    exit_code: int
    trap: str | None


class Machine:
    """An instance of the instrumented module under cod's WASI layer, on a fresh staging tree.

    ``due(fuel)`` decides at each normal hook call (``fuel`` consumed so far) whether a
    checkpoint falls there. Use as a context manager: the staging tree goes at the end.
    """

    def __init__(self, spec: JobSpec, wasm: bytes, sources: Mapping[str, str | os.PathLike[str]], engine: Engine,
                 modules: Mapping[str, bytes] | None = None, fault: Any = None, base: bool = True,
                 stride: int = transform.DEFAULT_STRIDE) -> None:
        spec.validate()
        if spec.engine != ENGINE_WASM:
            raise SpecError("engine", f"{spec.engine!r} jobs do not run on the WASM executor")
        if module_cid(wasm) != spec.module:
            raise ModuleError(f"module bytes hash to {module_cid(wasm)}, not to the spec's module {spec.module}")
        if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride < 1 << 31:
            raise CheckpointError(f"a hook stride is from 1 to 2^31 - 1, not {stride!r}")
        if not engine.fuel:
            raise CheckpointError("checkpoints fall at fuel counts: the engine must meter fuel")
        executor.check_module(spec, wasm, engine, modules)
        self.spec, self.engine = spec, engine
        self.code = instrumented(wasm)
        self.module = engine.module(self.code)
        self.limit = spec.limits.fuel
        self.due: Callable[[int], bool] = lambda fuel: False
        self.closed = False
        self.work = Path(tempfile.mkdtemp(prefix="cod-checkpoint-run-"))
        try:
            self._setup(sources, fault, base, stride)
        except BaseException:
            self.close()
            raise
        self.saved = b""
        self.rewinding = False
        self.resume_fuel = 0  # the fuel left at the hook call a rewind returns to
        self.unwound_at: int | None = None

    # -- setup ----------------------------------------------------------------------------
    def _setup(self, sources: Mapping[str, str | os.PathLike[str]], fault: Any, base: bool, stride: int) -> None:
        spec, limits = self.spec, self.spec.limits
        staging = self.work / "run"
        staging.mkdir(mode=DIR_MODE)
        self.staging = staging
        mounts, file_inputs = executor._input_mounts(spec, sources)
        if file_inputs:
            empty = self.work / "empty"
            empty.mkdir(mode=DIR_MODE)
            mounts += [Mount(parent, os.fsencode(empty), writable=False, files=files)
                       for parent, files in sorted(file_inputs.items())]
        outputs = staging / "outputs"
        outputs.mkdir(mode=DIR_MODE)
        self.outputs = os.fsencode(outputs)
        root = executor._base_root(spec, sources) if base else None
        if root is not None:
            executor.copy_base(root, self.outputs, spec.outputs)
        mounts.append(Mount(spec.outputs, self.outputs, writable=True))
        self.random = wasistate.CountedRandom(spec.effective_seed)
        options: dict[str, Any] = {}
        if fault is not None:
            if "fault" not in inspect.signature(Wasi.__init__).parameters:
                raise CheckpointError("this cod's WASI layer takes no fault")
            options["fault"] = fault
        self.wasi = Wasi(args=list(spec.args), env=list(spec.env), clock=VirtualClock(spec.epoch_ns, spec.tick_ns),
                         random=self.random, fs=FileSystem(mounts, limits.output_bytes),
                         stdout=Stream(str(staging / "stdout"), Budget("stdout", limits.stdout_bytes)),
                         stderr=Stream(str(staging / "stderr"), Budget("stderr", limits.stderr_bytes)),
                         epoch_ns=spec.epoch_ns, metered=True, **options)
        self.store = wasmtime.Store(self.engine.engine)
        self.store.set_fuel(self.limit)
        self.store.set_limits(memory_size=limits.memory_bytes, table_elements=limits.table_elements,
                              instances=executor.MAX_INSTANCES, tables=executor.MAX_STORE_TABLES,
                              memories=executor.MAX_MEMORIES)
        if self.engine.epochs:
            self.store.set_epoch_deadline(self.engine.ticks_for(limits.timeout_ms))
        linker = wasmtime.Linker(self.engine.engine)
        self.wasi.define(linker, self.engine.functypes)
        Telemetry().define(linker, self.code)
        hook = wasmtime.FuncType([wasmtime.ValType.i32()], [])
        me = weakref.ref(self)  # the host function must not keep the machine (and its store) alive

        def call_hook(caller: wasmtime.Caller, where: int) -> None:
            machine = me()
            if machine is not None:
                machine._hook(caller, where)

        hostcall.define(linker, transform.HOOK_MODULE, transform.HOOK_NAME, hook, ("i", ""), call_hook)
        with hostcall.reraise_pending():
            try:
                instance = linker.instantiate(self.store, self.module)
            except wasmtime.WasmtimeError as exc:
                raise ModuleError(f"module cannot be instantiated: {executor._describe(exc)}") from exc
        exports = instance.exports(self.store)
        found = exports.get("memory")
        if not isinstance(found, wasmtime.Memory):
            raise ModuleError("module exports no memory named 'memory'; WASI needs it")
        self.memory = self.wasi.memory = found
        self.entry = self._func(exports, spec.entry_point)
        self.start_unwind = self._func(exports, "asyncify_start_unwind")
        self.stop_unwind = self._func(exports, "asyncify_stop_unwind")
        self.start_rewind = self._func(exports, "asyncify_start_rewind")
        self.stop_rewind = self._func(exports, "asyncify_stop_rewind")
        self.get_state = self._func(exports, "asyncify_get_state")
        found = exports.get(transform.STRIDE_EXPORT)
        if not isinstance(found, wasmtime.Global):
            raise CheckpointError(f"the instrumented module exports no global {transform.STRIDE_EXPORT!r}")
        found.set_value(self.store, wasmtime.Val.i32(stride))
        self.globals: list[wasmtime.Global] = []
        for n in range(transform.global_count(self.code)):
            g = exports.get(transform.GLOBAL_EXPORT.format(n))
            if not isinstance(g, wasmtime.Global):
                raise CheckpointError(f"the instrumented module does not export its global {n}")
            self.globals.append(g)

    @staticmethod
    def _func(exports: Any, name: str) -> wasmtime.Func:
        found = exports.get(name)
        if not isinstance(found, wasmtime.Func):
            raise ModuleError(f"module exports no function {name!r}")
        return found

    def close(self) -> None:
        try:
            if hasattr(self, "wasi") and not self.closed:
                self.closed = True
                self.wasi.close()
        finally:
            remove_tree(self.work)

    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- fuel -----------------------------------------------------------------------------
    @staticmethod
    def _get_fuel(context: Any) -> int:
        left = ctypes.c_uint64(0)
        error = ffi.wasmtime_context_get_fuel(context, ctypes.byref(left))
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        return int(left.value)

    @staticmethod
    def _set_fuel(context: Any, fuel: int) -> None:
        error = ffi.wasmtime_context_set_fuel(context, fuel)
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)

    def consumed(self) -> int:
        return self.limit - self.store.get_fuel()

    # -- the hook -------------------------------------------------------------------------
    def _view(self, store: Any) -> memoryview:
        size = self.memory.data_len(store)
        if size == 0:
            return memoryview(bytearray(0))
        base = ctypes.addressof(self.memory.data_ptr(store).contents)
        return memoryview((ctypes.c_ubyte * size).from_address(base)).cast("B")

    def _hook(self, caller: wasmtime.Caller, _where: int) -> None:
        context = caller._context()
        if self.rewinding:  # the one hook call a rewind reaches (asyncify_get_state() == 2)
            self.rewinding = False
            if self.get_state(caller) != REWINDING:
                raise CheckpointError("the rewind reached another hook call than the one it was taken at")
            self.stop_rewind(caller)
            view = self._view(caller)
            view[:len(self.saved)] = self.saved
            self.saved = b""
            self._set_fuel(context, self.resume_fuel)
            return
        left = self._get_fuel(context)
        fuel = self.limit - left
        if not self.due(fuel):
            return
        view = self._view(caller)
        size = min(len(view), SCRATCH_BYTES)
        if size < HEADER_BYTES + 64:
            raise CheckpointError("the linear memory is too small for the Asyncify data")
        self.saved = bytes(view[:size])
        struct.pack_into("<II", view, 0, HEADER_BYTES, size)
        self.unwound_at, self.resume_fuel = fuel, left
        self._set_fuel(context, FREE_FUEL)
        self.start_unwind(caller, 0)

    # -- running --------------------------------------------------------------------------
    def run(self) -> Ending | None:
        """Call the entry point (rewinding first when :meth:`rewind` was called) until the run
        ends (an Ending) or unwinds at a due checkpoint (None; then :meth:`capture`, and
        :meth:`rewind` to go on)."""
        self.unwound_at = None
        try:
            with memory.watch() as refused, memory.shared_limit(self.spec.limits.memory_bytes):
                try:
                    ending = self._call()
                except CodError as exc:
                    executor._no_host_refusal(refused(), exc)
                    raise
                executor._no_host_refusal(refused(), None)
        except CodError:
            raise
        except Exception as exc:
            raise Indeterminate("host-fault", executor._describe(exc)) from exc
        return ending

    def _call(self) -> Ending | None:
        try:
            with hostcall.reraise_pending():
                self.entry(self.store)
        except ProcExit as done:
            return Ending(done.code, None)
        except wasmtime.Trap as exc:
            if self.unwound_at is not None:
                raise CheckpointError(f"the call stack at fuel {self.unwound_at} does not fit the "
                                      f"{SCRATCH_BYTES} bytes of Asyncify data") from exc
            return Ending(executor.TRAP_EXIT_CODE, executor._trap_name(exc))
        except wasmtime.WasmtimeError as exc:
            raise Indeterminate("engine-error", executor._describe(exc)) from exc
        if self.unwound_at is None:
            return Ending(0, None)
        if self.get_state(self.store) != UNWINDING:
            raise CheckpointError("the entry point returned during a checkpoint without unwinding")
        self.stop_unwind(self.store)
        view = self._view(self.store)
        end = struct.unpack_from("<I", view, 0)[0]
        if not HEADER_BYTES <= end <= len(self.saved):
            raise CheckpointError("the Asyncify data header is out of its area")
        self.asyncify = bytes(view[HEADER_BYTES:end])
        view[:len(self.saved)] = self.saved
        self.saved = b""
        self.store.set_fuel(self.resume_fuel)
        return None

    def rewind(self, asyncify: bytes, fuel_left: int) -> None:
        """Make the next :meth:`run` rewind through ``asyncify`` and go on with ``fuel_left``."""
        view = self._view(self.store)
        size = min(len(view), SCRATCH_BYTES)
        end = HEADER_BYTES + len(asyncify)
        if end > size:
            raise CheckpointError("the snapshot's Asyncify data does not fit its area")
        self.saved = bytes(view[:size])
        struct.pack_into("<II", view, 0, end, size)
        view[HEADER_BYTES:end] = asyncify
        self.resume_fuel = fuel_left
        self.store.set_fuel(FREE_FUEL)
        self.start_rewind(self.store, 0)
        self.rewinding = True

    # -- state ----------------------------------------------------------------------------
    def capture(self, fuel: int, asyncify: bytes) -> State:
        wasi = self.wasi
        return State(fuel=fuel, memory=bytes(self._view(self.store)), globals=self._read_globals(),
                     asyncify=asyncify, clock=wasi.clock.now, random=self.random.position,
                     stdout=wasistate.stream_bytes(wasi, "stdout"), stderr=wasistate.stream_bytes(wasi, "stderr"),
                     output_bytes=wasi.fs.outputs.used, entries=wasi.fs.created, fds=wasistate.fd_table(wasi),
                     tree=wasistate.read_tree(self.outputs), nodes=wasistate.nodes(wasi, self.outputs))

    def _read_globals(self) -> list[tuple[int, int]]:
        out = []
        for n, g in enumerate(self.globals):
            kind = str(g.type(self.store).content)
            value = g.value(self.store)
            if kind not in VALTYPE_BYTES or not isinstance(value, (int, float)):
                raise CheckpointError(f"global {n} is of type {kind}: not supported by checkpoints")
            out.append((VALTYPE_BYTES[kind], _bits(kind, value)))
        return out

    def restore(self, state: State) -> None:
        """Put ``state`` into this fresh machine (made with ``base=False``) and prepare its rewind."""
        pages, have = len(state.memory) // 65536, self.memory.size(self.store)
        if pages < have:
            raise CheckpointError(f"the snapshot's memory has {pages} pages, fewer than the module's {have}")
        if len(state.memory) > self.spec.limits.memory_bytes:
            raise CheckpointError("the snapshot's memory is over the spec's memory limit")
        if pages > have:
            self.memory.grow(self.store, pages - have)
        self._view(self.store)[:] = state.memory
        if len(state.globals) != len(self.globals):
            raise CheckpointError(f"the snapshot has {len(state.globals)} globals, the module {len(self.globals)}")
        for n, (g, (valtype, bits)) in enumerate(zip(self.globals, state.globals)):
            ty = g.type(self.store)
            kind = str(ty.content)
            if VALTYPE_BYTES.get(kind) != valtype:
                raise CheckpointError(f"the snapshot's global {n} is not of the module's type {kind}")
            if not ty.mutable:
                if _bits(kind, g.value(self.store)) != bits:  # type: ignore[arg-type]
                    raise CheckpointError(f"the snapshot changes the immutable global {n}")
                continue
            g.set_value(self.store, _val(kind, bits))
        if state.fuel > self.limit:
            raise CheckpointError(f"the snapshot is at fuel {state.fuel}, past the spec's limit {self.limit}")
        wasistate.write_tree(self.outputs, state.tree)
        wasistate.restore_nodes(self.wasi, self.outputs, state.tree, state.nodes)
        self.random = self.wasi.random = wasistate.CountedRandom(self.spec.effective_seed, state.random)  # type: ignore[assignment]
        wasistate.restore(self.wasi, state.fds, state.clock, state.stdout, state.stderr, state.output_bytes,
                          state.entries)
        self.rewind(state.asyncify, self.limit - state.fuel)

    def finish(self, ending: Ending) -> str:
        """The result CID of the ended run (writes exitCode and trap in the staging tree)."""
        self.closed = True
        self.wasi.close()
        return executor._finish(self.staging, ending.exit_code, ending.trap)


def _bits(kind: str, value: int | float) -> int:
    if kind == "i32":
        return int(value) & 0xFFFFFFFF
    if kind == "i64":
        return int(value) & 0xFFFFFFFFFFFFFFFF
    if kind == "f32":
        return int(struct.unpack("<I", struct.pack("<f", value))[0])
    return int(struct.unpack("<Q", struct.pack("<d", value))[0])


def _val(kind: str, bits: int) -> wasmtime.Val:
    if kind == "i32":
        return wasmtime.Val.i32(bits - (1 << 32) if bits >> 31 else bits)
    if kind == "i64":
        return wasmtime.Val.i64(bits - (1 << 64) if bits >> 63 else bits)
    if kind == "f32":
        return wasmtime.Val.f32(struct.unpack("<f", struct.pack("<I", bits))[0])
    return wasmtime.Val.f64(struct.unpack("<d", struct.pack("<Q", bits))[0])
