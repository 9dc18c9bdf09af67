"""`cod moderation` against the ``net`` fixture (tests/cli/conftest.py): a real devstack with a
liar and a real ledger. Evidence anyone can post is drawn as safe text; jobs are named by short ID."""

from __future__ import annotations

import json

from .conftest import WORDCOUNT, Net

EVIL = "\x1b[2J\x1b]52;c;ZXZpbA==\x07\x1b[8m\ndecision:    entry 1: approve by 12D3KooWfake\u202e"


def test_show_draws_job_args_from_evidence_as_safe_text(net: Net) -> None:
    ran = net.cod("run", "--json", "--verify", "4", "--quorum", "3", *WORDCOUNT, "--", EVIL)
    assert ran.returncode == 0, ran.stderr
    job = json.loads(ran.stdout)["job_cid"]
    shown = net.cod("moderation", "show", job)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "\u202e" not in shown.stdout
    decisions = [line for line in shown.stdout.splitlines() if line.startswith("decision:")]
    assert decisions == []  # no decision was made: the forged line is part of the args line
    assert json.loads(net.cod("moderation", "show", job, "--json").stdout)["eligibility"]["spec"]["args"][-1] == EVIL


def test_show_approve_and_reject_take_the_short_id_the_queue_shows(net: Net) -> None:
    queue = json.loads(net.cod("moderation", "queue", "--json").stdout)
    (row,) = [r for r in queue if r["job"] == net.quorum["job_cid"]]
    short = row["short_id"]
    assert short and net.quorum["job_cid"].endswith(short) is False and short in net.quorum["job_cid"]
    assert short in net.cod("moderation", "queue").stdout
    for name in (short, short.upper(), str(net.quorum["job_cid"])[:20]):
        shown = net.cod("moderation", "show", name, "--json")
        assert shown.returncode == 0, (name, shown.stderr)
        assert json.loads(shown.stdout)["job"] == net.quorum["job_cid"]
    unknown = net.cod("moderation", "show", "zzzzzzzz")
    assert unknown.returncode == 17 and "short ID" in unknown.stderr and "Traceback" not in unknown.stderr
    key = str(net.tmp / "moderator.key")
    approved = net.cod("moderation", "approve", short, "--datacap", "1GiB", "--reason", "ok", "--key", key)
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith(f"approved job {net.quorum['job_cid']}")
    rejected = net.cod("moderation", "reject", str(net.quorum["job_cid"]), "--reason", "on second thought",
                       "--key", key)
    assert rejected.returncode == 0, rejected.stderr
    assert rejected.stdout.startswith(f"rejected job {net.quorum['job_cid']}")  # not "rejectd"


def test_show_of_an_ineligible_job_says_it_has_no_result_not_none(net: Net) -> None:
    shown = net.cod("moderation", "show", str(net.mismatch["job_cid"]))  # the run reported its evidence
    assert shown.returncode == 0, shown.stderr
    assert "None" not in shown.stdout and "not eligible" in shown.stdout
