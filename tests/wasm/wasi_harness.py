"""Call cod's WASI functions from Python through real wasm, one trampoline per import.

The harness module imports all 46 preview1 functions and exports each again under its own
name (a trampoline that passes its parameters straight through), plus a memory. Tests set
guest memory, call a trampoline and read memory back: every call crosses wasmtime exactly
as a job's would, through cod's host-call bridge.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import wasmtime

from cod import Engine
from cod.wasm import abi, hostcall
from cod.wasm.entropy import RandomStream, VirtualClock
from cod.wasm.imports import SIGNATURES
from cod.wasm.vfs import Budget, FileSystem, Mount
from cod.wasm.wasi import Stream, Wasi

EPOCH_NS = 1_000_000_000
TICK_NS = 1000
PAGE = 65536
_KIND = {"i": "i32", "I": "i64"}
LIBC_WRITE_RIGHTS = (abi.RIGHT_FD_WRITE | abi.RIGHT_FD_DATASYNC | abi.RIGHT_FD_ALLOCATE
                     | abi.RIGHT_FD_FILESTAT_SET_SIZE)
"""The rights wasi-libc's openat leaves out for O_RDONLY (libc-bottom-half/cloudlibc/src/libc/fcntl/openat.c)."""


def harness_wat(pages: int = 1) -> str:
    """A module importing every preview1 function and exporting a trampoline for each."""
    parts = []
    for name, (params, results) in sorted(SIGNATURES.items()):
        sig = "".join(f" (param {_KIND[c]})" for c in params) + "".join(f" (result {_KIND[c]})" for c in results)
        parts.append(f'(import "wasi_snapshot_preview1" "{name}" (func ${name}{sig}))')
    parts.append(f'(memory (export "memory") {pages})')
    for name, (params, results) in sorted(SIGNATURES.items()):
        sig = "".join(f" (param {_KIND[c]})" for c in params) + "".join(f" (result {_KIND[c]})" for c in results)
        body = " ".join(f"(local.get {i})" for i in range(len(params)))
        parts.append(f'(func (export "{name}"){sig} (call ${name} {body}))')
    return "(module " + "\n".join(parts) + ")"


_WASM: dict[int, bytes] = {}
_MODULES: dict[tuple[int, int], wasmtime.Module] = {}


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


class Harness:
    """One instance of the harness module with a fresh WASI state.

    ``root`` must not exist; it becomes the staging directory (stdout, stderr, outputs/).
    ``inputs`` is mounted read-only at /inputs when given; the output mount is at
    ``output_path`` (default /outputs).
    """

    def __init__(self, engine: Engine, root: Path, inputs: Path | None = None, *, pages: int = 1,
                 output_limit: int = 1 << 30, stdout_limit: int = 1 << 24, output_path: str = "/outputs") -> None:
        root.mkdir(parents=True)
        self.root = root
        self.outputs = root / "outputs"
        self.outputs.mkdir()
        mounts = [Mount(output_path, os.fsencode(self.outputs), writable=True)]
        if inputs is not None:
            mounts.append(Mount("/inputs", os.fsencode(inputs), writable=False))
        self.wasi = Wasi(
            args=["harness"], env=[("A", "1")], clock=VirtualClock(EPOCH_NS, TICK_NS),
            random=RandomStream(bytes(32)), fs=FileSystem(mounts, output_limit),
            stdout=Stream(str(root / "stdout"), Budget("stdout", stdout_limit)),
            stderr=Stream(str(root / "stderr"), Budget("stderr", stdout_limit)), epoch_ns=EPOCH_NS)
        if pages not in _WASM:
            _WASM[pages] = bytes(wasmtime.wat2wasm(harness_wat(pages)))
        self.store = wasmtime.Store(engine.engine)
        if engine.fuel:
            self.store.set_fuel(1 << 40)
        if engine.epochs:
            self.store.set_epoch_deadline(1 << 40)
        linker = wasmtime.Linker(engine.engine)
        self.wasi.define(linker, engine.functypes)
        key = (id(engine.engine), pages)
        if key not in _MODULES:
            _MODULES[key] = wasmtime.Module(engine.engine, _WASM[pages])
        self.instance = linker.instantiate(self.store, _MODULES[key])
        memory = self.instance.exports(self.store)["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self.memory = memory
        self.wasi.memory = memory

    # fds of the preopens: mounts sorted by path bytes
    @property
    def inputs_fd(self) -> int:
        return 3

    @property
    def outputs_fd(self) -> int:
        return 4 if len(self.wasi.fs.mounts) == 2 else 3

    def call(self, name: str, *args: int) -> int:
        """Call ``name`` with raw u32/u64 (or signed) arguments; returns its errno.

        ProcExit and CodErrors raised by the host function come out as themselves.
        """
        params = SIGNATURES[name][0]
        values = [_signed(a, 32 if kind == "i" else 64) for a, kind in zip(args, params, strict=True)]
        func = self.instance.exports(self.store)[name]
        assert isinstance(func, wasmtime.Func)
        with hostcall.reraise_pending():
            result = func(self.store, *values)
        return int(result) & 0xFFFFFFFF if result is not None else 0

    def read(self, ptr: int, length: int) -> bytes:
        return bytes(self.memory.read(self.store, ptr, ptr + length))

    def write(self, ptr: int, data: bytes) -> None:
        self.memory.write(self.store, data, ptr)

    def u32(self, ptr: int) -> int:
        return int(struct.unpack("<I", self.read(ptr, 4))[0])

    def u64(self, ptr: int) -> int:
        return int(struct.unpack("<Q", self.read(ptr, 8))[0])

    def memory_bytes(self) -> bytes:
        return self.read(0, self.memory.data_len(self.store))

    # -- conveniences with fixed scratch addresses: path at 0x100, iovecs at 0x800, out at 0x80 --
    def open(self, path: bytes, *, dirfd: int | None = None, oflags: int = 0, fdflags: int = 0,
             write: bool = False, follow: bool = False, rights: int | None = None,
             inheriting: int = abi.RIGHTS_ALL) -> tuple[int, int]:
        """path_open; returns (errno, fd). ``rights`` default to what wasi-libc asks for O_RDONLY
        (every right but fd_write, fd_datasync, fd_allocate, fd_filestat_set_size) or, with
        ``write``, for O_RDWR (every right); ``inheriting`` to every right, as wasi-libc passes
        the directory's own inheriting rights on."""
        self.write(0x100, path)
        if rights is None:
            rights = abi.RIGHTS_ALL if write else abi.RIGHTS_ALL & ~LIBC_WRITE_RIGHTS
        errno = self.call("path_open", self.outputs_fd if dirfd is None else dirfd,
                          abi.LOOKUP_SYMLINK_FOLLOW if follow else 0, 0x100, len(path), oflags, rights, inheriting,
                          fdflags, 0x80)
        return errno, self.u32(0x80) if errno == 0 else -1

    def path_call(self, name: str, path: bytes, dirfd: int | None = None) -> int:
        self.write(0x100, path)
        return self.call(name, self.outputs_fd if dirfd is None else dirfd, 0x100, len(path))

    def rename(self, old: bytes, new: bytes) -> int:
        self.write(0x100, old)
        self.write(0x600, new)
        fd = self.outputs_fd
        return self.call("path_rename", fd, 0x100, len(old), fd, 0x600, len(new))

    def _iov(self, data_ptr: int, length: int) -> None:
        self.write(0x800, struct.pack("<II", data_ptr, length))

    def fd_write(self, fd: int, data: bytes) -> tuple[int, int]:
        self.write(0x1000, data)
        self._iov(0x1000, len(data))
        errno = self.call("fd_write", fd, 0x800, 1, 0x80)
        return errno, self.u32(0x80) if errno == 0 else -1

    def fd_pwrite(self, fd: int, data: bytes, offset: int) -> tuple[int, int]:
        self.write(0x1000, data)
        self._iov(0x1000, len(data))
        errno = self.call("fd_pwrite", fd, 0x800, 1, offset, 0x80)
        return errno, self.u32(0x80) if errno == 0 else -1

    def fd_read(self, fd: int, length: int) -> tuple[int, bytes]:
        self._iov(0x2000, length)
        errno = self.call("fd_read", fd, 0x800, 1, 0x80)
        return errno, self.read(0x2000, self.u32(0x80)) if errno == 0 else b""

    def fd_pread(self, fd: int, length: int, offset: int) -> tuple[int, bytes]:
        self._iov(0x2000, length)
        errno = self.call("fd_pread", fd, 0x800, 1, offset, 0x80)
        return errno, self.read(0x2000, self.u32(0x80)) if errno == 0 else b""

    def seek(self, fd: int, offset: int, whence: int) -> tuple[int, int]:
        errno = self.call("fd_seek", fd, offset, whence, 0x80)
        return errno, self.u64(0x80) if errno == 0 else -1

    def tell(self, fd: int) -> tuple[int, int]:
        errno = self.call("fd_tell", fd, 0x80)
        return errno, self.u64(0x80) if errno == 0 else -1

    def close(self) -> None:
        self.wasi.close()
