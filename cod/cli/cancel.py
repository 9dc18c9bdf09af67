"""``cod cancel JOB``: stop a detached or unfinished run on the nodes given it (verifier.detach.cancel)."""

from __future__ import annotations

import asyncio
import json

import click

from ..errors import UsageError
from .options import JobRef


@click.command("cancel")
@click.argument("job", type=JobRef())
@click.option("--json", "as_json", is_flag=True, help="Print the job object instead of text.")
def cancel_command(job: str, as_json: bool) -> None:
    """Stop a job on its nodes and record it cancelled.

    For a detached run (cod run --detach), or one whose requester stopped before it ended
    (outcome running). JOB is a job CID, a prefix of one, or its short ID. Each node given the job is asked to
    stop it (DELETE /v1/jobs/JOB); the run is recorded with outcome cancelled.

    \b
    Examples:
      cod run --verify 3 --detach job.wasm && cod cancel SHORT_ID
    """
    from verifier.detach import FINISHED, cancel

    from .records import _records, _view

    records = _records()
    view = _view(records, job, with_output=False)
    done = asyncio.run(cancel(records, view["job_cid"]))
    if done is None:
        raise UsageError(f"job {view['short_id']} is not running on any node (outcome {view['outcome']})",
                         "only a detached run (cod run --detach) or one whose requester stopped can be cancelled")
    if done.get("finished"):
        raise UsageError(f"job {view['short_id']} finished on every node before the cancel: nothing was stopped",
                         f"collect its results: cod get {view['short_id']}")
    if as_json:
        click.echo(json.dumps(done, indent=2, sort_keys=True))
        return
    for url, why in done["cancel"].items():
        click.echo(f"  {url}  " + (why if why == FINISHED else f"did not confirm: {why}" if why else "stopped"),
                   err=True)
    click.echo(f"Job {done['short_id']}: cancelled on {len(done['cancel'])} node(s)", err=True)
