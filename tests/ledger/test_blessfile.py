"""Reading bless files (cod.ledger.blessfile): a Lotus StateMarketDeals dump blesses active, unslashed,
verified deals only, and deal IDs are ASCII decimal digits (the expected sets are written out by hand)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cod.ledger.blessfile import read
from tests.ledger.bkit import DATA, OTHER, cid

ACTIVE = {"SectorStartEpoch": 1000, "LastUpdatedEpoch": 2000, "SlashEpoch": -1}


def deal(label: str, state: Any = ACTIVE, verified: bool = True) -> dict[str, Any]:
    value: dict[str, Any] = {"Proposal": {"Label": label, "VerifiedDeal": verified}}
    if state is not None:
        value["State"] = state
    return value


def lotus(tmp_path: Path, deals: dict[str, Any]) -> Path:
    path = tmp_path / "deals.json"
    path.write_text(json.dumps(deals, ensure_ascii=False), encoding="utf-8")
    return path


def test_lotus_blesses_only_active_unslashed_verified_deals(tmp_path: Path) -> None:
    dead = [cid(f"dead {n}") for n in range(4)]
    path = lotus(tmp_path, {
        "7": deal(DATA),
        "8": deal(OTHER, {"SectorStartEpoch": 0, "LastUpdatedEpoch": 5, "SlashEpoch": -1}),  # active from epoch 0
        "9": deal(dead[0], {"SectorStartEpoch": -1, "LastUpdatedEpoch": -1, "SlashEpoch": -1}),  # never activated
        "10": deal(dead[1], {"SectorStartEpoch": 1000, "LastUpdatedEpoch": 3000, "SlashEpoch": 2500}),  # slashed
        "11": deal(dead[2], None),  # no State at all
        "12": deal(dead[3], {"SectorStartEpoch": "1000", "SlashEpoch": -1}),  # not an integer epoch
        "13": deal(dead[0], verified=False),
    })
    got = read(path, "lotus")
    assert got.mapping() == dict(sorted({DATA: [7], OTHER: [8]}.items()))
    assert got.skipped == {
        "verified deals never activated (SectorStartEpoch -1)": 1,
        "verified deals that were slashed": 1,
        "verified deals without a State": 1,
        "verified deals whose State has no integer SectorStartEpoch and SlashEpoch": 1,
        "deals that are not verified (FIL+)": 1,
    }


def test_deal_ids_are_ascii_digits_only(tmp_path: Path) -> None:
    # "٤٢" is Arabic-Indic 42 (int() takes it), "²" a superscript two (isdigit() says yes, int() raises)
    path = lotus(tmp_path, {"\u0664\u0662": deal(DATA), "\u00b2": deal(DATA), "+5": deal(DATA), " 6": deal(DATA),
                            "9223372036854775808": deal(DATA), "3": deal(OTHER)})
    got = read(path, "lotus")
    assert got.mapping() == {OTHER: [3]}
    assert got.skipped == {"deals whose ID is not a decimal deal ID": 5}
    csv_path = tmp_path / "b.csv"
    csv_path.write_text(f"cid,deals\n{DATA},\u0664\u0662\n{OTHER},\u00b2\n{cid('x')},5;6\n", encoding="utf-8")
    got = read(csv_path, "csv")
    assert got.mapping() == {cid("x"): [5, 6]}
    assert got.skipped == {"rows whose deals are not deal IDs": 2}
