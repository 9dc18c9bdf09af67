"""The public API is what cod/__init__ re-exports: pinned here, so a change is deliberate."""

import cod
from cod import errors

PUBLIC = {
    "CID", "CIDError", "CacheError", "CodError", "Engine", "Entry", "ImportRefused", "Importer", "Indeterminate",
    "Input", "InputError", "JobSpec", "Limits", "ModuleError", "OutputLimitExceeded", "PreparedJob", "RunResult",
    "SpecError", "__version__", "cid_of_tree", "module_cid", "prepare", "profile_id", "run", "run_prepared",
    "write_car",
}


def test_public_api_is_pinned() -> None:
    assert set(cod.__all__) == PUBLIC
    assert all(hasattr(cod, name) for name in PUBLIC)


def test_every_error_is_a_cod_error_with_a_distinct_code() -> None:
    classes = [getattr(errors, n) for n in dir(errors) if isinstance(getattr(errors, n), type)]
    ours = [c for c in classes if issubclass(c, errors.CodError) and c is not errors.CodError]
    # these share their parent's code
    subclasses = {errors.ImportRefused, errors.MissingModules, errors.NodeBusy, errors.PolicyRefused,
                  errors.StorageQuotaExceeded, errors.InsufficientStorage, errors.RateLimited,
                  errors.CheckpointRefused, errors.CheckpointUnsupported, errors.CheckpointBusy}
    codes = {c.code for c in ours if c not in subclasses}
    assert len(codes) == len(ours) - len(subclasses)
    assert all(c.__doc__ for c in ours)
