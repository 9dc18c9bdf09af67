"""Eligibility rules (SPEC.md 12.5), in order, with their exact reasons; malformed evidence refused."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cod.ledger.entries import EntryRefused
from cod.ledger.evidence import MAX_PER_RESULT, MAX_RESULTS, MAX_STATEMENTS, judge
from cod.statement import Statement
from tests.ledger.bkit import DATA, NODES, OTHER, PROFILE, RESULT, RESULT_B, agreeing, cid, job_of, key, spec, statement

BLESSED = {DATA: 3}


def blessed(c: str) -> int | None:
    return BLESSED.get(c)


def verdict(spec_json: dict[str, Any], statements: list[dict[str, Any]]) -> tuple[bool, str | None]:
    j = judge(spec_json, statements, blessed)
    return j.eligible, j.reason


def refusal(spec_json: Any, statements: Any) -> EntryRefused:
    with pytest.raises(EntryRefused) as info:
        judge(spec_json, statements, blessed)
    assert info.value.status == 422
    return info.value


def test_eligible_names_result_nodes_and_blessings() -> None:
    s = spec(DATA)
    st = [statement(s, NODES[0]), statement(s, NODES[1]), statement(s, NODES[2], RESULT_B)]
    j = judge(s, st, blessed)
    assert (j.eligible, j.reason, j.result) == (True, None, RESULT)
    assert j.nodes == tuple(sorted([NODES[0].node_id, NODES[1].node_id]))
    assert j.blessings == {DATA: 3}
    assert [x["statement"]["node"] for x in j.statements] == sorted(n.node_id for n in NODES[:3])
    assert j.job == job_of(s)


def test_rules_in_order() -> None:
    docker = spec(DATA, engine="docker")
    assert verdict(docker, agreeing(docker, 3)) == (False, "docker jobs are unverifiable")
    s = spec(DATA)
    assert verdict(s, agreeing(s, 1)) == (False, "single-node job: at least two nodes must agree")
    two_two = [statement(s, NODES[0]), statement(s, NODES[1]), statement(s, NODES[2], RESULT_B),
               statement(s, NODES[3], RESULT_B)]
    ok, reason = verdict(s, two_two)
    assert not ok and reason == ("mismatch: no result is signed by a strict majority of at least two nodes: "
                                 f"{min(RESULT, RESULT_B)} (2 of 4), {max(RESULT, RESULT_B)} (2 of 4)")
    assert verdict(s, [statement(s, NODES[0]), statement(s, NODES[1], RESULT_B)])[1].startswith("mismatch: ")
    failed = [statement(s, n, exit_code=3) for n in NODES[:2]]
    assert verdict(s, failed) == (False, "the job failed (exit code 3)")
    trapped = [statement(s, n, exit_code=0, trap="unreachable") for n in NODES[:2]]
    assert verdict(s, trapped) == (False, "the job failed (trap unreachable)")
    local = spec(DATA, local="/data/set")
    assert verdict(local, agreeing(local)) == (False, "input inputs[1] is a node-local path (/data/set), "
                                                      "not FIL+ data")
    other = spec(DATA, OTHER)
    assert verdict(other, agreeing(other)) == (False, f"input CID {OTHER} is not blessed FIL+ data")
    base = spec(DATA, output_base=OTHER)
    assert verdict(base, agreeing(base)) == (False, f"input CID {OTHER} is not blessed FIL+ data")
    none = spec()
    assert verdict(none, agreeing(none)) == (False, "the job reads no FIL+ data")
    # an earlier rule wins: docker and single-node -> docker
    assert verdict(docker, agreeing(docker, 1))[1] == "docker jobs are unverifiable"
    # mismatch before a failed exit code, failure before unblessed inputs
    assert verdict(other, [statement(other, n, exit_code=1) for n in NODES[:2]])[1] == "the job failed (exit code 1)"


def test_strict_majority_of_at_least_two() -> None:
    s = spec(DATA)
    two_of_three = [statement(s, NODES[0]), statement(s, NODES[1]), statement(s, NODES[2], RESULT_B)]
    assert verdict(s, two_of_three)[0]
    three_of_four = two_of_three + [statement(s, NODES[3])]
    assert verdict(s, three_of_four)[0]


def test_malformed_evidence_is_refused() -> None:
    s = spec(DATA)
    good = agreeing(s)
    assert "does not parse" in refusal({"module": "nope"}, good).message
    assert "not a JSON object" in refusal([], good).message
    assert "non-empty list" in refusal(s, []).message
    assert "non-empty list" in refusal(s, {"a": 1}).message
    other_job = agreeing(spec(OTHER))
    assert "is for job" in refusal(s, [good[0], other_job[1]]).message
    assert "two statements of node" in refusal(s, [good[0], statement(s, NODES[0], RESULT_B)]).message
    assert f"at most {MAX_STATEMENTS}" in refusal(s, [good[0]] * (MAX_STATEMENTS + 1)).message
    forged = copy.deepcopy(good)
    forged[1]["statement"]["result"] = RESULT_B
    exc = refusal(s, forged)
    assert exc.error == "BadSignature" and NODES[1].node_id in exc.message
    # a statement signed by one key naming another node
    impostor = statement(s, key(66))
    impostor["statement"]["node"] = NODES[3].node_id
    assert refusal(s, [good[0], impostor]).error == "BadSignature"
    for field, value in (("exit_code", True), ("exit_code", -1), ("fuel_used", "1"), ("trap", 5), ("profile", ""),
                         ("result", "not a cid"), ("node", "12D3KooWx")):
        bad_one = copy.deepcopy(good)
        bad_one[0]["statement"][field] = value
        exc = refusal(s, bad_one)
        assert exc.error == "BadEvidence" and "statements[0]" in exc.message, (field, value)
    extra = copy.deepcopy(good)
    extra[0]["statement"]["extra"] = 1
    assert refusal(s, extra).error == "BadEvidence"


def test_spec_is_stored_as_cod_writes_it() -> None:
    s = spec(DATA)
    short = {k: v for k, v in s.items() if k not in ("limits", "clock", "entry_point")}
    j = judge(short, agreeing(s), blessed)  # the same job: defaults fill in
    assert j.eligible and j.spec == s and j.job == job_of(s)


def test_judge_without_signature_checks_skips_only_signatures() -> None:
    s = spec(DATA)
    forged = agreeing(s)
    for item in forged:  # both: agreeing statements must also agree on fuel (rule 4)
        item["statement"]["fuel_used"] = 1
    assert judge(s, forged, blessed, check_signatures=False).eligible
    with pytest.raises(EntryRefused):
        judge(s, forged, blessed)
    assert cid("x") not in BLESSED


def signed_by(spec_json: dict[str, Any], n: int, **fields: Any) -> dict[str, Any]:
    """A statement of node key(n) with the fields of bkit.statement, some replaced."""
    body = {"job": job_of(spec_json), "result": RESULT, "node": key(n).node_id, "profile": PROFILE, "exit_code": 0,
            "trap": None, "fuel_used": 1234, **fields}
    return Statement(**body).sign(key(n)).to_json()


@pytest.mark.parametrize("fields, reason", [
    ({"exit_code": 3}, "the job failed (exit code 3)"),
    ({"trap": "unreachable"}, "the job failed (trap unreachable)"),
    ({"profile": "another-profile"}, "the agreeing statements differ in profile"),
    ({"fuel_used": 99}, "the agreeing statements differ in fuel_used"),
])
def test_every_agreeing_statement_is_checked(fields: dict[str, Any], reason: str) -> None:
    # the odd statement is signed by the key that sorts last, so checking only the first would pass it
    s = spec(DATA)
    keys = sorted((40, 41, 42), key=lambda n: key(n).node_id)
    sts = [signed_by(s, keys[0]), signed_by(s, keys[1]), signed_by(s, keys[2], **fields)]
    ok, why = verdict(s, sts)
    assert not ok and why is not None and why.startswith(reason), why
    assert verdict(s, sts[:2]) == (True, None)


def test_an_output_base_alone_is_no_fil_plus_input() -> None:
    # SPEC 9.7: a FIL+ job has at least one input; the output base is where outputs start
    base_only = spec(output_base=DATA)
    assert verdict(base_only, agreeing(base_only)) == (False, "the job reads no FIL+ data")
    with_input = spec(DATA, output_base=DATA)
    assert verdict(with_input, agreeing(with_input)) == (True, None)


def test_evidence_holds_a_bounded_set_per_result() -> None:
    s = spec(DATA)
    assert MAX_PER_RESULT * MAX_RESULTS <= MAX_STATEMENTS
    nine = [signed_by(s, 100 + n) for n in range(MAX_PER_RESULT + 1)]
    exc = refusal(s, nine)
    assert exc.error == "EvidenceFull" and f"at most {MAX_PER_RESULT} per result" in exc.message
    results = [cid(f"result {n}") for n in range(MAX_RESULTS + 1)]
    many = [signed_by(s, 100 + n, result=r) for n, r in enumerate(results)]
    exc = refusal(s, many)
    assert exc.error == "EvidenceFull" and f"at most {MAX_RESULTS} distinct results" in exc.message
    assert not judge(s, many[:MAX_RESULTS], blessed).eligible
