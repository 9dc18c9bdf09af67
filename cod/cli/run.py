from __future__ import annotations

import json
import os
import re
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ..content.store import lookup, resolver
from ..errors import Indeterminate, InputError, UsageError
from ..jobspec import Limits
from ..local import PreparedJob, parse_env, parse_mount, prepare, prepare_docker, run_prepared
from . import EXIT_INTERRUPTED, report
from .options import AsciiFloat, AsciiInt, NodeURL, SpecDuration, SpecInt, SpecSize, SpecText, node_urls, spec_text, writable_parent


def _configured(name: str) -> Callable[[], int]:
    """A limit option's default: [limits] NAME of the config, or its COD_ variable, else cod's own."""
    def default() -> int:
        from ..config import load

        return load().limit(name)
    return default


def _shown(name: str, builtin: str) -> str:
    return f"{builtin}, or [limits] {name} of the config"


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("module", required=False)
@click.argument("args", nargs=-1)
@click.option("-f", "--file", "job_file", metavar="FILE",
              help="Read the job from a job file (JSON, - for stdin; README: job files). Options given here win.")
@click.option("--dry-run", is_flag=True, help="Print the job spec and its job CID, and run nothing.")
@click.option("--detach", is_flag=True,
              help="With --verify: submit the job to N nodes, print its ID and return; cod get or logs collect it.")
@click.option("-i", "--input", "inputs", multiple=True, metavar="SRC[:DST]",
              help="Mount SRC read-only at DST: a host directory or file, or a CID (ipfs://CID too) from the "
              "local store or the nodes (default /inputs; a file: /inputs/NAME).")
@click.option("--outputs", "outputs", metavar="PATH", help="Where the job sees its writable directory "
              "(default /outputs; / mounts it as the root, with no inputs).")
@click.option("--output-base", "output_base", type=click.Path(file_okay=False), metavar="DIR",
              help="Start the writable directory as a copy of DIR (hashed into the spec like -i).")
@click.option("-e", "--env", "env", multiple=True, metavar="K=V", help="Set an environment variable for the job.")
@click.option("--seed", type=SpecText("seed"),
              help="Seed of the job's random stream: 64 hex digits, or any text (hashed).")
@click.option("--fuel", type=SpecInt("limits.fuel"), default=_configured("fuel"),
              show_default=_shown("fuel", str(Limits.fuel)), help="Fuel limit (wasm instructions).")
@click.option("--memory", type=SpecSize("limits.memory_bytes"), default=_configured("memory"),
              show_default=_shown("memory", "256MiB"), help="Linear memory limit.")
@click.option("--timeout", type=SpecDuration("limits.timeout_ms"), default=_configured("timeout"),
              show_default=_shown("timeout", "600s"), help="Wall-clock safety timeout (no result if hit).")
@click.option("--max-stdout", type=SpecSize("limits.stdout_bytes"), default=_configured("max_stdout"),
              show_default=_shown("max_stdout", "16MiB"), help="Cap on stdout bytes.")
@click.option("--max-stderr", type=SpecSize("limits.stderr_bytes"), default=_configured("max_stderr"),
              show_default=_shown("max_stderr", "16MiB"), help="Cap on stderr bytes.")
@click.option("--max-output", type=SpecSize("limits.output_bytes"), default=_configured("max_output"),
              show_default=_shown("max_output", "1GiB"), help="Cap on bytes written under the output dir.")
@click.option("--entry-point", type=SpecText("entry_point"), help="Exported function to call (default _start).")
@click.option("--engine", type=click.Choice(["wasm", "docker"]), default="wasm", show_default=True,
              help="wasm: MODULE is a .wasm file. docker: MODULE is an image, ARGS its command (unverifiable).")
@click.option("--verify", "verify_n", type=AsciiInt(min=1),
              help="Run on N distinct nodes and compare their signed results.")
@click.option("--quorum", type=AsciiInt(min=1), help="With --verify: accept K-of-N agreement (reported as such).")
@click.option("--referee", type=click.Choice(["self", "none"]),
              help="With --verify: when signed claims differ, re-execute the job here and accept the claim equal "
              "to it, whatever the count (self, the default, or [verify] referee of the config), or keep voting "
              "only (none).")
@click.option("--referee-fuel", type=AsciiInt(min=1), metavar="FUEL",
              help="With --verify: the most fuel the referee re-executes (default the job's --fuel, or [verify] "
              "referee_fuel); past it, the outcome voting gives stands.")
@click.option("--referee-bytes", type=SpecSize("verify.referee_bytes"), metavar="SIZE",
              help="With --verify: the most the referee fetches by CID from the signing nodes (default 1GiB, or "
              "[verify] referee_bytes).")
@click.option("--audit", type=AsciiFloat(min=0, max=1), metavar="P",
              help="With --verify: re-execute here a share P of the runs whose claims agreed, chosen after the "
              "nodes answered (default 0, or [verify] audit); a failed audit makes the signers proven liars.")
@click.option("--require-local", is_flag=True,
              help="With --verify: use only nodes that already hold the module and every input (GET /v1/holdings).")
@click.option("--node", "nodes", multiple=True, metavar="URL", type=NodeURL(),
              help="A node to use (repeatable); else COD_NODES, the config file, or an embedded devstack.")
@click.option("--ledger", type=NodeURL(), metavar="URL",
              help="With --verify: report the evidence to this FIL+ ledger after the run (else COD_LEDGER, "
              "else \"ledger\" of the config file).")
@click.option("--output-dir", type=click.Path(file_okay=False), help="Where to put the results directory.")
@click.option("--car", type=click.Path(dir_okay=False), help="Also write the results as a CARv1 file.")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Compiled-module cache (private).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def run(module: str, args: tuple[str, ...], inputs: tuple[str, ...], outputs: str | None,
        output_base: str | None, env: tuple[str, ...], seed: str | None,
        fuel: int, memory: int, timeout: int, max_stdout: int, max_stderr: int, max_output: int,
        entry_point: str | None, engine: str, verify_n: int | None, quorum: int | None, nodes: tuple[str, ...],
        ledger: str | None, output_dir: str | None, car: str | None, cache_dir: str | None, as_json: bool,
        job_file: str | None, dry_run: bool, detach: bool, require_local: bool, referee: str | None = None,
        referee_fuel: int | None = None, referee_bytes: int | None = None, audit: float | None = None) -> None:
    """Run MODULE.wasm with ARGS: locally, or with --verify N on N nodes, and print the result CID.

    The job's stdout goes to stdout; the report, and the job's stderr after it, to stderr.
    Exit codes: 0 verified (or verified by the referee, or a local run), 10 mismatch, 11 incomplete,
    12 unverifiable, 13 profile mismatch, 26 referee disagrees, and those of README "Exit codes and errors".

    \b
    Examples:
      cod run vectors/hello.wasm
      cod run --verify 3 vectors/wordcount.wasm -i vectors/data/wordcount
      cod run --verify 3 --quorum 2 job.wasm --node http://10.0.0.1:1234 --node http://10.0.0.2:1234 ...
      cod run --dry-run --json vectors/hello.wasm > job.json && cod run -f job.json
      cod run --verify 3 --detach vectors/hello.wasm && cod logs SHORT_ID
      cod add data/ && cod run --verify 3 --require-local -i bafybei...:/data wordcount.wasm
    """
    if job_file is not None:
        if module is not None:
            raise click.UsageError("give either MODULE [ARGS] or -f FILE, not both")
        from ..jobfile import read_job_file

        merged = _merge_job_file(read_job_file(job_file), click.get_current_context())
        module, args = merged.pop("module"), merged.pop("args")
        inputs, env, seed, entry_point = merged["inputs"], merged["env"], merged["seed"], merged["entry_point"]
        outputs, output_base, engine = merged["outputs"], merged["output_base"], merged["engine"]
        verify_n, quorum, nodes = merged["verify_n"], merged["quorum"], merged["nodes"]
        fuel, memory, timeout = merged["fuel"], merged["memory"], merged["timeout"]
        max_stdout, max_stderr, max_output = merged["max_stdout"], merged["max_stderr"], merged["max_output"]
    if module is None:
        raise click.UsageError("Missing argument 'MODULE' (or give a job file with -f FILE)")
    if detach and verify_n is None:
        raise click.UsageError("--detach goes with --verify N: a local run has nothing to detach from")
    limits = Limits(fuel=fuel, memory_bytes=memory, stdout_bytes=max_stdout, stderr_bytes=max_stderr,
                    output_bytes=max_output, timeout_ms=timeout)
    networked = verify_n is not None or engine == "docker"
    if (nodes or quorum or ledger or require_local or referee_fuel or referee_bytes or audit is not None
            or referee) and not networked:
        raise click.UsageError("--node, --quorum, --ledger, --require-local, --referee, --referee-fuel, "
                               "--referee-bytes and --audit go with --verify N")
    if engine == "docker":
        if outputs or output_base:
            raise click.UsageError("--outputs and --output-base go with wasm jobs")
        spec_text(module, "image")
    else:
        _check_module_file(module)
    _check_texts(args, env, inputs)
    if outputs is not None:
        spec_text(outputs, "outputs")
    if output_dir is not None:
        writable_parent(output_dir, "--output-dir", create=True)
    if car is not None:
        writable_parent(car, "--car", create=False)
    ledger_at = None
    if networked:
        from ..config import ledger_url

        nodes = tuple(node_urls(nodes))
        _check_embedded(nodes, verify_n or 1)
        ledger_at = ledger_url(ledger)  # a bad COD_LEDGER or config value is refused before the run
    if engine == "docker":
        job = prepare_docker(module, list(args), inputs=list(inputs), env=list(env), limits=limits,
                             resolve=lookup)
    else:
        job = prepare(module, list(args), inputs=list(inputs), env=list(env), seed=seed, entry_point=entry_point,
                      resolve=lookup if networked else _resolver(), remote=networked,
                      limits=limits, outputs=outputs, output_base=output_base)
    if dry_run:
        _dry_run(job, module, args, inputs, env, seed, entry_point, outputs, output_base, engine, limits, verify_n,
                 quorum, nodes, as_json)
        return
    if engine == "docker" or verify_n is not None:
        if engine != "docker":  # a file that is no module fails here, as a local run would, before any node
            from ..local import check_prepared

            check_prepared(job, _engine(cache_dir))
        _run_network(job, verify_n or 1, quorum, nodes, output_dir, car, as_json, ledger_at, detach, require_local,
                     _cache_path(cache_dir) if engine != "docker" else None,
                     _judging(referee, referee_fuel, referee_bytes, audit))
        return
    engine_ = _engine(cache_dir)
    from verifier.reputation import now

    from ..wasm.hostcall import OUT_OF_FUEL

    started = now()
    with _interrupt_exits(), _deadline(job.spec.limits.timeout_ms):
        result = run_prepared(job, output_dir, engine_, car)
    view = _record_local(job, result, started, now(), car)
    if as_json:
        click.echo(json.dumps(view, indent=2, sort_keys=True))
        return
    click.echo(f"Job CID:     {result.job_cid}  (short ID {view['short_id']})", err=True)
    click.echo(f"Profile:     {result.profile}", err=True)
    trap = f" (trap: {result.trap})" if result.trap else ""
    click.echo(f"Exit code:   {result.exit_code}{trap}", err=True)
    click.echo(f"Fuel used:   {result.fuel_used}", err=True)
    if result.trap == OUT_OF_FUEL:
        click.echo(_fuel_hint(result.fuel_used), err=True)
    click.echo(f"Results:     {result.results_dir}", err=True)
    if car:
        click.echo(f"CAR:         {car}", err=True)
    click.echo(f"Result CID:  {result.result_cid}", err=True)
    _show_output(result.results_dir)


def _fuel_hint(fuel_used: int | None, nodes: bool = False) -> str:
    """What to do about a run that ran out of fuel: the fuel it used, the option that raises it."""
    who = "every node ran out of fuel: " if nodes else ""
    return (f"hint: {who}the job used all the fuel it was given ({fuel_used}): give more with --fuel N (or fuel "
            "in the config file's [limits]); a node runs at most the max_fuel its /v1/info publishes")


_FUEL_OVER_CAP = re.compile(r"limits\.fuel = (\d{1,30}) is over the cap max_fuel = (\d{1,30})")


def _fuel_cap_hint(verification: Any) -> str | None:
    """When nodes refused the job's fuel as over their max_fuel (422 CapExceeded), what to give
    --fuel: at most the smallest cap they named; None when none did."""
    found = [m for a in verification.answers if a.error and (m := _FUEL_OVER_CAP.search(a.error))]
    if not found:
        return None
    cap = min(int(m.group(2)) for m in found)
    return (f"hint: --fuel {found[0].group(1)} is over the max_fuel the nodes publish ({cap}): give --fuel {cap} "
            "or less, or nodes with a higher max_fuel")


def _out_of_fuel(verification: Any) -> list[Any]:
    """The valid answers, when every node that signed a valid result ran out of fuel; else none."""
    from ..wasm.hostcall import OUT_OF_FUEL

    valid = [a for a in verification.answers if a.valid]
    return valid if valid and all(a.trap == OUT_OF_FUEL for a in valid) else []


def _cache_path(cache_dir: str | None) -> Path:
    """The compiled-module cache of this command: ``cache_dir``, else COD_CACHE_DIR, else cod's default."""
    from ..wasm.engine import default_cache_dir

    return Path(cache_dir or os.environ.get("COD_CACHE_DIR") or default_cache_dir())


def _engine(cache_dir: str | None) -> Any:
    """The engine of a local run (or of the local check before a verified one), its compiled
    modules cached in :func:`_cache_path`."""
    from ..wasm.engine import Engine

    # the timeout is enforced by _deadline from outside the guest: no epoch checks in its loops
    return Engine(_cache_path(cache_dir), wall_clock=False)


def _show_output(results_dir: Path) -> None:
    """The job's stdout on stdout (after a marker line on stderr), then its stderr, if any, on stderr.
    Neither is read through a link (LocalPathError: a node writes both as files)."""
    from ..resultsdir import open_entry

    stdout, stderr = open_entry(results_dir, "stdout"), open_entry(results_dir, "stderr")
    click.echo("--- stdout ---", err=True)
    if stdout is not None:
        with stdout:
            while chunk := stdout.read(1 << 16):
                sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
    if stderr is not None:
        with stderr:
            chunk = stderr.read(1 << 16)
            if chunk:
                click.echo("--- stderr ---", err=True)
                sys.stderr.flush()
            while chunk:
                sys.stderr.buffer.write(chunk)
                chunk = stderr.read(1 << 16)
        sys.stderr.buffer.flush()


def _record_local(job: PreparedJob, result: Any, started: str, finished: str, car: str | None) -> dict[str, Any]:
    """Keep a local run in the requester's records (outcome "local"); returns its job view."""
    from verifier.jobview import recorded_view
    from verifier.reputation import Records

    records = Records()
    records.record_run(result.job_cid, started_at=started, finished_at=finished, outcome="local",
                       result_cid=result.result_cid, n=1, quorum=0, spec=job.spec.to_dict(), answers=[],
                       extra={"exit_code": result.exit_code, "trap": result.trap, "fuel_used": result.fuel_used,
                              "profile": result.profile, "results_dir": str(Path(result.results_dir).resolve()),
                              "car": str(Path(car).resolve()) if car else None, "result_checked": True})
    view = recorded_view(records, result.job_cid)
    assert view is not None
    return view


def _merge_job_file(job: Any, ctx: click.Context) -> dict[str, Any]:
    """The job file's values under the names of run's parameters; a value given on the command
    line wins. Limits go through the same checks as their options."""
    from click.core import ParameterSource

    params = {p.name: p for p in ctx.command.params}

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE

    def pick(name: str, value: Any) -> Any:
        if given(name) or value in (None, [], {}):
            return ctx.params[name]
        param = params[name]
        return param.type_cast_value(ctx, value) if param.type is not None else value

    merged: dict[str, Any] = {"module": job.module, "args": tuple(job.args or ())}
    for name, value in (("inputs", tuple(job.inputs)), ("env", tuple(job.env)), ("seed", job.seed),
                        ("entry_point", job.entry_point), ("outputs", job.outputs),
                        ("output_base", job.output_base), ("engine", job.engine), ("verify_n", job.verify),
                        ("quorum", job.quorum), ("nodes", tuple(job.nodes))):
        merged[name] = pick(name, value)
    for name in ("fuel", "memory", "timeout", "max_stdout", "max_stderr", "max_output"):
        merged[name] = pick(name, job.limits.get(name))
    return merged


def _dry_run(job: PreparedJob, module: str, args: tuple[str, ...], inputs: tuple[str, ...], env: tuple[str, ...],
             seed: str | None, entry_point: str | None, outputs: str | None, output_base: str | None, engine: str,
             limits: Limits, verify_n: int | None, quorum: int | None, nodes: tuple[str, ...], as_json: bool) -> None:
    """Print the spec and job CID (and, with --json, the job file that gives them) and run nothing."""
    from ..jobfile import JobFile

    spec = job.spec.to_dict()
    job_cid = str(job.spec.cid)
    if not as_json:
        click.echo(f"Job CID:     {job_cid}", err=True)
        click.echo("--- spec ---", err=True)
        click.echo(json.dumps(spec, indent=2, sort_keys=True))
        return
    absolute = [str(Path(i.partition(":")[0]).resolve()) + i.partition(":")[1] + i.partition(":")[2] for i in inputs]
    saved = JobFile(module=str(Path(module).resolve()) if engine != "docker" else module, args=list(args),
                    inputs=absolute, env=list(env), seed=seed, entry_point=entry_point, outputs=outputs,
                    output_base=str(Path(output_base).resolve()) if output_base else None,
                    engine=engine if engine != "wasm" else None,
                    limits={"fuel": limits.fuel, "memory": limits.memory_bytes, "timeout": f"{limits.timeout_ms}ms",
                            "max_stdout": limits.stdout_bytes, "max_stderr": limits.stderr_bytes,
                            "max_output": limits.output_bytes},
                    verify=verify_n, quorum=quorum, nodes=list(nodes))
    click.echo(json.dumps({"job_cid": job_cid, "spec": spec, "job": saved.to_dict()}, indent=2, sort_keys=True))


def _resolver() -> Callable[[str], Path | None]:
    """Content by CID for a local run: the local store, then (fetched into it) the nodes and
    gateways configured (COD_NODES or the config file; COD_GATEWAYS or the config file). A
    verified run never fetches: the nodes that hold the content run it (SPEC 11, step 1)."""
    from ..config import load

    config = load()
    urls = config.nodes
    if not urls and not config.gateways:
        return lookup
    return resolver(urls, config.gateways)


def _check_module_file(path: str) -> None:
    """Refuse (InputError) a module path that names no regular file: reading a FIFO would wait
    for a writer for ever, a device such as /dev/zero would never end. A missing path is left
    to prepare(), which says so."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise InputError(f"cannot read module {path!r}: it is {what}", "name a .wasm file")


def _check_texts(args: tuple[str, ...], env: tuple[str, ...], inputs: tuple[str, ...]) -> None:
    """Refuse (SpecError) text bound for the spec that is not UTF-8, before any file is read."""
    for n, arg in enumerate(args, start=1):
        spec_text(arg, f"args[{n}]")
    for item in env:
        parse_env(item)
    for item in inputs:
        parse_mount(item)


def _check_embedded(urls: tuple[str, ...], n: int) -> None:
    """With no nodes configured a run starts N nodes here: refuse N past the devstack's bound."""
    if urls:
        return
    from verifier.devstack import MAX_NODES  # the node server: only when this command would run the nodes

    if n > MAX_NODES:
        raise UsageError(f"--verify {n}: no nodes are configured, and an embedded devstack runs at most "
                          f"{MAX_NODES} nodes", "name nodes with --node or COD_NODES, or verify on fewer")


@contextmanager
def _deadline(timeout_ms: int) -> Iterator[None]:
    """While a job runs here, end the process when it passes ``limits.timeout_ms`` (exit 7).

    The engine runs without epoch interruption (a check in every guest loop, 15-30% of a
    compute-bound guest's time), so the wall-clock safety net is this watcher thread. As
    with Ctrl-C, results are installed by one rename when complete: none is left
    half-written. The timeout covers the run and the hashing of its results.
    """
    done = threading.Event()

    def watch() -> None:
        if not done.wait(timeout_ms / 1000):
            report(f"indeterminate outcome (timeout): the job ran past its wall-clock timeout "
                   f"(limits.timeout_ms = {timeout_ms}); no result was kept",
                   "raise --timeout, or lower --fuel so the job ends by itself", Indeterminate.code)
            os._exit(Indeterminate.code)

    watcher = threading.Thread(target=watch, name="cod-timeout", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


@contextmanager
def _interrupt_exits() -> Iterator[None]:
    """While a job runs here, Ctrl-C ends the process at once: ``error: interrupted``, exit 130.

    The guest runs inside wasmtime on this thread, where Python raises KeyboardInterrupt only
    when the guest calls the host (a guest loop may never), and ctypes drops an exception raised
    on entry to a host call, so the run would go on. SIGINT therefore only wakes a watcher
    thread, which exits the process: results are installed by one rename when complete, so
    none is left half-written (the hidden staging directory beside it may remain).
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield  # SIGINT ignored (a background job) or handled by someone else: leave it so
        return
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    previous_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGINT, lambda signum, frame: None)

    def watch() -> None:
        while True:
            data = os.read(wake_r, 1)
            if not data:
                os.close(wake_r)
                return
            if data[0] == signal.SIGINT:
                report("interrupted", "a run cut short keeps no result", EXIT_INTERRUPTED)
                os._exit(EXIT_INTERRUPTED)

    threading.Thread(target=watch, name="cod-sigint", daemon=True).start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.close(wake_w)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""What stops a verified run: Ctrl-C, and SIGTERM (timeout(1), systemd, docker stop, an Airflow task's kill)."""


async def _stoppable(run: Any) -> Any:
    """Await ``run`` (a verified run) so that the first SIGINT or SIGTERM cancels it, which cancels the
    job on every node and records the run cancelled (verifier.verify.cancel_everywhere), and then exits
    as Ctrl-C does (KeyboardInterrupt: exit 130); a second signal while it cancels (at most
    CANCEL_TIMEOUT_S) is ignored, not a traceback in the middle of the cancel."""
    import asyncio

    task = asyncio.ensure_future(run)
    loop = asyncio.get_running_loop()
    stopped: list[bool] = []

    def stop() -> None:
        if not stopped:
            stopped.append(True)
            task.cancel()

    handled: list[signal.Signals] = []
    for signum in STOP_SIGNALS:
        try:
            loop.add_signal_handler(signum, stop)
            handled.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            pass
    try:
        return await task
    except asyncio.CancelledError:
        if stopped:
            raise KeyboardInterrupt from None
        raise
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def _judging(referee: str | None, referee_fuel: int | None, referee_bytes: int | None,
             audit: float | None) -> dict[str, Any]:
    """The referee's and audits' options of verify(): each given option, else [verify] of the config
    (or its COD_ variable), else cod's default (referee self, the job's fuel, 1 GiB, no audits)."""
    from ..config import load

    config = load()
    given = {"referee": referee, "referee_fuel": referee_fuel, "referee_bytes": referee_bytes, "audit": audit}
    return {name: value if value is not None else config.verify(name) for name, value in given.items()}


def _run_network(job: PreparedJob, n: int, quorum: int | None, nodes: tuple[str, ...], output_dir: str | None,
                 car: str | None, as_json: bool, ledger: str | None = None, detach: bool = False,
                 require_local: bool = False, cache_dir: Path | None = None,
                 judging: dict[str, Any] | None = None) -> None:
    import asyncio

    from verifier.network import configured_nodes, run_verified
    from verifier.verify import check_quorum

    from ..content.car import write_car
    from .progress import VerifyProgress

    check_quorum(n, quorum)  # a usage error, before any node is asked
    steps = VerifyProgress(quiet=as_json)
    destination = Path(output_dir) if output_dir else Path("cod-results") / str(job.spec.cid)
    urls = configured_nodes(list(nodes))
    if detach:
        _detach(job, n, quorum, urls, as_json, steps)
        return
    try:
        verification = asyncio.run(_stoppable(run_verified(job, n, urls, quorum=quorum, output_dir=destination,
                                                           progress=steps, events=steps, require_local=require_local,
                                                           cache_dir=cache_dir,
                                                           **(judging or {"referee": "self"}))))
    except BaseException:
        steps.failed()
        raise
    if ledger is not None:  # after the run; whatever the ledger does, the run's exit code stands
        from verifier.ledger import report as report_evidence

        steps("Reporting the evidence to the ledger")
        verification.ledger = asyncio.run(report_evidence(ledger, job.spec.to_dict(), verification.statements()))
        if verification.fraud_proofs:  # each proven liar's proof; a refusal is reported, never fatal
            verification.ledger["fraud_proofs"] = _post_proofs(ledger, verification.fraud_proofs)
    steps.finish()
    if verification.results_dir is not None and car:
        write_car(verification.results_dir, car)
    view = _verified_view(verification, car)
    if as_json:
        click.echo(json.dumps(view, indent=2, sort_keys=True))
    else:
        _report(verification, view["short_id"])
        if verification.results_dir is not None:
            _show_output(verification.results_dir)
    code = verification.exit_code
    if verification.outcome == "unverifiable" and n == 1:
        code = 0
    sys.exit(code)


def _post_proofs(ledger: str, proof_ids: list[str]) -> list[dict[str, Any]]:
    import asyncio

    from verifier.ledger import report_fraud
    from verifier.reputation import Records

    from ..fraud import FraudProof

    where = Records().path.parent / "fraud"
    return [asyncio.run(report_fraud(ledger, FraudProof.from_bytes((where / f"{pid}.json").read_bytes())))
            for pid in proof_ids]


def _verified_view(verification: Any, car: str | None) -> dict[str, Any]:
    """The job view of the run just recorded, with what came after it (the CAR, the ledger's answer)."""
    from verifier.jobview import recorded_view
    from verifier.reputation import Records

    records = Records()
    extra = {key: value for key, value in (("car", str(Path(car).resolve()) if car else None),
                                           ("ledger", verification.ledger)) if value is not None}
    if verification.run_id is not None and extra:
        records.annotate(verification.run_id, **extra)
    view = recorded_view(records, verification.job_cid)
    assert view is not None
    return view


def _detach(job: PreparedJob, n: int, quorum: int | None, urls: list[str], as_json: bool, steps: Any) -> None:
    """Submit the job to N nodes and return: cod get / cod logs collect and compare later."""
    import asyncio

    from verifier.detach import submit

    if not urls:
        raise UsageError("--detach needs nodes that outlive this command; an embedded devstack stops with it",
                         "name nodes with --node, COD_NODES or the config file")
    view = asyncio.run(submit(job, urls, n, quorum=quorum, progress=steps))
    steps.finish()
    if as_json:
        click.echo(json.dumps(view, indent=2, sort_keys=True))
        return
    click.echo(f"Job CID:     {view['job_cid']}", err=True)
    click.echo(f"Submitted to {len(view['nodes'])} node(s); collect with: cod get {view['short_id']}  "
               f"(or cod logs {view['short_id']})", err=True)
    click.echo(view["short_id"])


_COLOURS = {"agrees": "green", "DISAGREES": "red", "failed": "yellow", "unreachable": "yellow"}


def _name_dissent(verification: Any, paint: Any) -> None:
    """Name the nodes that signed a result other than the one a strict majority signed: on a
    MISMATCH with a majority, or a quorum that outvoted them, they are the ones to distrust."""
    from verifier.verify import consistent_groups, majority

    for answer in verification.answers:
        if answer.contradicts:
            click.echo(paint(f"Contradicts: node {answer.node_id} ({answer.url}) signed under profile "
                             f"{answer.profile}, but advertised {answer.advertised}", "DISAGREES"), err=True)
    liars = set(verification.liars)
    judge, found = (("referee", verification.referee) if verification.referee is not None
                    else ("audit", getattr(verification, "audit", None)))
    ruled = (found or {}).get("result_cid")
    for answer in verification.answers:
        if answer.node_id in liars:
            click.echo(paint(f"Proven liar: node {answer.node_id} ({answer.url}) signed {answer.result_cid}; the "
                             f"{judge}'s re-execution gave {ruled}", "DISAGREES"), err=True)
    groups = consistent_groups(verification.answers)
    winner = verification.result_cid or majority(groups)
    if winner is None:
        if len(verification.groups) > 1 and not liars:
            click.echo("No majority: every group above is suspect; rerun on more nodes (--verify N).", err=True)
        return
    backing = len(groups.get(winner, []))
    for answer in verification.answers:
        if answer.valid and not answer.contradicts and answer.result_cid != winner and answer.node_id not in liars:
            click.echo(paint(f"Outvoted:    node {answer.node_id} ({answer.url}) signed {answer.result_cid}; "
                             f"{backing} node(s) signed {winner}", "DISAGREES"), err=True)


def _report(verification: Any, short_id: str) -> None:
    """The text report on stderr: outcome, every node's status, the groups; coloured on a terminal only."""
    from verifier.verify import statuses

    tty = sys.stderr.isatty()

    def paint(text: str, status: str) -> str:
        return click.style(text, fg=_COLOURS[status], bold=status == "DISAGREES") if tty else text

    click.echo(f"Job CID:     {verification.job_cid}  (short ID {short_id})", err=True)
    click.echo(f"Outcome:     {verification.outcome.upper()}"
               + (f" ({verification.note})" if verification.note else ""), err=True)
    click.echo("Nodes:", err=True)
    for answer, (status, detail) in zip(verification.answers, statuses(verification)):
        label = f"{status} ({detail})" if status == "failed" else f"{status:<9} {detail}"
        click.echo(f"  {answer.node_id}  {answer.url}  {paint(label, status)}", err=True)
    for url, reason in verification.unreachable:
        click.echo(f"  {'-':<52}  {url}  {paint(f'left out ({reason})', 'unreachable')}", err=True)
    if verification.groups:
        click.echo("Groups:", err=True)
        for cid in sorted(verification.groups, key=lambda c: (-len(verification.groups[c]), c)):
            click.echo(f"  {cid} -> {', '.join(sorted(verification.groups[cid]))}", err=True)
    _name_dissent(verification, paint)
    starved = _out_of_fuel(verification)
    if starved:
        codes = sorted({str(a.exit_code) for a in starved})
        click.echo(f"Exit code:   {', '.join(codes)} (trap: {starved[0].trap})", err=True)
        used = sorted({a.fuel_used or 0 for a in starved})
        click.echo(f"Fuel used:   {', '.join(str(f) for f in used)}", err=True)
        click.echo(_fuel_hint(used[-1], nodes=True), err=True)
    capped = _fuel_cap_hint(verification)
    if capped:
        click.echo(capped, err=True)
    if verification.result_cid:
        click.echo(f"Result CID:  {verification.result_cid}", err=True)
    if verification.results_dir is not None:
        click.echo(f"Results:     {verification.results_dir}", err=True)
    if verification.ledger is not None:
        from verifier.ledger import summary

        click.echo(summary(verification.ledger), err=True)
        from verifier.ledger import fraud_summary

        for posted in verification.ledger.get("fraud_proofs", []):
            click.echo(fraud_summary(posted), err=True)
