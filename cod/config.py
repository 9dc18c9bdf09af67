"""The requester's configuration: a TOML file in the XDG config directory, overridden by the
environment, overridden by the command line.

The file is ``$COD_CONFIG``, else ``$XDG_CONFIG_HOME/cod/config.toml`` (``~/.config`` when
XDG_CONFIG_HOME is unset). When that TOML file does not exist, the ``config.json`` of earlier
versions in the same directory is read with the same keys and checks. Every key is validated
when the file is read; an unknown key, a wrong type or a malformed URL or size is a
ConfigError (exit 21) naming the file and the key, never a value read "one character at a
time". Each effective value remembers where it came from (``cod config show``).

Keys::

    nodes = ["http://10.0.0.1:1234", "http://10.0.0.2:1234"]   # COD_NODES=URL,URL
    ledger = "http://10.0.0.9:8090"                             # COD_LEDGER
    ledger_vkey = "ledger.example.org+4c5f31b6+AQ..."           # COD_LEDGER_VKEY: the ledger's log key
    moderator_key = "~/.config/cod/moderator.key"               # COD_MODERATOR_KEY
    [limits]                                                    # defaults of cod run
    fuel = 1000000000000                                        # COD_FUEL
    memory = "256MiB"                                           # COD_MEMORY
    timeout = "600s"                                            # COD_TIMEOUT
    max_stdout = "16MiB"                                        # COD_MAX_STDOUT
    max_stderr = "16MiB"                                        # COD_MAX_STDERR
    max_output = "1GiB"                                         # COD_MAX_OUTPUT
    [verify]                                                    # defaults of cod run --verify
    referee = "self"                                            # COD_REFEREE: self, bisect or none
    referee_fuel = 1000000000000                                # COD_REFEREE_FUEL
    referee_bytes = "1GiB"                                      # COD_REFEREE_BYTES: fetched by CID at most
    audit = 0.05                                                # COD_AUDIT: the share of agreed runs audited

A relative ``moderator_key`` is relative to the config file's directory; ``~`` is expanded.
Nothing here reaches a job's result: limits become part of the job spec, so a job's CID says
which limits it ran under whichever source gave them.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CodError, ConfigError, UsageError
from .jobspec import MAX_INT, Limits

CONFIG_ENV = "COD_CONFIG"
"""Environment variable naming the config file, instead of the XDG location."""

FILE_NAME = "config.toml"
LEGACY_FILE_NAME = "config.json"
MAX_CONFIG_BYTES = 1 << 20
"""Largest config file read (1 MiB): a config is a few lines; anything larger is a mistake."""

DEFAULT_SOURCE = "default"

EXAMPLE = """\
# cod's configuration (cod config show prints what is in effect and where it came from).
# Every line is an example, commented out: with no nodes, cod run --verify N starts its own network.
# nodes = ["http://127.0.0.1:1234", "http://127.0.0.1:1235", "http://127.0.0.1:1236"]
# gateways = ["https://trustless-gateway.link"]
# ledger = "http://127.0.0.1:8090"
# ledger_vkey = "ledger.example.org+4c5f31b6+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
#   (the ledger's log key, as cod ledger info prints it; else trusted on first use)
# moderator_key = "moderator.key"   # relative to this file's directory

[limits]   # defaults of cod run; --fuel, --memory, ... win
# fuel = 1000000000000
# memory = "256MiB"
# timeout = "600s"
# max_stdout = "16MiB"
# max_stderr = "16MiB"
# max_output = "1GiB"

[verify]   # defaults of cod run --verify; --referee, --referee-fuel, --referee-bytes, --audit win
# referee = "self"         # self (re-execute here), bisect (only the disputed segment), none (vote)
# referee_fuel = 1000000000000
# referee_bytes = "1GiB"   # what the referee fetches by CID from the signing nodes, at most
# audit = 0.0              # the share of agreed runs re-executed here, chosen after the nodes answer
"""

HINT = ('see README "Configuration": nodes = ["http://HOST:PORT", ...], ledger = "http://HOST:PORT", '
        'moderator_key = "PATH", and the [limits] and [verify] tables')


@dataclass(frozen=True)
class Key:
    """One configurable value: its name in the file, its environment variable, how to read it."""

    name: str
    env: str
    describe: str
    read: Callable[[Any], Any]
    """Checks a value from the file (TOML types) and returns it as used; raises ValueError."""
    read_env: Callable[[str], Any]
    """The same, from the text of an environment variable."""
    default: Any = None


def _url(value: Any) -> str:
    from .urls import node_url_problem  # the one check of URLs, shared with --node

    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string: a URL such as \"http://127.0.0.1:1234\"")
    problem = node_url_problem(value)
    if problem:
        raise ValueError(f"{value!r} {problem}")
    return value


def _vkey(value: Any) -> str:
    from .ledger.note import NoteError, Verifier  # the one parser of vkeys (SPEC.md 12.2)

    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string: the ledger's vkey, as cod ledger info prints it")
    try:
        return Verifier.from_vkey(value).vkey
    except NoteError as exc:
        raise ValueError(f"is not a ledger's verifier key: {exc}") from None


def _urls(value: Any) -> list[str]:
    if isinstance(value, str):
        raise ValueError(f"must be a list of URLs, e.g. nodes = [{json.dumps(value)}], not one string")
    if not isinstance(value, list):
        raise ValueError("must be a list of URL strings")
    return [_url(item) for item in value]


def _urls_env(text: str) -> list[str]:
    return [_url(part.strip()) for part in text.split(",") if part.strip()]


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty path string")
    if "\x00" in value:
        raise ValueError("holds a NUL character, which no path can")
    return value


def _count(field_name: str) -> Callable[[Any], int]:
    def read(value: Any) -> int:
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number, e.g. 50000000000")
        if not 1 <= value <= MAX_INT:
            raise ValueError(f"{value} is out of range [1, {MAX_INT}]")
        return value
    read.__name__ = field_name
    return read


def _size(field_name: str) -> Callable[[Any], int]:
    def read(value: Any) -> int:
        from .local import parse_size

        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError("must be a size: a number of bytes, or text such as \"256MiB\"")
        if isinstance(value, int):
            return _count(field_name)(value)
        return _spec_value(lambda: parse_size(value, field_name))
    return read


def _duration(field_name: str) -> Callable[[Any], int]:
    def read(value: Any) -> int:
        from .local import parse_duration_ms

        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError("must be a duration: seconds, or text such as \"600s\" or \"500ms\"")
        return _spec_value(lambda: parse_duration_ms(str(value), field_name))
    return read


def _spec_value(parse: Callable[[], int]) -> int:
    try:
        return parse()
    except CodError as exc:  # the job-spec checks speak of spec fields; here it is a config value
        raise ValueError(str(exc)) from None


REFEREES = ("self", "bisect", "none")
"""The referee methods (SPEC 11.3, 11.7)."""


def _referee(value: Any) -> str:
    if not isinstance(value, str) or value.strip() not in REFEREES:
        raise ValueError(f"must be one of {', '.join(REFEREES)}")
    return value.strip()


def _share(value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError("must be a number from 0 to 1, e.g. 0.05") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError("must be a number from 0 to 1, e.g. 0.05")
    return float(value)


def _limit(name: str, env: str, describe: str, read: Callable[[Any], int], default: int) -> Key:
    return Key(f"limits.{name}", env, describe, read, read, default)


KEYS: tuple[Key, ...] = (
    Key("nodes", "COD_NODES", "node URLs a verified run uses", _urls, _urls_env, []),
    Key("gateways", "COD_GATEWAYS", "IPFS trustless gateways to fetch content by CID from", _urls, _urls_env, []),
    Key("ledger", "COD_LEDGER", "the FIL+ ledger's URL", _url, _url),
    Key("ledger_vkey", "COD_LEDGER_VKEY", "the FIL+ ledger's log key (vkey) to pin", _vkey, _vkey),
    Key("moderator_key", "COD_MODERATOR_KEY", "a moderator's key file", _path, _path),
    _limit("fuel", "COD_FUEL", "cod run --fuel", _count("limits.fuel"), Limits.fuel),
    _limit("memory", "COD_MEMORY", "cod run --memory", _size("limits.memory_bytes"), Limits.memory_bytes),
    _limit("timeout", "COD_TIMEOUT", "cod run --timeout", _duration("limits.timeout_ms"), Limits.timeout_ms),
    _limit("max_stdout", "COD_MAX_STDOUT", "cod run --max-stdout", _size("limits.stdout_bytes"),
           Limits.stdout_bytes),
    _limit("max_stderr", "COD_MAX_STDERR", "cod run --max-stderr", _size("limits.stderr_bytes"),
           Limits.stderr_bytes),
    _limit("max_output", "COD_MAX_OUTPUT", "cod run --max-output", _size("limits.output_bytes"),
           Limits.output_bytes),
    Key("verify.referee", "COD_REFEREE", "cod run --referee", _referee, _referee, "self"),
    Key("verify.referee_fuel", "COD_REFEREE_FUEL", "cod run --referee-fuel", _count("verify.referee_fuel"),
        _count("verify.referee_fuel"), None),
    Key("verify.referee_bytes", "COD_REFEREE_BYTES", "cod run --referee-bytes", _size("verify.referee_bytes"),
        _size("verify.referee_bytes"), 1 << 30),
    Key("verify.audit", "COD_AUDIT", "cod run --audit", _share, _share, 0.0),
)
KEY_BY_NAME = {key.name: key for key in KEYS}
TOP_LEVEL = sorted({key.name.split(".")[0] for key in KEYS})
TABLES = {table: sorted(key.name.split(".", 1)[1] for key in KEYS if key.name.startswith(f"{table}."))
          for table in ("limits", "verify")}
"""The tables of the file ([limits], [verify]) and their keys."""
LIMIT_NAMES = TABLES["limits"]


@dataclass(frozen=True)
class Setting:
    """An effective value and where it came from: "default", "environment COD_X" or "file PATH"."""

    key: str
    value: Any
    source: str


@dataclass(frozen=True)
class Config:
    """The effective configuration: every key of KEYS, with its source."""

    path: Path
    """The config file that was (or would be) read."""
    found: bool
    settings: dict[str, Setting] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        return self.settings[name].value

    @property
    def nodes(self) -> list[str]:
        return list(self.get("nodes"))

    @property
    def gateways(self) -> list[str]:
        return list(self.get("gateways"))

    @property
    def ledger(self) -> str | None:
        value: str | None = self.get("ledger")
        return value

    @property
    def moderator_key(self) -> str | None:
        value: str | None = self.get("moderator_key")
        return value

    def limit(self, name: str) -> int:
        value: int = self.get(f"limits.{name}")
        return value

    def verify(self, name: str) -> Any:
        """A [verify] default of cod run --verify: referee, referee_fuel, referee_bytes or audit."""
        return self.get(f"verify.{name}")

    def source(self, name: str) -> str:
        return self.settings[name].source


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/cod`` (``~/.config/cod`` when unset)."""
    env = os.environ if environ is None else environ
    home = env.get("HOME") or os.path.expanduser("~")
    base = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return Path(base) / "cod"


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The config file read: $COD_CONFIG, else config.toml in config_dir(), else a legacy
    config.json there when only that exists."""
    env = os.environ if environ is None else environ
    explicit = env.get(CONFIG_ENV)
    if explicit:
        return Path(explicit)
    toml_path = config_dir(env) / FILE_NAME
    legacy = toml_path.with_name(LEGACY_FILE_NAME)
    if not toml_path.exists() and legacy.exists():
        return legacy
    return toml_path


_cache: dict[tuple[Any, ...], Config] = {}


def load(environ: Mapping[str, str] | None = None) -> Config:
    """The effective configuration; ConfigError naming the file or variable and key of a bad value.

    Read once per process for a given file state and environment.
    """
    env = dict(os.environ if environ is None else environ)
    path = config_path(env)
    try:
        st = path.stat()
        state: tuple[Any, ...] = (st.st_mtime_ns, st.st_size, st.st_ino)
    except OSError:
        state = ()
    cache_key = (str(path), state, tuple(sorted((k, v) for k, v in env.items() if k.startswith("COD_"))))
    cached = _cache.get(cache_key)
    if cached is None:
        cached = _cache[cache_key] = _load(path, env)
    return cached


def _load(path: Path, env: Mapping[str, str]) -> Config:
    data = _read_file(path)
    found = data is not None
    if not found and env.get(CONFIG_ENV):
        raise ConfigError(f"{CONFIG_ENV} names {str(path)!r}, which does not exist",
                          f"create it (cod config init writes one there), or unset {CONFIG_ENV}")
    values = _flatten(data or {}, path)
    settings: dict[str, Setting] = {}
    for key in KEYS:
        text = env.get(key.env, "").strip()
        if text:
            try:
                value = key.read_env(text)
            except ValueError as exc:
                raise ConfigError(f"{key.env}: {exc}", f"fix or unset {key.env} ({key.describe})") from None
            settings[key.name] = Setting(key.name, value, f"environment {key.env}")
        elif key.name in values:
            settings[key.name] = Setting(key.name, values[key.name], f"file {path}")
        else:
            settings[key.name] = Setting(key.name, key.default, DEFAULT_SOURCE)
    key_path = settings["moderator_key"]
    if key_path.value is not None and key_path.source.startswith("file "):
        resolved = path.parent / os.path.expanduser(key_path.value)
        settings["moderator_key"] = Setting("moderator_key", str(resolved), key_path.source)
    elif key_path.value is not None:
        settings["moderator_key"] = Setting("moderator_key", os.path.expanduser(key_path.value), key_path.source)
    return Config(path, found, settings)


def _read_file(path: Path) -> dict[str, Any] | None:
    """The file's table, or None when there is no file."""
    try:
        # O_NONBLOCK: a FIFO (or a device) at the path must be refused, not waited on
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}",
                          "check its permissions") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"config file {str(path)!r} is not a regular file",
                              f"remove it, or point {CONFIG_ENV} at a file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}",
                          "check its permissions") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {str(path)!r} is larger than {MAX_CONFIG_BYTES} bytes",
                          "a config holds a few lines; check the path")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8: {exc}", HINT) from None
    data: Any
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except RecursionError:
            raise ConfigError(f"config file {str(path)!r} nests too deeply to read", HINT) from None
        except ValueError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid JSON: {exc}", HINT) from None
    else:
        import tomllib

        try:
            data = tomllib.loads(text)
        except RecursionError:
            raise ConfigError(f"config file {str(path)!r} nests too deeply to read", HINT) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}", HINT) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} holds a {type(data).__name__}, not a table of keys", HINT)
    return data


def _flatten(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Checked values by dotted key; ConfigError for an unknown key or a bad value."""
    where = f"config file {str(path)!r}"
    values: dict[str, Any] = {}
    for name in sorted(data):
        if name not in TOP_LEVEL:
            raise ConfigError(f"{where}: unknown key {name!r}", f"the keys are {', '.join(TOP_LEVEL)}")
        if name in TABLES:
            table = data[name]
            if not isinstance(table, dict):
                raise ConfigError(f"{where}: \"{name}\" must be a table ([{name}])", HINT)
            for item in sorted(table):
                if item not in TABLES[name]:
                    raise ConfigError(f"{where}: unknown key \"{name}.{item}\"",
                                      f"the keys of [{name}] are {', '.join(TABLES[name])}")
                values[f"{name}.{item}"] = _checked(KEY_BY_NAME[f"{name}.{item}"], table[item], where)
            continue
        values[name] = _checked(KEY_BY_NAME[name], data[name], where)
    return values


def _checked(key: Key, value: Any, where: str) -> Any:
    try:
        return key.read(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: \"{key.name}\" {exc}", HINT) from None


def as_json(config: Config) -> dict[str, Any]:
    """The effective configuration as ``cod config show --json`` prints it."""
    return {"path": str(config.path), "found": config.found,
            "settings": {name: {"value": s.value, "source": s.source, "env": KEY_BY_NAME[name].env}
                         for name, s in config.settings.items()}}


def ledger_url(explicit: str | None) -> str | None:
    """The ledger to use: ``explicit`` (--ledger), else COD_LEDGER, else "ledger" of the config file.

    None when none is set. Raises UsageError for a bad --ledger, ConfigError naming the source
    of a bad COD_LEDGER or config value.
    """
    from .urls import node_url_problem

    if explicit:
        problem = node_url_problem(explicit)
        if problem:
            raise UsageError(f"--ledger {explicit!r} {problem}", "give the ledger's URL, e.g. http://127.0.0.1:8090")
        return explicit
    return load().ledger


__all__ = ["Config", "ConfigError", "EXAMPLE", "KEYS", "Setting", "as_json", "config_dir", "config_path", "ledger_url",
           "load"]
