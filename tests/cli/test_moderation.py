"""`cod moderation` against the ``net`` fixture (tests/cli/conftest.py): a real devstack with a
liar and a real ledger. Evidence anyone can post is drawn as safe text; jobs are named by short ID."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from cod.ledger.log import Ledger
from cod.ledger.note import Signer, vkey_of
from cod.ledger.server import start_ledger
from cod.ledger.trust import KNOWN_FILE

from ..hostile_ledger import HostileLedger
from ..ledger.bkit import RESULT, ROOTS
from .conftest import WORDCOUNT, Net, Served

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


# -- Stage 9 point 18: a moderator signs what the log holds, not what the ledger (or a proxy) answers --------

def _decisions(served: Served, job: str) -> list[dict[str, Any]]:
    return list(served.running.ledger.job(job)["decisions"])


def _job_answer_of(served: Served, of: str, **changes: Any) -> bytes:
    return json.dumps(dict(served.running.ledger.job(of), **changes)).encode()


@pytest.mark.parametrize("lie", ["another job's record", "another job's eligibility under this job's name"])
async def test_approve_refuses_a_proxy_that_answers_another_job(served: Served, lie: str) -> None:
    a, b = served.a, served.b
    forged = _job_answer_of(served, b) if lie == "another job's record" else _job_answer_of(served, b, job=a)

    def patch(path: str, status: int, body: bytes) -> bytes:
        return forged if path == f"/v1/jobs/{a}" else body

    size = served.running.ledger.size
    async with HostileLedger(served.running.url, patch) as proxy:
        done = await served.approve(a, proxy.url)
    assert done.returncode == 24, (done.stdout, done.stderr)  # AuditFailed: the answer is not the log's
    assert "Traceback" not in done.stderr and "nothing was signed" in done.stderr
    assert proxy.posts == [] and served.running.ledger.size == size
    assert _decisions(served, a) == [] and _decisions(served, b) == []


async def test_approve_refuses_a_forged_inclusion_proof_or_a_checkpoint_of_another_key(served: Served) -> None:
    a, b = served.a, served.b
    b_entry = served.running.ledger.job(b)["eligibility"]["entry"]
    b_leaf = served.running.ledger.inclusion(b_entry)["leaf"]
    other = nacl.signing.SigningKey(bytes([77]) * 32)
    origin = served.running.ledger.origin

    def forged_leaf(path: str, status: int, body: bytes) -> bytes:  # B's leaf on A's path
        if path.startswith("/v1/proof/inclusion"):
            return json.dumps(dict(json.loads(body), leaf=b_leaf)).encode()
        return body

    def other_key(path: str, status: int, body: bytes) -> bytes:  # a checkpoint signed by the proxy's key
        if path.startswith("/v1/proof/inclusion"):
            answer = json.loads(body)
            text = answer["checkpoint"].split("\n\n")[0] + "\n"
            return json.dumps(dict(answer, checkpoint=Signer(origin, other).sign(text))).encode()
        return body

    for patch, words in ((forged_leaf, "is not in the log's signed tree"), (other_key, "is not signed by the log key")):
        async with HostileLedger(served.running.url, patch) as proxy:
            done = await served.approve(a, proxy.url, "--vkey", served.vkey)
        assert done.returncode == 24 and words in done.stderr, (patch, done.stderr)
        assert proxy.posts == [] and _decisions(served, a) == []


async def test_approve_trusts_the_log_key_on_first_use_and_refuses_another_later(served: Served,
                                                                                 tmp_path: Path) -> None:
    other = Ledger.init(tmp_path / "other", [ROOTS[0].node_id], 1, origin="other.example/ledger")
    other.close()
    impostor = await start_ledger(tmp_path / "other")
    try:
        async with HostileLedger(served.running.url) as proxy:  # one URL, whichever ledger is behind it
            first = await served.approve(served.a, proxy.url)
            assert first.returncode == 0, first.stderr
            known = (tmp_path / "config" / "cod" / KNOWN_FILE).read_text()
            assert known == f"{proxy.url} {served.vkey}\n"
            assert "trusted on first use" in first.stderr
            # what it signed, shown before signing: the job, the result, the decision and the DataCap
            (decision,) = _decisions(served, served.a)
            for words in (served.a, RESULT, f"approve with {1 << 40} bytes (1 TiB) of DataCap"):
                assert words in first.stderr, (words, first.stderr)
            assert (decision["job"], decision["result"], decision["datacap"]) == (served.a, RESULT, 1 << 40)
            proxy.backend = impostor.url  # another ledger, another log key, at the same URL
            second = await served.approve(served.b, proxy.url)
            assert second.returncode == 24, second.stderr
            assert "saved for it" in second.stderr and "remove the line" in second.stderr
            assert "Traceback" not in second.stderr and _decisions(served, served.b) == []
            assert proxy.posts == ["/v1/decisions"]  # only the first approval was posted
    finally:
        await impostor.stop()


async def test_approve_refuses_a_ledger_whose_key_is_not_the_pinned_one(served: Served, tmp_path: Path) -> None:
    wrong = vkey_of("test.example/ledger", nacl.signing.SigningKey(bytes([78]) * 32).verify_key.encode())
    done = await served.approve(served.a, served.running.url, "--vkey", wrong)
    assert done.returncode == 24 and "pinned by --vkey" in done.stderr, done.stderr
    assert _decisions(served, served.a) == []
    (tmp_path / "config" / "cod").mkdir(parents=True)
    (tmp_path / "config" / "cod" / "config.toml").write_text(f'ledger_vkey = "{wrong}"\n')
    done = await served.approve(served.a, served.running.url)
    assert done.returncode == 24 and "pinned by file" in done.stderr, done.stderr
    assert _decisions(served, served.a) == []
    done = await served.approve(served.a, served.running.url, "--vkey", served.vkey)  # --vkey wins over the file
    assert done.returncode == 0, done.stderr


async def test_approve_of_a_long_name_that_is_not_a_cid_is_a_usage_error(served: Served) -> None:
    done = await served.approve("b" + "!" * 60, served.running.url)
    assert done.returncode == 2 and "is not a job CID" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert _decisions(served, served.a) == [] and _decisions(served, served.b) == []
