"""Linear memories cod maps itself, so that a host refusing memory is noticed, not obeyed.

wasmtime turns a failed growth of linear memory (mmap or mprotect refused by the host:
RLIMIT_DATA, overcommit accounting, a cgroup) into ``memory.grow`` returning -1: exactly what
the spec's memory limit returns, so a small host would compute another result than a large
one. No engine setting prevents it (``memory_reservation`` reserves address space only; pages
are still committed by mprotect as the memory grows), so cod hands wasmtime a memory creator
through the C API (``wasmtime_config_host_memory_creator_set``). Each linear memory is one
mapping of ``reserved + guard`` bytes, inaccessible (PROT_NONE, no swap reserved), of which the
first ``size`` bytes are made readable and writable as the memory grows; it never moves.

The store limiter decides the spec's limit before wasmtime asks the creator, so the creator
is only ever asked for memory the spec allows: any refusal there is the host's. It is
recorded for the thread that runs the guest (the creator's callbacks run on it) and the
executor ends that run as Indeterminate, whatever the guest did after seeing -1.

The callbacks are ctypes functions, called on instantiation and on each ``memory.grow`` only
(wasmtime keeps the base and length in the instance, so guest loads and stores never call
back). They never raise: an exception there would cross Rust frames.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi  # type: ignore[attr-defined]

_PROT_NONE = 0
_PROT_RW = mmap.PROT_READ | mmap.PROT_WRITE
# no MAP_NORESERVE: the host charges pages when they become writable (mprotect), so a host
# short of memory says so at the grow, where it is noticed, rather than by killing us later
_MAP_FLAGS = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
_MAP_FAILED = ctypes.c_void_p(-1).value

_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_mprotect = _libc.mprotect
_mprotect.restype = ctypes.c_int
_mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_munmap = _libc.munmap
_munmap.restype = ctypes.c_int
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

WASM32_MAX_BYTES = 1 << 32
_REFUSED = threading.local()
_MEMORIES: dict[int, "_Memory"] = {}
_NEXT = [1]
_LOCK = threading.Lock()


_BUDGET = threading.local()


class _Memory:
    """One mapping: ``capacity`` usable bytes then a guard, of which ``size`` are accessible.
    ``budget`` (a one-item list of bytes left) is shared by every memory of one run."""

    def __init__(self, base: int, size: int, capacity: int, mapped: int, budget: list[int] | None) -> None:
        self.base, self.size, self.capacity, self.mapped = base, size, capacity, mapped
        self.budget = budget


def _over_budget(what: str) -> int:
    """The spec's limit on all memories together, not a host refusal: a wasmtime error to hand
    back (``memory.grow`` returns -1), not recorded."""
    error = ffi.wasmtime_error_new(ctypes.create_string_buffer(what.encode()))
    return ctypes.cast(error, ctypes.c_void_p).value or 0


def _refuse(what: str) -> int:
    """Record a host refusal for this thread; the wasmtime error to hand back, as an address."""
    _REFUSED.what = getattr(_REFUSED, "what", None) or what
    error = ffi.wasmtime_error_new(ctypes.create_string_buffer(what.encode()))
    return ctypes.cast(error, ctypes.c_void_p).value or 0


def _errno() -> str:
    code = ctypes.get_errno()
    return f"{os.strerror(code)} (errno {code})"


@ffi.wasmtime_memory_get_callback_t  # type: ignore[untyped-decorator]
def _get_memory(env: int, byte_size: Any, maximum_byte_size: Any) -> int:
    memory = _MEMORIES[env]
    byte_size[0] = memory.size
    maximum_byte_size[0] = memory.capacity
    return memory.base


@ffi.wasmtime_memory_grow_callback_t  # type: ignore[untyped-decorator]
def _grow_memory(env: int, new_size: int) -> int:
    try:
        memory = _MEMORIES[env]
        if new_size <= memory.size:
            return 0
        budget = memory.budget
        if budget is not None and new_size - memory.size > budget[0]:
            return _over_budget("the run's memories together would exceed limits.memory_bytes")
        if new_size > memory.capacity:
            return _refuse(f"linear memory cannot grow to {new_size} bytes in place (reserved {memory.capacity})")
        if _mprotect(memory.base + memory.size, new_size - memory.size, _PROT_RW) != 0:
            return _refuse(f"the host refused to commit linear memory from {memory.size} to {new_size} bytes: "
                           f"{_errno()}")
        if budget is not None:
            budget[0] -= new_size - memory.size
        memory.size = new_size
        return 0
    except BaseException as exc:  # never across Rust frames
        return _refuse(f"growing linear memory failed: {exc!r}")


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # type: ignore[untyped-decorator]
def _free_memory(env: int) -> None:
    memory = _MEMORIES.pop(env or 0, None)
    if memory is not None:
        _munmap(memory.base, memory.mapped)


@ffi.wasmtime_new_memory_callback_t  # type: ignore[untyped-decorator]
def _new_memory(env: int, ty: Any, minimum: int, maximum: int, reserved: int, guard: int, ret: Any) -> int:
    try:
        budget = getattr(_BUDGET, "current", None)
        if budget is not None and minimum > budget[0]:
            return _over_budget("the run's memories together would exceed limits.memory_bytes")
        # a wasm32 memory never moves: room for its largest size (the engine's reservation
        # is 4 GiB already; this holds for any other setting too)
        capacity = max(reserved, minimum, min(maximum, WASM32_MAX_BYTES))
        mapped = capacity + guard
        base = _mmap(None, mapped, _PROT_NONE, _MAP_FLAGS, -1, 0)
        if base is None or base == _MAP_FAILED:
            return _refuse(f"the host refused to reserve {mapped} bytes of address space for linear memory: "
                           f"{_errno()}")
        if minimum and _mprotect(base, minimum, _PROT_RW) != 0:
            cause = _errno()
            _munmap(base, mapped)
            return _refuse(f"the host refused to commit {minimum} bytes of initial linear memory: {cause}")
        with _LOCK:
            key = _NEXT[0]
            _NEXT[0] += 1
        if budget is not None:
            budget[0] -= minimum
        _MEMORIES[key] = _Memory(base, minimum, capacity, mapped, budget)
        out = ret.contents
        out.env = key
        out.get_memory = _get_memory
        out.grow_memory = _grow_memory
        out.finalizer = _free_memory
        return 0
    except BaseException as exc:  # never across Rust frames
        return _refuse(f"creating linear memory failed: {exc!r}")


# the creator lives as long as the process: engines may outlive any one of them
_CREATOR = ffi.wasmtime_memory_creator_t(None, _new_memory, ctypes.CFUNCTYPE(None, ctypes.c_void_p)(0))


def install(config: wasmtime.Config) -> None:
    """Make every linear memory of engines built from ``config`` one of ours."""
    ffi.wasmtime_config_host_memory_creator_set(config.ptr(), ctypes.byref(_CREATOR))


@contextmanager
def watch() -> Iterator[Callable[[], str | None]]:
    """Around a run on this thread: yields a function telling the first host refusal, if any."""
    _REFUSED.what = None
    yield lambda: getattr(_REFUSED, "what", None)


@contextmanager
def shared_limit(total: int) -> Iterator[None]:
    """Around a run on this thread: the linear memories it creates hold at most ``total`` bytes
    together (SPEC 5.3, 5.4); a creation or growth past that fails as the store limit does."""
    previous = getattr(_BUDGET, "current", None)
    _BUDGET.current = [total]
    try:
        yield
    finally:
        _BUDGET.current = previous


def live() -> int:
    """How many linear memories are mapped now (tests check that none leak)."""
    return len(_MEMORIES)
