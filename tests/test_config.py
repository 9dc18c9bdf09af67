"""The TOML config: where it is, what it may hold, what overrides it, and that limits from it
reach the job spec (the expected values are written out by hand, not computed by cod)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cod.config import EXAMPLE, config_path, ledger_url, load
from cod.errors import ConfigError, UsageError

ROOT = Path(__file__).resolve().parent.parent
HELLO = str(ROOT / "vectors" / "hello.wasm")


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COD_")}
    env.update(XDG_CONFIG_HOME=str(tmp / "config"), COD_HOME=str(tmp / "home"), **extra)
    return env


def write(tmp: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp / "config" / "cod" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_file_is_in_the_xdg_config_dir_unless_cod_config_names_one(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    assert config_path(env) == tmp_path / "config" / "cod" / "config.toml"
    assert config_path({"HOME": str(tmp_path)}) == tmp_path / ".config" / "cod" / "config.toml"
    assert config_path(dict(env, COD_CONFIG=str(tmp_path / "team.toml"))) == tmp_path / "team.toml"


def test_no_file_gives_the_defaults_of_cod_run(tmp_path: Path) -> None:
    config = load(env_for(tmp_path))
    assert not config.found and config.nodes == [] and config.ledger is None and config.moderator_key is None
    assert config.limit("fuel") == 10**12 and config.limit("memory") == 256 * 1024 * 1024
    assert config.limit("timeout") == 600_000 and config.limit("max_output") == 1 << 30
    assert {s.source for s in config.settings.values()} == {"default"}


def test_every_key_is_read_with_its_source_and_the_environment_wins(tmp_path: Path) -> None:
    path = write(tmp_path, 'nodes = ["http://10.0.0.1:1234", "https://n2.example:443/cod"]\n'
                           'ledger = "http://10.0.0.9:8090"\nmoderator_key = "keys/mod.key"\n'
                           '[limits]\nfuel = 1000\nmemory = "64MiB"\ntimeout = "1500ms"\n'
                           'max_stdout = 4096\nmax_stderr = "1KiB"\nmax_output = "1GB"\n')
    config = load(env_for(tmp_path))
    assert config.found and config.path == path
    assert config.nodes == ["http://10.0.0.1:1234", "https://n2.example:443/cod"]
    assert config.ledger == "http://10.0.0.9:8090"
    assert config.moderator_key == str(path.parent / "keys" / "mod.key")  # relative to the file
    assert [config.limit(n) for n in ("fuel", "memory", "timeout", "max_stdout", "max_stderr", "max_output")] == [
        1000, 64 * 1048576, 1500, 4096, 1024, 10**9]
    assert config.source("nodes") == f"file {path}"
    over = load(env_for(tmp_path, COD_NODES="http://10.1.1.1:1, http://10.1.1.2:2", COD_FUEL="7",
                        COD_LEDGER="http://10.0.0.8:1", COD_MODERATOR_KEY="/k"))
    assert over.nodes == ["http://10.1.1.1:1", "http://10.1.1.2:2"] and over.limit("fuel") == 7
    assert over.ledger == "http://10.0.0.8:1" and over.moderator_key == "/k"
    assert over.source("nodes") == "environment COD_NODES" and over.source("limits.memory") == f"file {path}"


def test_the_legacy_json_file_is_read_when_there_is_no_toml(tmp_path: Path) -> None:
    legacy = write(tmp_path, json.dumps({"nodes": ["http://10.0.0.1:1"]}), "config.json")
    assert load(env_for(tmp_path)).nodes == ["http://10.0.0.1:1"]
    write(tmp_path, 'nodes = ["http://10.0.0.2:2"]\n')
    assert load(env_for(tmp_path)).nodes == ["http://10.0.0.2:2"]  # the TOML file wins
    assert legacy.exists()


@pytest.mark.parametrize("text, words", [
    ('nodes = "http://127.0.0.1:1234"', ['"nodes"', "not one string"]),  # never read per character
    ("nodes = [1]", ['"nodes"', "a URL"]),
    ('nodes = ["127.0.0.1:1234"]', ['"nodes"', "http://"]),
    ('ledger = ["http://a:1"]', ['"ledger"', "a URL"]),
    ("moderator_key = 3", ['"moderator_key"', "path"]),
    ("limits = 3", ['"limits"', "table"]),
    ("[limits]\nfuel = 0", ['"limits.fuel"', "out of range"]),
    ("[limits]\nfuel = 1.5", ['"limits.fuel"', "whole number"]),
    ("[limits]\nfuel = true", ['"limits.fuel"', "whole number"]),
    ('[limits]\nmemory = "12 parsecs"', ['"limits.memory"']),
    ("[limits]\ntimeout = 1.5", ['"limits.timeout"', "duration"]),
    ('[limits]\ntimeout = "soon"', ['"limits.timeout"', "not a duration"]),
    ("[limits]\nfule = 1", ["unknown key", "limits.fule", "fuel"]),
    ("nodess = []", ["unknown key 'nodess'", "nodes"]),
    ("nodes = [", ["not valid TOML"]),
])
def test_a_bad_file_is_a_config_error_naming_the_file_and_the_key(tmp_path: Path, text: str,
                                                                   words: list[str]) -> None:
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as caught:
        load(env_for(tmp_path))
    assert str(path) in caught.value.message and caught.value.code == 21
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize("name, value", [("COD_NODES", "ftp://x:1"), ("COD_LEDGER", "x"), ("COD_FUEL", "-3"),
                                         ("COD_MEMORY", "huge"), ("COD_TIMEOUT", "soon")])
def test_a_bad_variable_is_a_config_error_naming_it(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(env_for(tmp_path, **{name: value}))
    assert caught.value.message.startswith(f"{name}: ") and name in (caught.value.hint or "")


def test_the_example_written_by_config_init_sets_nothing_and_each_example_line_is_valid(tmp_path: Path) -> None:
    write(tmp_path, EXAMPLE)
    config = load(env_for(tmp_path))
    assert config.found and {name: setting.source for name, setting in config.settings.items()} == {
        name: "default" for name in config.settings}  # all commented out: nothing set, --verify starts a network
    uncommented = re.sub(r"(?m)^# (\w+ = )", r"\1", EXAMPLE)
    assert uncommented.count("\n# ") < EXAMPLE.count("\n# ") - 8  # the examples, not the prose, were uncommented
    write(tmp_path, uncommented)
    config = load(env_for(tmp_path))
    assert config.nodes == ["http://127.0.0.1:1234", "http://127.0.0.1:1235", "http://127.0.0.1:1236"]
    assert config.limit("fuel") == 1000000000000 and config.ledger == "http://127.0.0.1:8090"


def cod(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cod", *args], capture_output=True, text=True, timeout=60,
                          env=dict(env_for(tmp, **env), PYTHONPATH=str(ROOT)), cwd=tmp)


def test_limits_reach_the_spec_and_the_command_line_and_job_file_win(tmp_path: Path) -> None:
    write(tmp_path, '[limits]\nfuel = 12345\nmemory = "1MiB"\ntimeout = "2s"\n')
    spec = json.loads(cod(tmp_path, "run", "--dry-run", "--json", HELLO).stdout)["spec"]["limits"]
    assert (spec["fuel"], spec["memory_bytes"], spec["timeout_ms"]) == (12345, 1048576, 2000)
    assert spec["stdout_bytes"] == 16 * 1048576  # not in the file: cod's default
    spec = json.loads(cod(tmp_path, "run", "--dry-run", "--json", "--fuel", "99", HELLO,
                          COD_MEMORY="2MiB").stdout)["spec"]["limits"]
    assert (spec["fuel"], spec["memory_bytes"], spec["timeout_ms"]) == (99, 2 * 1048576, 2000)
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"module": HELLO, "limits": {"fuel": 555}}))
    spec = json.loads(cod(tmp_path, "run", "--dry-run", "--json", "-f", str(job)).stdout)["spec"]["limits"]
    assert (spec["fuel"], spec["memory_bytes"]) == (555, 1048576)


def test_config_show_names_each_source_and_config_init_refuses_to_overwrite(tmp_path: Path) -> None:
    first = cod(tmp_path, "config", "init")
    assert first.returncode == 0 and first.stdout.strip() == str(tmp_path / "config" / "cod" / "config.toml")
    shown = json.loads(cod(tmp_path, "config", "show", "--json", COD_FUEL="5").stdout)
    assert shown["found"] is True
    assert shown["settings"]["limits.fuel"] == {"value": 5, "source": "environment COD_FUEL", "env": "COD_FUEL"}
    assert shown["settings"]["nodes"]["source"] == "default"  # the example sets no nodes: --verify starts a network
    text = cod(tmp_path, "config", "show").stdout
    assert "http://127.0.0.1:1234" not in text and "environment" not in text
    again = cod(tmp_path, "config", "init")
    assert again.returncode == 2 and "already exists" in again.stderr
    assert cod(tmp_path, "config", "path").stdout.strip() == first.stdout.strip()


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_a_config_path_that_is_no_regular_file_is_refused_without_waiting(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "config" / "cod" / "config.toml"
    target.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(target)  # nobody writes: reading it would wait for ever
    elif kind == "directory":
        target.mkdir()
    env = env_for(tmp_path, **({"COD_CONFIG": "/dev/zero"} if kind == "device" else {}))
    with pytest.raises(ConfigError) as caught:
        load(env)
    assert "not a regular file" in caught.value.message and caught.value.code == 21


def test_a_symlinked_config_file_is_read(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "cod.toml"
    real.parent.mkdir()
    real.write_text('nodes = ["http://10.0.0.7:1"]\n')
    link = tmp_path / "config" / "cod" / "config.toml"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    assert load(env_for(tmp_path)).nodes == ["http://10.0.0.7:1"]


# -- which ledger the CLI uses (cod.config.ledger_url) ----------------------------------------------

@pytest.fixture()
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("COD_LEDGER", raising=False)
    path = tmp_path / "cod" / "config.json"
    path.parent.mkdir()
    return path


def test_ledger_url_takes_the_option_then_the_environment_then_the_config(
        config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ledger_url(None) is None
    config.write_text(json.dumps({"nodes": [], "ledger": "http://10.0.0.1:8090", "moderator_key": "/k"}))
    assert ledger_url(None) == "http://10.0.0.1:8090"
    monkeypatch.setenv("COD_LEDGER", "http://10.0.0.2:8090")
    assert ledger_url(None) == "http://10.0.0.2:8090"
    assert ledger_url("http://10.0.0.3:8090") == "http://10.0.0.3:8090"


@pytest.mark.parametrize("value, problem", [(5, "non-empty string"), ("", "non-empty string"),
                                            ("ftp://x:1", "http://"), ("http://x:1/?q=1", "query")])
def test_a_bad_ledger_in_the_config_is_a_config_error_naming_it(config: Path, value: Any, problem: str) -> None:
    config.write_text(json.dumps({"ledger": value}))
    with pytest.raises(ConfigError) as caught:
        ledger_url(None)
    assert '"ledger"' in caught.value.message and problem in caught.value.message
    assert caught.value.code == 21


def test_a_bad_cod_ledger_or_option_is_refused(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COD_LEDGER", "not a url")
    with pytest.raises(ConfigError, match="COD_LEDGER"):
        ledger_url(None)
    with pytest.raises(UsageError, match="--ledger"):
        ledger_url("http://")
