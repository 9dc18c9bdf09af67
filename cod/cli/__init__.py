"""The ``cod`` command: click shells over the library, nothing more.

    run        a job: locally, or on N nodes with --verify N (cli/run.py)
    serve      a compute node; devstack: a local network of them (cli/network.py)
    get, describe, list, nodes: the requester's records (cli/network.py)
    cid, profile: tools (cli/tools.py)

Whatever goes wrong, :func:`main` prints one ``error: ...`` line, at most one ``hint: ...``
line, and exits with the code of the error class (README, "Exit codes"); a traceback only
with ``COD_DEBUG=1``.
"""

from __future__ import annotations

import os
import stat
import sys
import traceback

import click

from .. import __version__
from ..errors import CodError, LocalPathError

EXIT_INTERNAL = 1
"""An exception cod did not expect: a bug (``error: internal error: ...``)."""
EXIT_USAGE = 2
"""A usage error: unknown option, missing or malformed argument, a count out of range."""
EXIT_INTERRUPTED = 130
"""SIGINT (Ctrl-C): 128 + 2, as a shell reports a process the signal ended."""
EXIT_BROKEN_PIPE = 141
"""stdout was closed by its reader (``cod list | head -1``): 128 + SIGPIPE, silently."""
DEBUG_ENV = "COD_DEBUG"
COMPLETE_ENV = "_COD_COMPLETE"


COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module under cod.cli, short help shown by `cod --help`); a command's module is
    # imported only when that command runs, so `cod --help` and `cod run` load nothing else
    # (tests/cli/test_docs.py checks each short help against the command's own)
    "run": ("run", "Run a WebAssembly job here, or on N nodes with --verify N."),
    "serve": ("network", "Run a compute node: the /v1 HTTP API, signed results."),
    "devstack": ("network", "Run a local network of compute nodes until interrupted."),
    "list": ("records", "List the jobs this requester ran, newest first."),
    "describe": ("records", "Show one job: outcome, nodes, groups, stdout and stderr."),
    "logs": ("records", "Print a job's stdout and stderr."),
    "get": ("records", "Download the results of a job."),
    "cancel": ("cancel", "Stop a job on its nodes and record it cancelled."),
    "nodes": ("nodes", "List the nodes this requester knows, with their records."),
    "dashboard": ("dashboard", "A live view of jobs, nodes and the moderation queue."),
    "config": ("config", "Show the configuration in effect and where it came from."),
    "add": ("content", "Store files or directories by CID; print the CIDs."),
    "cid": ("tools", "Print the UnixFS CID of a file or directory."),
    "profile": ("tools", "Print the execution profile ID and its engine settings."),
    "keygen": ("ledger", "Write a new Ed25519 key file and print its ID."),
    "ledger": ("ledger", "The FIL+ moderation ledger: serve, inspect, audit."),
    "moderation": ("moderation", "Moderate eligible jobs: queue, approve, reject."),
    "fraud": ("fraud", "Fraud proofs: a signed lie, checked by re-execution."),
}


class LazyGroup(click.Group):
    """A group whose subcommands live in modules imported on first use (click's lazy loading
    recipe), with their one-line help kept here so that listing them imports nothing."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in COMMANDS:
            return command
        import importlib

        module = importlib.import_module(f".{COMMANDS[cmd_name][0]}", __name__)
        found = getattr(module, cmd_name.replace("-", "_") + "_command", None) or getattr(module, cmd_name)
        assert isinstance(found, click.Command), cmd_name
        return found

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in COMMANDS and name not in self.commands:
                rows.append((name, COMMANDS[name][1]))
            else:
                command = self.get_command(ctx, name)
                if command is not None and not command.hidden:
                    rows.append((name, command.get_short_help_str(formatter.width)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


EPILOG = """\b
Exit codes (README: "Exit codes and errors"):
  0 done (a local run, whatever the job's own exit code) or verified
  1 internal error (a bug)       2 usage                     3 bad job spec value
  4 module not a WASI command    5 unusable input            6 output limit exceeded
  7 indeterminate run            8 compiled-module cache     9 malformed CID
  10 mismatch                    11 incomplete               12 unverifiable
  13 profile mismatch            14 node error               15 engine unavailable
  16 bad signature               17 not found                18 executor crashed
  19 cap exceeded                20 engine setting           21 config file
  22 local path                  23 refused by the ledger    24 audit failed
  25 key file                    26 referee disagrees        27 run's audit failed
  28 fraud proof refused/refuted 29 fraud proof undecided     30 checkpoint refused
  130 interrupted                141 stdout closed

\b
Shell completion (bash; zsh and fish alike):
  eval "$(_COD_COMPLETE=bash_source cod)"
"""


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, prog_name="cod")
def cli() -> None:
    """cod: verifiable compute over data.

    Runs WebAssembly (WASI preview1) jobs where nothing but the job spec can shape the
    result, names each result by its IPFS UnixFS CID, and proves it by the agreement of
    independent nodes that sign their answers.
    """


def main() -> None:
    """Entry point: run the command; every error becomes its lines on stderr and its exit code.

    Once a run was interrupted (exit 130), another Ctrl-C while the process exits (pressed
    twice, or held down) changes nothing: without this, Python ends a process whose
    KeyboardInterrupt arrives during shutdown by SIGINT itself, not with the exit 130 the
    first one was answered with.
    """
    import signal

    try:
        code = run_cli(sys.argv[1:])
    except KeyboardInterrupt:  # the second Ctrl-C, while the first one's error was reported
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


def run_cli(args: list[str]) -> int:
    """Run ``cod ARGS``; returns the exit code after printing any error in the one documented shape."""
    if os.environ.get(COMPLETE_ENV):  # shell completion: click's own protocol
        cli.main(args=args, prog_name="cod")
    try:
        # make_context/invoke rather than cli.main: click's main turns a closed stdout into a
        # silent exit 1 and prints its own error shape, and both are decided here instead
        with cli.make_context("cod", list(args)) as ctx:
            code = cli.invoke(ctx)
        sys.stdout.flush()
    except SystemExit as exc:  # a command chose its exit code (cod run --verify: the outcome)
        return _flushed(exc.code if isinstance(exc.code, int) else EXIT_INTERNAL if exc.code else 0)
    except click.exceptions.Exit as exc:  # --help, --version
        return _flushed(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `cod`: the help, as asked for
        click.echo(exc.format_message())
        return _flushed(0)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "cod"
        return report(exc.format_message(), f"see '{command} --help'", EXIT_USAGE)
    except click.ClickException as exc:
        return report(exc.format_message(), None, exc.exit_code)
    except CodError as exc:
        return report(exc.message, exc.hint, exc.code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        return report("interrupted", None, EXIT_INTERRUPTED)
    except BrokenPipeError:
        if _stdout_is_pipe():
            return _silence_stdout()
        return _internal()
    except OSError as exc:
        if exc.filename is None:
            return _internal()
        # the host refused a path a command had to use: the user's to fix, not a bug
        where = os.fsdecode(exc.filename) if isinstance(exc.filename, bytes) else str(exc.filename)
        return report(f"cannot use {where!r}: {exc.strerror or exc}",
                       "check the path and its permissions (COD_HOME, XDG_CONFIG_HOME, XDG_CACHE_HOME "
                       "and HOME move cod's own directories)", LocalPathError.code)
    except Exception as exc:
        sqlite3 = sys.modules.get("sqlite3")  # (not imported here: `cod --help` needs no database)
        if sqlite3 is not None and isinstance(exc, sqlite3.Error):
            return report(f"a database cod keeps could not be used: {exc}",
                           "another cod may hold it (retry), or it is damaged (move it aside; COD_HOME moves the "
                           "requester's records)", LocalPathError.code)
        return _internal()
    return code if isinstance(code, int) else 0


def report(message: str, hint: str | None, code: int) -> int:
    """Print ``error:`` (and ``hint:``) as one line each on stderr; returns ``code``."""
    _say(f"error: {_one_line(message)}")
    if hint:
        _say(f"hint: {_one_line(hint)}")
    return code


def _internal() -> int:
    exc = sys.exc_info()[1]
    if os.environ.get(DEBUG_ENV) == "1":
        _say(traceback.format_exc().rstrip("\n"), lines=True)
    message = f"internal error: {type(exc).__name__}: {exc}"
    return report(message, f"this is a bug in cod: rerun with {DEBUG_ENV}=1 for the traceback and report it",
                   EXIT_INTERNAL)


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def _say(line: str, lines: bool = False) -> None:
    """One line (or, with ``lines``, several) on stderr; control characters (and bidi
    overrides) shown as "?", non-UTF-8 bytes escaped, a closed stderr ignored."""
    from ..text import printable, printable_lines

    line = printable_lines(line) if lines else printable(line)
    try:
        sys.stderr.flush()
        sys.stderr.buffer.write(line.encode("utf-8", "backslashreplace") + b"\n")
        sys.stderr.buffer.flush()
    except (OSError, ValueError, AttributeError):
        pass


def _flushed(code: int) -> int:
    """``code``, once stdout is flushed; a reader that went away makes it a silent 141."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return _silence_stdout()
    except (OSError, ValueError):
        pass
    return code


def _stdout_is_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode) or stat.S_ISSOCK(
            os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False


def _silence_stdout() -> int:
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    return EXIT_BROKEN_PIPE


__all__ = ["cli", "main", "report", "run_cli"]
