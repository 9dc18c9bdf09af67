"""The bridge from wasm to cod's host functions: cheap, because host calls are the cost.

wasmtime-py's ``Linker.define_func`` boxes every parameter and result into ``Val`` objects
and checks their types on each call. cod's WASI functions take only i32 and i64 and return
at most one i32, so they are defined through wasmtime's *unchecked* C API instead: the
parameters are read straight out of the raw value array, the result written back into it.

An exception raised by a host function (``proc_exit``'s ProcExit, a cap, an indeterminate
host fault) becomes a trap for wasmtime and waits in a thread-local slot; the caller takes it
back with :func:`reraise_pending`. Unlike wasmtime-py's single global slot, this stays right
when several threads run jobs at once.

This leans on wasmtime-py internals (``_ffi``), which is why pyproject pins wasmtime
exactly; tests/wasm/test_wasi.py covers every path through it. i32
parameters arrive as unsigned integers (all of preview1's i32s are pointers, lengths, fds
or flags); i64 parameters arrive signed, as the ABI types them.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi  # type: ignore[attr-defined]

_U32 = 0xFFFFFFFF
_OUT_OF_FUEL = wasmtime.TrapCode.OUT_OF_FUEL.value
OUT_OF_FUEL = "out_of_fuel"
"""The trap of a run that ran out of fuel, as a result names it (SPEC 6: the trap code's name in lower case)."""


class OutOfFuel(Exception):
    """Raised by a host function whose work costs more fuel than the run has left: the call
    ends as wasmtime's own ``out_of_fuel`` trap, exactly as if the guest had run out."""


def charge_fuel(caller: wasmtime.Caller, fuel: int) -> None:
    """Take ``fuel`` from the store running the call (host work is paid like wasm, SPEC 5.3);
    with less left, the store is emptied and OutOfFuel raised. Only for engines that meter fuel."""
    if fuel <= 0:
        return
    context = caller._context()
    left = ctypes.c_uint64(0)
    error = ffi.wasmtime_context_get_fuel(context, ctypes.byref(left))
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)
    remaining = left.value - fuel if left.value >= fuel else 0
    error = ffi.wasmtime_context_set_fuel(context, remaining)
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)
    if left.value < fuel:
        raise OutOfFuel()
_ENTRIES: dict[int, tuple[Callable[..., Any], str, bool]] = {}
_NEXT = [1]
_PENDING = threading.local()


@ffi.wasmtime_func_unchecked_callback_t  # type: ignore[untyped-decorator]
def _trampoline(env: int, caller_ptr: Any, values: Any, count: int) -> int:
    fn, params, returns = _ENTRIES[env]
    caller = wasmtime.Caller(caller_ptr)
    try:
        args = [values[i].i32 & _U32 if kind == "i" else values[i].i64 for i, kind in enumerate(params)]
        result = fn(caller, *args)
        if returns:
            values[0].i32 = result
        return 0
    except OutOfFuel:  # the guest's own trap, with its code: no Python exception to carry
        trap = ffi.wasmtime_trap_new_code(_OUT_OF_FUEL)
        return ctypes.cast(trap, ctypes.c_void_p).value or 0
    except BaseException as exc:  # kept for this thread; the call that entered wasm raises it
        _PENDING.exc = exc
        trap = wasmtime.Trap("host function raised")._consume()
        return ctypes.cast(trap, ctypes.c_void_p).value or 0
    finally:
        caller._invalidate()


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # type: ignore[untyped-decorator]
def _finalize(env: int) -> None:
    _ENTRIES.pop(env or 0, None)


def define(linker: wasmtime.Linker, module: str, name: str, ty: wasmtime.FuncType, signature: tuple[str, str],
           fn: Callable[..., Any]) -> None:
    """Define ``fn(caller, *params)`` as ``module::name``; ``signature`` is ("iiI", "i")-style."""
    env = _NEXT[0]
    _NEXT[0] += 1
    _ENTRIES[env] = (fn, signature[0], bool(signature[1]))
    module_bytes, name_bytes = module.encode(), name.encode()
    error = ffi.wasmtime_linker_define_func_unchecked(
        linker.ptr(), ctypes.create_string_buffer(module_bytes), len(module_bytes),
        ctypes.create_string_buffer(name_bytes), len(name_bytes), ty.ptr(), _trampoline, env, _finalize)
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)


@contextmanager
def reraise_pending() -> Iterator[None]:
    """Around a call into wasm: a host function's exception comes out as itself."""
    _PENDING.exc = None
    try:
        yield
    except (wasmtime.Trap, wasmtime.WasmtimeError):
        pending, _PENDING.exc = getattr(_PENDING, "exc", None), None
        if pending is not None:
            raise pending from None
        raise
