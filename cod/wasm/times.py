"""Timestamps a job sets (SPEC 4.5): kept by cod for the run, never written to the host.

``fd_filestat_set_times`` and ``path_filestat_set_times`` store atim and mtim here; filestat
shows them back; every time never set is the spec's ``clock.epoch_ns``. The store belongs to
the file, not its name: it is keyed by the host file's identity (:func:`identity`), so a rename
keeps a file's times and every hard link of it shows the same ones. Nothing in it reaches the
host's files, the results tree or the result CID.

Host inode numbers are reused once a file is gone, so the WASI layer forgets a key when its
file stops existing (its last name removed and no fd open on it): a new file never shows an
old file's times.
"""

from __future__ import annotations

import os

Key = tuple[int, int]


def identity(info: os.stat_result) -> Key:
    """The key of a host file in the store: (st_dev, st_ino), equal for all names of one file."""
    return info.st_dev, info.st_ino


class TimeStore:
    """atim and mtim of the files whose times the job set."""

    def __init__(self, epoch_ns: int) -> None:
        self.epoch_ns = epoch_ns
        self._times: dict[Key, tuple[int, int]] = {}

    def get(self, key: Key) -> tuple[int, int]:
        """(atim, mtim): as set, or the epoch for a time never set."""
        return self._times.get(key, (self.epoch_ns, self.epoch_ns))

    def set(self, key: Key, atim: int | None, mtim: int | None) -> None:
        """Set either time (None keeps it)."""
        if atim is None and mtim is None:
            return
        old_atim, old_mtim = self.get(key)
        self._times[key] = (old_atim if atim is None else atim, old_mtim if mtim is None else mtim)

    def forget(self, key: Key) -> None:
        self._times.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._times

    def __len__(self) -> int:
        return len(self._times)
