"""`cod moderation ...`: the moderator's queue and signed decisions.

A decision names the job's latest eligibility entry and the decision it supersedes (none for
the first), both read from the ledger just before signing, so a replayed or stale decision
cannot apply (SPEC.md 12.6).
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import NotFound, UsageError
from ..text import printable
from .ledger import call, client, emit, identity, json_option, ledger_option
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
    (what the queue shows, as cod list does) when exactly one job of the queue matches."""
    from verifier.reputation import JOB_CID_PREFIX

    if len(job) < 59:
        wanted = job.lower()
        matches = [j["job"] for j in call(connection.queue_all())
                   if j["job"].startswith(wanted) or j["job"][len(JOB_CID_PREFIX):].startswith(wanted)]
        if len(matches) > 1:
            raise UsageError(f"job {printable(job)!r} is ambiguous: {', '.join(matches[:5])}", "give more characters")
        if not matches:
            raise NotFound(f"no job of the moderation queue has the short ID or CID prefix {printable(job)!r}",
                           "see cod moderation queue, or give the whole job CID")
        job = matches[0]
    record: dict[str, Any] = call(connection.job(job))
    return record


def _fresh(signers: Any) -> str:
    """How many agreeing keys the ledger knows from this job alone (a Sybil's keys sign one job)."""
    return str(sum(1 for s in signers or [] if s.get("agrees") and s.get("jobs") == 1))


QUEUE_COLUMNS = [Column("short_id", "ID"), Column("job", "JOB"), Column("result", "RESULT"), Column("entry", "ENTRY"),
                 Column("nodes", "NODES", show=lambda nodes: str(len(nodes or []))),
                 Column("signers", "NEW KEYS", show=_fresh)]


def _signer_lines(e: dict[str, Any]) -> list[str]:
    lines = [f"signer:      {s['node']} {'agrees' if s['agrees'] else 'signed ' + str(s['result'])}; first seen at "
             f"entry {s['first_seen']}, in {s['jobs']} job(s), {s['disputed_jobs']} disputed"
             for s in e.get("signers", [])]
    lines += [f"posted:      entry {p['entry']} by {p['poster'] or '(not recorded)'}" for p in e.get("posters", [])]
    return lines


@moderation.command()
@ledger_option
@output_options
def queue(ledger_url: str | None, out: Output) -> None:
    """Eligible jobs waiting for a decision, oldest first: job, result, the eligibility entry, agreeing nodes.

    \b
    Examples:
      cod moderation queue --ledger http://127.0.0.1:8090
      cod moderation queue --csv > queue.csv
    """
    from verifier.jobview import short_ids

    jobs = call(client(ledger_url).queue_all())
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


def _decide(job: str, action: str, datacap: int, reason: str, key: str | None, ledger_url: str | None,
            as_json: bool) -> None:
    from ..ledger import entries

    connection = client(ledger_url)
    record = _find(connection, job)
    e = record["eligibility"]
    if not e["eligible"]:
        raise UsageError(f"job {record['job']} is not eligible: {e['reason']}", "only eligible jobs are moderated")
    signed = entries.sign_decision(identity(key, "moderator_key"), origin=call(connection.origin()), job=record["job"],
                                   result=e["result"], action=action, datacap=datacap, reason=reason,
                                   eligibility=e["entry"], supersedes=record["latest_decision"])
    answer = call(connection.decide(signed))
    emit({"job": record["job"], "action": action, "datacap": datacap, **answer}, as_json,
         f"{PAST[action]} job {record['job']} (entry {answer['entry']})")


@moderation.command()
@click.argument("job")
@click.option("--datacap", type=datacap_size, required=True, help="DataCap to award: 1TiB, 512GiB, 10TB, bytes.")
@click.option("--reason", required=True, help="Why (kept in the ledger, signed).")
@click.option("--key", help="The moderator's key file (default: \"moderator_key\" in the config file).")
@ledger_option
@json_option
def approve(job: str, datacap: int, reason: str, key: str | None, ledger_url: str | None, as_json: bool) -> None:
    """Approve an eligible job's result with DataCap (a signed decision; supersedes an earlier one).

    \b
    Example:
      cod moderation approve bagaaiera... --datacap 1TiB --reason "public climate data" --key moderator.key
    """
    _decide(job, "approve", datacap, reason, key, ledger_url, as_json)


@moderation.command()
@click.argument("job")
@click.option("--reason", required=True, help="Why (kept in the ledger, signed).")
@click.option("--key", help="The moderator's key file (default: \"moderator_key\" in the config file).")
@ledger_option
@json_option
def reject(job: str, reason: str, key: str | None, ledger_url: str | None, as_json: bool) -> None:
    """Reject an eligible job (a signed decision; supersedes an earlier one).

    \b
    Example:
      cod moderation reject bagaaiera... --reason "not public data" --key moderator.key
    """
    _decide(job, "reject", 0, reason, key, ledger_url, as_json)
