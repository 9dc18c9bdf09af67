"""Attacks on node keys (cod.identity): a key file the host cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest

from cod.errors import KeyFileError
from cod.identity import Identity


def test_a_key_file_the_host_cannot_read_is_a_key_file_error() -> None:
    with pytest.raises(KeyFileError):
        Identity.from_key_file(Path("/proc/self/mem"))
