"""What a node accepts: the caps it publishes at /v1/info under ``limits`` and enforces.

A spec that asks for more fuel, memory, table elements, time or output than a cap, or an
upload beyond an upload cap, is refused with CapExceeded naming the cap (SPEC.md 9.3); so is
a job whose memories and tables together may hold more than ``max_memory_bytes`` (checked
once its module is at hand, :meth:`NodeCaps.check_memory`). Defaults are safe for a shared
machine and admit every default spec.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..content.export import (DEFAULT_MAX_CAR_BLOCKS, DEFAULT_MAX_CAR_BYTES, DEFAULT_MAX_ENTRIES,
                              DEFAULT_MAX_UNPACKED_BYTES, TreeCaps)
from ..content.fetcher import DEFAULT_MAX_FETCH_CIDS
from ..errors import CapExceeded
from ..jobspec import DEFAULT_FUEL, DEFAULT_TABLE_ELEMENTS, MAX_MEMORY_BYTES, JobSpec
from ..limits import MAX_TABLES, MAX_TREE_DEPTH, TABLE_ELEMENT_BYTES

SPEC_CAPS = (  # (cap, spec field), in the order they are checked
    ("max_fuel", "fuel"),
    ("max_memory_bytes", "memory_bytes"),
    ("max_table_elements", "table_elements"),
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

    max_fuel: int = 10 * DEFAULT_FUEL  # about ten minutes of compute, within max_timeout_ms
    # a job's memories and tables together: all a wasm32 memory can hold, and a module's most
    # tables (MAX_TABLES) at the default limits.table_elements, TABLE_ELEMENT_BYTES an element
    max_memory_bytes: int = MAX_MEMORY_BYTES + MAX_TABLES * DEFAULT_TABLE_ELEMENTS * TABLE_ELEMENT_BYTES
    max_table_elements: int = DEFAULT_TABLE_ELEMENTS  # each table's; 8 MiB a table
    max_timeout_ms: int = 1_800_000  # 30 minutes
    max_stdout_bytes: int = 64 << 20
    max_stderr_bytes: int = 64 << 20
    max_output_bytes: int = 4 << 30
    max_upload_bytes: int = DEFAULT_MAX_CAR_BYTES
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES
    max_car_blocks: int = DEFAULT_MAX_CAR_BLOCKS
    max_tree_depth: int = MAX_TREE_DEPTH
    max_entries: int = DEFAULT_MAX_ENTRIES
    max_fetch_cids: int = DEFAULT_MAX_FETCH_CIDS  # CIDs one job may make the node fetch (SPEC 9.8)

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

    def check_memory(self, spec: JobSpec, tables: int) -> None:
        """Raise CapExceeded (``max_memory_bytes``) when the job's memories (``limits.memory_bytes``)
        and its ``tables`` tables, each grown to ``limits.table_elements`` at TABLE_ELEMENT_BYTES
        an element, may hold more than ``max_memory_bytes`` together (SPEC 5.3, 9.3)."""
        memory, elements = spec.limits.memory_bytes, spec.limits.table_elements
        held = memory + tables * elements * TABLE_ELEMENT_BYTES
        if held > self.max_memory_bytes:
            raise CapExceeded("max_memory_bytes", self.max_memory_bytes,
                              f"limits.memory_bytes = {memory} and {tables} table(s) of limits.table_elements = "
                              f"{elements} ({TABLE_ELEMENT_BYTES} bytes an element), {held} bytes in all",
                              f"lower limits.table_elements (the module's tables rarely need more than they "
                              f"declare) or limits.memory_bytes, so that they fit {self.max_memory_bytes} bytes "
                              f"(this node's max_memory_bytes), or use a node that allows more")
