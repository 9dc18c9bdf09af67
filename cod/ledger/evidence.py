"""Eligibility: judge a job from its spec and the signed statements of the nodes that ran it.

A pure function of its arguments (SPEC.md 12.5): the same evidence and the same blessings give
the same judgement in the service, at startup and in the audit. Malformed evidence is refused
(EntryRefused 422 "BadEvidence", nothing is recorded); well-formed evidence gives a judgement,
eligible or not, with the first failing rule's reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import BadSignature, CodError
from ..jobspec import ENGINE_DOCKER, JobSpec
from ..statement import STATEMENT_TYPE, SignedStatement
from .entries import MAX_CID_CHARS, EntryRefused, bad, check_cid, check_id, check_int, check_signature

MAX_STATEMENTS = 64
"""Statements in one piece of evidence (an eligibility leaf must fit in 65,535 bytes)."""
MAX_PER_RESULT = 8
"""Statements of one result CID a job's evidence holds: more agreeing keys prove nothing more."""
MAX_RESULTS = MAX_STATEMENTS // MAX_PER_RESULT
"""Distinct result CIDs a job's evidence holds: with MAX_PER_RESULT, the evidence fits MAX_STATEMENTS,
so statements under throw-away keys for one result cannot fill a job and lock out the others; a
further result is admitted by evicting a weaker one (``admit``, SPEC.md 12.5 rule 8)."""
MAX_PROFILE_CHARS = 200
MAX_TRAP_CHARS = 200
MAX_EXIT_CODE = 2**32 - 1
MAX_FUEL = 2**64 - 1
STATEMENT_FIELDS = ("exit_code", "fuel_used", "job", "node", "profile", "result", "trap", "type")

Blessed = Callable[[str], "int | None"]
"""The leaf index of the bless batch that first blessed a CID, or None."""
Convicted = Callable[[str], "int | None"]
"""The leaf index of the first fraud entry naming a node ID as the liar, or None (SPEC.md 12.10)."""
Vouched = Callable[[str], bool]
"""Whether a node ID is among the agreeing nodes of a job a moderator approved (SPEC.md 12.5 rule 8)."""


@dataclass(frozen=True)
class Judgement:
    job: str
    eligible: bool
    reason: str | None
    result: str | None
    nodes: tuple[str, ...]
    blessings: dict[str, int]
    statements: tuple[dict[str, Any], ...]  # SignedStatement.to_json(), sorted by node ID
    spec: dict[str, Any]                    # the spec as cod writes it (JobSpec.to_dict: defaults filled)


def refuse(message: str) -> EntryRefused:
    return EntryRefused(422, "BadEvidence", message,
                        "send the job's spec and the signed statements of the nodes that ran it, one per node")


def _statement(raw: Any, job: str, n: int, check_signatures: bool) -> SignedStatement:
    """One strictly checked signed statement for ``job``."""
    if not isinstance(raw, dict) or sorted(raw) != ["signature", "statement"]:
        raise refuse(f"statements[{n}] is not {{\"statement\", \"signature\"}}")
    body = raw["statement"]
    if not isinstance(body, dict) or sorted(body) != list(STATEMENT_FIELDS):
        raise refuse(f"statements[{n}].statement does not have exactly the fields {', '.join(STATEMENT_FIELDS)}")
    try:
        if body["type"] != STATEMENT_TYPE:
            raise bad(f"type is not {STATEMENT_TYPE}")
        check_cid(body["job"], "job")
        check_cid(body["result"], "result")
        check_id(body["node"], "node")
        check_int(body["exit_code"], "exit_code", 0, MAX_EXIT_CODE)
        check_int(body["fuel_used"], "fuel_used", 0, MAX_FUEL)
        for name, limit in (("profile", MAX_PROFILE_CHARS), ("trap", MAX_TRAP_CHARS)):
            value = body[name]
            if not (isinstance(value, str) and 0 < len(value) <= limit) and not (name == "trap" and value is None):
                raise bad(f"{name} is not a string of 1 to {limit} characters")
        check_signature(raw["signature"])
    except EntryRefused as exc:
        raise refuse(f"statements[{n}]: {exc.message}") from None
    signed = SignedStatement.from_json(raw)
    if signed.statement.job != job:
        raise refuse(f"statements[{n}] is for job {signed.statement.job}, not {job}")
    if check_signatures:
        try:
            signed.verify(job, signed.statement.node)
        except BadSignature:
            raise EntryRefused(422, "BadSignature",
                               f"statements[{n}]: the signature does not verify against node {signed.statement.node}",
                               "send statements exactly as the nodes signed them") from None
    return signed


def parse_evidence(spec: Any, statements: Any, check_signatures: bool = True) -> tuple[str, JobSpec,
                                                                                      list[SignedStatement]]:
    """The job CID, the parsed spec and the statements sorted by node ID; refuses malformed evidence."""
    if not isinstance(spec, dict):
        raise refuse("spec is not a JSON object")
    try:
        parsed = JobSpec.from_dict(spec)
    except CodError as exc:
        raise refuse(f"the spec does not parse: {exc.message}") from None
    job = str(parsed.cid)
    if not isinstance(statements, list) or not statements:
        raise refuse("statements is not a non-empty list")
    if len(statements) > MAX_STATEMENTS:
        raise refuse(f"at most {MAX_STATEMENTS} statements per job")
    signed = [_statement(raw, job, n, check_signatures) for n, raw in enumerate(statements)]
    signed.sort(key=lambda s: s.statement.node)
    for a, b in zip(signed, signed[1:]):
        if a.statement.node == b.statement.node:
            raise refuse(f"two statements of node {a.statement.node}")
    check_bounds(signed)
    return job, parsed, signed


def check_bounds(signed: list[SignedStatement]) -> None:
    """Rule 7 of SPEC.md 12.5: at most MAX_PER_RESULT statements per result, MAX_RESULTS results."""
    counts: dict[str, int] = {}
    for s in signed:
        counts[s.statement.result] = counts.get(s.statement.result, 0) + 1
    _check_per_result(counts)
    if len(counts) > MAX_RESULTS:
        raise EntryRefused(422, "EvidenceFull", f"the evidence would name {len(counts)} results; a job's evidence "
                           f"holds at most {MAX_RESULTS} distinct results ({MAX_PER_RESULT} statements each)",
                           "statements for a result already recorded are still taken")


def _check_per_result(counts: dict[str, int]) -> None:
    for result, count in sorted(counts.items()):
        if count > MAX_PER_RESULT:
            raise EntryRefused(422, "EvidenceFull", f"result {result} would have {count} statements; a job's evidence "
                               f"holds at most {MAX_PER_RESULT} per result (and {MAX_RESULTS} results)",
                               "more statements agreeing with a result change nothing; send the others")


def _node(s: dict[str, Any]) -> str:
    return str(s["statement"]["node"])


def _result(s: dict[str, Any]) -> str:
    return str(s["statement"]["result"])


def admit(recorded: tuple[dict[str, Any], ...], extra: list[dict[str, Any]],
          vouched: Vouched) -> list[dict[str, Any]]:
    """Merge new statements into a job's recorded ones: rules 6 to 8 of SPEC.md 12.5.

    Two statements of one node are refused (rule 6), a result with more than MAX_PER_RESULT
    statements too (rule 7). Past MAX_RESULTS results (rule 8) the groups are ranked: most
    statements of approved keys first; then groups of two or more statements before lone ones;
    then recorded before new; then most statements; then by CID. The first MAX_RESULTS are kept
    and the others evicted from the derived evidence (their leaves stay in the log). When a group
    that is not kept holds a new statement, the whole post is refused (EvidenceFull). So a lone statement (which
    can never be an agreeing group) gives way to any group of two, and a recorded group of two or
    more gives way only to a group with more approved keys.
    """
    merged = list(recorded) + list(extra)
    by_node = sorted(merged, key=_node)
    for a, b in zip(by_node, by_node[1:]):
        if _node(a) == _node(b):
            raise refuse(f"two statements of node {_node(a)}")
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in merged:
        groups.setdefault(_result(s), []).append(s)
    _check_per_result({r: len(g) for r, g in groups.items()})
    if len(groups) <= MAX_RESULTS:
        return merged
    old = {_result(s) for s in recorded}

    def approved(result: str) -> int:
        return sum(1 for s in groups[result] if vouched(_node(s)))

    def rank(result: str) -> tuple[int, bool, bool, int, str]:
        n = len(groups[result])
        return (-approved(result), n < 2, result not in old, -n, result)

    ranked = sorted(groups, key=rank)
    kept = set(ranked[:MAX_RESULTS])
    posted = {_result(s) for s in extra}
    lost = [r for r in ranked[MAX_RESULTS:] if r in posted]
    if lost:
        def shown(result: str) -> str:
            return (f"{result} ({len(groups[result])} statement(s), {approved(result)} of keys a moderator approved, "
                    f"{'recorded' if result in old else 'new'})")

        raise EntryRefused(422, "EvidenceFull", f"the evidence would name {len(groups)} results; a job's evidence "
                           f"holds at most {MAX_RESULTS}, and result {shown(lost[0])} does not outrank the weakest "
                           f"kept, {shown(ranked[MAX_RESULTS - 1])}",
                           "a new result displaces a recorded one with more statements of keys a moderator approved, "
                           "or, as many, when it has two or more statements and the recorded one a single statement; "
                           "statements for a recorded result are taken")
    return [s for s in merged if _result(s) in kept]


def _never(node: str) -> int | None:
    return None


def judge(spec: Any, statements: Any, blessed: Blessed, check_signatures: bool = True,
          convicted: Convicted = _never) -> Judgement:
    """Judge a job by the rules of SPEC.md 12.5, in order; the first failing rule is the reason.

    Statements of keys that ``convicted`` names (a fraud entry before this one, SPEC.md 12.10)
    stay in the evidence but count for nothing: rules 2 to 4 judge the others.
    Raises EntryRefused 422 "BadEvidence" (or "BadSignature") for malformed evidence.
    """
    job, parsed, every = parse_evidence(spec, statements, check_signatures)
    as_json = tuple(s.to_json() for s in every)
    spec_json = parsed.to_dict()
    signed = [s for s in every if convicted(s.statement.node) is None]
    aside = len(every) - len(signed)

    def no(reason: str) -> Judgement:
        if aside and not reason.startswith(("docker", "input", "the job reads")):
            reason += f" ({aside} statement(s) of proven liars set aside)"
        return Judgement(job, False, reason, None, (), {}, as_json, spec_json)

    if parsed.engine == ENGINE_DOCKER:
        return no("docker jobs are unverifiable")
    if len(signed) < 2:
        return no("single-node job: at least two nodes must agree")
    groups: dict[str, list[SignedStatement]] = {}
    for s in signed:
        groups.setdefault(s.statement.result, []).append(s)
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    result, agreeing = ranked[0]
    if not (len(agreeing) >= 2 and 2 * len(agreeing) > len(signed)):
        shown = ", ".join(f"{cid} ({len(g)} of {len(signed)})" for cid, g in ranked)
        return no(f"mismatch: no result is signed by a strict majority of at least two nodes: {shown}")
    for s in agreeing:
        st = s.statement
        if st.exit_code != 0 or st.trap is not None:
            what = f"exit code {st.exit_code}" if st.trap is None else f"trap {st.trap}"
            return no(f"the job failed ({what})")
    first = agreeing[0].statement
    for name in ("profile", "fuel_used"):
        for s in agreeing[1:]:
            if getattr(s.statement, name) != getattr(first, name):
                return no(f"the agreeing statements differ in {name}: node {first.node} signed "
                          f"{getattr(first, name)!r}, node {s.statement.node} {getattr(s.statement, name)!r}")
    cids: list[str] = []
    for n, item in enumerate(parsed.inputs):
        if item.cid is None:
            return no(f"input inputs[{n}] is a node-local path ({item.local}), not FIL+ data")
        cids.append(item.cid)
    if not cids:
        return no("the job reads no FIL+ data")  # an output base is where outputs start, not an input (9.7)
    if parsed.output_base is not None:
        cids.append(parsed.output_base)
    blessings: dict[str, int] = {}
    for cid in cids:
        index = blessed(cid)
        if index is None:
            return no(f"input CID {cid} is not blessed FIL+ data")
        blessings[cid] = index
    assert all(len(c) <= MAX_CID_CHARS for c in cids)
    return Judgement(job, True, None, result, tuple(s.statement.node for s in agreeing), blessings, as_json, spec_json)
