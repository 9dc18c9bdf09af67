"""What `cod run --verify` shows while it runs, on stderr.

On a terminal: a live table (rich) with one row per node (state, time in that job, detail)
and a bar for each upload or download of at least TRANSFER_BAR_BYTES, redrawn in place and
cleared when the run ends (the report follows). Elsewhere (a pipe, a log file, CI): plain
lines, one per step and one per node state change, never an escape code.

Text from nodes (their errors) is shown as plain text, never as rich markup.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import click

from verifier.events import FAILED, SIGNED, SUBMITTING, Events

TRANSFER_BAR_BYTES = 4 << 20
"""Uploads and downloads of at least this many bytes get a progress bar (and a plain line)."""

REFRESH_PER_S = 8
STATE_STYLES = {"signed": "green", "failed": "bold red", "running": "cyan", "queued": "blue",
                "uploading": "magenta", "busy": "yellow", "submitting": ""}


@dataclass
class _Node:
    node_id: str
    url: str
    state: str
    detail: str
    started: float
    ended: float | None = None


@dataclass
class _Transfer:
    label: str
    done: int
    total: int | None
    shown: bool = False
    finished: bool = False


@dataclass
class VerifyProgress(Events):
    """Steps (call it with a step's text) and node events of one verification, drawn on stderr."""

    quiet: bool = False
    live: bool = field(default_factory=lambda: sys.stderr.isatty())
    step: str = ""
    nodes: dict[str, _Node] = field(default_factory=dict)
    transfers: dict[str, _Transfer] = field(default_factory=dict)
    open: bool = False
    _lock: Any = field(default_factory=threading.RLock)
    _display: Any = None

    @property
    def watching_nodes(self) -> bool:  # type: ignore[override]
        return self.live and not self.quiet

    # -- the steps (verifier.verify's progress callback) ---------------------------------------
    def __call__(self, step: str) -> None:
        if self.quiet:
            return
        with self._lock:
            self.step = step
            if self.live:
                self._start()
                return
            self._close_step()
            click.echo(f"{step} ... ", err=True, nl=False)
            self.open = True

    def finish(self) -> None:
        """The run is over: clear the live view (the report follows) or end the open line."""
        with self._lock:
            if self._display is not None:
                self._display.stop()
                self._display = None
            self._close_step()

    def failed(self) -> None:
        with self._lock:
            if self._display is not None:
                self._display.stop()
                self._display = None
            if self.open:
                click.echo("failed", err=True)
                self.open = False

    def _break_step(self) -> None:
        """A line of detail interrupts the open step's line: end it there (no "done": not yet)."""
        if self.open:
            click.echo("", err=True)
            self.open = False

    def _close_step(self) -> None:
        if self.open:
            click.echo("done", err=True)
            self.open = False

    # -- node events (verifier.events.Events) ----------------------------------------------------
    def node(self, node_id: str, url: str, state: str, detail: str = "") -> None:
        if self.quiet:
            return
        with self._lock:
            now = time.monotonic()
            known = self.nodes.get(node_id)
            if known is None:
                known = self.nodes[node_id] = _Node(node_id, url, state, detail, now)
            elif known.state == state and known.detail == detail:
                return
            known.state, known.detail, known.url = state, detail, url
            if state in (SIGNED, FAILED):
                known.ended = now
            if not self.live and state != SUBMITTING:
                self._break_step()
                click.echo(f"  node {_short(node_id)}  {url}  {state}{'  ' + _clean(detail) if detail else ''}",
                           err=True)

    def transfer(self, key: str, label: str, done: int, total: int | None) -> None:
        if self.quiet or (total is not None and total < TRANSFER_BAR_BYTES and done < TRANSFER_BAR_BYTES):
            return
        with self._lock:
            item = self.transfers.setdefault(key, _Transfer(label, done, total))
            item.done, item.total = done, total
            if self.live:
                return
            if not item.shown:
                item.shown = True
                self._break_step()
                click.echo(f"  {label}: {_size(total) if total else 'size unknown'}", err=True)
            if total is not None and done >= total and not item.finished:
                item.finished = True
                click.echo(f"  {label}: done ({_size(done)})", err=True)

    # -- the live view ----------------------------------------------------------------------------
    def _start(self) -> None:
        if self._display is not None:
            return
        from rich.console import Console
        from rich.live import Live

        self._display = Live(_Renderable(self), console=Console(stderr=True), refresh_per_second=REFRESH_PER_S,
                             transient=True)
        self._display.start()

    def render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            now = time.monotonic()
            parts: list[Any] = [Text(f"{self.step} ...", style="bold")]
            if self.nodes:
                grid = Table(box=None, pad_edge=False, header_style="bold")
                for header in ("NODE", "URL", "STATE", "TIME", "DETAIL"):
                    grid.add_column(header, overflow="ellipsis", no_wrap=True)
                for node in sorted(self.nodes.values(), key=lambda n: n.node_id):
                    elapsed = (node.ended or now) - node.started
                    grid.add_row(Text(_short(node.node_id)), Text(node.url),
                                 Text(node.state, style=STATE_STYLES.get(node.state, "")),
                                 Text(f"{elapsed:.1f}s"), Text(_detail(node)))
                parts.append(grid)
            for item in self.transfers.values():
                if item.total is not None and item.done >= item.total:
                    continue  # finished: the node's row says what came next
                row = Table.grid(padding=(0, 1))
                row.add_row(Text(item.label, no_wrap=True, overflow="ellipsis"), ProgressBar(total=float(item.total) if item.total else None,
                                                          completed=float(item.done), width=30),
                            Text(f"{_size(item.done)}" + (f" / {_size(item.total)}" if item.total else "")))
                parts.append(row)
            return Group(*parts)


class _Renderable:
    """Asks the VerifyProgress for a fresh view at each refresh of the Live display."""

    def __init__(self, owner: VerifyProgress) -> None:
        self.owner = owner

    def __rich__(self) -> Any:
        return self.owner.render()


def _short(node_id: str) -> str:
    from verifier.jobview import short_node

    return short_node(node_id)


def _detail(node: _Node) -> str:
    if node.state == SIGNED and len(node.detail) > 20:
        return node.detail[:16] + "..."  # the result CID; the report after shows it whole
    return _clean(node.detail)[:80]


def _clean(text: str) -> str:
    from cod.text import printable

    return printable(text)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


__all__ = ["TRANSFER_BAR_BYTES", "VerifyProgress"]
