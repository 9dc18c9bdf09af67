from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from .options import AsciiInt, NodeURL, writable_dir

CAP_HELP = {  # the node's caps (cod.node.caps.NodeCaps), published at /v1/info under "limits"
    "max_fuel": "Most limits.fuel a job may ask for.",
    "max_memory_bytes": "Most bytes a job's memories and tables may hold together: limits.memory_bytes plus "
                        "8 bytes for each element its module's tables may grow to.",
    "max_table_elements": "Most limits.table_elements (elements of each table) a job may ask for.",
    "max_timeout_ms": "Most limits.timeout_ms a job may ask for.",
    "max_stdout_bytes": "Most limits.stdout_bytes a job may ask for.",
    "max_stderr_bytes": "Most limits.stderr_bytes a job may ask for.",
    "max_output_bytes": "Most limits.output_bytes a job may ask for.",
    "max_upload_bytes": "Most bytes one upload (PUT /v1/blobs) may send.",
    "max_unpacked_bytes": "Most bytes one uploaded CAR may unpack to (each file counted every time it is linked).",
    "max_car_blocks": "Most blocks one uploaded CAR may hold.",
    "max_tree_depth": "Deepest entry of an uploaded tree (at most 256).",
    "max_entries": "Most entries (files, directories, symlinks) of an uploaded tree.",
    "max_fetch_cids": "Most CIDs one job may make the node fetch from --peer and --gateway sources "
                      "(a job lacking more is answered 409, to upload them).",
}


def _cap_options(command: Any) -> Any:
    from ..node.caps import NodeCaps

    defaults = NodeCaps()
    for name in reversed(list(CAP_HELP)):
        command = click.option(f"--{name.replace('_', '-')}", name, type=AsciiInt(min=1),
                               default=getattr(defaults, name), show_default=True, help=CAP_HELP[name])(command)
    return command


def _retention_options(command: Any) -> Any:
    """What the node keeps (SPEC 9.11): cod.node.collector.Retention."""
    from ..node.collector import Retention

    kept = Retention()
    options = [
        ("--keep-jobs", "keep_jobs", kept.keep_jobs, "Keep the results of this many most recent jobs."),
        ("--keep-results-for", "keep_results_for", kept.keep_results_s,
         "And of every job finished less than this many seconds ago; older results are removed."),
        ("--keep-blobs-for", "keep_blobs_for", kept.keep_blobs_s,
         "Remove uploaded and fetched content no job used for this many seconds."),
        ("--max-client-bytes", "max_client_bytes", kept.client_bytes,
         "Bytes of uploads, fetched content and results one client address may have stored (507 past it)."),
        ("--collect-every", "collect_every", kept.collect_every_s, "Seconds between collections (0: never)."),
    ]
    for flag, name, default, text in reversed(options):
        command = click.option(flag, name, type=AsciiInt(min=0), default=default, show_default=True,
                               help=text)(command)
    return command


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False), required=True,
              help="Where the node keeps its key, blobs, jobs and results.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=AsciiInt(0, 65535), default=1234, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--allow-listed-local-paths", "allow", multiple=True, type=click.Path(file_okay=False),
              help="Roots under which jobs may mount the node's local directories (repeatable).")
@click.option("--concurrency", type=AsciiInt(min=1),
              help="Jobs run at once (executor processes; default: cores).")
@click.option("--queue-size", type=AsciiInt(min=0), default=64, show_default=True,
              help="Jobs waiting beyond those running; past it the node answers 429.")
@click.option("--ledger", type=NodeURL(), metavar="URL",
              help="The FIL+ ledger the node asks whether a job's input CIDs are blessed.")
@click.option("--policy", type=click.Choice(["any", "prefer-fil-plus", "fil-plus-only"]), default="any",
              show_default=True, help="Which jobs the node takes: any; FIL+ jobs first (others get half the "
              "places); FIL+ jobs only (others refused, 403). Other than any needs --ledger.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="One line per finished job on stderr: text for people, json (one object per line) for machines.")
@click.option("--peer", "peers", multiple=True, type=NodeURL(), metavar="URL",
              help="Another cod node to ask for content a job names and this node lacks (repeatable).")
@click.option("--gateway", "gateways", multiple=True, type=NodeURL(), metavar="URL",
              help="An IPFS trustless gateway to fetch such content from as CARs, after the peers (repeatable).")
@click.option("--dataset", "datasets", multiple=True, type=click.Path(file_okay=False, exists=True), metavar="DIR",
              help="Offer DIR to jobs by its CID, hashed once here, never uploaded (repeatable).")
@click.option("--private-module", "private_modules", multiple=True, type=click.Path(dir_okay=False, exists=True),
              metavar="FILE", help="Run this module for jobs naming its CID; advertised by CID, never served.")
@_retention_options
@_cap_options
def serve(data_dir: str, host: str, port: int, allow: tuple[str, ...], concurrency: int | None,
          queue_size: int, ledger: str | None, policy: str, log_format: str, peers: tuple[str, ...],
          gateways: tuple[str, ...], datasets: tuple[str, ...], private_modules: tuple[str, ...],
          keep_jobs: int, keep_results_for: int, keep_blobs_for: int, max_client_bytes: int, collect_every: int,
          **caps: int) -> None:
    """Run a compute node: the /v1 HTTP API, signed results, executor processes.

    Specs and uploads over a --max-* cap are refused with an error naming the cap.

    \b
    Examples:
      cod serve --data-dir ./node1 --port 1234
      cod serve --data-dir ./node2 --port 1235 --concurrency 2 --max-fuel 2000000000000
      cod serve --data-dir ./node3 --ledger http://127.0.0.1:8090 --policy fil-plus-only
      cod serve --data-dir ./node1 --log-format json 2>> jobs.ndjson
      cod serve --data-dir ./node4 --peer http://10.0.0.2:1234 --gateway https://trustless-gateway.link
      cod serve --data-dir ./node5 --dataset /srv/corpus --private-module ./secret.wasm
    """
    from ..errors import NodeError
    from ..node.caps import NodeCaps
    from ..node.collector import Retention
    from ..node.joblog import writer
    from ..node.policy import Policy
    from ..node.server import serve_forever

    if policy != "any" and not ledger:
        raise click.UsageError(f"--policy {policy} needs --ledger URL (the ledger the node asks about inputs)")
    try:
        node_caps = NodeCaps(**caps)
    except ValueError as exc:
        raise NodeError(str(exc), "see cod serve --help for the caps") from None
    asyncio.run(serve_forever(Path(data_dir), host, port, allow_local=[Path(p) for p in allow],
                              concurrency=concurrency, queue_size=queue_size, caps=node_caps,
                              policy=Policy(policy, ledger), job_log=writer(log_format), peers=list(peers),
                              gateways=list(gateways), datasets=[Path(p) for p in datasets],
                              private_modules=[Path(p) for p in private_modules],
                              retention=Retention(keep_jobs, keep_results_for, keep_blobs_for, max_client_bytes,
                                                  collect_every)))


@click.command()
@click.option("--nodes", type=AsciiInt(min=1), default=3, show_default=True,
              help="How many nodes to start.")
@click.option("--bad-nodes", type=AsciiInt(min=0), default=0, show_default=True,
              help="How many of them lie: a wrong result with a valid signature.")
@click.option("--bad-mode", type=click.Choice(["late", "early", "random"]), default="late", show_default=True,
              help="Where the bad nodes' lie enters: late (the final result altered), early (a byte the job reads "
                   "first flipped: execution diverges at its start) or random (a byte of a read, random or clock "
                   "call chosen by the job's CID). They collude: the same lie for the same job.")
@click.option("--base-dir", type=click.Path(file_okay=False), help="Keep the nodes' data here (default: temporary).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="One line per finished job on stderr: text for people, json (one object per line) for machines.")
def devstack(nodes: int, bad_nodes: int, bad_mode: str, base_dir: str | None, log_format: str) -> None:
    """Run a local network of compute nodes until interrupted, and print how to use it.

    \b
    Examples:
      cod devstack --nodes 3
      cod devstack --nodes 4 --bad-nodes 1      # one node signs wrong results
      cod devstack --nodes 4 --bad-nodes 3 --bad-mode random   # three that agree on a lie made mid-run
      cod devstack --log-format json 2> jobs.ndjson
    """
    from verifier.devstack import Devstack

    from ..node.joblog import writer
    from ..web.server import until_interrupted

    if bad_nodes > nodes:
        raise click.BadParameter(f"{bad_nodes} is more than --nodes {nodes}", param_hint="'--bad-nodes'")
    if base_dir is not None:
        writable_dir(base_dir, "--base-dir")

    stack = Devstack(nodes, bad_nodes, Path(base_dir) if base_dir else None, bad_mode=bad_mode,
                     job_log=writer(log_format))  # checks its counts (UsageError)

    async def main() -> None:
        await stack.start()
        try:  # whatever ends it (Ctrl-C, a closed stdout), the nodes stop and their data goes
            for running in stack.nodes:
                mode = running.node.cheat
                bad = "" if mode is None else "  (lies)" if mode == "late" else f"  (lies) {mode}"
                click.echo(f"node {running.node.identity.node_id} at {running.url}{bad}")
            click.echo("\nTo use this network from another shell:\n")
            click.echo(f"    export COD_NODES={','.join(stack.urls)}")
            click.echo("    cod run --verify 3 vectors/wordcount.wasm -i vectors/data/wordcount\n", nl=True)
            sys.stdout.flush()
            click.echo("Press Ctrl-C to stop.", err=True)
            await until_interrupted()
        finally:
            await stack.stop()

    asyncio.run(main())
