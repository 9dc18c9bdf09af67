"""`cod fraud ...`: fraud proofs (SPEC 11.5), checked offline by re-executing the job.

    cod fraud verify FILE [--node URL ...] [--referee-fuel F] [--json]
        exit 0 proven; 28 refuted (a false accusation) or not a fraud proof; 29 undecided
    cod fraud show FILE [--json]
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from ..errors import FraudProofError, FraudUndecided, InputError
from .options import AsciiInt, NodeURL
from .output import Column, Output, output_options


def _read(path: str) -> Any:
    from ..fraud import FRAUD_MAX_BYTES, FraudProof

    try:
        with open(path, "rb") as handle:
            data = handle.read(FRAUD_MAX_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read the fraud proof {path!r}: {exc.strerror}",
                         "give the path of a fraud proof file") from None
    return FraudProof.from_bytes(data)


def _summary(proof: Any) -> dict[str, Any]:
    statement = proof.claim.statement
    return {"proof_id": proof.proof_id, "job_cid": proof.job_cid, "liar": proof.liar, "profile": proof.profile,
            "claimed_result": statement.result, "referee": dict(proof.referee), "segment": proof.segment,
            "sources": list(proof.sources), "bytes": len(proof.canonical_bytes())}


@click.group()
def fraud() -> None:
    """Fraud proofs: a node's signed lie, checked by re-executing the job.

    \b
    Examples:
      cod fraud show proof.json
      cod fraud verify proof.json --node http://127.0.0.1:8400
    """


@fraud.command("show")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(file: str, as_json: bool) -> None:
    """Show a fraud proof: its ID, the accused node, the job, the claim and the referee's result.

    The proof is parsed strictly and its claim's signature checked (exit 28 if it is not a
    fraud proof); nothing is re-executed.

    \b
    Examples:
      cod fraud show proof.json
      cod fraud show proof.json --json
    """
    from ..text import printable

    summary = _summary(_read(file))
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    for label, key in (("proof", "proof_id"), ("job", "job_cid"), ("liar", "liar"), ("profile", "profile"),
                       ("claimed", "claimed_result")):
        click.echo(f"{label:<9} {printable(str(summary[key]))}")
    ref = summary["referee"]
    click.echo(f"referee   {ref['result_cid']} ({ref['method']}, exit {ref['exit_code']}, {ref['fuel_used']} fuel)")
    if summary["sources"]:
        click.echo(f"sources   {printable(' '.join(summary['sources']))}")


@fraud.command("verify")
@click.argument("file")
@click.option("--node", "nodes", multiple=True, type=NodeURL(), metavar="URL",
              help="A node to fetch the job's content from by CID (repeatable); the proof's sources are asked too.")
@click.option("--referee-fuel", type=AsciiInt(min=1), metavar="FUEL",
              help="The most fuel the re-execution may use (default the job's fuel); past it: undecided (29).")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Compiled-module cache directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def verify(file: str, nodes: tuple[str, ...], referee_fuel: int | None, cache_dir: str | None,
           as_json: bool) -> None:
    """Check a fraud proof by re-executing its job here.

    Content comes from the local content store (COD_STORE, else COD_HOME/store), else by CID
    from --node URLs and the proof's sources, every block checked against its CID.
    Exit codes: 0 proven (the node's signed result is false), 28 refuted (re-execution gives
    exactly what the node signed: a false accusation) or not a fraud proof, 29 undecided
    (another profile, content no source gives, the fuel bound).

    \b
    Examples:
      cod fraud verify proof.json
      cod fraud verify proof.json --node http://127.0.0.1:8400 --json
    """
    from ..content.store import ContentStore
    from ..fraud import PROVEN, REFUTED, check
    from .run import _cache_path

    proof = _read(file)
    verdict = asyncio.run(check(proof, ContentStore(), urls=list(nodes), fuel=referee_fuel,
                                cache_dir=_cache_path(cache_dir)))
    code = 0 if verdict.status == PROVEN else FraudProofError.code if verdict.status == REFUTED \
        else FraudUndecided.code
    if as_json:
        click.echo(json.dumps(dict(_summary(proof), verdict=verdict.to_json()), indent=2, sort_keys=True))
        sys.exit(code)
    if verdict.status == REFUTED:
        raise FraudProofError(f"refuted: {verdict.reason}", "a refuted proof accuses an honest node; do not report it")
    if verdict.status != PROVEN:
        raise FraudUndecided(f"undecided: {verdict.reason}",
                             "add the content (cod add PATH), name a node that holds it (--node URL), or raise "
                             "--referee-fuel")
    click.echo(f"proven: node {proof.liar} signed {proof.claim.statement.result} for job {proof.job_cid}; "
               f"re-executing it gives {verdict.result_cid} ({verdict.fuel_used} fuel)")
    click.echo(f"proof {proof.proof_id}")




@fraud.command("list")
@output_options
def list_(out: Output) -> None:
    """List the fraud proofs this requester holds: those its referee built (COD_HOME/fraud).

    \b
    Examples:
      cod fraud list
      cod fraud list --json
      cod fraud list --csv
    """
    from verifier.reputation import default_path

    where = default_path().parent / "fraud"
    rows: list[dict[str, Any]] = []
    for path in sorted(where.glob("*.json")) if where.is_dir() else []:
        try:
            summary = _summary(_read(str(path)))
            rows.append(dict(summary, file=str(path), method=summary["referee"]["method"], error=None))
        except (FraudProofError, InputError) as exc:
            rows.append({"file": str(path), "error": exc.message})
    columns = [Column("proof_id", "PROOF"), Column("job_cid", "JOB"), Column("liar", "LIAR"),
               Column("method", "METHOD"), Column("error", "UNREADABLE"), Column("file", "FILE")]
    out.rows(rows, columns, empty="no fraud proofs held")
