"""Execution checkpoints (SPEC 11.6): a run's state hashed at defined fuel boundaries, and one
segment of the run re-executed from a snapshot.

    instrument(wasm) -> bytes            the deterministic transform, CHECKPOINT_TRANSFORM
    trace(spec, wasm, sources, engine, interval, ...) -> Trace
    resume(spec, wasm, sources, engine, snapshot, until_fuel, ...) -> (state hash, fuel spent)
    snapshot_hash(snapshot) -> hex
"""

from .errors import CheckpointError
from .state import snapshot_hash
from .trace import FINAL, Trace, resume, trace
from .transform import CHECKPOINT_TRANSFORM, available, instrument

__all__ = ["CHECKPOINT_TRANSFORM", "FINAL", "CheckpointError", "Trace", "available", "instrument", "resume",
           "snapshot_hash", "trace"]
