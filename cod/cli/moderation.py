"""`cod moderation ...`: the moderator's queue and signed decisions.

A decision names the job's latest eligibility entry and the decision it supersedes (none for
the first), both read from the ledger just before signing, so a replayed or stale decision
cannot apply (SPEC.md 12.6).
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import AuditFailed, CIDError, CodError, NotFound, UsageError
from ..text import printable
from .ledger import call, client, emit, identity, json_option, ledger_option, vkey_option
from .options import datacap_size
from .output import Column, Output, output_options


@click.group()
def moderation() -> None:
    """Moderate eligible jobs: look at the queue, approve or reject with a signed decision.

    \b
    Examples:
    cod moderation queue
    cod moderation approve JOB --datacap 1TiB --reason "useful" --key moderator.key
    """


def _find(connection: Any, job: str) -> dict[str, Any]:
    """The job's record. A job of the queue may be named by a prefix of its CID or of its short ID
    (what the queue shows, as cod list does) when exactly one job of the queue matches. The record
    answered must be the job's: a ledger (or a proxy) that answers another job is refused."""
    from verifier.reputation import JOB_CID_PREFIX

    from ..content.cid import CID

    wanted = job
    if len(job) >= 59:
        try:
            wanted = str(CID.parse(job))  # as the ledger writes it (its answer names the job so)
        except CIDError as exc:
            raise UsageError(f"{printable(job[:100])!r} is not a job CID: {exc.message}",
                             "give the job's CID or the short ID cod moderation queue shows") from None
    else:
        wanted = job.lower()
        matches = [j["job"] for j in call(connection.queue_all())
                   if isinstance(j.get("job"), str)
                   and (j["job"].startswith(wanted) or j["job"][len(JOB_CID_PREFIX):].startswith(wanted))]
        if len(matches) > 1:
            raise UsageError(f"job {printable(job)!r} is ambiguous: {', '.join(matches[:5])}", "give more characters")
        if not matches:
            raise NotFound(f"no job of the moderation queue has the short ID or CID prefix {printable(job)!r}",
                           "see cod moderation queue, or give the whole job CID")
        wanted = matches[0]
    record: dict[str, Any] = call(connection.job(wanted))
    if record.get("job") != wanted:
        raise AuditFailed([f"asked for job {printable(wanted)}, the ledger answered job "
                           f"{printable(str(record.get('job')))[:120]}"], HINT)
    return record


def _fresh(signers: Any) -> str:
    """How many agreeing keys the ledger knows from this job alone (a Sybil's keys sign one job)."""
    return str(sum(1 for s in signers or [] if s.get("agrees") and s.get("jobs") == 1))


QUEUE_COLUMNS = [Column("short_id", "ID"), Column("job", "JOB"), Column("result", "RESULT"), Column("entry", "ENTRY"),
                 Column("nodes", "NODES", show=lambda nodes: str(len(nodes or []))),
                 Column("signers", "NEW KEYS", show=_fresh),
                 Column("audited", "AUDITED", show=lambda a: "yes" if a else "no"),
                 Column("flags", "LIARS", show=lambda flags: str(len(flags or [])))]


def _signer_lines(e: dict[str, Any]) -> list[str]:
    lines = [f"signer:      {s['node']} {'agrees' if s['agrees'] else 'signed ' + str(s['result'])}; first seen at "
             f"entry {s['first_seen']}, in {s['jobs']} job(s), {s['disputed_jobs']} disputed"
             for s in e.get("signers", [])]
    lines += [f"posted:      entry {p['entry']} by {p['poster'] or '(not recorded)'}" for p in e.get("posters", [])]
    return lines


@moderation.command()
@ledger_option
@click.option("--audited", is_flag=True, help="Only jobs whose result an audit of the ledger re-executed and "
              "confirmed, and whose agreeing nodes no fraud proof names (SPEC.md 12.10).")
@output_options
def queue(ledger_url: str | None, audited: bool, out: Output) -> None:
    """Eligible jobs waiting for a decision, oldest first: job, result, the eligibility entry, agreeing nodes.

    \b
    Examples:
      cod moderation queue --ledger http://127.0.0.1:8090
      cod moderation queue --csv > queue.csv
      cod moderation queue --audited
    """
    from verifier.jobview import short_ids

    jobs = call(client(ledger_url).queue_all())
    if audited:
        jobs = [j for j in jobs if j.get("audited") and not j.get("flags")]
    shorts = short_ids(j["job"] for j in jobs)
    jobs = [dict(j, short_id=shorts.get(j["job"])) for j in jobs]
    out.rows(jobs, QUEUE_COLUMNS, empty="the moderation queue is empty")


@moderation.command()
@click.argument("job")
@ledger_option
@output_options
def show(job: str, ledger_url: str | None, out: Output) -> None:
    """A job's evidence (spec, agreeing nodes, blessed inputs), eligibility and decisions.

    \b
    Examples:
      cod moderation show bagaaiera...
      cod moderation show bagaaiera... --json | jq .decisions
    """
    record = _find(client(ledger_url), job)
    e = record["eligibility"]
    lines = [f"job:         {record['job']}", f"state:       {record['state']}",
             f"eligibility: entry {e['entry']}: {'eligible' if e['eligible'] else 'not eligible: ' + str(e['reason'])}",
             f"result:      {e['result'] or 'none (no result is eligible)'}", f"nodes:       {', '.join(e['nodes'])}",
             f"module:      {e['spec'].get('module')}  args: {' '.join(e['spec'].get('args', []))}"]
    lines += [f"input:       {cid} (blessed by entry {entry})" for cid, entry in sorted(e["blessings"].items())]
    lines += _signer_lines(e)
    lines += [f"decision:    entry {d['entry']}: {d['action']} by {d['moderator']}"
              f"{' with ' + str(d['datacap']) + ' bytes of DataCap' if d['action'] == 'approve' else ''}: {d['reason']}"
              for d in record["decisions"]]
    # job args, reasons and node answers come from evidence anyone can post: one safe line each
    out.one(record, lambda: click.echo("\n".join(printable(line) for line in lines)))


PAST = {"approve": "approved", "reject": "rejected"}
ELIGIBILITY_KIND = "cod/ledger/eligibility/"
DECISION_KIND = "cod/ledger/decision/"
HINT = "the ledger (or something between you and it) answered what its log does not hold; nothing was signed"


def _eligibility(connection: Any, record: dict[str, Any], vkey: str) -> tuple[dict[str, Any], int]:
    """The job's eligibility leaf, proved in the log (12.7), and its index; AuditFailed unless it is
    an eligible entry of this job whose spec is this job's."""
    from ..jobspec import JobSpec
    from ..ledger import proven

    job, e = record["job"], record.get("eligibility")
    if not isinstance(e, dict) or not isinstance(e.get("entry"), int) or isinstance(e.get("entry"), bool):
        raise AuditFailed([f"the ledger's answer for job {job} names no eligibility entry"], HINT)
    proved = proven.inclusion(call(connection.inclusion(e["entry"])), vkey, e["entry"])
    leaf = proved.value()
    if not str(leaf.get("type", "")).startswith(ELIGIBILITY_KIND) or leaf.get("job") != job:
        raise AuditFailed([f"leaf {proved.index} of the log is not an eligibility entry of job {job}"], HINT)
    try:
        spec_cid = str(JobSpec.from_dict(leaf["spec"]).cid)
    except (CodError, KeyError, TypeError, ValueError):
        spec_cid = None
    if spec_cid != job:
        raise AuditFailed([f"the spec of eligibility leaf {proved.index} is not the spec of job {job}"], HINT)
    return leaf, proved.index


def _supersedes(connection: Any, record: dict[str, Any], vkey: str) -> int | None:
    """The job's latest decision the answer names, proved in the log to be a decision of this job."""
    from ..ledger import proven

    latest = record.get("latest_decision")
    if latest is None:
        return None
    if not isinstance(latest, int) or isinstance(latest, bool):
        raise AuditFailed([f"the ledger names the latest decision of job {record['job']} as {latest!r}"], HINT)
    leaf = proven.inclusion(call(connection.inclusion(latest)), vkey, latest).value()
    statement = leaf.get("statement")
    if not str(leaf.get("type", "")).startswith(DECISION_KIND) or not isinstance(statement, dict) \
            or statement.get("job") != record["job"]:
        raise AuditFailed([f"leaf {latest} of the log is not a decision on job {record['job']}"], HINT)
    return latest


def _tib(n: int) -> str:
    """Bytes in the largest binary unit that is at least 1 (what a moderator reads: 1 TiB, 512 GiB)."""
    for unit, scale in (("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"


def _decide(job: str, action: str, datacap: int, reason: str, key: str | None, ledger_url: str | None,
            vkey: str | None, as_json: bool) -> None:
    """Sign a decision on what the log holds, not on what the ledger answered: the job asked for, its
    eligibility entry proved against the log's key, then shown, then signed and posted."""
    from ..ledger import entries
    from ..ledger.note import parse_vkey
    from .ledger import trusted_key

    connection = client(ledger_url)
    trust = trusted_key(connection, vkey)
    record = _find(connection, job)
    signer = identity(key, "moderator_key")
    leaf, entry = _eligibility(connection, record, trust.vkey)
    if leaf.get("eligible") is not True:
        raise UsageError(f"job {record['job']} is not eligible: {printable(str(leaf.get('reason')))}",
                         "only eligible jobs are moderated")
    result = leaf.get("result")
    if not isinstance(result, str):
        raise AuditFailed([f"eligibility leaf {entry} of job {record['job']} names no result"], HINT)
    supersedes = _supersedes(connection, record, trust.vkey)
    origin = parse_vkey(trust.vkey)[0]  # the log's name, from the key this check trusts (not the answer)
    lines = [f"signing as moderator {signer.node_id} for ledger {origin}:", f"  job:         {record['job']}",
             f"  result:      {result}",
             f"  decision:    {action}" + (f" with {datacap} bytes ({_tib(datacap)}) of DataCap"
                                          if action == "approve" else ""),
             f"  eligibility: entry {entry}, proved in the log under its key {trust.vkey} ({trust.how})",
             f"  supersedes:  {'entry ' + str(supersedes) if supersedes is not None else 'none'}"]
    click.echo("\n".join(printable(line) for line in lines), err=True)
    signed = entries.sign_decision(signer, origin=origin, job=record["job"], result=result, action=action,
                                   datacap=datacap, reason=reason, eligibility=entry, supersedes=supersedes)
    answer = call(connection.decide(signed))
    emit({"job": record["job"], "action": action, "datacap": datacap, "result": result, **answer}, as_json,
         f"{PAST[action]} job {record['job']} (entry {answer['entry']})")


@moderation.command()
@click.argument("job")
@click.option("--datacap", type=datacap_size, required=True, help="DataCap to award: 1TiB, 512GiB, 10TB, bytes.")
@click.option("--reason", required=True, help="Why (kept in the ledger, signed).")
@click.option("--key", help="The moderator's key file (default: \"moderator_key\" in the config file).")
@ledger_option
@vkey_option
@json_option
def approve(job: str, datacap: int, reason: str, key: str | None, ledger_url: str | None, vkey: str | None,
            as_json: bool) -> None:
    """Approve an eligible job's result with DataCap (a signed decision; supersedes an earlier one).

    \b
    Example:
      cod moderation approve bagaaiera... --datacap 1TiB --reason "public climate data" --key moderator.key
    """
    _decide(job, "approve", datacap, reason, key, ledger_url, vkey, as_json)


@moderation.command()
@click.argument("job")
@click.option("--reason", required=True, help="Why (kept in the ledger, signed).")
@click.option("--key", help="The moderator's key file (default: \"moderator_key\" in the config file).")
@ledger_option
@vkey_option
@json_option
def reject(job: str, reason: str, key: str | None, ledger_url: str | None, vkey: str | None, as_json: bool) -> None:
    """Reject an eligible job (a signed decision; supersedes an earlier one).

    \b
    Example:
      cod moderation reject bagaaiera... --reason "not public data" --key moderator.key
    """
    _decide(job, "reject", 0, reason, key, ledger_url, vkey, as_json)
