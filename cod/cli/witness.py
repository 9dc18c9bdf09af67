"""`cod ledger witness`: run a C2SP tlog-witness for one or more logs (cod/ledger/witness.py)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from .options import AsciiInt


@click.command("witness")
@click.option("--data-dir", type=click.Path(file_okay=False), required=True,
              help="Where the witness keeps its key (witness.key) and what it last cosigned.")
@click.option("--log", "logs", multiple=True, required=True, metavar="VKEY",
              help="The vkey of a log to witness, as `cod ledger info` prints it (repeatable).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=AsciiInt(0, 65535), default=0, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--name", default=None, help="The witness's key name (default: cod-witness/<its key's ID>).")
def witness(data_dir: str, logs: tuple[str, ...], host: str, port: int, name: str | None) -> None:
    """Cosign checkpoints of the given logs, each only if consistent with the last one cosigned.

    Prints the witness's cosigner vkey (give it to the ledger: --witness VKEY=URL) and its URL,
    then serves until interrupted.

    \b
    Example:
      cod ledger witness --data-dir ./witness --log "$(cod ledger info --json | jq -r .vkey)" --port 8091
    """
    from ..ledger.witness import start_witness
    from ..web.server import until_interrupted

    async def main() -> None:
        running = await start_witness(Path(data_dir), list(logs), host, port, name)
        click.echo(running.witness.vkey)
        click.echo(f"cod witness {running.witness.name} serving on {running.url}")
        sys.stdout.flush()  # a supervising process reads these lines through a pipe
        try:
            await until_interrupted()
        finally:
            await running.stop()

    asyncio.run(main())
