"""Every read command takes every output option of cod/cli/output.py, and each option prints what
it promises: ``--json`` one JSON document, ``--nl`` one JSON object per line, ``--csv`` a header row
and rows with no blank lines, the table plain text when piped. The commands are found by walking
the CLI (so a new read command is checked too) and must be the ones README lists; each is run
against the ``net`` fixture (tests/cli/conftest.py): a real devstack with a liar and a real ledger.
"""

from __future__ import annotations

import csv
import io
import json
import re

import click
import pytest

from cod.cli import cli

from ..helpers import ROOT
from .conftest import Net

FORMATS = ("--json", "--nl", "--csv")
ACTIONS = {("add",), ("cancel",), ("run",), ("ledger", "bless", "import"), ("ledger", "init"), ("ledger", "moderator", "approve"),
           ("ledger", "moderator", "propose"), ("ledger", "verify"), ("moderation", "approve"),
           ("fraud", "verify"), ("fraud", "show"),
           ("moderation", "reject")}
"""Commands that do something and print what they did: --json alone (one answer, not rows to read)."""


def _walk(group: click.Group, ctx: click.Context, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], set[str]]:
    """Every command of the CLI and the output options it takes."""
    found: dict[tuple[str, ...], set[str]] = {}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        formats = set(FORMATS) & {opt for param in command.params for opt in param.opts}
        if isinstance(command, click.Group):
            found.update(_walk(command, ctx, (*path, name)))
        if formats or not isinstance(command, click.Group):  # a group may read too (cod nodes)
            found[(*path, name)] = formats
    return found


def read_commands() -> list[tuple[str, ...]]:
    """Every command that takes an output option and is not an action: a read command."""
    return sorted(path for path, formats in _walk(cli, click.Context(cli)).items() if formats and path not in ACTIONS)


def test_every_read_command_has_every_output_option_and_readme_lists_them_all() -> None:
    commands = _walk(cli, click.Context(cli))
    assert {path for path, formats in commands.items() if formats == {"--json"}} == ACTIONS
    for path in read_commands():
        assert commands[path] == set(FORMATS), f"cod {' '.join(path)} lacks {sorted(set(FORMATS) - commands[path])}"
    readme = (ROOT / "README.md").read_text()
    listed = re.search(r"\*\*Output options\.\*\* Every read command \((.*?)\) takes", readme, re.S)
    assert listed, "README's Output options paragraph moved"
    named = sorted(tuple(n.strip("`").split()[1:]) for n in re.split(r",\s*", " ".join(listed.group(1).split())))
    assert named == read_commands()


@pytest.fixture(scope="module")
def decided(net: Net) -> Net:
    """The net once the queued job is approved: then ``cod ledger proof`` has a decision to prove."""
    done = net.cod("moderation", "approve", str(net.quorum["job_cid"]), "--datacap", "1GiB", "--reason", "useful",
                   "--key", str(net.tmp / "moderator.key"))
    assert done.returncode == 0, done.stderr
    return net


def _arguments(net: Net, path: tuple[str, ...]) -> list[str]:
    """What each read command needs to name to have something to show."""
    quorum_job, result = str(net.quorum["job_cid"]), str(net.quorum["result_cid"])
    return {("describe",): [str(net.mismatch["short_id"])], ("moderation", "show"): [quorum_job],
            ("ledger", "proof"): [result], ("ledger", "notary"): [result]}.get(path, [])


@pytest.mark.parametrize("fmt", [*FORMATS, "table"])
def test_each_read_command_prints_each_format_it_promises(decided: Net, fmt: str) -> None:
    net = decided
    for path in read_commands():
        args = [*path, *_arguments(net, path), *([fmt] if fmt != "table" else [])]
        if path == ("dashboard",) and fmt == "table":
            args.append("--once")
        done = net.cod(*args)
        assert done.returncode == 0, (args, done.stderr)
        text = done.stdout
        if not text.strip():  # only a command with nothing to show may print nothing (the table says so on stderr)
            assert json.loads(net.cod(*path, *_arguments(net, path), "--json").stdout) == [], (args, "printed nothing")
            continue
        assert "\x1b" not in text, args  # piped: never escape codes
        if fmt == "--json":
            json.loads(text)
        elif fmt == "--nl":
            lines = text.splitlines()
            assert all(line.strip() for line in lines), (args, "a blank line")
            assert all(isinstance(json.loads(line), dict) for line in lines), args
        elif fmt == "--csv":
            rows = list(csv.reader(io.StringIO(text)))  # a cell may hold newlines (a signed note), quoted
            assert all(rows), (args, f"a blank line in {text!r}")
            assert rows[0] and all(cell for cell in rows[0]), (args, "a header row")
            assert all(len(row) == len(rows[0]) for row in rows), args


def test_moderator_list_as_csv_is_a_row_per_moderator_and_proposal(net: Net) -> None:
    rows = list(csv.DictReader(io.StringIO(net.cod("ledger", "moderator", "list", "--csv").stdout)))
    assert [row["kind"] for row in rows] == ["moderator", "proposal"]  # one moderator, voted in by one proposal
    assert rows[0]["moderator"] == rows[1]["moderator"] and rows[1]["action"] == "add"
    assert rows[1]["in_effect"] == "True"
    nl = [json.loads(line) for line in net.cod("ledger", "moderator", "list", "--nl").stdout.splitlines()]
    assert [row["kind"] for row in nl] == ["moderator", "proposal"] and len(nl[1]["signatures"]) == 1


def test_dashboard_csv_is_its_jobs_table_and_nl_the_snapshot_on_one_line(net: Net) -> None:
    rows = list(csv.DictReader(io.StringIO(net.cod("dashboard", "--csv").stdout)))
    assert {row["short_id"]: row["outcome"] for row in rows} == {net.mismatch["short_id"]: "mismatch",
                                                                  net.quorum["short_id"]: "verified-by-quorum"}
    (line,) = net.cod("dashboard", "--nl").stdout.splitlines()
    assert json.loads(line)["schema"] == "cod.dashboard/1"
