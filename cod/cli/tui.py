"""The live dashboard (textual): jobs, nodes and the moderation queue, refreshed on an interval.

Keys: o cycles the outcome filter, n the node filter (jobs a node took part in), enter opens
the job under the cursor (groups, each node's statement, stdout and stderr), escape goes back,
r refreshes now, q quits. Everything shown comes from one snapshot (verifier.snapshot), so the
screen, ``--once`` and ``--json`` never disagree. Text that nodes, jobs or the ledger supplied
is drawn as plain text (rich Text objects), never interpreted as markup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ..text import printable, printable_lines
from .output import age, outcome_text

Fetch = Callable[[], Awaitable[dict[str, Any]]]
MAX_OUTPUT_SHOWN = 8192
"""Bytes of a job's stdout and stderr shown in its detail (cod logs prints all of it)."""

OUTCOME_STYLE = {"mismatch": "bold red", "profile-mismatch": "yellow", "incomplete": "yellow",
                 "verified": "green", "verified-by-quorum": "green", "unverifiable": "magenta", "local": "cyan"}
HEALTH_STYLE = {"up": "green", "down": "bold red", "other node": "yellow"}


def _t(value: Any, style: str = "") -> Text:
    """A cell or line of text someone else supplied: drawn as plain text, never markup, and
    with every control character and bidi override shown as "?"."""
    return Text(printable(str(value)), style=style)


def short_node(node_id: Any) -> str:
    from verifier.jobview import short_node as short

    return short(node_id)


def short_cid(cid: Any) -> str:
    """A result CID in the jobs table: its first 16 characters (enter shows it whole)."""
    text = str(cid or "-")
    return text if len(text) <= 20 else text[:16] + "..."


def k_of_n(view: dict[str, Any]) -> str:
    return f"{view['agreeing']}/{view['n']}" if view.get("n") else "-"


def job_cells(view: dict[str, Any]) -> list[Text]:
    style = OUTCOME_STYLE.get(str(view["outcome"]), "")
    dissent = ", ".join(short_node(n) for n in view.get("dissent") or [])
    return [_t(str(view["short_id"]), style="bold red" if view["outcome"] == "mismatch" else ""),
            _t(age(view.get("finished_at") or view.get("started_at"))),
            _t(outcome_text(view["outcome"]), style=style),
            _t(k_of_n(view)),
            _t(dissent or "-", style="bold red" if dissent else ""),
            _t(str(view.get("moderation") or "-")),
            _t(short_cid(view.get("result_cid")))]


def node_cells(row: dict[str, Any]) -> list[Text]:
    bad = bool(row.get("disagreed") or row.get("bad_signature"))
    health = row.get("state")
    return [_t(short_node(row.get("node_id")), style="bold red" if bad else ""), _t(str(row["url"])),
            _t(str(row["agreed"])), _t(str(row["disagreed"]), style="bold red" if row["disagreed"] else ""),
            _t(str(row["failed"])), _t(str(row["bad_signature"]), style="bold red" if row["bad_signature"] else ""),
            _t(str(health or "-"), style=HEALTH_STYLE.get(str(health), "")),
            _t("-" if row.get("latency_ms") is None else f"{row['latency_ms']:.0f}"),
            _t(age(row.get("last_seen")))]


def job_detail(view: dict[str, Any]) -> Text:
    """A job in words: what `cod describe` says, with the statements and the output."""
    text = Text()

    def add(value: str, style: str = "") -> None:  # whatever a node, a job or the ledger wrote
        text.append(printable_lines(value), style=style)

    def line(label: str, value: Any, style: str = "") -> None:
        add(f"{label:<13}", style="bold")
        add(f"{printable(str(value))}\n", style=style)

    line("Job", f"{view['job_cid']}  (short ID {view['short_id']})")
    line("Outcome", f"{outcome_text(view['outcome'])}  ({k_of_n(view)} agree)",
         OUTCOME_STYLE.get(str(view["outcome"]), ""))
    if view.get("note"):
        line("Note", view["note"])
    line("Result", view.get("result_cid") or "-")
    line("Exit code", f"{_or_dash(view.get('exit_code'))}  trap {view.get('trap') or '-'}  "
         f"fuel {_or_dash(view.get('fuel_used'))}")
    if view.get("dissent"):
        line("Outvoted", ", ".join(view["dissent"]), "bold red")
    text.append("\nGroups\n", style="bold underline")
    for cid, nodes in (view.get("groups") or {}).items():
        add(f"  {cid}\n")
        for node in nodes:
            add(f"    {node}\n", style="bold red" if node in (view.get("dissent") or []) else "")
    text.append("\nNodes and their signed statements\n", style="bold underline")
    for node in view.get("nodes") or []:
        status = str(node.get("status"))
        add("  ")
        text.append(f"{status:<10}", style="bold red" if status == "DISAGREES" else "green" if status == "agrees"
                    else "yellow")
        add(f" {node['node_id']}\n    at {node.get('url')}\n")
        statement = node.get("statement") or {}
        if statement:
            add(f"    result {node.get('result_cid')}  exit {node.get('exit_code')}  fuel {node.get('fuel_used')}"
                f"  signature {'valid' if node.get('signature_valid') else 'INVALID'}\n")
        if node.get("error"):
            add(f"    {node['error']}\n", style="yellow")
    for name in ("stdout", "stderr"):
        text.append(f"\n{name}\n", style="bold underline")
        value = view.get(name)
        if value is None and view.get("result_cid"):
            add("  (not on this machine: cod get fetches it)\n", style="dim")
        elif value is None:  # cod get fetches only an accepted result: a mismatch has none
            add(f"  (not on this machine, and no result was accepted: nothing to fetch; "
                f"cod describe {printable(str(view.get('short_id')))} shows each node's answer)\n", style="dim")
        else:
            add(value[:MAX_OUTPUT_SHOWN] + ("\n... (cut; cod logs prints it all)\n"
                                            if len(value) > MAX_OUTPUT_SHOWN else ""))
    return text


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


class JobScreen(Screen[None]):
    """One job's detail; escape goes back."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("q", "app.quit", "Quit")]

    def __init__(self, view: dict[str, Any]) -> None:
        super().__init__()
        self.view = view

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(job_detail(self.view), id="detail")
        yield Footer()


class Dashboard(App[None]):
    """The dashboard; ``fetch`` returns a fresh snapshot (verifier.snapshot.collect)."""

    TITLE = "cod dashboard"
    CSS = """
    #status { height: 1; background: $boost; }
    .title { height: 1; text-style: bold; margin-top: 1; }
    #jobs { height: 2fr; }
    #nodes { height: 1fr; }
    #queue { height: 1fr; }
    """
    BINDINGS = [Binding("o", "outcome", "Outcome filter"), Binding("n", "node", "Node filter"),
                Binding("enter", "open", "Open job", show=True), Binding("r", "refresh", "Refresh"),
                Binding("q", "quit", "Quit")]

    def __init__(self, fetch: Fetch, interval: float) -> None:
        super().__init__()
        self.fetch = fetch
        self.interval = interval
        self.snapshot: dict[str, Any] = {"jobs": [], "nodes": [], "moderation": None}
        self.outcome: str | None = None
        self.node: str | None = None
        self.busy = False
        self.refreshed = ""

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield Static("Jobs", classes="title")
        yield DataTable(id="jobs", cursor_type="row", zebra_stripes=True)
        yield Static("Nodes", classes="title")
        yield DataTable(id="nodes", cursor_type="row")
        yield Static("Moderation", classes="title", id="moderation")
        yield DataTable(id="queue", cursor_type="row")
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one("#jobs", DataTable).add_columns("ID", "AGE", "OUTCOME", "K/N", "OUTVOTED", "MODERATION",
                                                       "RESULT")
        self.query_one("#nodes", DataTable).add_columns("NODE", "URL", "AGREED", "DISAGREED", "FAILED", "BAD SIG",
                                                        "HEALTH", "MS", "SEEN")
        self.query_one("#queue", DataTable).add_columns("JOB", "RESULT", "ENTRY", "NODES")
        self.query_one("#jobs", DataTable).focus()
        await self.action_refresh()
        self.set_interval(self.interval, self.action_refresh)

    async def action_refresh(self) -> None:
        if self.busy:
            return
        self.busy = True
        try:
            self.snapshot = await self.fetch()
            self.refreshed = datetime.now().strftime("%H:%M:%S")
        finally:
            self.busy = False
        self.draw()

    def visible_jobs(self) -> list[dict[str, Any]]:
        return [v for v in self.snapshot["jobs"]
                if (self.outcome is None or v["outcome"] == self.outcome)
                and (self.node is None or any(n["node_id"] == self.node for n in v.get("nodes") or []))]

    def draw(self) -> None:
        jobs = self.query_one("#jobs", DataTable)
        keep = self._cursor_key(jobs)
        jobs.clear()
        visible = self.visible_jobs()
        for view in visible:
            jobs.add_row(*job_cells(view), key=view["job_cid"])
        if keep is not None and keep in {v["job_cid"] for v in visible}:
            jobs.move_cursor(row=jobs.get_row_index(keep))
        nodes = self.query_one("#nodes", DataTable)
        nodes.clear()
        for row in self.snapshot["nodes"]:
            nodes.add_row(*node_cells(row), key=row.get("node_id") or row["url"])
        self._draw_moderation()
        outcome = outcome_text(self.outcome) if self.outcome else "all"
        node = short_node(self.node) if self.node else "all"
        mismatches = sum(v["outcome"] == "mismatch" for v in self.snapshot["jobs"])
        status = Text()
        status.append(f" {len(visible)} of {len(self.snapshot['jobs'])} jobs  ")
        if mismatches:
            status.append(f"{mismatches} MISMATCH  ", style="bold red")
        status.append(f"outcome: {outcome}  node: {node}  refreshed {self.refreshed}  "
                      "(o outcome, n node, enter open, r refresh, q quit)")
        self.query_one("#status", Static).update(status)

    def _draw_moderation(self) -> None:
        mod = self.snapshot.get("moderation")
        title = self.query_one("#moderation", Static)
        queue = self.query_one("#queue", DataTable)
        queue.clear()
        if mod is None:
            title.update(_t("Moderation: no ledger configured (--ledger, COD_LEDGER, or ledger in the config)"))
            return
        if mod.get("error"):
            title.update(_t(f"Moderation: ledger {mod['url']} did not answer: {mod['error']}", style="yellow"))
            return
        checkpoint = mod.get("checkpoint") or {}
        title.update(_t(f"Moderation: {len(mod['queue'])} waiting at {mod['url']}; latest checkpoint: size "
                          f"{checkpoint.get('size')}, root {checkpoint.get('root')}"))
        for item in mod["queue"]:
            queue.add_row(_t(str(item.get("job"))), _t(short_cid(item.get("result"))), _t(str(item.get("entry"))),
                          _t(str(len(item.get("nodes") or []))))

    @staticmethod
    def _cursor_key(table: DataTable[Any]) -> Any:
        if table.row_count == 0:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # no row under the cursor
            return None

    def action_outcome(self) -> None:
        choices: list[str | None] = [None] + sorted({str(v["outcome"]) for v in self.snapshot["jobs"]})
        self.outcome = choices[(choices.index(self.outcome) + 1) % len(choices)] if self.outcome in choices else None
        self.draw()

    def action_node(self) -> None:
        choices: list[str | None] = [None] + [r["node_id"] for r in self.snapshot["nodes"] if r.get("node_id")]
        self.node = choices[(choices.index(self.node) + 1) % len(choices)] if self.node in choices else None
        self.draw()

    def action_open(self) -> None:
        jobs = self.query_one("#jobs", DataTable)
        key = self._cursor_key(jobs)
        for view in self.snapshot["jobs"]:
            if view["job_cid"] == key:
                self.push_screen(JobScreen(view))
                return

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "jobs":
            self.action_open()


__all__ = ["Dashboard", "job_cells", "job_detail", "node_cells"]
