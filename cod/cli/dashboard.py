"""cod dashboard: a live view of the requester's jobs, the nodes and the moderation queue."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from .options import AsciiFloat, AsciiInt, NodeURL
from .output import Column, Output, age, outcome_style, outcome_text, output_options, table

DEFAULT_INTERVAL_S = 2.0


def _short_node(value: Any) -> str:
    from verifier.jobview import short_node

    return short_node(value)


JOB_COLUMNS = (
    Column("short_id", "ID", style=outcome_style),
    Column("when", "AGE", show=age),
    Column("outcome", "OUTCOME", show=outcome_text, style=outcome_style),
    Column("k_of_n", "K/N"),
    Column("result_cid", "RESULT"),
    Column("dissent", "OUTVOTED", show=lambda ids: ", ".join(_short_node(i) for i in ids or []) or "-",
           style=lambda row: "bold red" if row.get("dissent") else None),
    Column("moderation", "MODERATION"),
)
NODE_COLUMNS = (
    Column("node_id", "NODE", show=_short_node,
           style=lambda row: "bold red" if row.get("disagreed") or row.get("bad_signature") else None),
    Column("url", "URL"), Column("agreed", "AGREED"), Column("disagreed", "DISAGREED"), Column("failed", "FAILED"),
    Column("bad_signature", "BAD SIG"), Column("state", "HEALTH"),
    Column("latency_ms", "MS", show=lambda v: "-" if v is None else f"{v:.0f}"), Column("last_seen", "SEEN", show=age),
)
QUEUE_COLUMNS = (Column("job", "JOB"), Column("result", "RESULT"), Column("entry", "ENTRY"),
                 Column("nodes", "NODES", show=lambda nodes: str(len(nodes or []))))


@click.command()
@click.option("--once", is_flag=True, help="Print one snapshot as tables and exit.")
@click.option("--interval", type=AsciiFloat(min=0.5, max=3600), default=DEFAULT_INTERVAL_S, show_default=True,
              help="Seconds between refreshes of the live view.")
@click.option("--limit", type=AsciiInt(min=1, max=10000), default=50, show_default=True,
              help="How many of the newest jobs to show.")
@click.option("--ledger", type=NodeURL(), metavar="URL",
              help="The FIL+ ledger whose queue to show (else COD_LEDGER, else \"ledger\" of the config).")
@click.option("--no-health", is_flag=True, help="Do not ask the nodes for /v1/info (health) on each refresh.")
@output_options
def dashboard(once: bool, interval: float, limit: int, ledger: str | None, no_health: bool, out: Output) -> None:
    """A live view of jobs, nodes and the moderation queue.

    Jobs (newest first: short ID, age, outcome, K of N, result, the outvoted nodes,
    moderation state), nodes (their records and health) and, with a ledger, the moderation
    queue and the latest checkpoint. --json and --nl print one snapshot (schema
    cod.dashboard/1; --nl on one line), --csv its jobs table, and exit. Keys: o outcome filter, n node filter, enter open the
    job (groups, statements, stdout, stderr), escape back, r refresh, q quit.

    \b
    Examples:
      cod dashboard
      cod dashboard --ledger http://127.0.0.1:8090 --interval 5
      cod dashboard --once
      cod dashboard --csv > jobs.csv
      cod dashboard --json | jq '.jobs[] | select(.outcome == "mismatch") | .dissent'
    """
    import math

    from verifier.reputation import Records
    from verifier.snapshot import collect

    if not math.isfinite(interval):  # click's range lets NaN through
        raise click.BadParameter(f"{interval!r} is not a number of seconds", param_hint="'--interval'")

    from ..config import load
    from ..config import ledger_url

    records = Records()
    configured = load().nodes
    ledger_at = ledger_url(ledger)

    async def fetch() -> dict[str, Any]:
        return await collect(records, configured, ledger_at, limit=limit, health=not no_health)

    if out.format in ("json", "nl"):
        out.one(asyncio.run(fetch()), lambda: None)
        return
    if out.format == "csv":
        out.rows(_job_rows(asyncio.run(fetch())), JOB_COLUMNS)
        return
    if once or not (sys.stdout.isatty() and sys.stdin.isatty()):
        if not once:
            click.echo("not a terminal: printing one snapshot (cod dashboard --once)", err=True)
        _print(asyncio.run(fetch()))
        return
    from .tui import Dashboard

    Dashboard(fetch, interval).run()


def _job_rows(snap: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(v, when=v.get("finished_at") or v.get("started_at"),
                 k_of_n=f"{v['agreeing']}/{v['n']}" if v.get("n") else "-") for v in snap["jobs"]]


def _print(snap: dict[str, Any]) -> None:
    jobs = _job_rows(snap)
    mismatches = sum(v["outcome"] == "mismatch" for v in jobs)
    click.echo(f"Jobs ({len(jobs)}, {mismatches} mismatch{'es' if mismatches != 1 else ''})")
    if jobs:
        table(jobs, JOB_COLUMNS)
    click.echo(f"\nNodes ({len(snap['nodes'])})")
    if snap["nodes"]:
        table(snap["nodes"], NODE_COLUMNS)
    mod = snap.get("moderation")
    if mod is None:
        click.echo("\nModeration: no ledger configured (--ledger, COD_LEDGER, or ledger in the config)")
    elif mod.get("error"):
        click.echo(f"\nModeration: ledger {mod['url']} did not answer: {mod['error']}")
    else:
        checkpoint = mod.get("checkpoint") or {}
        waiting = f"{len(mod['queue'])}{' or more (cod moderation queue lists all)' if mod.get('more') else ''}"
        click.echo(f"\nModeration: {waiting} waiting at {mod['url']}; latest checkpoint: size "
                   f"{checkpoint.get('size')}, root {checkpoint.get('root')}")
        if mod["queue"]:
            table(mod["queue"], QUEUE_COLUMNS)
