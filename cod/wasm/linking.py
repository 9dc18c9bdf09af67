"""The module closure: the modules a job's module imports by CID, found, checked and ordered.

A module may import functions from another module by naming that module's CID as the import
module name, ``(import "bafkrei..." "mix" (func ...))`` (C: ``__attribute__((import_module(
"bafkrei...")))``). :func:`closure` resolves these names through a callback, checks each
module's bytes against its name (``module_cid``), follows the dependencies' own CID imports
and decides the one instantiation order (SPEC 5.4): depth-first post-order over the import
declarations in the order of each module's import section, each CID once, the root last.

Everything here reads the binary's import section only (no engine): a node finds the blobs a
job lacks with it. What needs compiled modules (export types, WASI imports, memories) is
checked by :func:`check` before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..content.cid import CID, DAG_PB, RAW
from ..content.unixfs import module_cid
from ..errors import ImportRefused, MissingModules, ModuleError
from ..limits import MAX_MODULES as MAX_MODULES  # modules in one closure, the root included (re-exported)
from . import abi, observe
from .binary import imports, memory_minimums, table_minimums
from .imports import check_imports, cid_name

if TYPE_CHECKING:  # the engine (wasmtime) is needed to check a closure, not to resolve one
    import wasmtime

    from .engine import Engine

MAX_DEPTH = 16  # longest chain of imports from the root (the root's own imports have depth 1)
MAX_MODULE_NAMES = 2 * MAX_MODULES  # distinct import module names of one module: preview1, a CIDv1
# and a CIDv0 per dependency (more cannot pass 4.1 and the caps; refused before each is parsed)
MAX_CLOSURE_TABLES = 64  # tables defined by all modules of a closure together
ROOT = ""  # the key of the root module in Closure.imports
Resolver = Callable[[str], "bytes | None"]


@dataclass(frozen=True)
class Closure:
    """A root module's dependencies by CID (CIDv1 text, as ``module_cid`` gives it).

    ``order`` is the instantiation order of the dependencies (the root comes after them);
    ``imports`` maps each module (the root under ROOT) to the CID import names it declares,
    as written, in the order of its import section, each once; ``names`` maps each such name
    to the CID of the module it names.
    """

    modules: dict[str, bytes] = field(default_factory=dict)
    order: tuple[str, ...] = ()
    imports: dict[str, tuple[str, ...]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)


def closure(wasm: bytes, resolve: Resolver | None) -> Closure:
    """Resolve every module ``wasm`` imports by CID, recursively, and order them (SPEC 5.4).

    ``resolve(cid)`` gives the bytes of the module with that CIDv1 text, or None. Raises
    ModuleError for a CID import that is not a function, bytes that do not hash to their
    name, a cycle, a closure over MAX_MODULES modules or MAX_DEPTH deep, a dependency
    importing anything but WASI and CIDs; and, when nothing else is wrong, MissingModules
    naming every CID that could not be resolved (in the order they were met).
    """
    root_imports = _cid_imports(imports(wasm), "the module")
    if not root_imports:
        return Closure(imports={ROOT: ()})
    names: dict[str, str] = {}
    table: dict[str, tuple[str, ...]] = {ROOT: _names(root_imports, names)}
    modules: dict[str, bytes] = {}
    order: list[str] = []
    missing: list[str] = []
    state: dict[str, int] = {}  # 1: on the path from the root, 2: done
    stack: list[tuple[str, int, list[str]]] = [(ROOT, 0, [names[n] for n in table[ROOT]])]
    while stack:
        key, depth, pending = stack[-1]
        if not pending:
            stack.pop()
            if key != ROOT:
                state[key] = 2
                if key in modules:
                    order.append(key)
            continue
        cid = pending.pop(0)
        if state.get(cid) == 2:
            continue
        path = [k for k, _, _ in stack[1:]] + [cid]
        if state.get(cid) == 1:
            raise ModuleError(f"modules import each other in a cycle: {' -> '.join(path)}",
                              "content-addressed modules cannot form a cycle: a resolver gave bytes "
                              "that do not match their CID")
        if depth + 1 > MAX_DEPTH:
            raise ModuleError(f"module imports are nested deeper than {MAX_DEPTH}: {' -> '.join(path)}",
                              f"keep chains of modules imported by CID within {MAX_DEPTH} levels")
        if len(state) + 2 > MAX_MODULES:
            raise _too_many()
        state[cid] = 1
        found = resolve(cid) if resolve is not None else None
        if found is None:
            missing.append(cid)
            state[cid] = 2
            continue
        _check_bytes(cid, found)
        own = _cid_imports(imports(found, f"dependency {cid}"), f"dependency {cid}", dependency=True)
        modules[cid] = found
        table[cid] = _names(own, names)
        stack.append((cid, depth + 1, [names[n] for n in table[cid]]))
    if missing:
        raise MissingModules(missing, modules)
    return Closure(modules=modules, order=tuple(order), imports=table, names=names)


def _cid_imports(found: list[tuple[str, str, str]], owner: str, dependency: bool = False) -> list[str]:
    """The CID import module names of one module, in import section order (repeats kept).

    Each distinct name is parsed once, and a module naming more than MAX_MODULES - 1 distinct
    CIDs, or more than MAX_MODULE_NAMES distinct names, is refused as soon as the next one is
    met: an import section may hold a million names.
    """
    out = []
    is_cid: dict[str, bool] = {}
    cids: set[str] = set()
    for module, name, kind in found:
        if module not in is_cid:
            if len(is_cid) >= MAX_MODULE_NAMES:
                raise ModuleError(f"{owner} imports from more than {MAX_MODULE_NAMES} distinct module names",
                                  f"import only {abi.MODULE} functions and functions of modules named by CID")
            cid = cid_name(module)
            is_cid[module] = cid is not None
            if cid is not None:
                cids.add(cid)
                if len(cids) >= MAX_MODULES:
                    raise _too_many()
        if is_cid[module]:
            if kind != "function":
                raise ModuleError(f"{owner} imports a {kind} ({module}::{name}) from a module by CID",
                                  "only functions may be imported from modules named by CID")
            out.append(module)
        elif dependency and module != abi.MODULE and module not in observe.MODULES:
            raise ImportRefused(module, name, f"{owner} may import only {abi.MODULE} functions, the Dylibso "
                                "Observe API and modules by CID")
    return out


def _too_many() -> ModuleError:
    return ModuleError(f"the module closure holds more than {MAX_MODULES} modules",
                       f"import at most {MAX_MODULES - 1} distinct modules by CID, directly or not")


def _names(found: list[str], names: dict[str, str]) -> tuple[str, ...]:
    """Each import module name once, in first-appearance order; ``names`` learns its CID.
    Linear in the names (a dict, not a list scan): an import section may hold a million."""
    distinct = tuple(dict.fromkeys(found))
    for name in distinct:
        if name not in names:
            names[name] = cid_name(name) or ""
    return distinct


def _check_bytes(cid: str, wasm: bytes) -> None:
    actual = module_cid(wasm)
    if actual == cid:
        return
    if CID.parse(cid).codec == DAG_PB and CID.parse(actual).codec == RAW:
        raise ModuleError(f"module {cid} was given bytes whose CID is {actual}: a CIDv0 (Qm...) names a dag-pb "
                          f"node, and a module of at most 1 MiB is a raw block",
                          f"import it by its CIDv1 {actual} (cod add FILE prints it)")
    raise ModuleError(f"the bytes given for module {cid} hash to {actual}",
                      "a module is named by the CID of its exact bytes: rebuild the importing module with the "
                      "dependency's current CID")


@dataclass(frozen=True)
class Checked:
    """A closure whose modules compiled and whose imports match what they name."""

    closure: Closure
    compiled: dict[str, "wasmtime.Module"]
    wasi_imports: dict[str, tuple[str, ...]]  # the WASI functions each dependency imports


def check(root_wasm: bytes, root: "wasmtime.Module", found: Closure, engine: "Engine", memory_bytes: int) -> Checked:
    """Compile every dependency (through the engine's cache) and check the closure as linked.

    Raises ModuleError, before anything runs, when a dependency's WASI imports break the rules
    the root is held to (SPEC 4.1), when a dependency that calls WASI exports no memory named
    ``memory``, when a module imports a function its dependency does not export or exports
    with another type, when the closure's tables are over MAX_CLOSURE_TABLES, or when the
    memories' declared minimums together exceed ``memory_bytes``.
    """
    import wasmtime

    compiled: dict[str, wasmtime.Module] = {ROOT: root}
    wasi_imports: dict[str, tuple[str, ...]] = {}
    tables = 0
    initial = 0
    for cid in found.order:
        module = engine.module(found.modules[cid])
        compiled[cid] = module
        try:
            check_imports(module)
        except ImportRefused as exc:
            raise ModuleError(f"dependency {cid}: {exc.message}", exc.hint) from exc
        wasi_imports[cid] = tuple(sorted({i.name or "" for i in module.imports if i.module == abi.MODULE}))
        exports = {e.name: e.type for e in module.exports}
        memory = exports.get("memory")
        if wasi_imports[cid] and not isinstance(memory, wasmtime.MemoryType):
            raise ModuleError(f"dependency {cid} imports WASI functions but exports no memory named 'memory'",
                              "WASI calls of a module work on its own exported memory")
        minimums = table_minimums(found.modules[cid]) or []
        tables += len(minimums)
    for key, module in compiled.items():
        initial += sum(memory_minimums(found.modules[key] if key != ROOT else root_wasm)) * 65536
        for imp in module.imports:
            target = found.names.get(imp.module)
            if target is None:
                continue
            exports = {e.name: e.type for e in compiled[target].exports}
            wanted, given = imp.type, exports.get(imp.name or "")
            owner = "the module" if key == ROOT else f"dependency {key}"
            if not isinstance(given, wasmtime.FuncType):
                raise ModuleError(f"{owner} imports {imp.name!r} from {target}, which exports no such function",
                                  "check the import name against the dependency's exports")
            assert isinstance(wanted, wasmtime.FuncType)
            if _sig(wanted) != _sig(given):
                raise ModuleError(f"{owner} imports {imp.name!r} from {target} as {_show(wanted)}, but it is "
                                  f"{_show(given)} there", "rebuild against the dependency's declaration")
    if tables > MAX_CLOSURE_TABLES:
        raise ModuleError(f"the dependencies define {tables} tables, over cod's limit of {MAX_CLOSURE_TABLES}")
    if initial > memory_bytes:
        raise ModuleError(f"the modules declare {initial} bytes of initial memory together, over the limit of "
                          f"{memory_bytes}", "raise the limit with --memory")
    return Checked(found, compiled, wasi_imports)


def _sig(ty: "wasmtime.FuncType") -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(str(p) for p in ty.params), tuple(str(r) for r in ty.results)


def _show(ty: "wasmtime.FuncType") -> str:
    params, results = _sig(ty)
    return f"({', '.join(params)}) -> ({', '.join(results)})"


def resolver(modules: Mapping[str, bytes] | None) -> Resolver | None:
    """A resolver over bytes by CIDv1 text (keys in any CID text form cod reads)."""
    if not modules:
        return None
    table = {cid_name(k) or k: v for k, v in modules.items()}
    return table.get
