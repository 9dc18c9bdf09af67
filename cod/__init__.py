"""cod: verifiable compute over data.

The public API, re-exported from the modules that own each noun::

    from cod import JobSpec, Engine, run, Importer, cid_of_tree, write_car
"""

from .car import write_car
from .cid import CID
from .errors import (
    CacheError,
    CIDError,
    CodError,
    ImportRefused,
    Indeterminate,
    InputError,
    ModuleError,
    OutputLimitExceeded,
    SpecError,
)
from .jobspec import Input, JobSpec, Limits
from .local import PreparedJob, prepare, run_prepared
from .unixfs import Entry, Importer, cid_of_tree
from .wasm.engine import Engine, profile_id
from .wasm.executor import RunResult, module_cid, run

__version__ = "0.1.0"

__all__ = [
    "CID", "CIDError", "CacheError", "CodError", "Engine", "Entry", "ImportRefused", "Importer", "Indeterminate",
    "Input", "InputError", "JobSpec", "Limits", "ModuleError", "OutputLimitExceeded", "PreparedJob", "RunResult",
    "SpecError", "__version__", "cid_of_tree", "module_cid", "prepare", "profile_id", "run", "run_prepared",
    "write_car",
]
