"""`cod ledger ...`: the FIL+ moderation ledger (service, audit, blessings, governance)."""

from __future__ import annotations

import click

from . import cli


@cli.group()
def ledger() -> None:
    """The FIL+ moderation ledger: a transparency log of blessings, eligibility and decisions."""


@ledger.group()
def bless() -> None:
    """Blessed inputs: CIDs that hold FIL+ data."""


@ledger.group()
def moderator() -> None:
    """The moderator set, governed by the root key holders (K of them sign a change)."""
from . import witness  # noqa: E402,F401  (registers `cod ledger witness`)
