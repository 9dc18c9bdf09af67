"""The checkpoint transform (SPEC 11.6): a module rewritten so that its run can stop, be hashed
and go on, at defined fuel boundaries, deterministically.

Three steps, always the same:

1. ``wasm-opt --log-execution``: a call to the import ``env.log_execution`` (one i32 argument)
   at every function entry and loop header, so that even a loop that calls no import reaches
   a host function every few instructions;
2. ``wasm-opt --asyncify --pass-arg=asyncify-imports@env.log_execution -O1``: the call stack
   can be unwound into linear memory at that import and rewound from it;
3. every global the module defines (its own and Asyncify's) exported as ``cod:global:<index>``
   (this module, not Binaryen: the host can read and set globals only through exports).

The wasm-opt version is pinned (:data:`WASM_OPT_VERSION`) and named in
:data:`CHECKPOINT_TRANSFORM`: another version may emit other bytes, and another module spends
other fuel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

from ..errors import ModuleError
from ..wasm import binary
from ..wasm.imports import cid_name
from ..wasm.leb128 import read_u, write_u
from .errors import CheckpointError

WASM_OPT_VERSION = "108"
CHECKPOINT_TRANSFORM = f"cod-checkpoint-1+binaryen-{WASM_OPT_VERSION}"
"""Names the transform; a dispute compares runs of modules made by one transform only."""
HOOK_MODULE, HOOK_NAME = "env", "log_execution"
GLOBAL_EXPORT = "cod:global:{}"
FEATURES = ("--enable-sign-ext", "--enable-mutable-globals", "--enable-nontrapping-float-to-int",
            "--enable-simd", "--enable-relaxed-simd", "--enable-bulk-memory", "--enable-multivalue",
            "--enable-reference-types", "--enable-tail-call")
"""The proposals cod's engine accepts (cod.wasm.engine.ENGINE_SETTINGS) that Binaryen 108 knows."""
LOG_PASS = ("--log-execution",)
DEFAULT_STRIDE = 1024
"""The host sees the first call of the logging hook, then every stride-th one: the stride is the
global exported as STRIDE_EXPORT, DEFAULT_STRIDE unless the host sets it before the run (a host
call costs about 15 us, a hook call a few fuel)."""
STRIDE_FUNC, STRIDE_GLOBAL, STRIDE_RESET = "$cod_checkpoint_hook", "$cod_checkpoint_countdown", "$cod_checkpoint_stride"
STRIDE_EXPORT = "cod:stride"
_HOOK_IMPORT = re.compile(r'^ \(import "env" "log_execution" \(func (\$\S+) \(param i32\)\)\)$', re.M)
ASYNCIFY_PASS = ("--asyncify", f"--pass-arg=asyncify-imports@{HOOK_MODULE}.{HOOK_NAME}", "-O1")
WASM_OPT_TIMEOUT_S = 600
GLOBAL_SECTION, EXPORT_SECTION, START_SECTION = 6, 7, 8
EXPORT_GLOBAL = 3


def wasm_opt() -> str | None:
    return shutil.which("wasm-opt")


def available() -> str | None:
    """None when the transform can run here; else why not (one line)."""
    tool = wasm_opt()
    if tool is None:
        return "wasm-opt (Debian package binaryen) is not installed: make binaryen-tools"
    try:
        done = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return f"wasm-opt cannot run: {exc.strerror}"
    words = done.stdout.split()
    version = words[2] if len(words) >= 3 and words[:2] == ["wasm-opt", "version"] else done.stdout.strip()
    if version != WASM_OPT_VERSION:
        return f"wasm-opt is version {version!r}; the checkpoint transform pins version {WASM_OPT_VERSION}"
    return None


def instrument(wasm: bytes) -> bytes:
    """The module ``wasm`` under the checkpoint transform (same bytes in, same bytes out).

    Raises CheckpointError when wasm-opt is missing or of another version, or for a module the
    transform does not take: one that imports modules by CID (SPEC 5.4), has a start function,
    or imports a global; ModuleError for bytes that are not a core module.
    """
    why = available()
    if why is not None:
        raise CheckpointError(f"cannot instrument for checkpoints: {why}")
    _check_input(wasm)
    with tempfile.TemporaryDirectory(prefix="cod-checkpoint-") as work:
        source, logged, strided, out = (os.path.join(work, name)
                                        for name in ("in.wasm", "log.wat", "stride.wat", "out.wasm"))
        with open(source, "wb") as f:
            f.write(wasm)
        _run([source, *FEATURES, *LOG_PASS, "-S", "-o", logged])
        with open(logged, encoding="utf-8") as f:
            text = f.read()
        with open(strided, "w", encoding="utf-8") as f:
            f.write(add_stride(text))
        _run([strided, *FEATURES, *ASYNCIFY_PASS, "-o", out])
        with open(out, "rb") as f:
            transformed = f.read()
    return export_globals(transformed)


def add_stride(text: str) -> str:
    """Step 2 of the transform, on the text wasm-opt printed: every call of the hook import
    becomes a call of a new function that counts down a new global and calls the import only
    when it reaches 0 (then it starts again from the stride global, exported as STRIDE_EXPORT)."""
    found = _HOOK_IMPORT.search(text)
    if found is None:
        raise CheckpointError("wasm-opt --log-execution added no env.log_execution import")
    if "$cod_checkpoint_" in text or f'"{STRIDE_EXPORT}"' in text:
        raise CheckpointError("the module already has names the transform adds ($cod_checkpoint_*, cod:stride)")
    hook = found.group(1)
    # wasm-opt prints a call with operands as "(call $name" alone on its line (a data segment's
    # bytes are one quoted line, so they are never matched)
    calls = re.compile(r"^(\s*)\(call " + re.escape(hook) + r"$", re.M)
    body, count = calls.subn(lambda m: f"{m.group(1)}(call {STRIDE_FUNC}", text)
    if count == 0:
        raise CheckpointError("wasm-opt --log-execution printed no call of env.log_execution")
    end = body.rstrip().rfind(")")
    if end < 0:
        raise CheckpointError("wasm-opt printed no module")
    added = (f" (global {STRIDE_GLOBAL} (mut i32) (i32.const 1))\n"
             f" (global {STRIDE_RESET} (mut i32) (i32.const {DEFAULT_STRIDE}))\n"
             f' (export "{STRIDE_EXPORT}" (global {STRIDE_RESET}))\n'
             f" (func {STRIDE_FUNC} (param $where i32)\n"
             f"  (global.set {STRIDE_GLOBAL} (i32.sub (global.get {STRIDE_GLOBAL}) (i32.const 1)))\n"
             f"  (if (i32.eqz (global.get {STRIDE_GLOBAL}))\n"
             f"   (then (global.set {STRIDE_GLOBAL} (global.get {STRIDE_RESET})) (call {hook} (local.get $where))))\n"
             " )\n")
    return body[:end] + added + body[end:]


def _run(args: list[str]) -> None:
    tool = wasm_opt()
    assert tool is not None
    try:
        done = subprocess.run([tool, *args], capture_output=True, text=True, timeout=WASM_OPT_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise CheckpointError(f"wasm-opt took over {WASM_OPT_TIMEOUT_S} s on the module") from exc
    except OSError as exc:
        raise CheckpointError(f"wasm-opt cannot run: {exc.strerror}") from exc
    if done.returncode != 0:
        detail = " ".join((done.stderr or done.stdout).split())[:300]
        raise CheckpointError(f"wasm-opt refused the module: {detail}")


def _check_input(wasm: bytes) -> None:
    binary.check_binary(wasm)
    for taken in (b"cod:global:", STRIDE_EXPORT.encode()):
        if taken in wasm:
            raise CheckpointError(f"the module holds the name {taken.decode()!r}, which the checkpoint "
                                  "transform exports")
    for section, _, _, _ in binary.sections(wasm):
        if section == START_SECTION:
            raise CheckpointError("the checkpoint transform does not take a module with a start function",
                                  "build the module as a WASI command whose work is in _start")
    for module, name, kind in binary.imports(wasm):
        if cid_name(module) is not None:
            raise CheckpointError(f"the module imports the module {module} by CID: checkpoints of linked "
                                  "modules are not supported yet")
        if kind == "global":
            raise CheckpointError(f"the module imports the global {module}.{name}: not supported by checkpoints")
        if (module, name) == (HOOK_MODULE, HOOK_NAME):
            raise CheckpointError(f"the module imports {HOOK_MODULE}.{HOOK_NAME} itself")


def global_count(wasm: bytes) -> int:
    """How many globals the module defines (its global section; imported globals are refused)."""
    for kind, _, start, end in binary.sections(wasm):
        if kind == GLOBAL_SECTION:
            count, _ = read_u(wasm, start)
            return count
    return 0


def export_globals(wasm: bytes) -> bytes:
    """``wasm`` with every global it defines also exported as ``cod:global:<index>``: the
    export section gets these entries after its own, in index order (one is added if there
    is none, right after the global section)."""
    count = global_count(wasm)
    extra = b"".join(_export_entry(GLOBAL_EXPORT.format(n), n) for n in range(count))
    found = binary.sections(wasm)
    for kind, start, payload, end in found:
        if kind == EXPORT_SECTION:
            entries, body = read_u(wasm, payload)
            new = write_u(entries + count) + wasm[body:end] + extra
            return wasm[:start] + _section(EXPORT_SECTION, new) + wasm[end:]
    # no export section: one goes where the order of sections puts it (before start, element...)
    at = len(wasm)
    for kind, start, _, _ in found:
        if kind not in (0, 1, 2, 3, 4, 5, 13, 6):
            at = start
            break
    return wasm[:at] + _section(EXPORT_SECTION, write_u(count) + extra) + wasm[at:]


def _export_entry(name: str, index: int) -> bytes:
    raw = name.encode()
    return write_u(len(raw)) + raw + bytes([EXPORT_GLOBAL]) + write_u(index)


def _section(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + write_u(len(payload)) + payload


__all__ = ["CHECKPOINT_TRANSFORM", "GLOBAL_EXPORT", "HOOK_MODULE", "HOOK_NAME", "ModuleError", "available",
           "export_globals", "instrument"]
