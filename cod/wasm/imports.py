"""What a module may import: WASI preview1 with its exact signatures, the Dylibso Observe API,
and functions of modules named by CID (SPEC 4.1, 5.4, 5.5).

:data:`SIGNATURES` is the one table of preview1's 46 functions; the WASI layer
(:mod:`cod.wasm.wasi`) defines them from it, the engine makes their FuncTypes from it, and
:func:`check_imports` holds every module to it before anything runs.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..content.cid import CID, DAG_PB, SHA2_256
from ..errors import CIDError, ImportRefused
from . import abi, observe

if TYPE_CHECKING:  # reading import names needs no engine: the requester resolves closures without one
    import wasmtime
    from wasmtime import FuncType
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_CIDV1 = re.compile(r"b[a-z2-7]{8,}")  # CIDv1 text as SPEC 5.4 reads it: b + base32 lower
SIGNATURES: dict[str, tuple[str, str]] = {
    # name: (params, results) with "i" for i32 and "I" for i64
    "args_get": ("ii", "i"),
    "args_sizes_get": ("ii", "i"),
    "environ_get": ("ii", "i"),
    "environ_sizes_get": ("ii", "i"),
    "clock_res_get": ("ii", "i"),
    "clock_time_get": ("iIi", "i"),
    "fd_advise": ("iIIi", "i"),
    "fd_allocate": ("iII", "i"),
    "fd_close": ("i", "i"),
    "fd_datasync": ("i", "i"),
    "fd_fdstat_get": ("ii", "i"),
    "fd_fdstat_set_flags": ("ii", "i"),
    "fd_fdstat_set_rights": ("iII", "i"),
    "fd_filestat_get": ("ii", "i"),
    "fd_filestat_set_size": ("iI", "i"),
    "fd_filestat_set_times": ("iIIi", "i"),
    "fd_pread": ("iiiIi", "i"),
    "fd_prestat_get": ("ii", "i"),
    "fd_prestat_dir_name": ("iii", "i"),
    "fd_pwrite": ("iiiIi", "i"),
    "fd_read": ("iiii", "i"),
    "fd_readdir": ("iiiIi", "i"),
    "fd_renumber": ("ii", "i"),
    "fd_seek": ("iIii", "i"),
    "fd_sync": ("i", "i"),
    "fd_tell": ("ii", "i"),
    "fd_write": ("iiii", "i"),
    "path_create_directory": ("iii", "i"),
    "path_filestat_get": ("iiiii", "i"),
    "path_filestat_set_times": ("iiiiIIi", "i"),
    "path_link": ("iiiiiii", "i"),
    "path_open": ("iiiiiIIii", "i"),
    "path_readlink": ("iiiiii", "i"),
    "path_remove_directory": ("iii", "i"),
    "path_rename": ("iiiiii", "i"),
    "path_symlink": ("iiiii", "i"),
    "path_unlink_file": ("iii", "i"),
    "poll_oneoff": ("iiii", "i"),
    "proc_exit": ("i", ""),
    "proc_raise": ("i", "i"),
    "sched_yield": ("", "i"),
    "random_get": ("ii", "i"),
    "sock_accept": ("iii", "i"),
    "sock_recv": ("iiiiii", "i"),
    "sock_send": ("iiiii", "i"),
    "sock_shutdown": ("ii", "i"),
}


_KINDS = {"i32": "i", "i64": "I"}


def functypes() -> dict[str, FuncType]:
    """Fresh FuncTypes of every preview1 function (wasmtime ties a FuncType to one engine)."""
    from wasmtime import FuncType, ValType

    kinds = {"i": ValType.i32(), "I": ValType.i64()}
    return {
        name: FuncType([kinds[c] for c in params], [kinds[c] for c in results])
        for name, (params, results) in SIGNATURES.items()
    }


def signature(ty: FuncType) -> tuple[str, str]:
    return ("".join(_KINDS.get(str(p), "?") for p in ty.params), "".join(_KINDS.get(str(r), "?") for r in ty.results))


def cid_name(name: str) -> str | None:
    """The CIDv1 text an import module name names, or None when it is not a CID.

    CIDv1 text (``b`` + base32) is taken as it is; a CIDv0 (``Qm...``, base58btc of a
    sha2-256 multihash) names a dag-pb node, so it becomes the dag-pb CIDv1 of that multihash.
    Any other name (``wasi_snapshot_preview1``, ``env``) is not a CID.
    """
    if len(name) == 46 and name.startswith("Qm"):
        raw = _b58decode(name)
        if raw is not None and len(raw) == 34 and raw[0] == SHA2_256 and raw[1] == 32:
            return str(CID(DAG_PB, raw[2:]))
        return None
    if not _CIDV1.fullmatch(name):
        return None
    try:
        canonical = str(CID.parse(name))
    except (CIDError, ValueError):
        return None
    return canonical if canonical == name else None  # one spelling: base32 lower, no stray bits


def _b58decode(text: str) -> bytes | None:
    value = 0
    for char in text:
        digit = _B58.find(char)
        if digit < 0:
            return None
        value = value * 58 + digit
    body = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return b"\x00" * (len(text) - len(text.lstrip("1"))) + body


def check_imports(module: wasmtime.Module) -> None:
    """Refuse a module that imports anything cod does not provide exactly. Imports from a
    module named by CID are left to :mod:`cod.wasm.linking` (SPEC 5.4)."""
    from wasmtime import FuncType

    for imp in module.imports:
        name = imp.name or ""
        if imp.module != abi.MODULE and cid_name(imp.module) is not None:
            continue
        if imp.module in observe.MODULES:
            ty = imp.type
            why = observe.check_import(imp.module, name, *signature(ty)) if isinstance(ty, FuncType) else (
                "only functions are imported from the Dylibso Observe API")
            if why is not None:
                raise ImportRefused(imp.module, name, why)
            continue
        if imp.module != abi.MODULE:
            why = "wasi-threads is not available: jobs are single-threaded" if imp.module == "wasi" else (
                "only wasi_snapshot_preview1 and the Dylibso Observe API are provided"
            )
            raise ImportRefused(imp.module, name, why)
        if name not in SIGNATURES:
            raise ImportRefused(imp.module, name, "not a function of WASI preview1 (no sockets, no extensions)")
        ty = imp.type
        if not isinstance(ty, FuncType) or signature(ty) != SIGNATURES[name]:
            raise ImportRefused(imp.module, name, "its signature differs from WASI preview1")
