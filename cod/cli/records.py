"""The requester's records of its jobs: list, describe, logs, get.

A job is named by its CID, a prefix of it, or its short ID (what ``cod list`` shows: the
characters after the prefix every job CID shares), as git names commits.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import click

from verifier.outcomes import OUTCOMES

from ..errors import LocalPathError, NodeError, NotFound
from .options import AsciiInt, JobRef
from .output import Column, Output, age, outcome_style, outcome_text, output_options

EXAMPLES_HINT = "see cod list"


def _records() -> Any:
    from verifier.reputation import Records

    return Records()


def _view(records: Any, job: str, with_output: bool = True) -> dict[str, Any]:
    """The job view of ``job``; NotFound when no recorded job has that CID, prefix or short ID."""
    from verifier.jobview import recorded_view

    view = recorded_view(records, job, with_output)
    if view is None:
        raise NotFound(f"no job {job} in this requester's records", EXAMPLES_HINT)
    return view


def _k_of_n(view: dict[str, Any]) -> str:
    if view["outcome"] == "local":
        return "local"
    return f"{view['agreeing']}/{view['n']}"


def _short_cid(cid: Any) -> str:
    from verifier.jobview import short_cid

    return short_cid(cid)


JOB_COLUMNS = [
    Column("short_id", "ID"),
    Column("when", "AGE", show=age),
    Column("outcome", "OUTCOME", show=outcome_text, style=outcome_style),
    Column("k_of_n", "K/N"),
    Column("exit_code", "EXIT"),
    Column("result_cid", "RESULT", show=_short_cid),
    Column("mismatches", "MISMATCHES"),
    Column("job_cid", "JOB CID"),
]


@click.command(name="list")
@click.option("--limit", type=AsciiInt(min=1), default=50, show_default=True, help="How many jobs, newest first.")
@click.option("--outcome", "outcomes", multiple=True, type=click.Choice(OUTCOMES, case_sensitive=False),
              help="Only jobs whose latest outcome is this (repeatable, any case), e.g. mismatch.")
@output_options
def list_command(limit: int, outcomes: tuple[str, ...], out: Output) -> None:
    """List the jobs this requester ran, newest first: short ID, age, outcome, K of N agreeing,
    exit code, result CID, and how many of the job's runs were mismatches.

    The short ID (ID) names the job in describe, logs and get.

    \b
    Examples:
      cod list
      cod list --outcome mismatch --limit 10
      cod list --json | jq '.[].result_cid'
    """
    from verifier.jobview import job_view, short_ids

    outcomes = tuple(outcome.lower() for outcome in outcomes)  # click gives the choice as typed
    records = _records()
    shorts = short_ids(records.job_cids())
    views = []
    for job, run, runs in records.recent(limit if not outcomes else 1 << 30):
        if outcomes and job["outcome"] not in outcomes:
            continue
        view = job_view(job, run, runs, shorts.get(job["job_cid"]), with_output=out.structured)
        views.append(view)
        if len(views) >= limit:
            break
    if out.format in ("json", "nl"):  # the job objects themselves
        out.rows(views, JOB_COLUMNS)
        return
    rows = [dict(v, when=v["finished_at"] or v["started_at"], k_of_n=_k_of_n(v), mismatches=sum(r["outcome"] == "mismatch" for r in v["runs"]))
            for v in views]
    empty = (f"no job's latest outcome is {' or '.join(outcomes)}: see cod list" if outcomes and shorts
             else "no jobs yet: run one with cod run --verify 3 MODULE.wasm")
    out.rows(rows, JOB_COLUMNS, empty=empty)


@click.command()
@click.argument("job", type=JobRef())
@output_options
def describe(job: str, out: Output) -> None:
    """Show JOB (a job CID, a prefix of one, or its short ID): outcome, each node's status and
    signed result, the groups, the spec, every run, stdout and stderr.

    --json prints the job object every command prints (schema cod.job/1, README).

    \b
    Examples:
      cod describe 7xq3kd2a
      cod describe 7xq3kd2a --json | jq .groups
    """
    view = _view(_records(), job)
    out.one(view, lambda: _describe_text(view))


def _describe_text(view: dict[str, Any]) -> None:
    from verifier.jobview import short_node

    tty = sys.stdout.isatty()

    def paint(text: str, colour: str | None, bold: bool = False) -> str:
        return click.style(text, fg=colour, bold=bold) if tty and colour else text

    colours = {"verified": "green", "verified-by-quorum": "green", "mismatch": "red", "local": "cyan",
               "agrees": "green", "DISAGREES": "red", "failed": "yellow", "submitted": "blue"}
    line = click.echo
    outcome = str(view["outcome"])
    line(f"Job:         {view['job_cid']}  (short ID {view['short_id']})")
    line("Outcome:     " + paint(outcome.upper(), colours.get(outcome), outcome == "mismatch")
         + (f"  ({view['note']})" if view["note"] else ""))
    if view["outcome"] != "local":
        quorum = f", quorum {view['quorum']}" if view["quorum"] else ""
        line(f"Agreement:   {view['agreeing']} of {view['n']} node(s){quorum}")
    if view["result_cid"]:
        trap = f" (trap: {view['trap']})" if view["trap"] else ""
        line(f"Result CID:  {view['result_cid']}")
        line(f"Exit code:   {view['exit_code']}{trap}")
        line(f"Fuel used:   {view['fuel_used']}")
    spec = view["spec"] or {}
    line(f"Module:      {spec.get('module') or spec.get('image') or '-'}"
         + (f"  args {spec.get('args')}" if spec.get("args") else ""))
    for mount in spec.get("inputs") or []:
        line(f"Input:       {mount.get('cid') or 'local ' + str(mount.get('local'))} -> {mount.get('path')}")
    line(f"Started:     {view['started_at'] or '-'}   Finished: {view['finished_at'] or '-'}")
    if view["nodes"]:
        line("Nodes:")
        for node in view["nodes"]:
            status = node["status"]
            detail = node["result_cid"] or node["error"] or ""
            line(f"  {short_node(node['node_id']):<10} {node['node_id'] or '-'}  {node['url'] or '-'}  "
                 + paint(f"{status:<9}", colours.get(status), status == "DISAGREES") + f"  {detail}")
    for gone in view["unreachable"]:
        line(f"  {'-':<10} left out     {gone['url']}  {gone['reason']}")
    if view["groups"]:
        line("Groups:")
        for cid, nodes in sorted(view["groups"].items(), key=lambda kv: (-len(kv[1]), kv[0])):
            line(f"  {cid} <- {', '.join(short_node(n) for n in nodes)} ({len(nodes)})")
    if view["ledger"]:
        line(f"Ledger:      {view['ledger']}")
    mismatches = sum(r["outcome"] == "mismatch" for r in view["runs"])
    line(f"Runs:        {len(view['runs'])}" + (f" ({mismatches} MISMATCH)" if mismatches else ""))
    if view["results_dir"]:
        line(f"Results:     {view['results_dir']}")
    for name in ("stdout", "stderr"):
        text = view[name]
        if text is None:
            line(f"--- {name}: not on this machine (cod get {view['short_id']}) ---")
        elif text:
            line(f"--- {name} ---")
            line(text, nl=not text.endswith("\n"))


@click.command()
@click.argument("job", type=JobRef())
@click.option("--stdout", "only", flag_value="stdout", help="Only the job's stdout.")
@click.option("--stderr", "only", flag_value="stderr", help="Only the job's stderr.")
def logs(job: str, only: str | None) -> None:
    """Print JOB's stdout (on stdout) and stderr (on stderr), as the job wrote them.

    When the results are not on this machine they are fetched first, as cod get does.

    \b
    Examples:
      cod logs 7xq3kd2a
      cod logs 7xq3kd2a --stderr
    """
    records = _records()
    view = _view(records, job, with_output=False)
    results = None if view["outcome"] in ("submitted", "running") else _local_results(view)
    if results is None:
        results = _fetch(records, view, None, None)
    from ..resultsdir import open_entry

    wanted = [(name, stream) for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr))
              if only in (None, name)]
    handles = [(open_entry(results, name), stream) for name, stream in wanted]  # every link refused before any byte
    for handle, stream in handles:
        if handle is not None:
            stream.flush()
            with handle:
                while chunk := handle.read(1 << 16):
                    stream.buffer.write(chunk)
            stream.buffer.flush()


@click.command()
@click.argument("job", type=JobRef())
@click.option("--output-dir", type=click.Path(file_okay=False), help="Where to put the results directory.")
@click.option("--car", type=click.Path(dir_okay=False), help="Write the results as a CARv1 file instead.")
def get(job: str, output_dir: str | None, car: str | None) -> None:
    """Download the results of JOB (its CID, a prefix, or its short ID) from a node that signed them.

    The nodes are found by node ID among the configured nodes and the records; the copy a run
    left on this machine is used when none is reachable. Every copy is checked against the
    result CID.

    \b
    Examples:
      cod get 7xq3kd2a
      cod get 7xq3kd2a --car results.car
    """
    if output_dir is not None and car is not None:
        raise click.UsageError("give --output-dir or --car, not both")
    records = _records()
    view = _view(records, job, with_output=False)
    destination = Path(output_dir) if output_dir else Path("cod-results") / view["job_cid"]
    if car is not None:
        _check_car_target(Path(car))
    elif view["results_dir"] and Path(view["results_dir"]) in destination.resolve().parents:
        raise LocalPathError(f"--output-dir {str(destination)!r} is inside the job's own results "
                             f"{view['results_dir']!r}", "choose a directory outside it")
    where = _fetch(records, view, None if car else destination, Path(car) if car else None)
    click.echo(f"{view['result_cid']} -> {where}")


def _collect(records: Any, view: dict[str, Any], destination: Path) -> dict[str, Any]:
    """Collect a detached run (verifier.detach.collect): report its outcome on stderr; exit with
    the outcome's code when no result was accepted."""
    from verifier.detach import collect
    from verifier.jobview import recorded_view

    click.echo(f"Collecting the answers of job {view['short_id']} from {len(view['nodes'])} node(s) ...", err=True)
    verification = asyncio.run(collect(records, view["job_cid"], destination))
    fresh = recorded_view(records, view["job_cid"], with_output=False)
    assert fresh is not None
    click.echo(f"Outcome:     {str(fresh['outcome']).upper()}  ({fresh['agreeing']} of {fresh['n']} agree)"
               + (f"  {fresh['note']}" if fresh["note"] and fresh["outcome"] != "verified-by-quorum" else ""), err=True)
    if verification is not None and not fresh["result_cid"]:
        for node in fresh["nodes"]:
            click.echo(f"  {node['node_id']}  {node['url']}  {node['status']}  {node['result_cid'] or node['error']}",
                       err=True)
        sys.exit(verification.exit_code)
    return fresh


def _configured() -> list[str]:
    from ..config import load

    return load().nodes


def _shorter(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def _local_results(view: dict[str, Any]) -> Path | None:
    """The results directory of the job's latest run on this machine, if it is still there and
    still hashes to the job's result CID (a copy that changed is not the job's output)."""
    from ..content.unixfs import cid_of_tree
    from ..errors import CodError

    for candidate in (view["results_dir"], str(Path("cod-results") / view["job_cid"])):
        if not candidate or Path(candidate).is_symlink() or not os.path.lexists(Path(candidate, "stdout")):
            continue
        try:
            if view["result_cid"] and str(cid_of_tree(candidate)) == view["result_cid"]:
                return Path(candidate)
        except CodError:
            continue
    return None


def _check_car_target(car: Path) -> None:
    """--car names a regular file to (over)write, or a new one in a directory that exists."""
    import stat

    from .options import writable_parent

    try:
        mode = os.lstat(car).st_mode
    except FileNotFoundError:
        writable_parent(str(car), "--car", create=False)
        return
    if not stat.S_ISREG(mode):
        raise LocalPathError(f"--car {str(car)!r} exists and is not a regular file", "choose a new file name")


def _fetch(records: Any, view: dict[str, Any], destination: Path | None, car: Path | None) -> Path:
    """Fetch the job's agreed result into ``destination`` (or ``car``); records where it went."""
    from verifier.fetch import DownloadFailed, fetch_results, recorded_base

    collected = view["outcome"] in ("submitted", "running")  # answers still on the nodes
    if collected:  # a detached run: collect, compare and record it first
        view = _collect(records, view, destination or Path("cod-results") / view["job_cid"])
    if not view["result_cid"]:
        raise NotFound(f"job {view['short_id']} has no accepted result (outcome {view['outcome']})",
                       f"see cod describe {view['short_id']}")
    if destination is None and car is None:
        destination = Path("cod-results") / view["job_cid"]
    if collected and destination is not None and view["results_dir"] and \
            Path(view["results_dir"]) == destination.resolve():
        return destination  # collected (downloaded and checked) just now, into the very place asked for
    row = records.job(view["job_cid"])
    known = {n["node_id"]: n["url"] for n in records.nodes()}
    local = _local_results(view)
    try:
        where: Path = asyncio.run(fetch_results(row, destination, car, known=known, configured=_configured(),
                                                local_copy=local, base=recorded_base(records.runs(row["job_cid"]))))
    except DownloadFailed as exc:
        first = next(iter(exc.failures.items()), None)
        tried = f"{len(exc.failures)} URL(s) tried; {first[0]}: {_shorter(first[1])}" if first else "no URL known"
        raise NodeError(f"job {view['short_id']}: none of the nodes that signed its result delivered it "
                        f"({tried}), and no copy on this machine still hashes to its result CID",
                        "start those nodes, or configure their new URLs (COD_NODES, the config file: they are "
                        "found by node ID); cod nodes --check shows which answer") from None
    if destination is not None and view["runs"]:
        records.annotate(view["runs"][-1]["run_id"], results_dir=str(Path(where).resolve()))
    return where
