"""One job as every command shows it: the job view (``cod.job/1``).

``cod run`` (local or ``--verify``), ``cod run --detach``, ``cod describe``, ``cod list
--json`` and ``cod dashboard --json`` all print this one object, built from the requester's
records (``verifier.reputation.Records``) so that what a run printed and what ``describe``
prints later are the same data:

    schema        "cod.job/1"
    job_cid       the job's CID; short_id its short form (see short_ids)
    outcome       local | submitted | running | verified | verified-by-quorum | verified-by-referee |
                  referee-disagrees | mismatch | profile-mismatch | incomplete | unverifiable | cancelled
    result_cid    the accepted result (null when none was)
    exit_code, trap, fuel_used, profile
                  of the accepted result: from the local run, or from the signed statements
                  of the nodes that agreed (null when no result was accepted)
    n, quorum, agreeing, note
                  nodes asked, the K asked for (0: all N), how many signed the accepted (or,
                  with none, the largest) group, and why the outcome is what it is
    groups        {result CID: [node IDs that signed it]}
    nodes         every node asked: node_id, url, profile, status (agrees, DISAGREES,
                  failed, submitted), result_cid, exit_code, trap, fuel_used,
                  signature_valid, error, download_error, statement (as signed)
    stdout, stderr
                  the job's output as UTF-8 text (undecodable bytes replaced), null when the
                  results are not on this machine
    results_dir, car, result_checked, ledger, unreachable
    referee, liars
                  when claims differed and the requester re-executed the job (SPEC 11.3):
                  {method, result_cid, job_fuel, segment_fuel, rounds, liars} (null when it did
                  not judge), and the node IDs whose signed result it proved wrong (else empty)
    fraud_proofs  the IDs of the fraud proofs built for those liars (SPEC 11.5), kept in
                  COD_HOME/fraud/PROOF_ID.json
    started_at, finished_at
                  of the latest run (UTC, ISO 8601; records only, never a result)
    spec, module_cid
    runs          every run of the job, oldest first: run_id, started_at, finished_at,
                  outcome, result_cid

This module is light on purpose (no aiohttp, no wasmtime): ``cod list`` and ``cod --help``
import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .outcomes import LOCAL, SUBMITTED
from .reputation import JOB_CID_PREFIX

SCHEMA = "cod.job/1"
AGREES, DISAGREES, FAILED = "agrees", "DISAGREES", "failed"
MIN_SHORT_ID = 8
"""Fewest characters of a short ID (git shows 7 hex digits: 35 bits; 8 base32 digits are 40)."""
NODE_ID_PREFIX = "12D3KooW"
"""What every node ID starts with: a libp2p peer ID of an Ed25519 key (identity multihash)."""
MAX_TEXT_BYTES = 16 << 20
"""Most bytes of stdout or stderr a view carries (the default --max-stdout); more is cut, and said."""


def short_ids(cids: Iterable[str], prefix: str = JOB_CID_PREFIX, minimum: int = MIN_SHORT_ID) -> dict[str, str]:
    """Each CID's short ID among ``cids``: the fewest characters after ``prefix`` (at least
    ``minimum``) that no other CID of the set starts with, as git abbreviates commits."""
    tails = {cid: cid[len(prefix):] if cid.startswith(prefix) else cid for cid in cids}
    ordered = sorted(set(tails.values()))
    shortest: dict[str, str] = {}
    for i, tail in enumerate(ordered):
        need = minimum
        for j in (i - 1, i + 1):  # in sorted order, the longest shared start is with a neighbour
            if 0 <= j < len(ordered):
                need = max(need, _common(tail, ordered[j]) + 1)
        shortest[tail] = tail[:need]
    return {cid: shortest[tail] for cid, tail in tails.items()}


def short_node(node_id: str | None) -> str:
    """A node ID as shown in tables: the eight characters after the prefix all node IDs share."""
    if not node_id:
        return "-"
    tail = node_id[len(NODE_ID_PREFIX):] if node_id.startswith(NODE_ID_PREFIX) else node_id
    return tail[:MIN_SHORT_ID]


def short_cid(cid: str | None, keep: int = 8) -> str:
    """A result CID as shown in tables: its multibase/version/codec head and ``keep`` digest characters."""
    if not cid:
        return "-"
    head = 7 if cid.startswith(("bafy", "bafk")) else 0  # bafybei.../bafkrei...: CIDv1 dag-pb/raw sha2-256
    return cid[: head + keep]


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def answer_status(answer: Mapping[str, Any], reference: str | None) -> tuple[str, str]:
    """A node's status in a run and what to show beside it: agrees (signed ``reference``, the
    accepted or else the strict-majority result), DISAGREES (signed another), failed."""
    if answer.get("submitted") and answer.get("result_cid") is None and not answer.get("error"):
        return SUBMITTED, "submitted, not yet collected"
    if answer.get("signature_valid") is False:
        return FAILED, f"bad signature: {answer.get('error')}"
    if answer.get("result_cid") is None or answer.get("signature_valid") is not True:
        return FAILED, str(answer.get("error") or "no answer")
    if contradicts(answer):
        return DISAGREES, (f"{answer['result_cid']} (signed under profile {answer.get('profile')}, "
                           f"advertised {answer.get('advertised')})")
    if answer["result_cid"] == reference:
        late = answer.get("download_error")
        return AGREES, str(answer["result_cid"]) + (f" (then would not send it: {late})" if late else "")
    return DISAGREES, str(answer["result_cid"])


def contradicts(answer: Mapping[str, Any]) -> bool:
    """A valid answer whose statement names another profile than its node advertised (SPEC 11
    step 4): it disagrees, whatever result it signed. Answers recorded before Stage 9 have no
    ``advertised`` and never contradict."""
    advertised = answer.get("advertised")
    return bool(advertised) and answer.get("signature_valid") is True and answer.get("profile") != advertised


def groups_of(answers: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """{result CID: sorted node IDs} of the answers with a valid signature."""
    groups: dict[str, list[str]] = {}
    for answer in answers:
        if answer.get("signature_valid") is True and answer.get("result_cid"):
            groups.setdefault(str(answer["result_cid"]), []).append(str(answer["node_id"]))
    return {cid: sorted(nodes) for cid, nodes in sorted(groups.items())}


def strict_majority(groups: Mapping[str, list[str]]) -> str | None:
    total = sum(len(nodes) for nodes in groups.values())
    winners = [cid for cid, nodes in groups.items() if 2 * len(nodes) > total]
    return winners[0] if winners else None


def read_text(results_dir: str | None, name: str) -> str | None:
    """``stdout`` or ``stderr`` of a results directory as text; None when it is not here."""
    if not results_dir:
        return None
    from cod.errors import LocalPathError
    from cod.resultsdir import open_entry

    try:
        handle = open_entry(results_dir, name)
        if handle is None:
            return None
        with handle:
            data = handle.read(MAX_TEXT_BYTES + 1)
    except LocalPathError as exc:  # a link where a node writes a file: said, never followed
        return f"[refused: {exc.message}]\n"
    except OSError:
        return None
    text = data[:MAX_TEXT_BYTES].decode("utf-8", "replace")
    return text + (f"\n[cut at {MAX_TEXT_BYTES} bytes]" if len(data) > MAX_TEXT_BYTES else "")


def job_view(job: Mapping[str, Any], run: Mapping[str, Any], runs: Sequence[Mapping[str, Any]],
             short_id: str | None = None, with_output: bool = True) -> dict[str, Any]:
    """The view of a recorded job: ``job`` as Records.job gives it, its latest ``run`` and all
    its ``runs`` (Records.runs). ``with_output`` False leaves stdout and stderr null (lists)."""
    extra: Mapping[str, Any] = run.get("extra") or {}
    answers: list[Mapping[str, Any]] = list((run.get("answers") if run else job.get("answers")) or [])
    groups = groups_of(answers)
    result = job.get("result_cid")
    reference = result or strict_majority(groups_of(a for a in answers if not contradicts(a)))
    liars = set(extra.get("liars") or [])
    nodes = []
    for answer in answers:
        status, _ = answer_status(answer, reference)
        if answer.get("node_id") in liars:  # the referee proved its result wrong (SPEC 11.3)
            status = "DISAGREES"
        nodes.append({key: answer.get(key) for key in (
            "node_id", "url", "profile", "result_cid", "exit_code", "trap", "fuel_used", "signature_valid", "error",
            "download_error", "statement")} | {"status": status})
    accepted = next((a for a in answers if a.get("signature_valid") is True and a.get("result_cid") == result
                     and result), None)
    if job.get("outcome") == LOCAL:
        exit_code, trap, fuel, profile = (extra.get("exit_code"), extra.get("trap"), extra.get("fuel_used"),
                                          extra.get("profile"))
    elif accepted is not None:
        exit_code, trap, fuel, profile = (accepted.get("exit_code"), accepted.get("trap"), accepted.get("fuel_used"),
                                          accepted.get("profile"))
    else:
        exit_code = trap = fuel = profile = None
    spec = job.get("spec") or {}
    results_dir = extra.get("results_dir")
    if results_dir and not Path(results_dir).is_dir():
        results_dir_here = None
    else:
        results_dir_here = results_dir
    largest = max((len(v) for v in groups.values()), default=0)
    return {
        "schema": SCHEMA,
        "job_cid": job["job_cid"],
        "short_id": short_id or short_ids([job["job_cid"]])[job["job_cid"]],
        "outcome": job.get("outcome"),
        "result_cid": result,
        "exit_code": exit_code, "trap": trap, "fuel_used": fuel, "profile": profile,
        "n": job.get("n"), "quorum": job.get("quorum") or 0,
        "agreeing": len(groups.get(reference, [])) if reference else largest,
        "note": run.get("note"),
        "groups": groups,
        "nodes": nodes,
        "stdout": read_text(results_dir_here, "stdout") if with_output else None,
        "stderr": read_text(results_dir_here, "stderr") if with_output else None,
        "results_dir": results_dir,
        "car": extra.get("car"),
        "result_checked": bool(extra.get("result_checked", job.get("outcome") == LOCAL)),
        "ledger": extra.get("ledger"),
        "unreachable": list(extra.get("unreachable") or []),
        "referee": extra.get("referee"), "liars": list(extra.get("liars") or []), "audit": extra.get("audit"),
        "fraud_proofs": list(extra.get("fraud_proofs") or []),
        "started_at": run.get("started_at"), "finished_at": run.get("finished_at"),
        "spec": spec,
        "module_cid": spec.get("module") if isinstance(spec, Mapping) else None,
        "runs": [{key: r.get(key) for key in ("run_id", "started_at", "finished_at", "outcome", "result_cid")}
                 for r in runs],
    }


def recorded_view(records: Any, job_cid: str, with_output: bool = True) -> dict[str, Any] | None:
    """The view of ``job_cid`` (a CID, a unique prefix or short ID) from ``records``; None if unknown."""
    job = records.job(job_cid)
    if job is None:
        return None
    runs = records.runs(job["job_cid"])
    shorts = short_ids(records.job_cids())
    return job_view(job, runs[-1] if runs else {}, runs, shorts.get(job["job_cid"]), with_output)
