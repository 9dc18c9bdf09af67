"""wasi_snapshot_preview1, implemented by cod: every answer is decided by the job spec.

Each of the 46 functions of preview1 is defined on a wasmtime Linker as a host function.
Clocks and randomness come from :mod:`cod.wasm.entropy`, files from :mod:`cod.wasm.vfs`,
per-fd rights from :mod:`cod.wasm.rights`, the times a job sets from :mod:`cod.wasm.times`;
args and env are the spec's, never the host's. Sockets do not exist (``sock_*`` answer
ENOTSOCK on an open fd, EBADF on a closed one). ``proc_exit`` ends the run through
:class:`ProcExit`. Anything else a host function raises that is not an errno for the job or
a CodError (a bug, OverflowError, struct.error...) ends the run as
``Indeterminate("host-fault")``: never a crash, never a result.

A module may import only functions of preview1 with their exact signatures; anything else
(wasi-threads, socket extensions, another host module, an imported memory) is refused
before it runs.
"""

from __future__ import annotations

import ctypes
import os
import stat
import struct
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import FuncType

from ..errors import CodError, Indeterminate
from ..limits import MAX_FILE_SIZE, MAX_IOVECS
from . import abi, hostcall, rights
from .entropy import RandomStream, VirtualClock
from .fault import Fault
from .imports import SIGNATURES
from .times import TimeStore, identity
from .vfs import (MAX_IO_BYTES, MAX_OPEN_FDS, Budget, Errno, FileSystem, Handle, Mount, check_link_target, clip,
                  create_dir, create_file, create_link, create_symlink, filetype_of, host_error, inode, iter_iovecs,
                  read_at, readlink, write_at)

U64 = (1 << 64) - 1
# host work paid in fuel (SPEC 5.3), priced near its cost in wasm instructions on this engine
FUEL_PER_RANDOM_BYTE = 1  # ChaCha20 key stream: about 2 ns a byte
FUEL_PER_SUBSCRIPTION = 1000  # poll_oneoff reads, checks and answers each one: about 1.5 us
FUEL_PER_LISTED_ENTRY = 1000  # fd_readdir lists and lstats each entry when it takes a listing
_KEPT_FDFLAGS = 0b11110
"""DSYNC, NONBLOCK, RSYNC and SYNC given to path_open: fd_fdstat_get reports them as given and
nothing else changes (cod's writes reach the host before the run's result is taken, and no
file ever blocks)."""
_FILESTAT = struct.Struct("<QQBxxxxxxxQQQQQ")
_FDSTAT = struct.Struct("<BxHxxxxQQ")
_DIRENT = struct.Struct("<QQIBxxx")
_EVENT = struct.Struct("<QHBxxxxxQHxxxxxx")


class ProcExit(Exception):
    """The job called proc_exit."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Stream:
    """stdout or stderr: a host file in the results directory (mode 0644), under a byte cap."""

    def __init__(self, path: str, budget: Budget) -> None:
        self.fd = create_file(os.fsencode(path))
        self.budget = budget
        self.size = 0

    def write(self, chunks: list[memoryview]) -> int:
        """Append the first MAX_IO_BYTES bytes of ``chunks``; raises OutputLimitExceeded past the cap."""
        chunks = clip(chunks, MAX_IO_BYTES)
        total = sum(len(c) for c in chunks)
        self.budget.grow(total)
        self.size += write_at(self.fd, chunks, self.size)
        return total

    def close(self) -> None:
        os.close(self.fd)


class Wasi:
    """The WASI state of one run: args, env, clock, random stream, fd table, streams."""

    def __init__(
        self,
        *,
        args: list[str],
        env: list[tuple[str, str]],
        clock: VirtualClock,
        random: RandomStream,
        fs: FileSystem,
        stdout: Stream,
        stderr: Stream,
        epoch_ns: int,
        metered: bool = False,
        fault: Fault | None = None,
    ) -> None:
        """``metered``: the store counts fuel, and host work is charged to it (SPEC 5.3).
        ``fault``: told of every countable call (:mod:`cod.wasm.fault`); a devstack liar's only."""
        self.metered = metered
        self.fault = fault
        self.args = [a.encode() + b"\x00" for a in args]
        self.env = [k.encode() + b"=" + v.encode() + b"\x00" for k, v in env]
        self.clock = clock
        self.random = random
        self.fs = fs
        self.streams = {"stdout": stdout, "stderr": stderr}
        self.epoch_ns = epoch_ns
        self.times = TimeStore(epoch_ns)
        self.memory: wasmtime.Memory | None = None
        self.fds: dict[int, Handle] = {
            0: Handle(abi.FILETYPE_UNKNOWN, stream="stdin", rights=rights.STDIN),
            1: Handle(abi.FILETYPE_UNKNOWN, stream="stdout", rights=rights.STDOUT),
            2: Handle(abi.FILETYPE_UNKNOWN, stream="stderr", rights=rights.STDOUT),
        }
        self.preopens: dict[int, Mount] = {}
        for n, mount in enumerate(fs.mounts):
            self.fds[3 + n] = Handle(abi.FILETYPE_DIRECTORY, mount=mount, rights=rights.PREOPEN_BASE,
                                     inheriting=rights.PREOPEN_INHERITING)
            self.preopens[3 + n] = mount

    # -- linking ------------------------------------------------------------------------
    def define(self, linker: wasmtime.Linker, types: dict[str, FuncType]) -> None:
        """Define every preview1 function on ``linker``; ``types`` come from the linker's engine."""
        for name, ty in types.items():
            hostcall.define(linker, abi.MODULE, name, ty, SIGNATURES[name], self._wrap(name, getattr(self, name)))

    def define_own(self, linker: wasmtime.Linker, types: dict[str, FuncType], names: tuple[str, ...]) -> None:
        """Define the preview1 functions ``names`` on ``linker`` for a module linked by CID (SPEC
        5.4): each call works on that module's own exported ``memory``, not the root's."""
        slot: list[wasmtime.Memory | None] = [None]
        for name in names:
            hostcall.define(linker, abi.MODULE, name, types[name], SIGNATURES[name],
                            self._own_memory(self._wrap(name, getattr(self, name)), slot))

    def _own_memory(self, fn: Callable[..., Any], slot: list[wasmtime.Memory | None]) -> Callable[..., Any]:
        """``fn`` run with ``slot``'s memory as the guest memory (found through the caller on the
        first call, as the root's is); the root's memory is back when it returns. Host
        functions never call into wasm, so calls do not nest."""

        def call(caller: wasmtime.Caller, *params: int) -> Any:
            saved, self.memory = self.memory, slot[0]
            try:
                return fn(caller, *params)
            finally:
                slot[0], self.memory = self.memory, saved

        return call

    @staticmethod
    def _wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` as host function ``name``: an Errno is returned to the job; ProcExit and
        CodErrors end the run as themselves; any other exception ends it as
        Indeterminate("host-fault")."""

        def call(caller: wasmtime.Caller, *params: int) -> Any:
            try:
                return fn(caller, *params)
            except Errno as err:
                return err.code
            except (ProcExit, CodError, hostcall.OutOfFuel):
                raise
            except Exception as exc:  # a bug or an unforeseen host condition: never a result
                kind = type(exc).__qualname__
                if type(exc).__module__ != "builtins":
                    kind = f"{type(exc).__module__}.{kind}"
                detail = f"{kind} in {name}: {' '.join(str(exc).split())[:200]}"
                raise Indeterminate("host-fault", detail) from exc

        return call

    def close(self) -> None:
        for handle in self.fds.values():
            if handle.host_fd is not None:
                os.close(handle.host_fd)
                handle.host_fd = None
        for stream in self.streams.values():
            stream.close()

    # -- guest memory -------------------------------------------------------------------
    def _view(self, caller: wasmtime.Caller) -> memoryview:
        memory = self.memory
        if memory is None:
            found = caller.get("memory")
            if not isinstance(found, wasmtime.Memory):
                raise Errno(abi.EFAULT)
            memory = self.memory = found
        size = memory.data_len(caller)
        if size == 0:
            return memoryview(b"")
        base = ctypes.addressof(memory.data_ptr(caller).contents)
        return memoryview((ctypes.c_ubyte * size).from_address(base)).cast("B")

    @staticmethod
    def _span(view: memoryview, ptr: int, length: int) -> memoryview:
        if ptr < 0 or length < 0 or ptr + length > len(view):
            raise Errno(abi.EFAULT)
        return view[ptr : ptr + length]

    def _put(self, view: memoryview, ptr: int, fmt: str, *values: int) -> None:
        size = struct.calcsize(fmt)
        struct.pack_into(fmt, self._span(view, ptr, size), 0, *values)

    def _bytes(self, view: memoryview, ptr: int, length: int) -> bytes:
        return bytes(self._span(view, ptr, length))

    def _iovecs(self, view: memoryview, ptr: int, count: int) -> list[memoryview]:
        """The buffers of an iovec array: EINVAL past MAX_IOVECS (before any bounds check), then EFAULT."""
        if count > MAX_IOVECS:
            raise Errno(abi.EINVAL)
        self._span(view, ptr, 8 * count)
        return [self._span(view, buf, length) for buf, length in iter_iovecs(view, ptr, count)]

    # -- fd table -----------------------------------------------------------------------
    def _handle(self, fd: int, need: int = 0) -> Handle:
        """The open fd ``fd`` (EBADF), holding the rights ``need`` (see :func:`_need`)."""
        handle = self.fds.get(fd)
        if handle is None:
            raise Errno(abi.EBADF)
        _need(handle, need)
        return handle

    def _dir(self, fd: int, need: int = 0) -> tuple[Mount, Handle]:
        """A directory fd (EBADF, ENOTDIR), then holding the rights ``need`` (ENOTCAPABLE)."""
        handle = self._handle(fd)
        if handle.filetype != abi.FILETYPE_DIRECTORY or handle.mount is None:
            raise Errno(abi.ENOTDIR)
        _need(handle, need)
        return handle.mount, handle

    def _file(self, fd: int, need: int = 0) -> Handle:
        """An fd that is not a directory (EBADF, EISDIR), then holding the rights ``need``."""
        handle = self._handle(fd)
        if handle.filetype == abi.FILETYPE_DIRECTORY:
            raise Errno(abi.EISDIR)
        _need(handle, need)
        return handle

    def _new_fd(self, handle: Handle) -> int:
        if len(self.fds) >= MAX_OPEN_FDS:
            raise Errno(abi.EMFILE)
        fd = 0
        while fd in self.fds:
            fd += 1
        self.fds[fd] = handle
        return fd

    # -- args, env, clocks, random ------------------------------------------------------
    def _vector_sizes(self, caller: wasmtime.Caller, items: list[bytes], count_ptr: int, size_ptr: int) -> int:
        view = self._view(caller)
        self._put(view, count_ptr, "<I", len(items))
        self._put(view, size_ptr, "<I", sum(len(i) for i in items))
        return abi.SUCCESS

    def _vector_get(self, caller: wasmtime.Caller, items: list[bytes], ptrs: int, buf: int) -> int:
        view = self._view(caller)
        offset = buf
        for n, item in enumerate(items):
            self._put(view, ptrs + 4 * n, "<I", offset)
            self._span(view, offset, len(item))[:] = item
            offset += len(item)
        return abi.SUCCESS

    def args_sizes_get(self, caller: wasmtime.Caller, count_ptr: int, size_ptr: int) -> int:
        return self._vector_sizes(caller, self.args, count_ptr, size_ptr)

    def args_get(self, caller: wasmtime.Caller, ptrs: int, buf: int) -> int:
        return self._vector_get(caller, self.args, ptrs, buf)

    def environ_sizes_get(self, caller: wasmtime.Caller, count_ptr: int, size_ptr: int) -> int:
        return self._vector_sizes(caller, self.env, count_ptr, size_ptr)

    def environ_get(self, caller: wasmtime.Caller, ptrs: int, buf: int) -> int:
        return self._vector_get(caller, self.env, ptrs, buf)

    def clock_res_get(self, caller: wasmtime.Caller, clock_id: int, ptr: int) -> int:
        if clock_id not in abi.CLOCKS:
            raise Errno(abi.EINVAL)
        self._put(self._view(caller), ptr, "<Q", self.clock.tick)
        return abi.SUCCESS

    def clock_time_get(self, caller: wasmtime.Caller, clock_id: int, precision: int, ptr: int) -> int:
        if clock_id not in abi.CLOCKS:
            raise Errno(abi.EINVAL)
        view = self._view(caller)
        self._span(view, ptr, 8)
        self._put(view, ptr, "<Q", self.clock.read())
        if self.fault is not None:
            self.fault.returned([view[ptr : ptr + 8]], 8)
        return abi.SUCCESS

    def _charge(self, caller: wasmtime.Caller, fuel: int) -> None:
        """Host work is paid in fuel (SPEC 5.3), before it is done where its size is known."""
        if self.metered:
            hostcall.charge_fuel(caller, fuel)

    def random_get(self, caller: wasmtime.Caller, buf: int, length: int) -> int:
        out = self._span(self._view(caller), buf, length)  # EFAULT before any byte is generated
        self._charge(caller, FUEL_PER_RANDOM_BYTE * length)
        out[:] = self.random.read(length)
        if self.fault is not None:
            self.fault.returned([out], length)
        return abi.SUCCESS

    def sched_yield(self, caller: wasmtime.Caller) -> int:
        return abi.SUCCESS

    def proc_exit(self, caller: wasmtime.Caller, code: int) -> None:
        raise ProcExit(code & 0xFFFFFFFF)

    def proc_raise(self, caller: wasmtime.Caller, sig: int) -> int:
        return abi.ENOSYS

    def poll_oneoff(self, caller: wasmtime.Caller, in_ptr: int, out_ptr: int, count: int, nevents_ptr: int) -> int:
        if count == 0:
            raise Errno(abi.EINVAL)
        view = self._view(caller)
        subs = self._bytes(view, in_ptr, abi.SUBSCRIPTION_SIZE * count)
        self._span(view, out_ptr, abi.EVENT_SIZE * count)
        self._charge(caller, FUEL_PER_SUBSCRIPTION * count)
        events: list[tuple[int, int, int, int]] = []  # userdata, error, type, nbytes
        clocks: list[tuple[int, int]] = []  # userdata, deadline
        for n in range(count):
            base = n * abi.SUBSCRIPTION_SIZE
            userdata, tag = struct.unpack_from("<QB", subs, base)
            if tag == abi.EVENTTYPE_CLOCK:
                clock_id, timeout, _precision, flags = struct.unpack_from("<IxxxxQQH", subs, base + 16)
                if clock_id not in abi.CLOCKS:
                    events.append((userdata, abi.EINVAL, tag, 0))
                    continue
                deadline = timeout if flags & abi.SUBCLOCKFLAG_ABSTIME else self.clock.now + timeout
                clocks.append((userdata, min(deadline, U64)))
            elif tag in (abi.EVENTTYPE_FD_READ, abi.EVENTTYPE_FD_WRITE):
                (fd,) = struct.unpack_from("<I", subs, base + 16)
                handle = self.fds.get(fd)
                if handle is None:
                    events.append((userdata, abi.EBADF, tag, 0))
                elif not handle.rights & abi.RIGHT_POLL_FD_READWRITE:
                    events.append((userdata, abi.ENOTCAPABLE, tag, 0))
                else:
                    events.append((userdata, abi.SUCCESS, tag, self._ready_bytes(handle, tag)))
            else:
                raise Errno(abi.EINVAL)
        if not events and clocks:
            first = min(deadline for _, deadline in clocks)
            self.clock.sleep_until(first)
            events = [(u, abi.SUCCESS, abi.EVENTTYPE_CLOCK, 0) for u, d in clocks if d <= self.clock.now]
        for n, event in enumerate(events):
            _EVENT.pack_into(view, out_ptr + n * abi.EVENT_SIZE, event[0], event[1], event[2], event[3], 0)
        self._put(view, nevents_ptr, "<I", len(events))
        return abi.SUCCESS

    def _ready_bytes(self, handle: Handle, tag: int) -> int:
        if tag != abi.EVENTTYPE_FD_READ or handle.host_fd is None:
            return 0
        return max(0, self.fs.size(handle) - handle.position)

    # -- sockets: there are none ------------------------------------------------------
    def _not_a_socket(self, fd: int) -> int:
        self._handle(fd)  # EBADF on a closed fd
        return abi.ENOTSOCK  # every open fd is a file, a directory or a stream

    def sock_accept(self, caller: wasmtime.Caller, fd: int, flags: int, ptr: int) -> int:
        return self._not_a_socket(fd)

    def sock_recv(self, caller: wasmtime.Caller, fd: int, *params: int) -> int:
        return self._not_a_socket(fd)

    def sock_send(self, caller: wasmtime.Caller, fd: int, *params: int) -> int:
        return self._not_a_socket(fd)

    def sock_shutdown(self, caller: wasmtime.Caller, fd: int, how: int) -> int:
        return self._not_a_socket(fd)

    # -- fds ----------------------------------------------------------------------------
    def fd_prestat_get(self, caller: wasmtime.Caller, fd: int, ptr: int) -> int:
        mount = self.preopens.get(fd)
        if mount is None or fd not in self.fds:
            raise Errno(abi.EBADF)
        self._put(self._view(caller), ptr, "<BxxxI", 0, len(mount.path.encode()))
        return abi.SUCCESS

    def fd_prestat_dir_name(self, caller: wasmtime.Caller, fd: int, ptr: int, length: int) -> int:
        mount = self.preopens.get(fd)
        if mount is None or fd not in self.fds:
            raise Errno(abi.EBADF)
        name = mount.path.encode()
        if length < len(name):
            raise Errno(abi.ENAMETOOLONG)
        self._span(self._view(caller), ptr, len(name))[:] = name
        return abi.SUCCESS

    def fd_close(self, caller: wasmtime.Caller, fd: int) -> int:
        handle = self._handle(fd)
        if handle.stream is not None:
            # the streams stay open for the run; the fd number is freed
            del self.fds[fd]
            return abi.SUCCESS
        del self.fds[fd]
        self._close_host(handle)
        self.preopens.pop(fd, None)
        return abi.SUCCESS

    def fd_renumber(self, caller: wasmtime.Caller, fd: int, to: int) -> int:
        handle = self._handle(fd)
        target = self._handle(to)
        if fd == to:
            return abi.SUCCESS
        self.fds[to] = handle
        del self.fds[fd]
        self._close_host(target)
        if fd in self.preopens:
            self.preopens[to] = self.preopens.pop(fd)
        else:
            self.preopens.pop(to, None)
        return abi.SUCCESS

    def fd_advise(self, caller: wasmtime.Caller, fd: int, offset: int, length: int, advice: int) -> int:
        self._handle(fd, abi.RIGHT_FD_ADVISE)
        return abi.SUCCESS

    def fd_allocate(self, caller: wasmtime.Caller, fd: int, offset: int, length: int) -> int:
        self._file(fd, abi.RIGHT_FD_ALLOCATE)
        return abi.ENOTSUP

    def fd_sync(self, caller: wasmtime.Caller, fd: int) -> int:
        self._handle(fd, abi.RIGHT_FD_SYNC)
        return abi.SUCCESS

    def fd_datasync(self, caller: wasmtime.Caller, fd: int) -> int:
        self._handle(fd, abi.RIGHT_FD_DATASYNC)
        return abi.SUCCESS

    def fd_fdstat_get(self, caller: wasmtime.Caller, fd: int, ptr: int) -> int:
        handle = self._handle(fd)
        flags = (abi.FDFLAG_APPEND if handle.append else 0) | handle.kept_flags
        _FDSTAT.pack_into(self._span(self._view(caller), ptr, abi.FDSTAT_SIZE), 0, handle.filetype, flags,
                          handle.rights, handle.inheriting)
        return abi.SUCCESS

    def fd_fdstat_set_flags(self, caller: wasmtime.Caller, fd: int, flags: int) -> int:
        handle = self._handle(fd, abi.RIGHT_FD_FDSTAT_SET_FLAGS)
        if handle.host_fd is not None:
            handle.append = bool(flags & abi.FDFLAG_APPEND)
        return abi.SUCCESS

    def fd_fdstat_set_rights(self, caller: wasmtime.Caller, fd: int, base: int, inheriting: int) -> int:
        """Rights can only be dropped: asking for one the fd does not hold is ENOTCAPABLE and
        changes nothing (preview1)."""
        handle = self._handle(fd)
        base &= U64
        inheriting &= U64
        if base & ~handle.rights or inheriting & ~handle.inheriting:
            raise Errno(abi.ENOTCAPABLE)
        handle.rights, handle.inheriting = base, inheriting
        return abi.SUCCESS

    def _filestat(self, view: memoryview, ptr: int, ino: int, filetype: int, size: int,
                  times: tuple[int, int] | None = None, nlink: int = 1) -> None:
        epoch = self.epoch_ns
        atim, mtim = (epoch, epoch) if times is None else times
        _FILESTAT.pack_into(self._span(view, ptr, abi.FILESTAT_SIZE), 0, 0, ino, filetype, nlink, size, atim, mtim,
                            epoch)

    def _stat_entry(self, mount: Mount, comps: tuple[bytes, ...],
                    info: os.stat_result) -> tuple[int, int, int, tuple[int, int]]:
        filetype = filetype_of(info.st_mode)
        size = info.st_size if filetype in (abi.FILETYPE_REGULAR_FILE, abi.FILETYPE_SYMBOLIC_LINK) else 0
        times = self.times.get(identity(info)) if mount.writable else (self.epoch_ns, self.epoch_ns)
        return self.fs.ino(mount, comps, info), filetype, size, times

    def _host_stat(self, handle: Handle) -> os.stat_result:
        """The host file an fd names: its open file, or (a directory) its path, every component
        of which must still be a real directory (FileSystem.check_dir)."""
        assert handle.mount is not None
        try:
            return os.fstat(handle.host_fd) if handle.host_fd is not None else self.fs.check_dir(
                handle.mount, handle.comps)
        except OSError as exc:
            raise host_error(exc) from exc

    def fd_filestat_get(self, caller: wasmtime.Caller, fd: int, ptr: int) -> int:
        handle = self._handle(fd, abi.RIGHT_FD_FILESTAT_GET)
        view = self._view(caller)
        if handle.stream is not None:
            self._filestat(view, ptr, inode(b"<" + handle.stream.encode() + b">"), handle.filetype, 0)
            return abi.SUCCESS
        assert handle.mount is not None
        info = self._host_stat(handle)
        self._filestat(view, ptr, *self._stat_entry(handle.mount, handle.comps, info),
                       nlink=self.fs.nlink(handle.mount, info))
        return abi.SUCCESS

    def fd_filestat_set_size(self, caller: wasmtime.Caller, fd: int, size: int) -> int:
        self._file(fd, abi.RIGHT_FD_FILESTAT_SET_SIZE)
        handle = self._writable_file(fd)
        assert handle.host_fd is not None
        size &= U64
        if size > MAX_FILE_SIZE:
            raise Errno(abi.EFBIG)
        self.fs.outputs.grow((size - self.fs.size(handle)) * self.fs.fd_nlink(handle))  # in the results once a name
        try:
            os.ftruncate(handle.host_fd, size)
        except OSError as exc:
            raise host_error(exc) from exc
        return abi.SUCCESS  # the position stays where it was, even past the new end

    def fd_filestat_set_times(self, caller: wasmtime.Caller, fd: int, atim: int, mtim: int, flags: int) -> int:
        handle = self._handle(fd, abi.RIGHT_FD_FILESTAT_SET_TIMES)
        _check_fst_flags(flags)
        if handle.mount is None:
            return abi.SUCCESS  # a stream: never reached, no stream holds the right
        if not handle.mount.writable:
            raise Errno(abi.EROFS)
        self._set_times(self._host_stat(handle), atim, mtim, flags)
        return abi.SUCCESS

    def _set_times(self, info: os.stat_result, atim: int, mtim: int, flags: int) -> None:
        """Keep the times ``flags`` name for the file ``info`` (``*_NOW``: the virtual clock's
        now, which does not move); the host's times are never touched."""
        now = self.clock.now
        self.times.set(identity(info),
                       now if flags & abi.FST_ATIM_NOW else atim & U64 if flags & abi.FST_ATIM else None,
                       now if flags & abi.FST_MTIM_NOW else mtim & U64 if flags & abi.FST_MTIM else None)

    def _close_host(self, handle: Handle) -> None:
        """Close ``handle``'s host file (it has left the fd table); when that file has no name
        left and no other fd is open on it, it is gone and its times are forgotten."""
        host_fd, handle.host_fd = handle.host_fd, None
        if host_fd is None:
            return
        try:
            info = os.fstat(host_fd) if self.times else None  # nothing kept: nothing to forget
        except OSError as exc:
            raise host_error(exc) from exc
        finally:
            os.close(host_fd)
        if info is not None and info.st_nlink == 0:
            self._forget_unless_open(identity(info))

    def _gone(self, info: os.stat_result) -> None:
        """The entry ``info`` (its lstat before) lost a name: forget its times when that was its
        last name (a directory has one) and no fd is open on it."""
        if stat.S_ISDIR(info.st_mode) or info.st_nlink <= 1:
            self._forget_unless_open(identity(info))

    def _forget_unless_open(self, key: tuple[int, int]) -> None:
        if key not in self.times:
            return
        for handle in self.fds.values():
            if handle.host_fd is not None and identity(self._host_stat(handle)) == key:
                return
        self.times.forget(key)

    def _writable_file(self, fd: int) -> Handle:
        handle = self._file(fd)
        if not handle.writable or handle.host_fd is None:
            raise Errno(abi.EBADF)
        return handle

    def fd_read(self, caller: wasmtime.Caller, fd: int, iovs: int, count: int, nread_ptr: int) -> int:
        handle = self._file(fd, abi.RIGHT_FD_READ)
        view = self._view(caller)
        bufs = self._iovecs(view, iovs, count)
        self._span(view, nread_ptr, 4)  # EFAULT before the call has any effect
        if handle.stream == "stdin":
            n = 0
        elif not handle.readable or handle.host_fd is None:
            raise Errno(abi.EBADF)
        else:
            n = self._read_at(handle, bufs, handle.position)
            handle.position += n
        self._put(view, nread_ptr, "<I", n)
        if self.fault is not None:
            self.fault.returned(bufs, n)
        return abi.SUCCESS

    def fd_pread(self, caller: wasmtime.Caller, fd: int, iovs: int, count: int, offset: int, nread_ptr: int) -> int:
        handle = self._file(fd)
        if handle.host_fd is None or not handle.readable:
            raise Errno(abi.ESPIPE if handle.stream else abi.EBADF)
        _need(handle, abi.RIGHT_FD_SEEK)
        view = self._view(caller)
        bufs = self._iovecs(view, iovs, count)
        self._span(view, nread_ptr, 4)
        n = self._read_at(handle, bufs, offset & U64)
        self._put(view, nread_ptr, "<I", n)
        if self.fault is not None:
            self.fault.returned(bufs, n)
        return abi.SUCCESS

    def _read_at(self, handle: Handle, bufs: list[memoryview], offset: int) -> int:
        """Bytes read at virtual ``offset``: none at or past the end, at most MAX_IO_BYTES."""
        assert handle.host_fd is not None
        size = self.fs.size(handle)
        if offset >= size:
            return 0  # any u64 offset is valid; the host is not asked about offsets it may refuse
        return read_at(handle.host_fd, clip(bufs, min(MAX_IO_BYTES, size - offset)), offset)

    def fd_write(self, caller: wasmtime.Caller, fd: int, iovs: int, count: int, nwritten_ptr: int) -> int:
        handle = self._file(fd, abi.RIGHT_FD_WRITE)
        view = self._view(caller)
        bufs = self._iovecs(view, iovs, count)
        self._span(view, nwritten_ptr, 4)
        if handle.stream in self.streams:
            n = self.streams[handle.stream].write(bufs)  # type: ignore[index]
        else:
            handle = self._writable_file(fd)
            offset = self.fs.size(handle) if handle.append else handle.position
            n = self._write_at(handle, bufs, offset)
            handle.position = offset + n
        self._put(view, nwritten_ptr, "<I", n)
        return abi.SUCCESS

    def fd_pwrite(self, caller: wasmtime.Caller, fd: int, iovs: int, count: int, offset: int, ptr: int) -> int:
        handle = self._file(fd)
        if handle.stream is not None:
            raise Errno(abi.ESPIPE)
        handle = self._writable_file(fd)
        _need(handle, abi.RIGHT_FD_SEEK)
        view = self._view(caller)
        bufs = self._iovecs(view, iovs, count)
        self._span(view, ptr, 4)
        n = self._write_at(handle, bufs, offset & U64)  # at the offset given, even on an APPEND fd
        self._put(view, ptr, "<I", n)
        return abi.SUCCESS

    def _write_at(self, handle: Handle, bufs: list[memoryview], offset: int) -> int:
        """Write the first MAX_IO_BYTES bytes of ``bufs`` at virtual ``offset``.

        Raises Errno(EFBIG) when the write would end past MAX_FILE_SIZE (nothing is written),
        OutputLimitExceeded when the file's growth passes the outputs cap.
        """
        assert handle.host_fd is not None
        bufs = clip(bufs, MAX_IO_BYTES)
        total = sum(len(b) for b in bufs)
        if offset + total > MAX_FILE_SIZE:
            raise Errno(abi.EFBIG)
        self.fs.outputs.grow((offset + total - self.fs.size(handle)) * self.fs.fd_nlink(handle))  # once a name
        return write_at(handle.host_fd, bufs, offset)

    def fd_seek(self, caller: wasmtime.Caller, fd: int, offset: int, whence: int, ptr: int) -> int:
        handle = self._handle(fd)
        if handle.stream is not None:
            raise Errno(abi.ESPIPE)
        if handle.host_fd is None:
            raise Errno(abi.EBADF)
        if not (offset == 0 and whence == abi.WHENCE_CUR and handle.rights & abi.RIGHT_FD_TELL):
            _need(handle, abi.RIGHT_FD_SEEK)  # which implies fd_tell (preview1)
        if whence not in (abi.WHENCE_SET, abi.WHENCE_CUR, abi.WHENCE_END):
            raise Errno(abi.EINVAL)
        view = self._view(caller)
        self._span(view, ptr, 8)
        if whence == abi.WHENCE_SET:
            base = 0
        elif whence == abi.WHENCE_CUR:
            base = handle.position
        else:
            base = self.fs.size(handle)
        position = base + offset  # offset is the signed i64 of the ABI
        if not 0 <= position <= MAX_FILE_SIZE:
            raise Errno(abi.EINVAL)
        handle.position = position
        self._put(view, ptr, "<Q", position)
        return abi.SUCCESS

    def fd_tell(self, caller: wasmtime.Caller, fd: int, ptr: int) -> int:
        return self.fd_seek(caller, fd, 0, abi.WHENCE_CUR, ptr)

    def fd_readdir(self, caller: wasmtime.Caller, fd: int, buf: int, length: int, cookie: int, used_ptr: int) -> int:
        mount, handle = self._dir(fd, abi.RIGHT_FD_READDIR)
        view = self._view(caller)
        out = self._span(view, buf, length)
        self._span(view, used_ptr, 4)
        if cookie == 0 or handle.listing is None:
            handle.listing = self.fs.listing(mount, handle.comps)
            self._charge(caller, FUEL_PER_LISTED_ENTRY * len(handle.listing))
        used = 0
        for index in range(cookie & U64, len(handle.listing)):
            name, ino, filetype = handle.listing[index]
            entry = _DIRENT.pack(index + 1, ino, len(name), filetype) + name
            take = min(len(entry), length - used)
            out[used : used + take] = entry[:take]
            used += take
            if used >= length:
                break
        self._put(view, used_ptr, "<I", used)
        return abi.SUCCESS

    # -- paths --------------------------------------------------------------------------
    def _writable_dir(self, fd: int, need: int) -> tuple[Mount, Handle]:
        mount, handle = self._dir(fd, need)
        if not mount.writable:
            raise Errno(abi.EROFS)
        return mount, handle

    def path_open(
        self,
        caller: wasmtime.Caller,
        fd: int,
        dirflags: int,
        path_ptr: int,
        path_len: int,
        oflags: int,
        rights_base: int,
        rights_inheriting: int,
        fdflags: int,
        fd_ptr: int,
    ) -> int:
        need = abi.RIGHT_PATH_OPEN
        if oflags & abi.O_CREAT:
            need |= abi.RIGHT_PATH_CREATE_FILE
        if oflags & abi.O_TRUNC:
            need |= abi.RIGHT_PATH_FILESTAT_SET_SIZE
        mount, base = self._dir(fd, need)
        view = self._view(caller)
        path = self._bytes(view, path_ptr, path_len)
        self._span(view, fd_ptr, 4)
        write = bool(rights_base & abi.RIGHT_FD_WRITE or oflags & (abi.O_CREAT | abi.O_TRUNC)
                     or fdflags & abi.FDFLAG_APPEND)
        if write and not mount.writable:
            raise Errno(abi.EROFS)
        exclusive = oflags & abi.O_CREAT and oflags & abi.O_EXCL  # POSIX: never through a final symlink
        follow = bool(dirflags & abi.LOOKUP_SYMLINK_FOLLOW) and not exclusive
        comps, info, dir_only = self.fs.resolve_named(mount, base.comps, path, follow)
        host = mount.host_path(comps)
        if len(self.fds) >= MAX_OPEN_FDS:
            raise Errno(abi.EMFILE)
        if info is None:
            if not oflags & abi.O_CREAT:
                raise Errno(abi.ENOENT)
            if oflags & abi.O_DIRECTORY:
                raise Errno(abi.EINVAL)
            if dir_only:  # open(2): a trailing slash (of the path or of a link's target) names a directory
                raise Errno(abi.EISDIR)
            self.fs.check_new_name(comps)
            self.fs.count_new_entry()
        else:
            if oflags & abi.O_CREAT and oflags & abi.O_EXCL:
                raise Errno(abi.EEXIST)
            filetype = filetype_of(info.st_mode)
            if filetype == abi.FILETYPE_SYMBOLIC_LINK:
                raise Errno(abi.ELOOP)
            if filetype == abi.FILETYPE_DIRECTORY:
                # opening a directory for writing, truncating or appending to one: EISDIR
                # (POSIX open(2), wasmtime)
                if rights_base & abi.RIGHT_FD_WRITE or oflags & abi.O_TRUNC or fdflags & abi.FDFLAG_APPEND:
                    raise Errno(abi.EISDIR)
                new = Handle(abi.FILETYPE_DIRECTORY, mount=mount, comps=comps,
                             rights=rights_base & base.inheriting & rights.DIRECTORY,
                             inheriting=rights_inheriting & base.inheriting)
                self._put(view, fd_ptr, "<I", self._new_fd(new))
                return abi.SUCCESS
            if oflags & abi.O_DIRECTORY:
                raise Errno(abi.ENOTDIR)
            if filetype != abi.FILETYPE_REGULAR_FILE:
                raise Errno(abi.EACCES)
        host_fd = create_file(host) if info is None else self._open_existing(host, mount.writable)
        if oflags & abi.O_TRUNC:
            try:
                os.ftruncate(host_fd, 0)
            except OSError as exc:
                os.close(host_fd)
                raise host_error(exc) from exc
        new = Handle(abi.FILETYPE_REGULAR_FILE, mount=mount, comps=comps, host_fd=host_fd,
                     rights=rights_base & base.inheriting & rights.FILE,
                     inheriting=rights_inheriting & base.inheriting, append=bool(fdflags & abi.FDFLAG_APPEND),
                     kept_flags=fdflags & _KEPT_FDFLAGS)
        self._put(view, fd_ptr, "<I", self._new_fd(new))
        return abi.SUCCESS

    @staticmethod
    def _open_existing(host: bytes, writable: bool) -> int:
        try:
            return os.open(host, (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise host_error(exc) from exc

    def path_create_directory(self, caller: wasmtime.Caller, fd: int, path_ptr: int, path_len: int) -> int:
        mount, base = self._writable_dir(fd, abi.RIGHT_PATH_CREATE_DIRECTORY)
        path = self._bytes(self._view(caller), path_ptr, path_len)
        # mkdir(2): trailing slashes name the new directory itself, so a final symlink is never followed
        comps, info = self.fs.resolve(mount, base.comps, path.rstrip(b"/") or path, False)
        if info is not None:
            raise Errno(abi.EEXIST)
        self.fs.check_new_name(comps)
        self.fs.count_new_entry()
        create_dir(mount.host_path(comps))
        return abi.SUCCESS

    def path_filestat_get(self, caller: wasmtime.Caller, fd: int, flags: int, path_ptr: int, path_len: int,
                          ptr: int) -> int:
        mount, base = self._dir(fd, abi.RIGHT_PATH_FILESTAT_GET)
        view = self._view(caller)
        path = self._bytes(view, path_ptr, path_len)
        comps, info = self.fs.resolve(mount, base.comps, path, bool(flags & abi.LOOKUP_SYMLINK_FOLLOW))
        if info is None:
            raise Errno(abi.ENOENT)
        self._filestat(view, ptr, *self._stat_entry(mount, comps, info), nlink=self.fs.nlink(mount, info))
        return abi.SUCCESS

    def path_filestat_set_times(self, caller: wasmtime.Caller, fd: int, flags: int, path_ptr: int, path_len: int,
                                atim: int, mtim: int, fst_flags: int) -> int:
        mount, base = self._dir(fd, abi.RIGHT_PATH_FILESTAT_SET_TIMES)
        path = self._bytes(self._view(caller), path_ptr, path_len)
        _, info = self.fs.resolve(mount, base.comps, path, bool(flags & abi.LOOKUP_SYMLINK_FOLLOW))
        if info is None:
            raise Errno(abi.ENOENT)
        _check_fst_flags(fst_flags)
        if not mount.writable:
            raise Errno(abi.EROFS)
        self._set_times(info, atim, mtim, fst_flags)
        return abi.SUCCESS

    def path_link(self, caller: wasmtime.Caller, old_fd: int, old_flags: int, old_ptr: int, old_len: int,
                  new_fd: int, new_ptr: int, new_len: int) -> int:
        old_mount, old_base = self._dir(old_fd, abi.RIGHT_PATH_LINK_SOURCE)
        mount, new_base = self._dir(new_fd, abi.RIGHT_PATH_LINK_TARGET)
        if old_mount != mount:
            raise Errno(abi.EXDEV)  # a file of a read-only mount never gets a writable name
        if not mount.writable:
            raise Errno(abi.EROFS)
        if old_flags & abi.LOOKUP_SYMLINK_FOLLOW:
            raise Errno(abi.EINVAL)  # as wasmtime: a link always names the entry itself
        view = self._view(caller)
        new_path = self._bytes(view, new_ptr, new_len)
        old, info = self.fs.resolve(mount, old_base.comps, self._bytes(view, old_ptr, old_len), False)
        new, target = self.fs.resolve(mount, new_base.comps, new_path, False)
        if info is None:
            raise Errno(abi.ENOENT)
        if filetype_of(info.st_mode) == abi.FILETYPE_DIRECTORY:
            raise Errno(abi.EPERM)
        self.fs.check_link(mount, info)
        self._check_new_entry(new, target, new_path)
        self.fs.outputs.grow(info.st_size)  # each name is a file entry of the results: its bytes again
        create_link(mount.host_path(old), mount.host_path(new))
        self.fs.add_link(mount, old, info)
        return abi.SUCCESS

    def path_symlink(self, caller: wasmtime.Caller, old_ptr: int, old_len: int, fd: int, new_ptr: int,
                     new_len: int) -> int:
        mount, base = self._writable_dir(fd, abi.RIGHT_PATH_SYMLINK)
        view = self._view(caller)
        target = self._bytes(view, old_ptr, old_len)
        path = self._bytes(view, new_ptr, new_len)
        check_link_target(target)
        comps, info = self.fs.resolve(mount, base.comps, path, False)
        self._check_new_entry(comps, info, path)
        self.fs.outputs.grow(len(target))  # a symlink's target is bytes of the results
        create_symlink(target, mount.host_path(comps))
        return abi.SUCCESS

    def _check_new_entry(self, comps: tuple[bytes, ...], info: os.stat_result | None, path: bytes) -> None:
        """A new link may be made at ``comps``: nothing there (EEXIST, even a dangling symlink),
        no trailing slash (ENOENT: only a directory is named so), a name the results can hold."""
        if info is not None:
            raise Errno(abi.EEXIST)
        if path.endswith(b"/"):
            raise Errno(abi.ENOENT)
        self.fs.check_new_name(comps)
        self.fs.count_new_entry()

    def path_readlink(self, caller: wasmtime.Caller, fd: int, path_ptr: int, path_len: int, buf: int,
                      buf_len: int, used_ptr: int) -> int:
        mount, base = self._dir(fd, abi.RIGHT_PATH_READLINK)
        view = self._view(caller)
        comps, info = self.fs.resolve(mount, base.comps, self._bytes(view, path_ptr, path_len), False)
        if info is None:
            raise Errno(abi.ENOENT)
        if filetype_of(info.st_mode) != abi.FILETYPE_SYMBOLIC_LINK:
            raise Errno(abi.EINVAL)
        target = readlink(mount.host_path(comps))
        take = min(len(target), buf_len)  # a short buffer gets the target's first bytes
        self._span(view, buf, take)[:] = target[:take]
        self._put(view, used_ptr, "<I", take)
        return abi.SUCCESS

    def path_remove_directory(self, caller: wasmtime.Caller, fd: int, path_ptr: int, path_len: int) -> int:
        mount, base = self._writable_dir(fd, abi.RIGHT_PATH_REMOVE_DIRECTORY)
        path = self._bytes(self._view(caller), path_ptr, path_len)
        # rmdir(2) never follows its last component: "s/" for a link to a directory is that link (ENOTDIR)
        comps, info = self.fs.resolve(mount, base.comps, path.rstrip(b"/") or path, False)
        if info is None:
            raise Errno(abi.ENOENT)
        if not comps:
            raise Errno(abi.EPERM)
        if filetype_of(info.st_mode) != abi.FILETYPE_DIRECTORY:
            raise Errno(abi.ENOTDIR)
        if not self.fs.is_empty_dir(mount, comps):
            raise Errno(abi.ENOTEMPTY)
        try:
            os.rmdir(mount.host_path(comps))
        except OSError as exc:
            raise host_error(exc) from exc
        self._gone(info)
        return abi.SUCCESS

    def path_unlink_file(self, caller: wasmtime.Caller, fd: int, path_ptr: int, path_len: int) -> int:
        mount, base = self._writable_dir(fd, abi.RIGHT_PATH_UNLINK_FILE)
        comps, info = self.fs.resolve(mount, base.comps, self._bytes(self._view(caller), path_ptr, path_len), False)
        if info is None:
            raise Errno(abi.ENOENT)
        if filetype_of(info.st_mode) == abi.FILETYPE_DIRECTORY:
            raise Errno(abi.EISDIR)
        try:
            os.unlink(mount.host_path(comps))
        except OSError as exc:
            raise host_error(exc) from exc
        self.fs.drop_name(info)
        self._gone(info)
        return abi.SUCCESS

    def path_rename(self, caller: wasmtime.Caller, fd: int, old_ptr: int, old_len: int, new_fd: int, new_ptr: int,
                    new_len: int) -> int:
        mount, base = self._writable_dir(fd, abi.RIGHT_PATH_RENAME_SOURCE)
        new_mount, new_base = self._writable_dir(new_fd, abi.RIGHT_PATH_RENAME_TARGET)
        if new_mount != mount:
            raise Errno(abi.EXDEV)
        view = self._view(caller)
        old_path, new_path = self._bytes(view, old_ptr, old_len), self._bytes(view, new_ptr, new_len)
        # rename(2) follows neither last component, trailing slash or not: a slash only says "a directory"
        old, info = self.fs.resolve(mount, base.comps, old_path.rstrip(b"/") or old_path, False)
        new, target = self.fs.resolve(mount, new_base.comps, new_path.rstrip(b"/") or new_path, False)
        if info is None:
            raise Errno(abi.ENOENT)
        if not old or not new:
            raise Errno(abi.EPERM)
        moving_dir = filetype_of(info.st_mode) == abi.FILETYPE_DIRECTORY
        if (old_path.endswith(b"/") or new_path.endswith(b"/")) and not moving_dir:
            raise Errno(abi.ENOTDIR)  # only a directory (never a link to one) is named "name/"
        if new_path.endswith(b"/") and target is not None and filetype_of(target.st_mode) != abi.FILETYPE_DIRECTORY:
            raise Errno(abi.ENOTDIR)
        if old == new:
            return abi.SUCCESS  # POSIX: renaming an entry onto itself does nothing
        self.fs.check_new_name(new)
        if moving_dir:
            self.fs.check_move(mount, old, new)
        if target is not None:
            # decided here, not by the host: POSIX lets hosts differ (EEXIST or ENOTEMPTY)
            target_dir = filetype_of(target.st_mode) == abi.FILETYPE_DIRECTORY
            if moving_dir and not target_dir:
                raise Errno(abi.ENOTDIR)
            if target_dir and not moving_dir:
                raise Errno(abi.EISDIR)
            if target_dir and not self.fs.is_empty_dir(mount, new):
                raise Errno(abi.ENOTEMPTY)
            if (target.st_dev, target.st_ino) == (info.st_dev, info.st_ino):
                return abi.SUCCESS  # POSIX: two names of one file: rename does nothing
        try:
            os.rename(mount.host_path(old), mount.host_path(new))
        except OSError as exc:
            raise host_error(exc) from exc
        if target is not None and identity(target) != identity(info):
            # replaced (renaming one name of a file onto another changes nothing)
            self.fs.drop_name(target)
            self._gone(target)
        return abi.SUCCESS


def _need(handle: Handle, needed: int) -> None:
    """Raise the errno of :func:`rights.missing` when ``handle`` lacks a right in ``needed``."""
    errno = rights.missing(handle.rights, needed)
    if errno is not None:
        raise Errno(errno)


def _check_fst_flags(flags: int) -> None:
    """EINVAL when a time is both given and ``now`` (ATIM with ATIM_NOW, MTIM with MTIM_NOW),
    as preview1 requires."""
    if (flags & abi.FST_ATIM and flags & abi.FST_ATIM_NOW) or (flags & abi.FST_MTIM and flags & abi.FST_MTIM_NOW):
        raise Errno(abi.EINVAL)
