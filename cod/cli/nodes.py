"""The nodes this requester knows."""

from __future__ import annotations

import click


@click.command()
def nodes() -> None:
    """List the nodes this requester knows, with their records."""
    from verifier.reputation import Records

    for row in Records().nodes():
        click.echo(f"{row['node_id']}  {row['url']:<28} agreed {row['agreed'] or 0}  disagreed {row['disagreed'] or 0}"
                   f"  failed {row['failed'] or 0}  bad signatures {row['bad_signature'] or 0}")
