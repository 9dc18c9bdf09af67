"""cod: verifiable compute over data.

The public API, re-exported from the modules that own each noun::

    from cod import JobSpec, Engine, run, Importer, cid_of_tree, write_car
"""

from typing import TYPE_CHECKING, Any

# Names load on first use (PEP 562), so that `import cod` (every `cod` command starts with it)
# costs nothing: wasmtime alone takes ~80 ms to import, and `cod --help` needs none of this.
_EXPORTS = {
    "write_car": "content.car", "CID": "content.cid", "Input": "jobspec", "JobSpec": "jobspec", "Limits": "jobspec",
    "PreparedJob": "local", "prepare": "local", "run_prepared": "local", "Entry": "content.unixfs",
    "Importer": "content.unixfs", "cid_of_tree": "content.unixfs", "Engine": "wasm.engine",
    "profile_id": "wasm.engine", "RunResult": "wasm.executor", "module_cid": "content.unixfs", "run": "wasm.executor",
    **{name: "errors" for name in ("CacheError", "CIDError", "CodError", "ImportRefused", "Indeterminate",
                                    "InputError", "ModuleError", "OutputLimitExceeded", "SpecError")},
}

if TYPE_CHECKING:
    from .content.car import write_car
    from .content.cid import CID
    from .content.unixfs import Entry, Importer, cid_of_tree, module_cid
    from .errors import (CacheError, CIDError, CodError, ImportRefused, Indeterminate, InputError, ModuleError,
                         OutputLimitExceeded, SpecError)
    from .jobspec import Input, JobSpec, Limits
    from .local import PreparedJob, prepare, run_prepared
    from .wasm.engine import Engine, profile_id
    from .wasm.executor import RunResult, run


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cod' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "CID", "CIDError", "CacheError", "CodError", "Engine", "Entry", "ImportRefused", "Importer", "Indeterminate",
    "Input", "InputError", "JobSpec", "Limits", "ModuleError", "OutputLimitExceeded", "PreparedJob", "RunResult",
    "SpecError", "__version__", "cid_of_tree", "module_cid", "prepare", "profile_id", "run", "run_prepared",
    "write_car",
]
