"""`cod ledger ...`: the FIL+ moderation ledger (service, audit, blessings, governance).

Server-side commands take ``--data-dir``; client commands take ``--ledger URL`` (else
COD_LEDGER, else "ledger" in the config file) and ``--json``. Signing commands take
``--key FILE`` (a key file from `cod keygen`; a moderator's may come from "moderator_key" in
the config file).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from ..errors import NotFound, UsageError
from .output import Column, Output, output_options
from .witness import witness

LEDGER_OPTION_HELP = "The ledger's URL (default: COD_LEDGER, else \"ledger\" in the config file)."


def ledger_option(command: Any) -> Any:
    return click.option("--ledger", "ledger_url", metavar="URL", help=LEDGER_OPTION_HELP)(command)


def json_option(command: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(command)


def client(url: str | None) -> Any:
    """A LedgerClient of --ledger / COD_LEDGER / the config file; UsageError when none is set."""
    from ..ledger.client import LedgerClient, ledger_url

    resolved = ledger_url(url)
    if resolved is None:
        raise UsageError("no ledger is configured",
                         "pass --ledger URL, set COD_LEDGER, or put \"ledger\" in the config file")
    return LedgerClient(resolved)


def call(coro: Any) -> Any:
    from ..ledger.client import run

    return run(coro)


def identity(key: str | None, config_key: str | None = None) -> Any:
    """The key of --key FILE (or of ``config_key`` in the config file)."""
    from ..config import load
    from ..identity import Identity

    path = key or (load().get(config_key) if config_key else None)
    if path is None:
        raise UsageError("no key file given", "pass --key FILE (cod keygen FILE makes one)")
    return Identity.from_key_file(Path(path))


def emit(value: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True) if as_json else text)


def show(out: Output, value: Any, text: str) -> None:
    """A read command's one object: JSON, newline-delimited JSON or CSV as asked, else ``text``."""
    out.one(value, lambda: click.echo(text))


@click.group()
def ledger() -> None:
    """The FIL+ moderation ledger: a transparency log of blessings, eligibility and decisions.

    \b
    Examples:
    cod ledger init --data-dir D --root-key ID --threshold 1
    cod ledger serve --data-dir D --port 8090
    cod ledger verify --url http://127.0.0.1:8090 --vkey VKEY
    """


@ledger.command()
@click.option("--data-dir", type=click.Path(file_okay=False), required=True, help="Where the ledger keeps its files.")
@click.option("--root-key", "root_keys", multiple=True, required=True, metavar="ID",
              help="A root key holder's ID (cod keygen prints it); repeatable.")
@click.option("--threshold", type=click.IntRange(min=1), required=True,
              help="Root key signatures a moderator change needs (K of the root keys).")
@click.option("--origin", help="The log's origin (its checkpoints' first line and key name).")
@json_option
def init(data_dir: str, root_keys: tuple[str, ...], threshold: int, origin: str | None, as_json: bool) -> None:
    """Create a ledger: its log key (log.key, 0600), the genesis entry naming the root keys, a checkpoint.

    \b
    Examples:
      cod keygen root.key
      cod ledger init --data-dir ./ledger --root-key 12D3KooW... --threshold 1
    """
    from ..ledger.log import Ledger

    made = Ledger.init(Path(data_dir), list(root_keys), threshold, origin)
    info = made.info()
    made.close()
    emit(info, as_json, f"ledger {info['origin']} created in {data_dir}\nverifier key: {info['vkey']}")


@ledger.command()
@click.option("--data-dir", type=click.Path(file_okay=False), required=True, help="The ledger's data directory.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8090, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--scan-node", "scan_nodes", multiple=True, metavar="URL",
              help="A compute node whose signed statements the ledger reads (repeatable).")
@click.option("--scan-interval", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds between two scans of a node.")
@click.option("--witness", "witnesses", multiple=True, metavar="VKEY=URL",
              help="A C2SP tlog-witness to cosign every checkpoint (repeatable).")
def serve(data_dir: str, host: str, port: int, scan_nodes: tuple[str, ...], scan_interval: float,
          witnesses: tuple[str, ...]) -> None:
    """Serve the ledger's HTTP API (SPEC.md 12.7) and the log as C2SP tlog-tiles.

    \b
    Examples:
      cod ledger serve --data-dir ./ledger --port 8090
      cod ledger serve --data-dir ./ledger --scan-node http://127.0.0.1:1234 --witness VKEY=http://127.0.0.1:8091
    """
    from ..ledger.server import Witness, serve_forever
    from ..urls import node_url_problem

    for url in scan_nodes:
        problem = node_url_problem(url)
        if problem:
            raise UsageError(f"--scan-node {url!r} {problem}", "give a node's URL, e.g. http://127.0.0.1:1234")
    parsed = [Witness.parse(w) for w in witnesses]
    asyncio.run(serve_forever(Path(data_dir), host, port, witnesses=parsed, scan_nodes=list(scan_nodes),
                              scan_interval=scan_interval))


@ledger.command()
@ledger_option
@output_options
def info(ledger_url: str | None, out: Output) -> None:
    """The log's origin, its verifier key (C2SP signed-note vkey), size, root keys and moderators.

    \b
    Examples:
      cod ledger info --ledger http://127.0.0.1:8090
      cod ledger info --json | jq -r .vkey
    """
    facts = call(client(ledger_url).info())
    text = "\n".join([f"origin:      {facts['origin']}", f"vkey:        {facts['vkey']}",
                      f"size:        {facts['size']}",
                      f"root keys:   {facts['threshold']} of {', '.join(facts['root_keys'])}",
                      f"moderators:  {', '.join(facts['moderators']) or '(none)'}"]
                     + [f"witness:     {w}" for w in facts.get("witnesses", [])])
    show(out, facts, text)


@ledger.command()
@click.argument("result_cid")
@ledger_option
@output_options
def proof(result_cid: str, ledger_url: str | None, out: Output) -> None:
    """The inclusion proof of the decision on RESULT_CID against the latest checkpoint (what a notary checks).

    \b
    Examples:
      cod ledger proof bafybei... --json
    """
    answer = call(client(ledger_url).result(result_cid))
    body = answer.get("proof")
    if not isinstance(body, dict):
        raise NotFound(f"result {result_cid} belongs to job {answer.get('job')}, which no moderator has decided yet",
                       "cod moderation queue lists the jobs waiting for a decision")
    found = {k: body[k] for k in ("leaf_index", "tree_size", "leaf", "inclusion_path", "checkpoint")}
    text = (f"result {result_cid}: {'approved' if answer.get('approved') else 'not approved'}\n"
            f"decision leaf {found['leaf_index']} of {found['tree_size']}, path of "
            f"{len(found['inclusion_path'])} hashes\n{found['checkpoint'].rstrip()}")
    show(out, found, text)


@ledger.command()
@click.option("--data-dir", type=click.Path(file_okay=False), help="Audit the ledger in this directory.")
@click.option("--url", help="Audit the ledger (or a static mirror) at this URL: /checkpoint and tiles only.")
@click.option("--vkey", help="The log's verifier key to pin (default: the genesis entry's, reported as such).")
@click.option("--witness", "witnesses", multiple=True, metavar="VKEY", help="A witness's cosignature vkey.")
@click.option("--min-cosignatures", type=click.IntRange(min=0), default=0, show_default=True,
              help="Cosignatures of the given witnesses the latest checkpoint must carry.")
@json_option
def verify(data_dir: str | None, url: str | None, vkey: str | None, witnesses: tuple[str, ...],
           min_cosignatures: int, as_json: bool) -> None:
    """Audit a ledger offline: signatures, the tree against the checkpoint, every rule, the governance.

    \b
    Examples:
      cod ledger verify --data-dir ./ledger
      cod ledger verify --url http://127.0.0.1:8090 --vkey VKEY --witness WVKEY --min-cosignatures 1
    """
    from ..errors import AuditFailed
    from ..ledger import audit

    if (data_dir is None) == (url is None):
        raise UsageError("give exactly one of --data-dir and --url", "cod ledger verify --data-dir D | --url URL")
    if min_cosignatures > len(witnesses):
        raise UsageError(f"--min-cosignatures {min_cosignatures} is more than the {len(witnesses)} --witness keys",
                         "name each witness whose cosignature you require")
    if data_dir is not None:
        problems = audit.audit_dir(Path(data_dir), vkey=vkey, witnesses=list(witnesses),
                                   min_cosignatures=min_cosignatures)
    else:
        assert url is not None
        problems = audit.audit_url(url, vkey=vkey, witnesses=list(witnesses), min_cosignatures=min_cosignatures)
    if as_json:
        click.echo(json.dumps({"ok": not problems, "problems": problems}, indent=2))
    elif len(problems) > 1:  # one problem is the error line itself
        for problem in problems:
            click.echo(f"FAIL {problem}")
    if problems:
        raise AuditFailed(problems, "the ledger does not verify: do not trust its answers")
    if not as_json:
        click.echo(f"OK: {data_dir or url} verifies")


@ledger.group()
def bless() -> None:
    """Blessed inputs: CIDs that hold FIL+ data.

    \b
    Examples:
      cod ledger bless import cids.json --key moderator.key
    """


@bless.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--key", help="A moderator's key file (default: \"moderator_key\" in the config file).")
@click.option("--format", "fmt", type=click.Choice(["auto", "json", "csv", "lotus"]), default="auto",
              show_default=True, help="json: a list of CIDs; csv: a cid column; lotus: a StateMarketDeals dump.")
@ledger_option
@json_option
def bless_import(file: str, key: str | None, fmt: str, ledger_url: str | None, as_json: bool) -> None:
    """Bless the CIDs in FILE: sign them in batches with a moderator's key and append them to the ledger.

    \b
    cod ledger bless import cids.json --key moderator.key
    lotus state market deals > deals.json && cod ledger bless import deals.json --format lotus --key moderator.key
    
    \b
    Example:
      cod ledger bless import StateMarketDeals.json --format lotus --key moderator.key
    """
    from ..ledger import blessfile, entries

    found = blessfile.read(Path(file), fmt)
    if not found.inputs:
        raise UsageError(f"{file} blesses no CID", "; ".join(f"{n} {why} skipped" for why, n in found.skipped.items())
                         or "the file is empty")
    signer = identity(key, "moderator_key")
    connection = client(ledger_url)
    batches = entries.bless_batches(signer, found.mapping(), found.source, origin=call(connection.origin()))
    answer: dict[str, Any] = {"entries": []}
    per_request = 16
    for start in range(0, len(batches), per_request):
        part = call(connection.bless(batches[start:start + per_request]))
        answer["entries"] += part["entries"]
        answer["size"] = part["size"]
    summary = {"blessed": len(found.inputs), "batches": len(batches), "entries": answer["entries"],
               "size": answer.get("size"), "skipped": found.skipped, "source": found.source}
    skipped = "".join(f"; skipped {n} {why}" for why, n in sorted(found.skipped.items()))
    emit(summary, as_json, f"blessed {len(found.inputs)} CID(s) in {len(batches)} entr{'y' if len(batches) == 1 else 'ies'}"
         f"{skipped}")


@ledger.group()
def moderator() -> None:
    """The moderator set, governed by the root key holders (K of them sign a change).

    \b
    Examples:
      cod ledger moderator propose add 12D3KooW... --key root.key
      cod ledger moderator list
    """


def _proposal_text(answer: dict[str, Any]) -> str:
    state = "in effect" if answer.get("in_effect") else "waiting for more root key signatures"
    return f"proposal {answer['proposal_id']} (entry {answer['entry']}): {state}"


@moderator.command()
@click.argument("action", type=click.Choice(["add", "remove"]))
@click.argument("moderator_id", metavar="ID")
@click.option("--key", required=True, help="A root key holder's key file.")
@ledger_option
@json_option
def propose(action: str, moderator_id: str, key: str, ledger_url: str | None, as_json: bool) -> None:
    """Propose to add or remove a moderator (signed with a root key; it counts as the first signature).

    \b
    Examples:
      cod ledger moderator propose add 12D3KooW... --key root.key
    """
    from ..ledger import entries

    connection = client(ledger_url)
    signed = entries.sign_proposal(identity(key), origin=call(connection.origin()), action=action,
                                   moderator=moderator_id)
    answer = call(connection.propose(signed))
    emit(answer, as_json, _proposal_text(answer))


@moderator.command()
@click.argument("proposal_id", metavar="PROPOSAL")
@click.option("--key", required=True, help="A root key holder's key file.")
@ledger_option
@json_option
def approve(proposal_id: str, key: str, ledger_url: str | None, as_json: bool) -> None:
    """Sign a proposal with another root key; the change takes effect at the threshold.

    \b
    Examples:
      cod ledger moderator approve PROPOSAL_ID --key root2.key
    """
    from ..ledger import entries

    connection = client(ledger_url)
    signed = entries.sign_approval(identity(key), proposal_id, origin=call(connection.origin()))
    answer = call(connection.approve(proposal_id, signed))
    emit(answer, as_json, _proposal_text(answer))


MODERATOR_COLUMNS = (Column("kind", "KIND"), Column("moderator", "MODERATOR"), Column("proposal_id", "PROPOSAL"),
                     Column("action", "ACTION"), Column("signatures", "SIGNATURES"), Column("in_effect", "IN EFFECT"))


@moderator.command("list")
@ledger_option
@output_options
def list_(ledger_url: str | None, out: Output) -> None:
    """The moderators and the proposals.

    \b
    Examples:
      cod ledger moderator list
      cod ledger moderator list --json
    """
    answer = call(client(ledger_url).moderators())
    if out.format in ("csv", "nl"):  # a row per moderator and per proposal; --json keeps the ledger's object
        out.rows([{"kind": "moderator", "moderator": m} for m in answer["moderators"]]
                 + [dict(p, kind="proposal") for p in answer["proposals"]],
                 MODERATOR_COLUMNS)
        return
    lines = [f"moderator {m}" for m in answer["moderators"]] or ["(no moderators)"]
    lines += [f"proposal {p['proposal_id']}: {p['action']} {p['moderator']}, "
              f"{len(p['signatures'])} signature(s){', in effect' if p['in_effect'] else ''}"
              f"{', stale (propose it again)' if p.get('stale') else ''}"
              for p in answer["proposals"]]
    show(out, answer, "\n".join(lines))


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
def keygen(file: str) -> None:
    """Make an Ed25519 key file (mode 0600) and print its ID (a moderator's, a root key holder's, a node's).

    \b
    Example:
      cod keygen moderator.key
    """
    from ..identity import Identity

    made = Identity.create_key_file(Path(file))
    click.echo(f"key written to {file}; its ID: {made.node_id}")


ledger.add_command(witness)
