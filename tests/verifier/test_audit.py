"""Random audits (verifier.audit, SPEC 11.4): agreed claims re-executed here, a share P of runs.

Real nodes on loopback (verifier.devstack), real keys, real wasmtime. The honest result is the
wordcount vector's (vectors/wordcount.json), computed by IPFS tools, not by the code under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cod.errors import UsageError
from cod.local import prepare
from verifier import Devstack, Records, verify
from verifier.audit import AUDIT_SCALE, check_share, chosen

from ..helpers import VECTORS, load_vector

WORDCOUNT = load_vector("wordcount")
HONEST = WORDCOUNT["expect"]["result_cid"]


def _wordcount() -> Any:
    return prepare(VECTORS / "wordcount.wasm", [], inputs=[str(VECTORS / "data" / "wordcount")])


async def test_an_audit_of_an_all_liar_agreement_fails_the_run_and_proves_every_signer(records: Records,
                                                                                    tmp_path: Path) -> None:
    """Three colluding keys sign one lie: voting says verified; an audit (P = 1) re-executes, gets
    the vector's result, and the run is audit-failed (exit 27) with all three proven liars."""
    async with Devstack(3, bad_nodes=3, base_dir=tmp_path / "stack") as stack:
        voted = await verify(_wordcount(), stack.urls, 3, records=records, referee="self")
        assert voted.outcome == "verified" and voted.result_cid != HONEST and voted.audit is None
        audited = await verify(_wordcount(), stack.urls, 3, records=records, referee="self", audit=1.0)
    signers = sorted(a.node_id for a in audited.answers)
    assert (audited.outcome, audited.result_cid, audited.exit_code) == ("audit-failed", None, 27)
    assert audited.liars == signers and all(liar in (audited.note or "") for liar in signers)
    assert audited.audit is not None and audited.audit["chosen"] and audited.audit["result_cid"] == HONEST
    assert audited.audit["p"] == 1.0 and audited.audit["refused"] is None and audited.audit["segment_fuel"] > 0
    assert audited.to_json()["audit"]["result_cid"] == HONEST and audited.referee is None
    assert all(status == "DISAGREES" for status, _ in
               [(n["status"], None) for n in audited.to_json()["nodes"]])
    (run,) = [r for r in records.runs(audited.job_cid) if r["outcome"] == "audit-failed"]
    assert run["extra"]["liars"] == signers and run["extra"]["audit"]["result_cid"] == HONEST
    # a fraud proof of each lie (SPEC 11.5), method "audit", kept beside the records
    assert len(audited.fraud_proofs) == 3
    kept = [json.loads((records.path.parent / "fraud" / f"{pid}.json").read_text()) for pid in audited.fraud_proofs]
    assert {p["referee"]["method"] for p in kept} == {"audit"} and {p["referee"]["result_cid"] for p in kept} == {HONEST}
    assert sorted(p["claim"]["statement"]["node"] for p in kept) == signers
    ranked = {row["node_id"]: row for row in records.nodes()}
    assert all(ranked[liar]["lied"] >= 1 for liar in signers)


async def test_an_audit_of_honest_nodes_confirms_and_an_unchosen_run_is_not_reexecuted(records: Records,
                                                                                    tmp_path: Path) -> None:
    async with Devstack(3, base_dir=tmp_path / "stack") as stack:
        confirmed = await verify(_wordcount(), stack.urls, 3, records=records, audit=1.0)
        skipped = await verify(_wordcount(), stack.urls, 3, records=records, audit=0.5, chooser=lambda p: False)
    assert (confirmed.outcome, confirmed.result_cid) == ("verified", HONEST) and confirmed.liars == []
    assert confirmed.audit is not None and confirmed.audit["result_cid"] == HONEST
    assert "as the nodes signed" in (confirmed.note or "")
    assert (skipped.outcome, skipped.result_cid) == ("verified", HONEST)
    assert skipped.audit == {"p": 0.5, "chosen": False, "result_cid": None, "job_fuel": None, "segment_fuel": None,
                             "refused": None}


async def test_an_audit_that_cannot_run_says_why_and_keeps_the_outcome(records: Records, tmp_path: Path) -> None:
    """An audit bounded below the job's fuel does not judge: the agreed (lying) result stands, nobody
    is called a liar, and the note says the bound ran out."""
    async with Devstack(3, bad_nodes=3, base_dir=tmp_path / "stack") as stack:
        bounded = await verify(_wordcount(), stack.urls, 3, records=records, audit=1.0, referee_fuel=1000)
    assert bounded.outcome == "verified" and bounded.liars == []
    assert bounded.audit is not None and bounded.audit["result_cid"] is None
    assert "fuel bound (1000 of the job's" in (bounded.audit["refused"] or "")
    assert "the audit did not judge" in (bounded.note or "")


def test_the_draw_audits_about_p_of_runs_and_never_or_always_at_the_ends() -> None:
    assert not any(chosen(0.0) for _ in range(1000)) and all(chosen(1.0) for _ in range(1000))
    hits = sum(chosen(0.25) for _ in range(4000))
    assert 700 < hits < 1300  # binomial(4000, 0.25): mean 1000, sd 27; the bounds are 11 sd away
    assert AUDIT_SCALE == 1 << 32 and chosen(0.5, lambda p: p == 0.5)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True])
def test_a_share_outside_0_to_1_is_a_usage_error(bad: float) -> None:
    with pytest.raises(UsageError, match="is not a share of runs"):
        check_share(bad)


def test_the_cli_refuses_an_audit_share_past_1_and_audit_without_verify() -> None:
    module = str(VECTORS / "hello.wasm")
    past = subprocess.run([sys.executable, "-m", "cod", "run", "--verify", "3", "--audit", "1.5", module],
                          capture_output=True, text=True, timeout=60)
    assert past.returncode == 2 and "1.5" in past.stderr and "Traceback" not in past.stderr
    alone = subprocess.run([sys.executable, "-m", "cod", "run", "--audit", "0.5", module],
                           capture_output=True, text=True, timeout=60)
    assert alone.returncode == 2 and "go with --verify N" in alone.stderr


def test_the_config_file_sets_the_audit_share_and_refuses_a_bad_one(tmp_path: Path) -> None:
    from cod.config import load
    from cod.errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text('[verify]\naudit = 0.25\nreferee = "none"\nreferee_bytes = "64KiB"\n')
    config = load({"COD_CONFIG": str(path)})
    assert (config.verify("audit"), config.verify("referee"), config.verify("referee_bytes")) == (0.25, "none", 65536)
    assert config.source("verify.audit") == f"file {path}"
    assert load({"COD_CONFIG": str(path), "COD_AUDIT": "1"}).verify("audit") == 1.0
    path.write_text("[verify]\naudit = 2\n")
    with pytest.raises(ConfigError, match="verify.audit"):
        load({"COD_CONFIG": str(path)})
    path.write_text("[verify]\nauditt = 0.1\n")
    with pytest.raises(ConfigError, match="the keys of \\[verify\\] are audit, referee, referee_bytes, referee_fuel"):
        load({"COD_CONFIG": str(path)})


def test_run_json_of_an_audit_failed_run_has_the_audit_object_and_exit_27(tmp_path: Path) -> None:
    """The CLI with --audit 1 against three colluding liars: exit 27, JSON audit and liars."""
    proc = subprocess.Popen([sys.executable, "-m", "cod", "devstack", "--nodes", "3", "--bad-nodes", "3",
                             "--base-dir", str(tmp_path / "stack")], stdout=subprocess.PIPE, text=True)
    try:
        urls = []
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip().startswith("export COD_NODES="):
                urls = line.strip().split("=", 1)[1].split(",")
                break
        assert len(urls) == 3
        (tmp_path / "empty.toml").write_text("")
        env = {"COD_CONFIG": str(tmp_path / "empty.toml"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
        run = subprocess.run([sys.executable, "-m", "cod", "run", "--verify", "3", "--audit", "1", "--json",
                              *[arg for url in urls for arg in ("--node", url)], "--output-dir", str(tmp_path / "o"),
                              str(VECTORS / "wordcount.wasm"), "-i", str(VECTORS / "data" / "wordcount")],
                             capture_output=True, text=True, timeout=120, env=env)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert run.returncode == 27, run.stderr
    view = json.loads(run.stdout)
    assert view["outcome"] == "audit-failed" and view["audit"]["result_cid"] == HONEST and len(view["liars"]) == 3
