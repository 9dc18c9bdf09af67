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
from .options import AsciiFloat, AsciiInt
from .output import Column, Output, output_options
from .witness import witness

LEDGER_OPTION_HELP = "The ledger's URL (default: COD_LEDGER, else \"ledger\" in the config file)."


def ledger_option(command: Any) -> Any:
    return click.option("--ledger", "ledger_url", metavar="URL", help=LEDGER_OPTION_HELP)(command)


VKEY_OPTION_HELP = ("The ledger's log key (vkey, cod ledger info prints it) to check its answers against (default: "
                    "\"ledger_vkey\" in the config file, else the key saved for this ledger, else trusted on first "
                    "use and saved).")


def vkey_option(command: Any) -> Any:
    return click.option("--vkey", metavar="VKEY", help=VKEY_OPTION_HELP)(command)


def trusted_key(connection: Any, vkey: str | None) -> Any:
    """The log key (cod.ledger.trust.Trusted) the answers of ``connection`` are checked against."""
    from ..config import config_dir, load
    from ..errors import AuditFailed
    from ..ledger import trust

    if vkey is not None:
        pinned, how = trust.checked_vkey(vkey, "--vkey"), "pinned by --vkey"
    else:
        config = load()
        pinned, how = config.get("ledger_vkey"), f"pinned by {config.source('ledger_vkey')}"
    answered = call(connection.info()).get("vkey")
    if not isinstance(answered, str):
        raise AuditFailed([f"the ledger at {connection.url} names no log key in /v1/info"],
                          "check that --ledger names a cod ledger; nothing was signed")
    return trust.trusted(connection.url, answered, pinned, how, config_dir() / trust.KNOWN_FILE)


def trusted_origin(connection: Any) -> str:
    """The origin to sign for: the name of the log key trusted for ``connection`` (trusted_key:
    pinned, saved, else trusted on first use), so that a proxy answering another ledger's
    /v1/info cannot make a root key holder sign for that ledger."""
    from ..errors import AuditFailed
    from ..ledger.note import parse_vkey

    origin = call(connection.origin())
    trusted = trusted_key(connection, None)
    if parse_vkey(trusted.vkey)[0] != origin:
        raise AuditFailed([f"the ledger at {connection.url} names origin {origin!r}, not the name of the key "
                           f"{trusted.how}"], "check --ledger; nothing was signed")
    return str(origin)


def json_option(command: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(command)


def client(url: str | None) -> Any:
    """A LedgerClient of --ledger / COD_LEDGER / the config file; UsageError when none is set."""
    from ..config import ledger_url
    from ..ledger.client import LedgerClient

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
@click.option("--threshold", type=AsciiInt(min=1), required=True,
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
@click.option("--port", type=AsciiInt(0, 65535), default=8090, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--scan-node", "scan_nodes", multiple=True, metavar="URL",
              help="A compute node whose signed statements the ledger reads (repeatable).")
@click.option("--scan-interval", type=AsciiFloat(min=0.1), default=30.0, show_default=True,
              help="Seconds between two scans of a node.")
@click.option("--witness", "witnesses", multiple=True, metavar="VKEY=URL",
              help="A C2SP tlog-witness to cosign every checkpoint (repeatable).")
@click.option("--address-limit", metavar="BURST:REFILL_MS", default="60:1000", show_default=True,
              help="Writes one client address (an IPv6 /64) may make at once; it regains one per REFILL_MS.")
@click.option("--key-limit", metavar="BURST:REFILL_MS", default="60:1000", show_default=True,
              help="Refusals one signing key may post at once (all addresses together); one more per REFILL_MS.")
@click.option("--anonymous-limit", metavar="BURST:REFILL_MS", default="1000:50", show_default=True,
              help="Anonymous writes (evidence, refusals) of all addresses together at once; one more per REFILL_MS.")
@click.option("--fraud-limit", metavar="BURST:REFILL_MS", default="10:60000", show_default=True,
              help="Fraud proofs one address may post, and that may accuse one key, at once; one more per REFILL_MS.")
@click.option("--audit", "audit", type=AsciiFloat(min=0.0, max=1.0), default=0.0, show_default=True,
              help="Share P of newly eligible jobs re-executed before they enter the moderation queue (0 to 1).")
@click.option("--fetch-node", "fetch_nodes", multiple=True, metavar="URL",
              help="A node the ledger fetches modules and inputs from by CID for checks and audits (repeatable; "
                   "the --scan-node nodes are always asked).")
@click.option("--fraud-fuel", type=AsciiInt(1, 2**63 - 1), default=10_000_000_000, show_default=True,
              help="Fuel one fraud-proof check or audit re-executes at most.")
@click.option("--fraud-bytes", type=AsciiInt(1, 2**63 - 1), default=256 << 20, show_default=True,
              help="Bytes one fraud-proof check or audit fetches at most.")
def serve(data_dir: str, host: str, port: int, scan_nodes: tuple[str, ...], scan_interval: float,
          witnesses: tuple[str, ...], address_limit: str, key_limit: str, anonymous_limit: str, fraud_limit: str,
          audit: float, fetch_nodes: tuple[str, ...], fraud_fuel: int, fraud_bytes: int) -> None:
    """Serve the ledger's HTTP API (SPEC.md 12.7) and the log as C2SP tlog-tiles.

    \b
    Examples:
      cod ledger serve --data-dir ./ledger --port 8090
      cod ledger serve --data-dir ./ledger --scan-node http://127.0.0.1:1234 --witness VKEY=http://127.0.0.1:8091
      cod ledger serve --data-dir ./ledger --scan-node http://127.0.0.1:1234 --audit 0.1
    """
    from ..ledger.frauds import FraudOptions, audit_rate
    from ..ledger.rates import Rate, WriteLimits
    from ..ledger.server import Witness, serve_forever
    from ..urls import node_url_problem

    for option, urls in (("--scan-node", scan_nodes), ("--fetch-node", fetch_nodes)):
        for url in urls:
            problem = node_url_problem(url)
            if problem:
                raise UsageError(f"{option} {url!r} {problem}", "give a node's URL, e.g. http://127.0.0.1:1234")
    parsed = [Witness.parse(w) for w in witnesses]
    limits = WriteLimits(Rate.parse(address_limit, "--address-limit"), Rate.parse(key_limit, "--key-limit"),
                         Rate.parse(anonymous_limit, "--anonymous-limit"), Rate.parse(fraud_limit, "--fraud-limit"))
    fraud = FraudOptions(nodes=tuple(dict.fromkeys(scan_nodes + fetch_nodes)), fuel=fraud_fuel, max_bytes=fraud_bytes,
                         audit_rate=audit_rate(audit))
    asyncio.run(serve_forever(Path(data_dir), host, port, witnesses=parsed, scan_nodes=list(scan_nodes),
                              scan_interval=scan_interval, limits=limits, fraud=fraud))


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
@click.argument("result_cid")
@click.option("--entry", type=AsciiInt(min=1),
              help="Check this decision entry (an approval kept from an earlier answer), not the one the ledger names.")
@click.option("--witness", "witnesses", multiple=True, metavar="VKEY",
              help="A witness's cosignature vkey whose cosignature of the latest checkpoint counts (repeatable).")
@click.option("--min-cosignatures", type=AsciiInt(min=0), default=0, show_default=True,
              help="Cosignatures of the given witnesses the latest checkpoint must carry (so it is the log's latest).")
@click.option("--max-age", type=AsciiInt(min=1), metavar="SECONDS",
              help="Count only cosignatures at most this old (the witnesses saw the tree that recently).")
@ledger_option
@vkey_option
@output_options
def notary(result_cid: str, entry: int | None, witnesses: tuple[str, ...], min_cosignatures: int,
           max_age: int | None, ledger_url: str | None, vkey: str | None, out: Output) -> None:
    """Check that RESULT_CID is approved: the approval is in the log and no later entry undid it (SPEC.md 12.7).

    Reads the log's tiles from the approval's tile to the latest checkpoint, checks them against its
    signed root, and refuses (exit 24) an approval a later decision or eligibility entry superseded.

    \b
    Examples:
      cod ledger notary bafybei...
      cod ledger notary bafybei... --entry 4 --vkey VKEY --json
    """
    import time

    from ..ledger import notary as check
    from ..ledger.note import CosignatureVerifier, NoteError

    if min_cosignatures > len(witnesses):
        raise UsageError(f"--min-cosignatures {min_cosignatures} is more than the {len(witnesses)} --witness keys",
                         "name each witness whose cosignature you require")
    for witness_vkey in witnesses:
        try:
            CosignatureVerifier.from_vkey(witness_vkey)
        except NoteError as exc:
            raise UsageError(f"--witness {witness_vkey[:200]!r} is not a witness's cosignature vkey: {exc}",
                             "cod ledger witness prints its vkey on its first line") from None
    fresh = check.Fresh(tuple(witnesses), min_cosignatures, max_age, int(time.time()))
    connection = client(ledger_url)
    trust = trusted_key(connection, vkey)
    if entry is None:
        answer = call(connection.result(result_cid))
        decision = answer.get("decision")
        if not isinstance(decision, dict) or not isinstance(decision.get("entry"), int):
            raise NotFound(f"result {result_cid} belongs to job {answer.get('job')}, which no moderator has decided "
                           "yet", "cod moderation queue lists the jobs waiting for a decision")
        entry = int(decision["entry"])
    standing = call(check.check_approval_at(connection.url, trust.vkey, result_cid, entry, fresh))
    found = {"result": standing.result, "approved": True, "job": standing.job, "datacap": standing.datacap,
             "moderator": standing.moderator, "entry": standing.entry, "tree_size": standing.size,
             "vkey": trust.vkey, "fetched": {"bundles": standing.cost.bundles, "tiles": standing.cost.tiles,
                                             "bytes": standing.cost.bytes}, "cosigned": standing.cosigned}
    text = (f"result {standing.result}: approved with {standing.datacap} bytes of DataCap by {standing.moderator}\n"
            f"decision entry {standing.entry} on job {standing.job}; no later decision or eligibility entry of the job "
            f"in the log's tree of size {standing.size}\nchecked from {standing.cost.bundles} entry bundle(s) and "
            f"{standing.cost.tiles} hash tile(s), {standing.cost.bytes} bytes, against the log key {trust.vkey} "
            f"({trust.how})" + "".join(f"\ncosigned by {w} at {t}" for w, t in sorted(standing.cosigned.items())))
    show(out, found, text)


@ledger.command()
@click.option("--data-dir", type=click.Path(file_okay=False), help="Audit the ledger in this directory.")
@click.option("--url", help="Audit the ledger (or a static mirror) at this URL: /checkpoint and tiles only.")
@click.option("--vkey", help="The log's verifier key to pin (default: the genesis entry's, reported as such).")
@click.option("--witness", "witnesses", multiple=True, metavar="VKEY", help="A witness's cosignature vkey.")
@click.option("--min-cosignatures", type=AsciiInt(min=0), default=0, show_default=True,
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
    batches = entries.bless_batches(signer, found.mapping(), found.source, origin=trusted_origin(connection))
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
    signed = entries.sign_proposal(identity(key), origin=trusted_origin(connection), action=action,
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
    from ..text import printable

    signer = identity(key)
    connection = client(ledger_url)
    origin = trusted_origin(connection)
    statement = _proposal_statement(connection, proposal_id)
    click.echo(printable(f"signing as root key holder {signer.node_id} for ledger {origin}: approve proposal "
                         f"{proposal_id}: {statement.get('action')} moderator {statement.get('moderator')}, "
                         f"proposed by {statement.get('proposer')}"), err=True)
    answer = call(connection.approve(proposal_id, entries.sign_approval(signer, proposal_id, origin=origin)))
    emit(answer, as_json, _proposal_text(answer))


def _proposal_statement(connection: Any, proposal_id: str) -> dict[str, Any]:
    """The statement of proposal ``proposal_id`` as the ledger answers it, once it hashes to that ID."""
    from ..errors import AuditFailed
    from ..ledger import entries
    from ..text import printable

    if len(proposal_id) != 64 or any(c not in "0123456789abcdef" for c in proposal_id):
        raise UsageError(f"{printable(proposal_id[:100])!r} is not a proposal ID (64 lowercase hex digits)",
                         "cod ledger moderator list shows the proposals")
    found = [p for p in call(connection.moderators()).get("proposals", [])
             if isinstance(p, dict) and p.get("proposal_id") == proposal_id]
    if not found:
        raise NotFound(f"the ledger has no proposal {proposal_id}", "cod ledger moderator list shows the proposals")
    if found[0].get("stale") is True:  # a lie saying not stale gains nothing: the ledger refuses it then (12.6)
        raise UsageError(f"proposal {proposal_id} is stale: its moderator changed after it was made, so it can no "
                         "longer take effect; nothing was signed", "propose it again (cod ledger moderator propose)")
    statement = found[0].get("statement")
    if not isinstance(statement, dict) or entries.proposal_id_of(statement) != proposal_id:
        raise AuditFailed([f"the ledger answered a proposal statement that does not hash to {proposal_id}"],
                          "the ledger (or something between you and it) answered another proposal; nothing was "
                          "signed")
    return statement


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
