"""The requester's records of its jobs: list, describe, logs, get."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from ..errors import NotFound
from .options import JobRef


def _job(records: Any, job: str) -> dict[str, Any]:
    """The recorded job named by ``job`` (a CID or a prefix only it has); UsageError when ambiguous."""
    row: dict[str, Any] | None = records.job(job)
    if row is None:
        raise NotFound(f"no job {job} in this requester's records", "see cod list")
    return row


@click.command()
@click.argument("job", type=JobRef())
@click.option("--output-dir", type=click.Path(file_okay=False), help="Where to put the results directory.")
@click.option("--car", type=click.Path(dir_okay=False), help="Write the results as a CARv1 file instead.")
def get(job: str, output_dir: str | None, car: str | None) -> None:
    """Download the results of JOB (a job CID or a prefix of one job's CID) from a node that agreed."""
    from verifier.fetch import fetch_results
    from verifier.reputation import Records

    row = _job(Records(), job)
    destination = Path(output_dir) if output_dir else Path("cod-results") / row["job_cid"]
    where = asyncio.run(fetch_results(row, None if car else destination, Path(car) if car else None))
    click.echo(f"{row['result_cid']} -> {where}")


@click.command()
@click.argument("job", type=JobRef())
def describe(job: str) -> None:
    """Show JOB's spec, its latest outcome with each node's signed statement, and every run (JSON)."""
    from verifier.reputation import Records

    records = Records()
    row = _job(records, job)
    click.echo(json.dumps({"job_cid": row["job_cid"], "outcome": row["outcome"], "result_cid": row["result_cid"],
                           "n": row["n"], "quorum": row["quorum"], "spec": row["spec"], "nodes": row["answers"],
                           "runs": records.runs(row["job_cid"])},
                          indent=2, sort_keys=True))


@click.command(name="list")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="How many jobs, newest first.")
def list_command(limit: int) -> None:
    """List the jobs this requester ran, with their latest outcomes and how many runs were mismatches."""
    from verifier.reputation import Records

    for row in Records().jobs(limit):
        runs = f"{row['runs']} run(s)" + (f", {row['mismatches']} MISMATCH" if row["mismatches"] else "")
        click.echo(f"{row['job_cid']}  {row['outcome']:<18} {row['n']} node(s)  {row['result_cid'] or '-'}  {runs}")
