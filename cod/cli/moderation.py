"""`cod moderation ...`: the moderator's queue and signed decisions."""

from __future__ import annotations

import click

from . import cli


@cli.group()
def moderation() -> None:
    """Moderate eligible jobs: look at the queue, approve or reject with a signed decision."""
