from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from ..jobspec import Limits
from ..local import PreparedJob, parse_duration_ms, parse_size, prepare, prepare_docker, run_prepared
from ..wasm.engine import Engine, default_cache_dir
from . import cli


class Steps:
    """Bacalhau-style progress on stderr: each step, then 'done' when the next begins."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.open = False

    def __call__(self, step: str) -> None:
        if self.quiet:
            return
        self.finish()
        click.echo(f"{step} ... ", err=True, nl=False)
        self.open = True

    def finish(self) -> None:
        if self.open:
            click.echo("done", err=True)
            self.open = False


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("module")
@click.argument("args", nargs=-1)
@click.option("-i", "--input", "inputs", multiple=True, metavar="SRC[:DST]",
              help="Mount host directory SRC read-only at DST (default /inputs).")
@click.option("--outputs", "outputs", metavar="PATH", help="Where the job sees its writable directory "
              "(default /outputs; / mounts it as the root, with no inputs).")
@click.option("--output-base", "output_base", type=click.Path(file_okay=False), metavar="DIR",
              help="Start the writable directory as a copy of DIR (hashed into the spec like -i).")
@click.option("-e", "--env", "env", multiple=True, metavar="K=V", help="Set an environment variable for the job.")
@click.option("--seed", help="Seed of the job's random stream: 64 hex digits, or any text (hashed).")
@click.option("--fuel", type=int, default=Limits.fuel, show_default=True, help="Fuel limit (wasm instructions).")
@click.option("--memory", default="256MiB", show_default=True, help="Linear memory limit.")
@click.option("--timeout", default="600s", show_default=True, help="Wall-clock safety timeout (no result if hit).")
@click.option("--max-stdout", default="16MiB", show_default=True, help="Cap on stdout bytes.")
@click.option("--max-stderr", default="16MiB", show_default=True, help="Cap on stderr bytes.")
@click.option("--max-output", default="1GiB", show_default=True, help="Cap on bytes written under the output dir.")
@click.option("--entry-point", help="Exported function to call (default _start).")
@click.option("--engine", type=click.Choice(["wasm", "docker"]), default="wasm", show_default=True,
              help="wasm: MODULE is a .wasm file. docker: MODULE is an image, ARGS its command (unverifiable).")
@click.option("--verify", "verify_n", type=int, help="Run on N distinct nodes and compare their signed results.")
@click.option("--quorum", type=int, help="With --verify: accept K-of-N agreement (reported as such).")
@click.option("--node", "nodes", multiple=True, metavar="URL",
              help="A node to use (repeatable); else COD_NODES, the config file, or an embedded devstack.")
@click.option("--output-dir", type=click.Path(file_okay=False), help="Where to put the results directory.")
@click.option("--car", type=click.Path(dir_okay=False), help="Also write the results as a CARv1 file.")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Compiled-module cache (private).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def run(module: str, args: tuple[str, ...], inputs: tuple[str, ...], outputs: str | None,
        output_base: str | None, env: tuple[str, ...], seed: str | None,
        fuel: int, memory: str, timeout: str, max_stdout: str, max_stderr: str, max_output: str,
        entry_point: str | None, engine: str, verify_n: int | None, quorum: int | None, nodes: tuple[str, ...],
        output_dir: str | None, car: str | None, cache_dir: str | None, as_json: bool) -> None:
    """Run MODULE.wasm with ARGS: locally, or with --verify N on N nodes, and print the result CID."""
    limits = Limits(
        fuel=fuel,
        memory_bytes=parse_size(memory, "limits.memory_bytes"),
        stdout_bytes=parse_size(max_stdout, "limits.stdout_bytes"),
        stderr_bytes=parse_size(max_stderr, "limits.stderr_bytes"),
        output_bytes=parse_size(max_output, "limits.output_bytes"),
        timeout_ms=parse_duration_ms(timeout, "limits.timeout_ms"),
    )
    if (nodes or quorum) and verify_n is None and engine != "docker":
        raise click.UsageError("--node and --quorum go with --verify N")
    if engine == "docker":
        if outputs or output_base:
            raise click.UsageError("--outputs and --output-base go with wasm jobs")
        job = prepare_docker(module, list(args), inputs=list(inputs), env=list(env), limits=limits)
        _run_network(job, verify_n or 1, quorum, nodes, output_dir, car, as_json)
        return
    job = prepare(module, list(args), inputs=list(inputs), env=list(env), seed=seed, entry_point=entry_point,
                  limits=limits, outputs=outputs, output_base=output_base)
    if verify_n is not None:
        _run_network(job, verify_n, quorum, nodes, output_dir, car, as_json)
        return
    engine_ = Engine(cache_dir or os.environ.get("COD_CACHE_DIR") or default_cache_dir())
    result = run_prepared(job, output_dir, engine_, car)
    stdout = (result.results_dir / "stdout").read_bytes()
    if as_json:
        out: dict[str, Any] = {
            "job_cid": result.job_cid, "result_cid": result.result_cid, "exit_code": result.exit_code,
            "trap": result.trap, "fuel_used": result.fuel_used, "profile": result.profile,
            "module_cid": job.spec.module, "results_dir": str(result.results_dir),
            "stdout": stdout.decode("utf-8", "replace"), "spec": job.spec.to_dict(),
        }
        if car:
            out["car"] = car
        click.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    click.echo(f"Job CID:     {result.job_cid}", err=True)
    click.echo(f"Profile:     {result.profile}", err=True)
    trap = f" (trap: {result.trap})" if result.trap else ""
    click.echo(f"Exit code:   {result.exit_code}{trap}", err=True)
    click.echo(f"Fuel used:   {result.fuel_used}", err=True)
    click.echo(f"Results:     {result.results_dir}", err=True)
    if car:
        click.echo(f"CAR:         {car}", err=True)
    click.echo(f"Result CID:  {result.result_cid}", err=True)
    click.echo("--- stdout ---", err=True)
    sys.stdout.buffer.write(stdout)
    sys.stdout.flush()


def _run_network(job: PreparedJob, n: int, quorum: int | None, nodes: tuple[str, ...], output_dir: str | None,
                 car: str | None, as_json: bool) -> None:
    from verifier.network import configured_nodes, run_verified

    from ..car import write_car

    steps = Steps(quiet=as_json)
    destination = Path(output_dir) if output_dir else Path("cod-results") / str(job.spec.cid)
    urls = configured_nodes(list(nodes))
    try:
        verification = asyncio.run(run_verified(job, n, urls, quorum=quorum, output_dir=destination,
                                                progress=steps))
    except BaseException:
        if steps.open:
            click.echo("failed", err=True)
        raise
    steps.finish()
    stdout = b""
    if verification.results_dir is not None:
        stdout = (verification.results_dir / "stdout").read_bytes()
        if car:
            write_car(verification.results_dir, car)
    if as_json:
        out = verification.to_json()
        out["stdout"] = stdout.decode("utf-8", "replace")
        click.echo(json.dumps(out, indent=2, sort_keys=True))
    else:
        click.echo(f"Job CID:     {verification.job_cid}", err=True)
        click.echo(f"Outcome:     {verification.outcome.upper()}"
                   + (f" ({verification.note})" if verification.note else ""), err=True)
        for answer in verification.answers:
            mark = "ok " if answer.valid else ("BAD SIGNATURE" if answer.signature_valid is False else "failed")
            what = answer.result_cid or answer.error or ""
            click.echo(f"  {answer.node_id}  {mark}  {what}", err=True)
        if verification.result_cid:
            click.echo(f"Result CID:  {verification.result_cid}", err=True)
        if verification.results_dir is not None:
            click.echo(f"Results:     {verification.results_dir}", err=True)
            click.echo("--- stdout ---", err=True)
            sys.stdout.buffer.write(stdout)
            sys.stdout.flush()
    code = verification.exit_code
    if verification.outcome == "unverifiable" and n == 1:
        code = 0
    sys.exit(code)
