"""One set of output options for every read command, given by one decorator (as sqlite-utils
does): a table on a terminal, ``--json`` (an array, or the object a command shows), ``--nl``
(one JSON object per line), ``--csv``.

    @click.command()
    @output_options
    def nodes(out: Output) -> None:
        out.rows(records.nodes(), NODE_COLUMNS)

Tables are drawn with rich on a terminal (colour, widths fitted) and as plain aligned text
otherwise, so ``cod list | grep`` sees no escape codes. JSON and CSV carry the full values
(whole CIDs, timestamps), the table the short forms a person reads.
"""

from __future__ import annotations

import csv
import functools
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import click

FORMATS = ("table", "json", "nl", "csv")


@dataclass(frozen=True)
class Column:
    """A column of a table: the row's ``key``, its ``header``, how a person reads the value
    (``show``; the raw value in JSON and CSV) and an optional rich style for a row's cell."""

    key: str
    header: str
    show: Callable[[Any], str] | None = None
    style: Callable[[Mapping[str, Any]], str | None] | None = None

    def text(self, row: Mapping[str, Any]) -> str:
        """The cell as a person reads it; never a control character, whoever supplied the value."""
        from ..text import printable

        value = row.get(self.key)
        if self.show is not None:
            return printable(self.show(value))
        return "-" if value is None or value == "" else printable(str(value))


class Output:
    """Where a read command's data goes, in the format the user asked for."""

    def __init__(self, fmt: str | None) -> None:
        self.format = fmt or "table"

    @property
    def structured(self) -> bool:
        return self.format != "table"

    def rows(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], *, title: str | None = None,
             empty: str = "nothing to show") -> None:
        """Print ``rows``: all of their keys in JSON, the ``columns`` in a table or CSV."""
        if self.format == "json":
            click.echo(json.dumps(list(rows), indent=2, sort_keys=True))
        elif self.format == "nl":
            for row in rows:
                click.echo(json.dumps(row, sort_keys=True))
        elif self.format == "csv":
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow([c.key for c in columns])
            for row in rows:
                writer.writerow([_csv_cell(row.get(c.key)) for c in columns])
        elif not rows:
            click.echo(empty, err=True)
        else:
            table(rows, columns, title=title)

    def one(self, obj: Mapping[str, Any], text: Callable[[], None]) -> None:
        """Print one object: as JSON (``--json`` indented, ``--nl`` on one line), CSV (a header row and one row:
        every field, nested values as JSON as :meth:`rows` writes them), or ``text()``."""
        if self.format == "json":
            click.echo(json.dumps(obj, indent=2, sort_keys=True))
        elif self.format == "nl":
            click.echo(json.dumps(obj, sort_keys=True))
        elif self.format == "csv":
            keys = sorted(obj)
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(keys)
            writer.writerow([_csv_cell(obj[k]) for k in keys])
        else:
            text()


def output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--json``, ``--nl`` and ``--csv`` to a command; it receives ``out: Output``."""

    @functools.wraps(command)
    def wrapper(*args: Any, output_format: str | None = None, **kwargs: Any) -> Any:
        return command(*args, out=Output(output_format), **kwargs)

    for flag, fmt, help_text in reversed([
            ("--json", "json", "Print JSON (an array of objects, or the one object shown)."),
            ("--nl", "nl", "Print newline-delimited JSON: one object per line."),
            ("--csv", "csv", "Print CSV with a header row (full values, no short forms).")]):
        wrapper = click.option(flag, "output_format", flag_value=fmt, default=None, help=help_text)(wrapper)
    return wrapper


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], *, title: str | None = None) -> None:
    """A table on stdout: rich on a terminal, plain aligned columns otherwise."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        grid = Table(title=Text(title) if title else None, box=None, header_style="bold", pad_edge=False)
        for column in columns:
            grid.add_column(column.header, overflow="fold")
        for row in rows:
            grid.add_row(*[_styled(c, row) for c in columns])
        Console().print(grid)
        return
    cells = [[c.header for c in columns]] + [[c.text(row) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for r in cells:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())


def _styled(column: Column, row: Mapping[str, Any]) -> Any:
    from rich.text import Text

    style = column.style(row) if column.style else None
    return Text(column.text(row), style=style or "")


# -- what people read in tables ------------------------------------------------------------------
def age(stamp: Any, now: datetime | None = None) -> str:
    """How long ago an ISO 8601 record timestamp was: ``42s``, ``5m``, ``3h``, ``2d`` ("-" unknown)."""
    if not stamp:
        return "-"
    try:
        then = datetime.fromisoformat(str(stamp))
    except ValueError:
        return "-"
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


OUTCOME_STYLES = {"verified": "green", "verified-by-quorum": "green", "local": "cyan", "submitted": "blue",
                  "running": "blue", "cancelled": "yellow",
                  "mismatch": "bold red", "profile-mismatch": "yellow", "incomplete": "yellow",
                  "unverifiable": "magenta"}


def outcome_style(row: Mapping[str, Any]) -> str | None:
    return OUTCOME_STYLES.get(str(row.get("outcome")))


def outcome_text(value: Any) -> str:
    """Outcomes in tables: a mismatch in capitals, so that it stands out without colour too."""
    text = str(value or "-")
    return text.upper() if text == "mismatch" else text


def joined(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values) or "-"
