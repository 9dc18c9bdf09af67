"""Every command explains itself: help text with an example, help on every option, the exit
codes in `cod --help`, and a place in the README. A new command without them fails here."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from collections.abc import Iterator

import click
import pytest

import cod.errors
from cod.cli import COMMANDS, EPILOG, cli

from ..helpers import ROOT

README = (ROOT / "README.md").read_text()
OUTCOME_CODES = {10: "mismatch", 11: "incomplete", 12: "unverifiable", 13: "profile mismatch"}


def commands(group: click.Group = cli, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        assert command is not None, f"cod {prefix} {name} is listed but cannot be loaded"
        path = f"{prefix} {name}".strip()
        yield path, command
        if isinstance(command, click.Group):
            yield from commands(command, path)


PATHS = [path for path, _ in commands()]


def test_the_walk_finds_the_commands_a_user_meets() -> None:
    for path in ("run", "list", "describe", "logs", "get", "nodes", "serve", "devstack", "ledger verify",
                 "moderation queue", "cid"):
        assert path in PATHS


@pytest.mark.parametrize("path", PATHS)
def test_every_command_has_help_with_an_example(path: str) -> None:
    command = dict(commands())[path]
    assert command.help and len(command.help) > 20, f"cod {path} lacks help text"
    assert re.search(r"^\s*Examples?:\s*$", command.help, re.M), f"cod {path} --help shows no example"
    assert "\b" in command.help, f"cod {path}: put \\b before the examples so that click keeps their lines"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"cod {path} {'/'.join(param.opts)} lacks help"


@pytest.mark.parametrize("path", PATHS)
def test_every_command_is_in_the_readme(path: str) -> None:
    assert re.search(rf"\bcod {re.escape(path)}\b", README), f"README never shows `cod {path}`"


def test_the_lazy_listing_agrees_with_the_commands() -> None:
    ctx = click.Context(cli)
    for name, (module, short) in COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None, f"{name}: module cod.cli.{module} defines no command {name!r}"
        assert 10 < len(short) <= 60 and short.endswith("."), f"{name}: the listing's one line is {short!r}"


def test_every_exit_code_is_in_the_help_epilog_and_the_readme() -> None:
    codes = {cls.code for _, cls in inspect.getmembers(cod.errors, inspect.isclass)
             if issubclass(cls, cod.errors.CodError)} | set(OUTCOME_CODES) | {0, 1, 2, 130, 141}
    listed = {int(n) for n in re.findall(r"(?:^|\s)(\d{1,3}) [a-z]", EPILOG)}
    assert codes <= listed, f"cod --help lacks exit codes {sorted(codes - listed)}"
    table = {int(n) for n in re.findall(r"^\| (\d{1,3}) \|", README, re.M)}
    assert codes <= table, f"README's exit code table lacks {sorted(codes - table)}"


def test_help_is_fast_to_reach_and_shows_the_epilog() -> None:
    out = subprocess.run([sys.executable, "-m", "cod", "--help"], capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert out.returncode == 0 and "Exit codes" in out.stdout and "_COD_COMPLETE=bash_source" in out.stdout
    for name in COMMANDS:
        assert f"  {name} " in out.stdout


def test_shell_completion_works_and_is_documented() -> None:
    assert "_COD_COMPLETE=bash_source" in README and "_COD_COMPLETE=zsh_source" in README
    env = {"_COD_COMPLETE": "bash_complete", "COMP_WORDS": "cod des", "COMP_CWORD": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "cod"], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env=dict(env, PYTHONPATH=str(ROOT)))
    assert "plain,describe" in out.stdout.splitlines(), out.stdout
