"""cod nodes (--check, forget), embedded devstacks leaving no nodes behind, and cod get
finding the signers by node ID after their URLs changed, or falling back to the local copy.

Real parts: `cod` subprocesses, real `cod devstack` processes restarted on new ports with the
same keys (--base-dir), real SQLite records.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ..helpers import VECTORS, cod_env, devstack

HELLO = str(VECTORS / "hello.wasm")


def cod(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cod", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def home(tmp_path: Path) -> tuple[dict[str, str], Path]:
    return cod_env(tmp_path), tmp_path


@contextmanager
def stack(env: dict[str, str], cwd: Path, base: Path, nodes: int = 2) -> Iterator[list[tuple[str, str]]]:
    """A `cod devstack` keeping its keys under ``base``; yields (node ID, URL) of each node."""
    with devstack(env, cwd, nodes, 0, "--base-dir", str(base)) as found:
        yield [(node_id, url) for node_id, url, _ in found]


def test_an_embedded_devstack_leaves_its_run_but_not_its_nodes(home: tuple[dict[str, str], Path]) -> None:
    env, tmp = home
    ran = cod("run", "--verify", "2", "--json", HELLO, env=env, cwd=tmp)
    assert ran.returncode == 0, ran.stderr
    view = json.loads(ran.stdout)
    assert len(view["nodes"]) == 2 and all(n["node_id"].startswith("12D3KooW") for n in view["nodes"])
    assert json.loads(cod("nodes", "--json", env=env, cwd=tmp).stdout) == []
    assert [j["job_cid"] for j in json.loads(cod("list", "--json", env=env, cwd=tmp).stdout)] == [view["job_cid"]]
    assert "no nodes known" in cod("nodes", env=env, cwd=tmp).stderr


def test_get_finds_the_signers_by_node_id_after_they_moved_then_uses_the_local_copy(
        home: tuple[dict[str, str], Path]) -> None:
    env, tmp = home
    base = tmp / "stack"
    with stack(env, tmp, base) as first:
        env1 = dict(env, COD_NODES=",".join(url for _, url in first))
        ran = cod("run", "--verify", "2", "--json", HELLO, "moving", env=env1, cwd=tmp)
        assert ran.returncode == 0, ran.stderr
        view = json.loads(ran.stdout)
        listed = json.loads(cod("nodes", "--json", env=env1, cwd=tmp).stdout)
        assert sorted(n["node_id"] for n in listed) == sorted(i for i, _ in first)
        assert all(n["configured"] and n["last_seen"] for n in listed)
    local = Path(view["results_dir"])
    shutil.rmtree(local)  # only the nodes have it now
    with stack(env, tmp, base) as second:  # same keys, new ports
        assert sorted(i for i, _ in second) == sorted(i for i, _ in first)
        assert not {u for _, u in second} & {u for _, u in first}
        env2 = dict(env, COD_NODES=",".join(url for _, url in second))
        got = cod("get", view["short_id"], "--output-dir", str(tmp / "got"), env=env2, cwd=tmp)
        assert got.returncode == 0, got.stderr
        assert (tmp / "got" / "stdout").read_text() == "hello from cod\n"
        checked = json.loads(cod("nodes", "--check", "--json", env=env2, cwd=tmp).stdout)
        states = {(n["url"], n["state"]) for n in checked}
        assert {(u, "up") for _, u in second} <= states and {(u, "down") for _, u in first} <= states
        assert all(n["latency_ms"] is not None for n in checked if n["state"] == "up")
    # every node gone: the copy `get` just made (recorded as the run's results) is used, once it checks out
    car = cod("get", view["short_id"], "--car", str(tmp / "r.car"), env=env2, cwd=tmp)
    assert car.returncode == 0, car.stderr
    assert (tmp / "r.car").stat().st_size > 0
    # a local copy that was changed is not used: the one-line error and its hint instead
    (tmp / "got" / "stdout").write_text("forged\n")
    failed = cod("get", view["short_id"], "--output-dir", str(tmp / "again"), env=env2, cwd=tmp)
    assert failed.returncode == 14, failed.stderr
    lines = failed.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: job ") and "none of the nodes that signed" in lines[0]
    assert lines[1].startswith("hint: ") and "node ID" in lines[1]
    assert not (tmp / "again").exists()


def test_forget_takes_a_short_node_id_and_refuses_unknown_or_ambiguous(home: tuple[dict[str, str], Path]) -> None:
    env, tmp = home
    with stack(env, tmp, tmp / "stack") as nodes:
        env1 = dict(env, COD_NODES=",".join(url for _, url in nodes))
        assert cod("run", "--verify", "2", HELLO, env=env1, cwd=tmp).returncode == 0
    env.pop("COD_NODES", None)
    (gone, url), (kept, _) = sorted(nodes)
    short = gone[len("12D3KooW"):][:8]
    assert cod("nodes", "forget", "zzzzzzzz", env=env, cwd=tmp).returncode == 2
    assert cod("nodes", "forget", "", env=env, cwd=tmp).returncode == 2
    out = cod("nodes", "forget", short, env=env, cwd=tmp)
    assert out.returncode == 0 and out.stdout.strip() == f"Forgot {gone} ({url})", out.stderr
    assert [n["node_id"] for n in json.loads(cod("nodes", "--json", env=env, cwd=tmp).stdout)] == [kept]
    assert len(json.loads(cod("list", "--json", env=env, cwd=tmp).stdout)[0]["nodes"]) == 2  # runs keep answers
