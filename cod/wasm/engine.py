"""The wasmtime engine cod runs every job on, its execution profile and its module cache.

Every engine setting that can change what a module computes, or how much fuel it burns,
is written down in ``ENGINE_SETTINGS`` and hashed into the profile ID together with the
exact wasmtime version, the version of cod's WASI contract and the module transform every
module goes through before it is compiled (:mod:`cod.wasm.segments`, SPEC 5.6: its data
segments merged; the module's CID still names the bytes given). Only runs of one profile are
comparable. A setting that is not a property of ``wasmtime.Config`` is refused (a misspelled
name would otherwise be hashed into the profile and change nothing). Linear memories come
from cod's own creator (:mod:`cod.wasm.memory`), so a host refusing memory is noticed.

The compiled-module cache keeps wasmtime's serialized artifacts on disk, keyed by the
module's SHA-256 and the profile. Deserializing an artifact runs code, so the cache only
ever loads what this node compiled: the directory must be private (mode 0700, owned by the
user), and each artifact carries an HMAC-SHA256 tag under a key that never leaves it.
Writes go to a temporary file and are renamed into place, so processes can share a cache.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
import stat
import tempfile
import threading
import weakref
from pathlib import Path

import wasmtime

from ..errors import CacheError, EngineSettingError, ModuleError
from ..jobspec import canonical_json
from . import memory, segments
from .binary import check_binary
from .imports import functypes

WASI_CONTRACT = "cod-wasi-3"
MODULE_TRANSFORM: dict[str, object] = segments.PROFILE
"""The transform every module goes through before it is compiled (SPEC 5.6): its name and
constants, hashed into the profile beside the WASI contract (it is no wasmtime setting)."""
MAX_WASM_STACK = 1 << 20
MEMORY_RESERVATION = 1 << 32  # a wasm32 memory's largest size: it never moves
MEMORY_GUARD = 32 << 20  # wasmtime's default guard after each memory
EPOCH_TICK_SECONDS = 0.01
ARTIFACT_SUFFIX = ".cwasm"
TAG_BYTES = 32

ENGINE_SETTINGS: dict[str, object] = {
    "strategy": "cranelift",
    "cranelift_opt_level": "speed",
    "cranelift_nan_canonicalization": True,
    "consume_fuel": True,
    "max_wasm_stack": MAX_WASM_STACK,
    "wasm_threads": False,
    "shared_memory": False,
    "wasm_simd": True,
    "wasm_relaxed_simd": True,
    "wasm_relaxed_simd_deterministic": True,
    "wasm_bulk_memory": True,
    "wasm_multi_value": True,
    "wasm_reference_types": True,
    "wasm_tail_call": True,
    "wasm_memory64": False,
    "wasm_multi_memory": False,
    "wasm_gc": False,
    "wasm_function_references": False,
    "wasm_exceptions": False,
    "wasm_stack_switching": False,
    "wasm_wide_arithmetic": False,
    "wasm_custom_page_sizes": False,
    "wasm_component_model": False,
    "memory_reservation": MEMORY_RESERVATION,
    "memory_guard_size": MEMORY_GUARD,
    "memory_may_move": False,
    "memory_init_cow": False,
}


@functools.cache
def wasmtime_version() -> str:
    """The installed wasmtime package's version (part of the execution profile).

    Read from the one ``wasmtime-<version>.dist-info`` beside the package, as
    importlib.metadata would find it, without importing importlib.metadata (~15 ms of every
    command's start); with none or several there, importlib.metadata decides.
    """
    site = Path(wasmtime.__file__).resolve().parent.parent
    found = [p.name[len("wasmtime-"):-len(".dist-info")] for p in site.glob("wasmtime-*.dist-info")]
    if len(found) == 1 and found[0]:
        return found[0]
    from importlib.metadata import version

    return version("wasmtime")


def profile_id(settings: dict[str, object] | None = None) -> str:
    """``wasmtime-<version>+<16 hex of SHA-256 over the settings, the WASI contract and the module transform>``."""
    described = dict(settings if settings is not None else ENGINE_SETTINGS, wasi_contract=WASI_CONTRACT,
                     module_transform=MODULE_TRANSFORM, wasmtime=wasmtime_version())
    return f"wasmtime-{wasmtime_version()}+{hashlib.sha256(canonical_json(described)).hexdigest()[:16]}"


def make_config(settings: dict[str, object] | None = None, *, wall_clock: bool = False) -> wasmtime.Config:
    """A wasmtime Config with ``settings`` (default ENGINE_SETTINGS) and cod's memory creator.

    ``wall_clock`` adds epoch interruption, the in-process wall-clock timeout. It is not a
    setting of the profile: it changes no result, only when a run that would never end is
    stopped (and costs 15-30% of a compute-bound guest's speed, a check at every loop).

    Raises EngineSettingError for a name that is not a settable property of
    ``wasmtime.Config`` or a value wasmtime refuses.
    """
    config = wasmtime.Config()
    chosen = settings if settings is not None else ENGINE_SETTINGS
    for name, value in chosen.items():
        if name not in config_properties():
            raise EngineSettingError(f"engine setting {name!r} is not a wasmtime.Config property",
                                     f"known settings: {', '.join(sorted(config_properties()))}")
        try:
            setattr(config, name, value)
        except (TypeError, ValueError, wasmtime.WasmtimeError) as exc:
            raise EngineSettingError(f"engine setting {name!r} = {value!r} is refused by wasmtime: {exc}") from exc
    if "epoch_interruption" in chosen:
        raise EngineSettingError("engine setting 'epoch_interruption' is not part of a profile",
                                 "pass wall_clock=True to Engine for an in-process wall-clock timeout")
    config.epoch_interruption = wall_clock
    if chosen.get("memory_init_cow", False) is not False:
        raise EngineSettingError("engine setting 'memory_init_cow' must be False",
                                 "cod's memory creator maps memories itself; wasmtime 50 aborts the process "
                                 "when copy-on-write images meet a host memory creator")
    config.memory_init_cow = False
    memory.install(config)
    return config


@functools.cache
def config_properties() -> frozenset[str]:
    """Names ``wasmtime.Config`` lets one set (its setter properties)."""
    return frozenset(name for name, value in vars(wasmtime.Config).items()
                     if isinstance(value, property) and value.fset is not None)


class Engine:
    """A wasmtime Engine with cod's settings, a module cache and, in-process, a wall-clock ticker."""

    def __init__(
        self, cache_dir: str | os.PathLike[str] | None = None, settings: dict[str, object] | None = None,
        *, wall_clock: bool = True,
    ) -> None:
        """``settings`` replaces ENGINE_SETTINGS (benchmarks use it); the profile follows it.

        ``wall_clock`` (the default) enforces ``limits.timeout_ms`` inside this process through
        epoch interruption. A process that enforces it from outside passes False and runs
        compute-bound guests 15-30% faster: a node's executor worker (its pool kills a worker
        that overruns) and ``cod run`` (a watchdog thread ends the process). Same profile,
        same results either way (SPEC 5.3).
        """
        self.settings = dict(settings if settings is not None else ENGINE_SETTINGS)
        try:
            self.engine = wasmtime.Engine(make_config(self.settings, wall_clock=wall_clock))
        except wasmtime.WasmtimeError as exc:
            raise EngineSettingError(f"wasmtime refuses these engine settings: {' '.join(str(exc).split())[:300]}") \
                from exc
        self.functypes = functypes()  # FuncTypes belong to the engine that first uses them
        self.profile = profile_id(self.settings)
        self.fuel = bool(self.settings.get("consume_fuel"))
        self.epochs = wall_clock
        # artifacts compiled with and without epoch checks differ: never load one into the other
        cache_key = self.profile + ("+epochs" if wall_clock else "")
        self.cache = ModuleCache(self.engine, cache_key, Path(cache_dir)) if cache_dir is not None else None
        self._memo: dict[bytes, wasmtime.Module] = {}
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.compiled = 0

    def ticks_for(self, timeout_ms: int) -> int:
        """Epoch deadline (in ticker increments) for a wall-clock timeout; starts the ticker."""
        self._start_ticker()
        return max(1, int(timeout_ms / 1000 / EPOCH_TICK_SECONDS) + 1)

    def _start_ticker(self) -> None:
        with self._lock:
            if self._ticker is not None:
                return
            engine, stop = self.engine, self._stop

            def tick() -> None:
                while not stop.wait(EPOCH_TICK_SECONDS):
                    engine.increment_epoch()

            self._ticker = threading.Thread(target=tick, name="cod-epoch", daemon=True)
            self._ticker.start()
            weakref.finalize(self, stop.set)  # the thread ends with the Engine

    def close(self) -> None:
        """Stop the wall-clock ticker; the engine may not run jobs afterwards."""
        self._stop.set()

    def module(self, wasm: bytes) -> wasmtime.Module:
        """The compiled module for ``wasm``: from memory, from the disk cache, or compiled."""
        digest = hashlib.sha256(wasm).digest()
        found = self._memo.get(digest)
        if found is not None:
            return found
        module = self.cache.load(digest) if self.cache is not None else None
        if module is None:
            module = self.compile(wasm)
            if self.cache is not None:
                self.cache.store(digest, module)
        self._memo[digest] = module
        return module

    def compile(self, wasm: bytes) -> wasmtime.Module:
        """Compile ``wasm`` as SPEC 5.6 says: validated as the user gave it, then compiled
        after the module transform (its data segments merged). ModuleError if it is invalid."""
        check_binary(wasm)
        try:
            # validated first: errors are about the user's bytes, never the transform's, and a
            # module wasmtime refuses at once (100,001 segments) is never read segment by segment
            wasmtime.Module.validate(self.engine, wasm)
            module = wasmtime.Module(self.engine, segments.merge_data_segments(wasm))
        except wasmtime.WasmtimeError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            cause = lines[-1] if lines else "invalid module"
            raise ModuleError(
                f"not a valid WebAssembly module for cod's engine: {cause[:300]}",
                "cod runs wasm32-wasi core modules without threads, memory64 or multiple memories",
            ) from exc
        self.compiled += 1
        return module


class ModuleCache:
    """Serialized modules this node compiled, kept under a private directory."""

    def __init__(self, engine: wasmtime.Engine, profile: str, directory: Path) -> None:
        self.engine = engine
        self.root = directory
        self.directory = directory / profile.replace("+", "-")
        _private_dir(directory)
        _private_dir(self.directory)
        self.key = _load_key(directory / "hmac.key")
        self.hits = 0

    def _path(self, digest: bytes) -> Path:
        return self.directory / (digest.hex() + ARTIFACT_SUFFIX)

    def _tag(self, digest: bytes, artifact: bytes) -> bytes:
        return hmac.new(self.key, self.directory.name.encode() + digest + artifact, hashlib.sha256).digest()

    def load(self, digest: bytes) -> wasmtime.Module | None:
        path = self._path(digest)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheError(f"cannot read cached module {path}: {exc.strerror}") from exc
        tag, artifact = blob[:TAG_BYTES], blob[TAG_BYTES:]
        if len(tag) != TAG_BYTES or not hmac.compare_digest(tag, self._tag(digest, artifact)):
            path.unlink(missing_ok=True)  # not ours, or damaged: never deserialize it
            return None
        try:
            module = wasmtime.Module.deserialize(self.engine, artifact)
        except wasmtime.WasmtimeError:
            path.unlink(missing_ok=True)
            return None
        self.hits += 1
        return module

    def store(self, digest: bytes, module: wasmtime.Module) -> None:
        artifact = bytes(module.serialize())
        blob = self._tag(digest, artifact) + artifact
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(blob)
            os.replace(tmp, self._path(digest))
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise CacheError(f"cannot write the module cache in {self.directory}: {exc.strerror}") from exc


def _private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise CacheError(f"cannot use cache directory {path}: {exc.strerror}") from exc
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise CacheError(
            f"cache directory {path} is not private (mode {stat.S_IMODE(info.st_mode):o}, uid {info.st_uid})",
            "compiled modules are code: the cache must be mode 0700 and owned by this user (chmod 700 it)",
        )


def _load_key(path: Path) -> bytes:
    """The cache's HMAC key, created once; safe when several processes race to create it."""
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(TAG_BYTES))  # a node secret, never on a result path
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    key = path.read_bytes()
    if len(key) != TAG_BYTES:
        raise CacheError(f"cache key {path} is damaged", "delete the cache directory to start afresh")
    return key


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cod" / "modules"
