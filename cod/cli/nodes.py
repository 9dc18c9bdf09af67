"""cod nodes: the nodes this requester knows, their records and (with --check) their health."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from ..errors import UsageError
from .output import Column, Output, age, output_options


def _short(node_id: Any) -> str:
    from verifier.jobview import short_node

    return short_node(node_id)


def _state_style(row: Any) -> str | None:
    return {"up": "green", "down": "bold red", "other node": "yellow"}.get(str(row.get("state")))


def _record_style(row: Any) -> str | None:
    return "bold red" if row.get("disagreed") or row.get("bad_signature") else None


NODE_COLUMNS = (
    Column("node_id", "NODE", show=_short, style=_record_style),
    Column("url", "URL"),
    Column("agreed", "AGREED"),
    Column("disagreed", "DISAGREED", style=_record_style),
    Column("failed", "FAILED"),
    Column("bad_signature", "BAD SIG", style=_record_style),
    Column("score", "SCORE"),
    Column("last_seen", "SEEN", show=age),
    Column("configured", "CONFIG", show=lambda v: "yes" if v else "-"),
)
HEALTH_COLUMNS = (
    Column("state", "HEALTH", show=lambda v: v or "-", style=_state_style),
    Column("latency_ms", "MS", show=lambda v: "-" if v is None else f"{v:.0f}"),
)


@click.group(invoke_without_command=True)
@click.option("--check", is_flag=True, help="Ask every node for /v1/info now: up or down, latency, node ID.")
@output_options
@click.pass_context
def nodes(ctx: click.Context, check: bool, out: Output) -> None:
    """List the nodes this requester knows, with their records.

    A node is known once a verified run has used it (nodes of an embedded devstack are not
    kept) or when it is configured (--node is per command; COD_NODES and the config file
    are "configured"). AGREED, DISAGREED, FAILED and BAD SIG count its answers; SCORE ranks
    it for selection; SEEN is when a run last reached it.

    \b
    Examples:
      cod nodes
      cod nodes --check
      cod nodes --json | jq '.[] | select(.disagreed > 0) | .node_id'
      cod nodes forget 7nQ1xkZb
    """
    if ctx.invoked_subcommand is not None:
        return
    from verifier.health import check as check_health
    from verifier.nodeview import node_rows
    from verifier.reputation import Records

    from ..config import load

    records = Records()
    configured = load().nodes
    urls = sorted({n["url"] for n in records.nodes()} | set(configured))
    health = None
    if check:
        expected = {n["url"]: n["node_id"] for n in records.nodes()}
        health = asyncio.run(check_health(urls, expected))
    rows = node_rows(records, configured, health)
    out.rows(rows, NODE_COLUMNS + (HEALTH_COLUMNS if check else ()),
             empty="no nodes known yet: run cod run --verify N with nodes configured (see cod config show)")
    if check and not out.structured:
        for row in rows:
            if row.get("error"):
                click.echo(f"{_short(row['node_id'])}  {row['url']}: {row['error']}", err=True)


@nodes.command()
@click.argument("node_id")
def forget(node_id: str) -> None:
    """Remove a node and its counts from the records.

    Runs keep its signed answers.

    NODE_ID is the node's ID, a prefix of it, or a prefix of the part after 12D3KooW (as
    cod nodes shows it). A configured node appears again as configured until it is taken
    out of COD_NODES or the config file.

    \b
    Examples:
      cod nodes forget 7nQ1xkZb
      cod nodes forget 12D3KooWJ7nQ1xkZbQ5e...
    """
    from verifier.reputation import Records

    if not node_id or not (node_id.isascii() and node_id.isalnum()):
        raise UsageError(f"{node_id!r} is not a node ID or a prefix of one", "copy it from cod nodes")
    records = Records()
    found = records.find_nodes(node_id)
    if not found:
        raise UsageError(f"no known node matches {node_id!r}", "see cod nodes")
    if len(found) > 1:
        raise UsageError(f"node ID prefix {node_id!r} matches several nodes: {', '.join(found[:10])}",
                         "give more characters")
    row = records.node(found[0])
    records.forget_node(found[0])
    click.echo(f"Forgot {found[0]} ({row['url'] if row else '-'})")
