"""Virtual limits shared by the WASI layer, the importer, the exporter and the node.

Whatever a job can produce must be hashable, downloadable and re-importable, and whatever
can be imported must be mountable; so the executor, the UnixFS importer and exporter, the
CAR unpacker and the node all check these same numbers, before the host is asked. None of
them may be decided by a host limit (PATH_MAX, a file system's maximum file size, IOV_MAX,
the Python recursion limit): each is chosen below every host cod supports.
"""

from __future__ import annotations

MAX_NAME_BYTES = 255
"""Longest entry name, in UTF-8 bytes (NAME_MAX of every common file system)."""

MAX_PATH_BYTES = 1024
"""Longest virtual path a job can name or create (mount path + ``/``-joined components)."""

MAX_TREE_DEPTH = 256
"""Deepest entry of a tree, counted in components from its root (the root's children are at
depth 1). Holds for input trees, results directories (``outputs/`` is at depth 1, so a job's
output entries have at most 255 components) and every UnixFS DAG cod imports or exports."""

MAX_FILE_SIZE = 1 << 40
"""Largest size (and largest file offset) of a file a job can make or seek to: 1 TiB, below
ext4's 16 TiB (4 KiB blocks); tmpfs, xfs and btrfs allow more, so no host decides."""

MAX_IOVECS = 1024
"""Most iovecs in one fd_read/fd_write/fd_pread/fd_pwrite call (Linux's IOV_MAX)."""

MAX_SYMLINK_HOPS = 32
"""Most symlinks followed while resolving one path."""

MAX_INPUTS = 1024
"""Most inputs of one job spec (SPEC 2): refused by the spec parser, so a node's 409 ``missing``
list (SPEC 9.5) is bounded by MAX_JOB_CIDS and a requester can read any node's answer whole."""

MAX_TABLES = 8
"""Most tables one module defines (SPEC 5.3): LLVM (C, C++, Rust) emits one, wasm-bindgen-style code two."""

MAX_MODULES = 64
"""Most modules in one closure of modules by CID, the root included (SPEC 5.4)."""

MAX_JOB_CIDS = MAX_INPUTS + MAX_MODULES + 1
"""Most distinct CIDs one job can name, so the longest 409 ``missing`` list: its inputs, its
module and the modules of its closure, its output base."""

TABLE_ELEMENT_BYTES = 8
"""Host bytes one table element takes in wasmtime: a funcref (``*mut VMFuncRef``) or an
externref slot, one pointer on a 64-bit host; a ``table.grow`` of 2^26 elements measured
550 MiB of RSS (512 MiB of entries). A node counts tables in a job's memory (SPEC 5.3, 9.3)."""

MIN_CHECKPOINT_INTERVAL = 1 << 16
"""Least fuel between two execution checkpoints a node computes (SPEC 11.7): a query for a
finer trace is refused, so a dispute never makes a node hash its state every few instructions."""

MAX_CHECKPOINTS = 4096
"""Most checkpoints of one trace (SPEC 11.7): a node refuses an interval that would give more."""
