"""cod config: the effective configuration, where it is read from, and a first file."""

from __future__ import annotations

import json

import click

from .output import Column, Output, output_options

SETTING_COLUMNS = (
    Column("key", "KEY"),
    Column("value", "VALUE", show=lambda v: "-" if v is None or v == [] else
           ", ".join(v) if isinstance(v, list) else str(v)),
    Column("source", "SOURCE"),
    Column("env", "VARIABLE"),
)


@click.group(name="config")
def config() -> None:
    """Show the configuration in effect and where it came from.

    The file is $COD_CONFIG, else $XDG_CONFIG_HOME/cod/config.toml (~/.config/cod/config.toml);
    environment variables (COD_NODES, COD_LEDGER, COD_MODERATOR_KEY, COD_FUEL, ...) override it,
    and options such as --node and --fuel override both.

    \b
    Examples:
      cod config show
      cod config show --json
      cod config init && $EDITOR "$(cod config path)"
    """


@config.command()
@output_options
def show(out: Output) -> None:
    """Print every setting in effect, its value and where it came from.

    Sources are "default", "environment VAR" or "file PATH". A malformed file or variable
    is an error (exit 21) naming it.

    \b
    Examples:
      cod config show
      COD_NODES=http://127.0.0.1:1234 cod config show --json
    """
    from ..config import KEY_BY_NAME, as_json, load

    current = load()
    rows = [{"key": name, "value": s.value, "source": s.source, "env": KEY_BY_NAME[name].env}
            for name, s in current.settings.items()]
    if out.format == "json":
        click.echo(json.dumps(as_json(current), indent=2, sort_keys=True))
        return
    title = f"{current.path}" + ("" if current.found else " (no such file: defaults and environment)")
    out.rows(rows, SETTING_COLUMNS, title=title)


@config.command()
def path() -> None:
    """Print the path of the config file cod reads (whether or not it exists).

    \b
    Examples:
      cod config path
      COD_CONFIG=./team.toml cod config path
    """
    from ..config import config_path

    click.echo(str(config_path()))


@config.command()
@click.option("--force", is_flag=True, help="Replace an existing file.")
def init(force: bool) -> None:
    """Write a config file to start from: every setting an example, commented out.

    Refuses to replace an existing file without --force.

    \b
    Examples:
      cod config init
      cod config init --force
    """
    import os
    import stat
    import tempfile

    from ..config import CONFIG_ENV, EXAMPLE, FILE_NAME, config_dir, config_path
    from ..errors import LocalPathError, UsageError
    from .options import writable_dir

    target = config_path()
    if not os.environ.get(CONFIG_ENV) and target.suffix == ".json":  # the legacy file: start TOML beside it
        target = config_dir() / FILE_NAME
    writable_dir(str(target.parent), "config directory")
    try:
        mode: int | None = os.lstat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not force:
        raise UsageError(f"{str(target)!r} already exists", "edit it, or pass --force to replace it")
    if mode is not None and not stat.S_ISREG(mode):  # a symlink, a FIFO, a directory: never written through
        raise LocalPathError(f"{str(target)!r} is not a regular file", "remove it yourself, then run cod config init")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=target.parent, prefix=".config-", suffix=".toml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(EXAMPLE)
        os.replace(staging, target)  # replaces the name itself: whatever was there, nothing is followed
    except BaseException:
        os.unlink(staging)
        raise
    click.echo(str(target))
