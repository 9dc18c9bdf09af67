"""The ``cod`` command: click shells over the library, nothing more.

    run        a job: locally, or on N nodes with --verify N (cli/run.py)
    serve      a compute node; devstack: a local network of them (cli/network.py)
    get, describe, list, nodes: the requester's records (cli/network.py)
    cid, profile: tools (cli/tools.py)
"""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import CodError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cod")
def cli() -> None:
    """cod: verifiable compute over data.

    Runs WebAssembly (WASI preview1) jobs where nothing but the job spec can shape the
    result, names each result by its IPFS UnixFS CID, and proves it by the agreement of
    independent nodes that sign their answers.
    """


def main() -> None:
    """Entry point: a CodError becomes one line on stderr and its exit code."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CodError as exc:
        click.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        sys.exit(exc.code)
    except KeyboardInterrupt:
        sys.exit(130)


from . import network, run, tools  # noqa: E402,F401  (they register their commands on cli)

__all__ = ["cli", "main"]
