"""Every error cod raises, in one tree.

    CodError                      base: .code (CLI exit code) and .hint (what to do)
    ├── UsageError                the command asks for something impossible: --quorum not a
    │                             majority of --verify, an empty or ambiguous job ID prefix (exit 2)
    ├── SpecError                 a job spec field is missing, unknown or malformed (exit 3)
    ├── ModuleError               the module is not a usable WASI preview1 command (exit 4)
    │   ├── ImportRefused         it imports something outside wasi_snapshot_preview1 (exit 4)
    │   └── MissingModules        modules it imports by CID are not available; .missing (exit 4)
    ├── InputError                an input mount is missing or unreadable (exit 5)
    ├── OutputLimitExceeded       stdout, stderr or outputs/ went over its cap (exit 6)
    ├── Indeterminate             the run ended in a way that is not portable: stack
    │                             overflow, wall-clock timeout (exit 7); never a result
    ├── CacheError                the compiled-module cache is unsafe or unusable (exit 8)
    ├── CIDError                  a CID, CAR or UnixFS block is malformed or mis-hashed (exit 9)
    ├── CapExceeded               a request goes over a cap: a node's published cap, or a
    │                             bound of CAR unpacking; .cap names it (exit 19)
    ├── NodeError                 a compute node refused a request or could not be reached (exit 14)
    │   ├── NodeBusy              the node's queue is full (HTTP 429); retry after .retry_after
    │   ├── PolicyRefused         the node's FIL+ policy refused the job (HTTP 403)
    │   └── InsufficientStorage   the node's disk is full or read-only (HTTP 507)
    ├── EngineUnavailable         no Docker-compatible engine answers (exit 15)
    ├── BadSignature              a statement's signature or binding does not check (exit 16)
    ├── NotFound                  no such job or blob is known here (exit 17)
    ├── ExecutorCrashed           the executor process died; the node stays up (exit 18)
    ├── EngineSettingError        an engine setting is not a wasmtime.Config property, or
    │                             wasmtime refuses its value (exit 20)
    ├── ConfigError               a node list (COD_NODES, the config file) is malformed (exit 21)
    ├── LocalPathError            a local file or directory cod must write (results, CAR,
    │                             records, devstack data) is unusable (exit 22)
    ├── LedgerRefused             the ledger refused a request (HTTP 4xx) or could not be
    │   │                         reached; .status and .error name it (exit 23)
    │   └── RateLimited           a write over the ledger's rate limits (HTTP 429); .limit names
    │                             the bucket, .retry_after the seconds to wait (exit 23)
    ├── AuditFailed               `cod ledger verify` found a problem; .problems lists all (exit 24)
    ├── KeyFileError              a key file is missing, damaged, exists already, or is readable
    │                             by others (exit 25)
    ├── FraudProofError           a fraud proof is malformed, oversized, not canonical, its claim's
    │                             signature does not verify or its job is not the claim's (exit 28);
    │                             a proof whose claim re-execution shows true is refuted (exit 28)
    ├── FraudUndecided            a fraud proof cannot be judged here: another profile, content not
    │                             obtainable by CID, the fuel bound (exit 29)
    └── CheckpointError           a module cannot be instrumented, a run not checkpointed or
        │                         resumed, a snapshot is malformed (SPEC 11.6, exit 30)
        └── CheckpointRefused     a node cannot answer a checkpoint query (SPEC 11.7): the job is
            │                     not done there, the interval is out of bounds, the trace failed
            │                     or overran (exit 30)
            ├── CheckpointUnsupported  the node cannot checkpoint at all (no transform; HTTP 501)
            └── CheckpointBusy    the node runs its most checkpoint traces already (HTTP 429)

Verification outcomes (verified, mismatch, incomplete, unverifiable) are results, not errors:
`cod run --verify` maps them to exit codes 0, 10, 11 and 12 (13: nodes of different
execution profiles disagreed).

Errors of dependencies (wasmtime, OSError) are converted at the module boundary that
meets them, so a user only ever sees a CodError with one line of text.
"""

from __future__ import annotations


class CodError(Exception):
    """Base of every error cod raises on purpose."""

    code: int = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class UsageError(CodError):
    """The command asks for something impossible (exit 2, as click's usage errors)."""

    code = 2


class SpecError(CodError):
    """A job spec field is missing, unknown or malformed."""

    code = 3

    def __init__(self, field: str, problem: str, hint: str | None = None) -> None:
        super().__init__(f"job spec field {field!r}: {problem}", hint)
        self.field = field


class ModuleError(CodError):
    """The module is not a WebAssembly command cod can run."""

    code = 4


class ImportRefused(ModuleError):
    """The module imports something outside wasi_snapshot_preview1."""

    def __init__(self, module: str, name: str, why: str) -> None:
        super().__init__(
            f"module imports {module}::{name}, which cod refuses: {why}",
            "cod runs single-threaded WASI preview1 commands with no network",
        )
        self.import_module = module
        self.import_name = name


class InputError(CodError):
    """An input mount is missing, unreadable or not content-addressable here."""

    code = 5


class OutputLimitExceeded(CodError):
    """stdout, stderr or outputs/ went over the cap set in the job spec."""

    code = 6

    def __init__(self, stream: str, limit: int) -> None:
        super().__init__(
            f"{stream} went over its cap of {limit} bytes; no result was kept",
            f"raise limits.{stream}_bytes in the spec (cod run --max-{stream} BYTES) "
            "if the job really writes that much",
        )
        self.stream = stream
        self.limit = limit


class Indeterminate(CodError):
    """The run ended in a way another machine might not reproduce; no result exists."""

    code = 7

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"indeterminate outcome ({reason}): {detail}; no result was kept")
        self.reason = reason


class CacheError(CodError):
    """The compiled-module cache directory is unsafe or unusable."""

    code = 8


class CIDError(CodError):
    """A CID or multihash could not be parsed or is not supported."""

    code = 9


class NodeError(CodError):
    """A compute node refused a request, answered nonsense, or could not be reached."""

    code = 14


class NodeBusy(NodeError):
    """The node's queue is full (HTTP 429)."""

    def __init__(self, node: str, retry_after: float) -> None:
        super().__init__(f"node {node} is busy", f"retry after {retry_after:g} s")
        self.retry_after = retry_after


class StorageQuotaExceeded(NodeError):
    """A client's stored bytes on a node (uploads, fetched content, results) would pass its quota (HTTP 507)."""


class EngineUnavailable(CodError):
    """No Docker-compatible engine answers where one is needed."""

    code = 15


class BadSignature(CodError):
    """A signature does not verify, or a statement answers another job or node."""

    code = 16


class NotFound(CodError):
    """No such job or blob is known here."""

    code = 17


class ExecutorCrashed(CodError):
    """The executor process died while running a job; the node itself stays up."""

    code = 18


class CapExceeded(CodError):
    """A request goes over a cap: a node's published cap, or a bound of CAR unpacking."""

    code = 19

    def __init__(self, cap: str, limit: int, what: str, hint: str | None = None) -> None:
        super().__init__(f"{what} is over the cap {cap} = {limit}",
                         hint or f"stay within {cap} (a node publishes its caps at /v1/info under 'limits')")
        self.cap = cap
        self.limit = limit


class EngineSettingError(CodError):
    """An engine setting is not a property of wasmtime.Config, or wasmtime refuses its value."""

    code = 20


class ConfigError(CodError):
    """A node list from COD_NODES or the config file is malformed."""

    code = 21


class LocalPathError(CodError):
    """A local file or directory cod must write (results, CAR, records, devstack data) is unusable."""

    code = 22


class PolicyRefused(NodeError):
    """A node's FIL+ policy (cod serve --policy) refused the job (HTTP 403 "PolicyRefused")."""


class InsufficientStorage(NodeError):
    """A node's disk is full (ENOSPC, EDQUOT, SQLite's "database or disk is full") or read-only (EROFS): HTTP 507."""


class LedgerRefused(CodError):
    """The ledger refused a request (HTTP 4xx), or could not be reached (status 0)."""

    code = 23

    def __init__(self, message: str, hint: str | None = None, *, status: int = 400,
                 error: str = "LedgerRefused") -> None:
        super().__init__(message, hint)
        self.status = status
        self.error = error


class RateLimited(LedgerRefused):
    """A write over one of the ledger's rate limits (HTTP 429, SPEC.md 12.7): ``limit`` names the
    bucket (address, governance, key, anonymous), ``retry_after`` the whole seconds until it has room."""

    def __init__(self, message: str, hint: str | None = None, *, limit: str, retry_after: int) -> None:
        super().__init__(message, hint, status=429, error="RateLimited")
        self.limit = limit
        self.retry_after = retry_after


class AuditFailed(CodError):
    """`cod ledger verify` found a problem: a signature, the tree, a rule or the governance."""

    code = 24

    def __init__(self, problems: list[str], hint: str | None = None) -> None:
        first = problems[0] if problems else "the ledger does not verify"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first + more, hint)
        self.problems = list(problems)


class KeyFileError(CodError):
    """A key file is missing, damaged, exists already (keygen), or is readable by others."""

    code = 25


class FraudProofError(CodError):
    """A fraud proof (SPEC 11.5) is not one: malformed, oversized, not canonical, a claim whose
    signature does not verify or whose job is not the proof's job; or a refuted accusation."""

    code = 28


class FraudUndecided(CodError):
    """A fraud proof cannot be judged here (SPEC 11.5): the message says why (a profile, a CID)."""

    code = 29


class CheckpointError(CodError):
    """A module cannot be instrumented, a run cannot be checkpointed or resumed, or a snapshot
    is malformed (SPEC 11.6; exit 30)."""

    code = 30


class CheckpointRefused(CheckpointError):
    """A node cannot answer a checkpoint query (SPEC 11.7) of one job: not done there, an
    interval out of bounds, a trace that failed or overran (exit 30)."""

    code = 30


class CheckpointUnsupported(CheckpointRefused):
    """The node cannot checkpoint any job: no checkpoint transform here, or a docker job (HTTP 501)."""


class CheckpointBusy(CheckpointRefused):
    """The node runs its most checkpoint traces at once already (HTTP 429)."""


class MissingModules(ModuleError):
    """Modules the job's module imports by CID are not available here; .missing lists their CIDs."""

    def __init__(self, missing: list[str], found: dict[str, bytes] | None = None) -> None:
        super().__init__(f"the module imports {len(missing)} module(s) by CID that are not available here: "
                         f"{', '.join(missing)}", "add each to the local store: cod add FILE")
        self.missing = list(missing)
        self.found = dict(found or {})  # the modules of the closure that were resolved
