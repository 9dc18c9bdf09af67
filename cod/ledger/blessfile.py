"""Reading lists of blessed inputs: a JSON list, a CSV file, or a Lotus StateMarketDeals dump.

    JSON list   ["bafy...", {"cid": "bafy...", "deals": [12, 34]}, ...]
    CSV         a header row with a ``cid`` column, optionally ``deal`` or ``deals`` (IDs separated
                by spaces or semicolons)
    Lotus       the JSON object `lotus state market deals` prints (the StateMarketDeals API):
                deal ID -> {"Proposal": {"Label": payload CID (a string or {"/": CID}),
                "VerifiedDeal": bool, ...}, "State": {"SectorStartEpoch", "SlashEpoch", ...}}; only
                verified deals that are active (SectorStartEpoch >= 0: the sector was proven) and
                not slashed (SlashEpoch -1) count, and the payload CID is the proposal's Label

Every CID is parsed and written in its canonical form. What cannot be used (an unverified
or inactive deal, a label that is not a CID, a deal ID that is not ASCII decimal digits) is
skipped and counted, so the user sees what was left out; a file that is none of the three is an error.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..content.cid import CID
from ..errors import CIDError, CodError, InputError, SpecError
from ..jobspec import load_json

FORMATS = ("auto", "json", "csv", "lotus")
MAX_FILE_BYTES = 4 << 30
"""Largest bless file read (a full mainnet StateMarketDeals dump is a few GB)."""
MAX_DEAL_ID = (1 << 63) - 1
_DEAL_ID = re.compile(r"[0-9]{1,19}", re.ASCII)
"""A deal ID as text: ASCII digits only (str.isdigit and int() also take other scripts' digits, and '²')."""
NOT_ACTIVATED = -1
"""Lotus's SectorStartEpoch of a deal whose sector was never proven, and SlashEpoch of an unslashed one."""


@dataclass
class Blessings:
    """What a file blesses: CID -> deal IDs, and what was skipped (reason -> count)."""

    inputs: dict[str, set[int]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    source: str = "list"

    def add(self, cid: str, deals: list[int] = []) -> None:  # noqa: B006 (never mutated)
        self.inputs.setdefault(cid, set()).update(deals)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def mapping(self) -> dict[str, list[int]]:
        return {cid: sorted(deals) for cid, deals in sorted(self.inputs.items())}


def _cid(value: Any) -> str | None:
    if isinstance(value, dict) and set(value) == {"/"}:
        value = value["/"]
    if not isinstance(value, str):
        return None
    try:
        return str(CID.parse(value.strip()))
    except CIDError:
        return None


def read(path: Path, fmt: str = "auto") -> Blessings:
    """Read ``path`` in ``fmt`` (auto: Lotus if a JSON object, a JSON list, else CSV).

    Raises InputError if the file cannot be read or is none of the formats.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc.strerror}", "give a JSON, CSV or Lotus deals file") from None
    if len(raw) > MAX_FILE_BYTES:
        raise InputError(f"{str(path)!r} is over {MAX_FILE_BYTES} bytes", "split it into several imports")
    stripped = raw.lstrip()
    if fmt == "auto":
        fmt = "lotus" if stripped.startswith(b"{") else "json" if stripped.startswith(b"[") else "csv"
    if fmt == "csv":
        return _csv(raw, path)
    try:
        value = load_json(raw)
    except SpecError as exc:
        raise InputError(f"{str(path)!r} is not JSON: {exc.message}",
                         "give a JSON list of CIDs, a CSV with a cid column, or a Lotus StateMarketDeals dump") from None
    return _lotus(value, path) if fmt == "lotus" else _json(value, path)


def _json(value: Any, path: Path) -> Blessings:
    if not isinstance(value, list):
        raise InputError(f"{str(path)!r} is not a JSON list", "a JSON bless file is [\"bafy...\", ...]")
    out = Blessings(source="list")
    for item in value:
        deals: list[int] = []
        if isinstance(item, dict):
            raw_deals = item.get("deals", [])
            if not isinstance(raw_deals, list) or not all(type(d) is int and 0 <= d <= MAX_DEAL_ID for d in raw_deals):
                out.skip("deals that are not a list of deal IDs")
                continue
            deals, item = raw_deals, item.get("cid")
        cid = _cid(item)
        if cid is None:
            out.skip("entries that are not CIDs")
            continue
        out.add(cid, deals)
    return out


def _csv(raw: bytes, path: Path) -> Blessings:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{str(path)!r} is not UTF-8 text", "save the CSV as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if "cid" not in fields:
        raise InputError(f"{str(path)!r} has no 'cid' column", "a CSV bless file starts with a header row: cid[,deals]")
    reader.fieldnames = fields
    out = Blessings(source="list")
    for row in reader:
        cid = _cid(row.get("cid"))
        if cid is None:
            out.skip("rows whose cid is not a CID")
            continue
        text_deals = (row.get("deals") or row.get("deal") or "").replace(";", " ").split()
        if not all(deal_id(d) is not None for d in text_deals):
            out.skip("rows whose deals are not deal IDs")
            continue
        out.add(cid, [int(d) for d in text_deals])
    return out


def deal_id(text: str) -> int | None:
    """A deal ID written in ASCII decimal digits, at most MAX_DEAL_ID; None for anything else."""
    if not _DEAL_ID.fullmatch(text):
        return None
    number = int(text)
    return number if number <= MAX_DEAL_ID else None


def _epoch(value: Any) -> int | None:
    return value if type(value) is int else None


def _inactive(state: Any) -> str | None:
    """Why a deal's State says it holds no live FIL+ data (None: active and unslashed)."""
    if not isinstance(state, dict):
        return "verified deals without a State"
    start, slash = _epoch(state.get("SectorStartEpoch")), _epoch(state.get("SlashEpoch"))
    if start is None or slash is None:
        return "verified deals whose State has no integer SectorStartEpoch and SlashEpoch"
    if start < 0:
        return "verified deals never activated (SectorStartEpoch -1)"
    if slash != NOT_ACTIVATED:
        return "verified deals that were slashed"
    return None


def _lotus(value: Any, path: Path) -> Blessings:
    if not isinstance(value, dict):
        raise InputError(f"{str(path)!r} is not a StateMarketDeals object", "lotus state market deals prints one")
    out = Blessings(source="lotus-state-market-deals")
    for key, deal in value.items():
        proposal = deal.get("Proposal") if isinstance(deal, dict) else None
        if not isinstance(proposal, dict):
            out.skip("deals without a Proposal")
            continue
        if proposal.get("VerifiedDeal") is not True:
            out.skip("deals that are not verified (FIL+)")
            continue
        number = deal_id(key)
        if number is None:
            out.skip("deals whose ID is not a decimal deal ID")
            continue
        why = _inactive(deal.get("State"))
        if why is not None:
            out.skip(why)
            continue
        cid = _cid(proposal.get("Label"))
        if cid is None:
            out.skip("verified deals whose Label is not a CID")
            continue
        out.add(cid, [number])
    return out


__all__ = ["Blessings", "FORMATS", "read", "CodError"]
