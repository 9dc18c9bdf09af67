"""``cod add``: content into the requester's local store, by CID."""

from __future__ import annotations

import json

import click

from ..content.store import ContentStore


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-q", "--quiet", is_flag=True, help="Print only the CIDs, one a line.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: path -> CID.")
def add(paths: tuple[str, ...], quiet: bool, as_json: bool) -> None:
    """Store files or directories by CID; print the CIDs.

    As `ipfs add --cid-version 1 --raw-leaves` would name them. `cod run CID`, `-i CID[:DST]`
    and modules imported by CID look in the store first ($COD_STORE, else $COD_HOME/store,
    else ~/.local/share/cod/store); a verified run uploads from it to nodes that lack it.

    \b
    Examples:
      cod add data/            # prints: added bafybei... data/
      cod run --verify 3 -i bafybei...:/data wordcount.wasm
      cod add -q lib.wasm
    """
    store = ContentStore()
    added = {path: store.add(path) for path in paths}
    if as_json:
        click.echo(json.dumps(added, indent=2, sort_keys=True))
        return
    for path, cid in added.items():
        click.echo(cid if quiet else f"added {cid} {path}")
