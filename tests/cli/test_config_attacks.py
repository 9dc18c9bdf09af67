"""Attacks on `cod config init` and `show`: links, FIFOs and a config file named by COD_CONFIG."""

from __future__ import annotations

import os
from pathlib import Path

from ..helpers import run_cod


def test_config_init_never_writes_through_a_link_or_into_a_fifo(tmp_path: Path) -> None:
    target = tmp_path / "config" / "cod" / "config.toml"
    target.parent.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere.toml"
    target.symlink_to(elsewhere)  # dangling
    out = run_cod(tmp_path, "config", "init")
    assert out.returncode == 2 and not elsewhere.exists()
    out = run_cod(tmp_path, "config", "init", "--force")
    assert out.returncode == 22 and "not a regular file" in out.stderr and not elsewhere.exists()
    target.unlink()
    os.mkfifo(target)
    out = run_cod(tmp_path, "config", "init", "--force")  # would block for ever if it opened the FIFO
    assert out.returncode == 22 and "not a regular file" in out.stderr
    target.unlink()
    team = tmp_path / "team.conf"
    out = run_cod(tmp_path, "config", "init", COD_CONFIG=str(team))
    assert out.returncode == 0 and out.stdout.strip() == str(team) and team.read_text().startswith("# cod")
    assert run_cod(tmp_path, "config", "show", "--json", COD_CONFIG=str(team)).returncode == 0
    missing = run_cod(tmp_path, "config", "show", COD_CONFIG=str(tmp_path / "nope.toml"))
    assert missing.returncode == 21 and "does not exist" in missing.stderr
