from __future__ import annotations

import json
import os
import stat

import click

from ..content.unixfs import cid_of_tree
from ..errors import InputError
from ..wasm.engine import ENGINE_SETTINGS, MODULE_TRANSFORM, WASI_CONTRACT, profile_id, wasmtime_version


@click.command()
@click.argument("path", type=click.Path(exists=True))
def cid(path: str) -> None:
    """Print the UnixFS CID (unixfs-v1-2025 profile) of a file or directory.

    The same CID as `ipfs add --cid-version 1 --raw-leaves` and ipfs-car compute.

    \b
    Examples:
      cod cid vectors/hello.wasm
      cod cid vectors/data/wordcount
    """
    mode = os.stat(path).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a FIFO would block, /dev/zero never end
        raise InputError(f"{path!r} is neither a file nor a directory", "cod cid hashes files and directories")
    click.echo(str(cid_of_tree(path)))


@click.command()
def profile() -> None:
    """Print the execution profile ID and the engine settings behind it.

    Nodes of different profiles may disagree without lying (outcome profile-mismatch).

    \b
    Example:
      cod profile
    """
    click.echo(json.dumps({"profile": profile_id(), "wasmtime": wasmtime_version(), "settings": ENGINE_SETTINGS,
                           "wasi_contract": WASI_CONTRACT, "module_transform": MODULE_TRANSFORM},
                          indent=2, sort_keys=True))
