"""What a node accepts: the caps it publishes at /v1/info under ``limits`` and enforces.

A spec that asks for more fuel, memory, time or output than a cap, or an upload beyond an
upload cap, is refused with CapExceeded naming the cap (SPEC.md 9.3). Defaults are safe
for a shared machine and admit every default spec.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..content.export import (DEFAULT_MAX_CAR_BLOCKS, DEFAULT_MAX_CAR_BYTES, DEFAULT_MAX_ENTRIES,
                              DEFAULT_MAX_UNPACKED_BYTES, TreeCaps)
from ..errors import CapExceeded
from ..jobspec import JobSpec
from ..limits import MAX_TREE_DEPTH

SPEC_CAPS = (  # (cap, spec field), in the order they are checked
    ("max_fuel", "fuel"),
    ("max_memory_bytes", "memory_bytes"),
    ("max_timeout_ms", "timeout_ms"),
    ("max_stdout_bytes", "stdout_bytes"),
    ("max_stderr_bytes", "stderr_bytes"),
    ("max_output_bytes", "output_bytes"),
)
UPLOAD_CAPS = frozenset({"max_upload_bytes", "max_unpacked_bytes", "max_car_blocks", "max_tree_depth",
                         "max_entries"})


@dataclass(frozen=True)
class NodeCaps:
    """A node's caps; every field is published under its own name."""

    max_fuel: int = 10**12
    max_memory_bytes: int = 1 << 32  # all a wasm32 memory can hold
    max_timeout_ms: int = 1_800_000  # 30 minutes
    max_stdout_bytes: int = 64 << 20
    max_stderr_bytes: int = 64 << 20
    max_output_bytes: int = 4 << 30
    max_upload_bytes: int = DEFAULT_MAX_CAR_BYTES
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES
    max_car_blocks: int = DEFAULT_MAX_CAR_BLOCKS
    max_tree_depth: int = MAX_TREE_DEPTH
    max_entries: int = DEFAULT_MAX_ENTRIES

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"cap {name} must be a positive integer")
        if self.max_tree_depth > MAX_TREE_DEPTH:
            raise ValueError(f"cap max_tree_depth may not exceed {MAX_TREE_DEPTH} (cod.limits.MAX_TREE_DEPTH)")

    def published(self) -> dict[str, int]:
        return asdict(self)

    def tree(self) -> TreeCaps:
        return TreeCaps(self.max_unpacked_bytes, self.max_entries, self.max_car_blocks, self.max_tree_depth)

    def check_spec(self, spec: JobSpec) -> None:
        """Raise CapExceeded for the first limit of ``spec`` (in SPEC_CAPS order) over its cap."""
        for cap, field in SPEC_CAPS:
            asked, limit = getattr(spec.limits, field), getattr(self, cap)
            if asked > limit:
                raise CapExceeded(cap, limit, f"limits.{field} = {asked}",
                                  f"ask for at most {limit} (this node's {cap}), or use a node that allows more")
