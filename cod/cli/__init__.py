"""The ``cod`` command: click shells over the library, nothing more."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from .. import __version__
from ..errors import CodError
from ..jobspec import Limits
from ..local import parse_duration_ms, parse_size, prepare, run_prepared
from ..unixfs import cid_of_tree
from ..wasm.engine import ENGINE_SETTINGS, Engine, default_cache_dir, profile_id, wasmtime_version


def _engine(cache_dir: str | None) -> Engine:
    return Engine(cache_dir or os.environ.get("COD_CACHE_DIR") or default_cache_dir())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cod")
def cli() -> None:
    """cod: verifiable compute over data.

    Runs WebAssembly (WASI preview1) jobs where nothing but the job spec can shape the
    result, and names each result by its IPFS UnixFS CID.
    """


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("module", type=click.Path(dir_okay=False))
@click.argument("args", nargs=-1)
@click.option("-i", "--input", "inputs", multiple=True, metavar="SRC[:DST]",
              help="Mount host directory SRC read-only at DST (default /inputs).")
@click.option("-e", "--env", "env", multiple=True, metavar="K=V", help="Set an environment variable for the job.")
@click.option("--seed", help="Seed of the job's random stream: 64 hex digits, or any text (hashed).")
@click.option("--fuel", type=int, default=Limits.fuel, show_default=True, help="Fuel limit (wasm instructions).")
@click.option("--memory", default="256MiB", show_default=True, help="Linear memory limit.")
@click.option("--timeout", default="600s", show_default=True, help="Wall-clock safety timeout (no result if hit).")
@click.option("--max-stdout", default="16MiB", show_default=True, help="Cap on stdout bytes.")
@click.option("--max-stderr", default="16MiB", show_default=True, help="Cap on stderr bytes.")
@click.option("--max-output", default="1GiB", show_default=True, help="Cap on bytes written under the output dir.")
@click.option("--entry-point", help="Exported function to call (default _start).")
@click.option("--output-dir", type=click.Path(file_okay=False), help="Where to put the results directory.")
@click.option("--car", type=click.Path(dir_okay=False), help="Also write the results as a CARv1 file.")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Compiled-module cache (private).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def run(
    module: str, args: tuple[str, ...], inputs: tuple[str, ...], env: tuple[str, ...], seed: str | None, fuel: int,
    memory: str, timeout: str, max_stdout: str, max_stderr: str, max_output: str, entry_point: str | None,
    output_dir: str | None, car: str | None, cache_dir: str | None, as_json: bool,
) -> None:
    """Run MODULE.wasm locally with ARGS and print the result CID."""
    limits = Limits(
        fuel=fuel,
        memory_bytes=parse_size(memory, "limits.memory_bytes"),
        stdout_bytes=parse_size(max_stdout, "limits.stdout_bytes"),
        stderr_bytes=parse_size(max_stderr, "limits.stderr_bytes"),
        output_bytes=parse_size(max_output, "limits.output_bytes"),
        timeout_ms=parse_duration_ms(timeout, "limits.timeout_ms"),
    )
    job = prepare(module, list(args), inputs=list(inputs), env=list(env), seed=seed, entry_point=entry_point,
                  limits=limits)
    result = run_prepared(job, output_dir, _engine(cache_dir), car)
    stdout = (result.results_dir / "stdout").read_bytes()
    if as_json:
        out: dict[str, Any] = {
            "job_cid": result.job_cid,
            "result_cid": result.result_cid,
            "exit_code": result.exit_code,
            "trap": result.trap,
            "fuel_used": result.fuel_used,
            "profile": result.profile,
            "module_cid": job.spec.module,
            "results_dir": str(result.results_dir),
            "stdout": stdout.decode("utf-8", "replace"),
            "spec": job.spec.to_dict(),
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


@cli.command()
@click.argument("path", type=click.Path(exists=True))
def cid(path: str) -> None:
    """Print the UnixFS CID (unixfs-v1-2025 profile) of a file or directory."""
    click.echo(str(cid_of_tree(path)))


@cli.command()
def profile() -> None:
    """Print the execution profile ID and the engine settings behind it."""
    click.echo(json.dumps({"profile": profile_id(), "wasmtime": wasmtime_version(), "settings": ENGINE_SETTINGS},
                          indent=2, sort_keys=True))


def main() -> None:
    """Entry point: a CodError becomes one line on stderr and its exit code."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CodError as exc:
        click.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        sys.exit(exc.code)
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["cli", "main"]
