"""`cod run --verify`, list, describe, get, nodes as a user meets them: a devstack with two liars."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..helpers import ROOT, VECTORS, load_vector, run_cod

WORDCOUNT = load_vector("wordcount")
JOB = [str(VECTORS / "wordcount.wasm"), "-i", str(VECTORS / "data" / "wordcount")]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Network:
    def __init__(self, env: dict[str, str], honest: list[str], liars: list[str], cwd: Path) -> None:
        self.env, self.honest, self.liars, self.cwd = env, honest, liars, cwd

    def cod(self, *args: str, stderr: int | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cod", *args], cwd=self.cwd, capture_output=stderr is None,
                              stdout=subprocess.PIPE if stderr is not None else None, stderr=stderr, text=True,
                              env=self.env, timeout=120)

    def run(self, nodes: list[str], *args: str) -> subprocess.CompletedProcess[str]:
        """``cod run`` on ``nodes``; voting only (``--referee none``) unless ``args`` names a referee."""
        flags = [f for url in nodes for f in ("--node", url)]
        voting = [] if "--referee" in args else ["--referee", "none"]
        return self.cod("run", *voting, *args, *flags, *JOB)


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    tmp = tmp_path_factory.mktemp("cli")
    env = dict(os.environ, COD_HOME=str(tmp / "home"), PYTHONPATH=str(ROOT))
    env.pop("COD_NODES", None)
    stack = subprocess.Popen([sys.executable, "-m", "cod", "devstack", "--nodes", "4", "--bad-nodes", "2"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    honest: list[str] = []
    liars: list[str] = []
    try:
        assert stack.stdout is not None
        while len(honest) + len(liars) < 4:
            line = stack.stdout.readline()
            assert line, "devstack ended early"
            if line.startswith("node "):
                (liars if "(lies)" in line else honest).append(line.split()[3])
        yield Network(env, honest, liars, tmp)
    finally:
        stack.send_signal(signal.SIGINT)
        stack.wait(timeout=30)


@pytest.mark.parametrize("n, quorum", [(2, 1), (3, 5), (4, 2), (4, 0)])
def test_a_quorum_that_is_not_a_majority_is_a_usage_error(n: int, quorum: int, network: Network) -> None:
    out = network.run(network.honest + network.liars, "--verify", str(n), "--quorum", str(quorum))
    assert out.returncode == 2, out.stderr
    if quorum >= 1:  # 0 is refused where it is parsed (a count of nodes is at least 1)
        assert "strict majority" in out.stderr and "hint: use --quorum between" in out.stderr
    else:
        assert out.stderr.startswith("error: ") and "--quorum" in out.stderr
    assert "Traceback" not in out.stderr and "Checking" not in out.stderr  # nothing ran


def test_liars_are_named_and_the_groups_shown(network: Network) -> None:
    out = network.run(network.honest + network.liars[:1], "--verify", "3")
    assert out.returncode == 10, out.stderr
    assert "Outcome:     MISMATCH" in out.stderr and not ANSI.search(out.stderr)  # not a terminal: no colour
    lines = out.stderr.splitlines()
    for url in network.honest:
        assert any(url in line and " agrees " in line for line in lines), out.stderr
    (liar,) = [line for line in lines if network.liars[0] in line and not line.startswith(("Outvoted:", "  node "))]
    assert " DISAGREES " in liar
    (named,) = [line for line in lines if line.startswith("Outvoted:")]  # the cheater, named
    assert network.liars[0] in named and WORDCOUNT["expect"]["result_cid"] in named
    groups = lines[lines.index("Groups:") + 1:lines.index(named)]
    assert groups[0].startswith(f"  {WORDCOUNT['expect']['result_cid']} -> ") and groups[0].count(",") == 1
    assert " -> " in groups[1] and "," not in groups[1]


def test_the_referee_beats_two_colluding_liars_and_names_them(network: Network) -> None:
    """Stage 11 (SPEC 11.3): 1 honest node against 2 liars signing the same lie, --verify 3
    --quorum 2: voting accepts the lie; the referee (the default) re-executes the job and accepts
    the honest result, naming both liars as proven, in text and in --json."""
    nodes = network.honest[:1] + network.liars
    honest = WORDCOUNT["expect"]["result_cid"]
    voted = network.run(nodes, "--verify", "3", "--quorum", "2", "--referee", "none")
    assert voted.returncode == 0 and "VERIFIED-BY-QUORUM" in voted.stderr, voted.stderr
    assert voted.stdout != WORDCOUNT["expect"]["stdout"]  # the lie, handed over
    out = network.cod("run", "--verify", "3", "--quorum", "2", *[f for u in nodes for f in ("--node", u)], *JOB)
    assert out.returncode == 0, out.stderr
    assert "Outcome:     VERIFIED-BY-REFEREE" in out.stderr and f"Result CID:  {honest}" in out.stderr
    assert out.stdout == WORDCOUNT["expect"]["stdout"]
    named = [line for line in out.stderr.splitlines() if line.startswith("Proven liar:")]
    assert len(named) == 2 and all(any(url in line for line in named) for url in network.liars)
    assert not any(line.startswith("Outvoted:") for line in out.stderr.splitlines())
    view = json.loads(network.cod("run", "--json", "--verify", "3", "--quorum", "2",
                                  *[f for u in nodes for f in ("--node", u)], *JOB).stdout)
    by_url = {node["url"]: node for node in view["nodes"]}
    assert view["outcome"] == "verified-by-referee" and view["result_cid"] == honest
    assert sorted(view["liars"]) == sorted(by_url[url]["node_id"] for url in network.liars)
    assert {k: view["referee"][k] for k in ("method", "result_cid", "rounds")} == {
        "method": "self", "result_cid": honest, "rounds": 0}
    assert view["referee"]["segment_fuel"] == by_url[network.honest[0]]["fuel_used"] > 0
    assert [by_url[url]["status"] for url in network.liars] == ["DISAGREES", "DISAGREES"]
    described = json.loads(network.cod("describe", WORDCOUNT["job_cid"], "--json").stdout)
    assert sorted(described["liars"]) == sorted(view["liars"])  # the record keeps the proof
    listed = json.loads(network.cod("nodes", "--json").stdout)
    lied = {row["url"]: row["lied"] for row in listed}
    assert all(lied[url] >= 1 for url in network.liars) and lied[network.honest[0]] == 0


def test_a_tie_of_real_nodes_never_verifies(network: Network) -> None:
    out = network.run(network.honest + network.liars, "--verify", "4", "--quorum", "3")
    assert out.returncode == 10, out.stderr
    assert out.stderr.count(" DISAGREES ") == 4 and "VERIFIED" not in out.stderr


def test_colour_only_on_a_terminal(network: Network) -> None:
    leader, follower = pty.openpty()
    try:
        out = network.cod("run", "--referee", "none", "--verify", "3", *[f for u in network.honest + network.liars[:1]
                                                     for f in ("--node", u)], *JOB, stderr=follower)
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 1 << 16)
            except OSError:  # the terminal's other end is closed and drained
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(leader)
    seen = b"".join(chunks).decode()
    assert out.returncode == 10
    assert "\x1b[31m" in seen and "\x1b[32m" in seen  # DISAGREES red, agrees green


def test_fewer_reachable_nodes_fail_fast_naming_them(network: Network) -> None:
    dead = "http://127.0.0.1:1"
    out = network.run(network.honest + [dead], "--verify", "3")
    assert out.returncode == 14, out.stderr
    assert f"error: 2 of 3 node(s) can take this job, and --verify needs 3; left out: {dead} (" in out.stderr
    assert "Running on" not in out.stderr and "Traceback" not in out.stderr


def test_runs_are_kept_and_prefixes_must_be_unique(network: Network) -> None:
    nodes = network.honest + network.liars[:1]
    assert network.run(nodes, "--verify", "3").returncode == 10
    quorum = network.run(nodes, "--verify", "3", "--quorum", "2")
    assert quorum.returncode == 0 and "VERIFIED-BY-QUORUM" in quorum.stderr
    assert quorum.stdout == WORDCOUNT["expect"]["stdout"]
    job = WORDCOUNT["job_cid"]
    listed = network.cod("list").stdout
    (row,) = [line for line in listed.splitlines() if line.rstrip().endswith(job)]
    assert row.split()[2] == "verified-by-quorum" and int(row.split()[6]) >= 1  # earlier runs were mismatches
    described = json.loads(network.cod("describe", job[:20], "--json").stdout)
    outcomes = [r["outcome"] for r in described["runs"]]
    assert outcomes[-2:] == ["mismatch", "verified-by-quorum"] and described["outcome"] == "verified-by-quorum"
    assert all(r["started_at"] <= r["finished_at"] for r in described["runs"])
    hello = network.cod("run", "--verify", "2", *[f for u in network.honest for f in ("--node", u)],
                        str(VECTORS / "hello.wasm"))
    assert hello.returncode == 0, hello.stderr  # a second job: every job CID starts with bagaaiera
    for prefix in ("", "bagaa", "bagaaiera"):
        refused = network.cod("describe", prefix)
        assert refused.returncode == 2 and refused.stderr.startswith("error: "), refused.stderr
    wildcard = network.cod("describe", "bagaaiera%")  # never a LIKE pattern: refused as not a CID prefix
    assert wildcard.returncode == 2 and "not a job CID or a prefix" in wildcard.stderr, wildcard.stderr
    got = network.cod("get", job[:20], "--output-dir", str(network.cwd / "again"))
    assert got.returncode == 0, got.stderr
    assert (network.cwd / "again" / "stdout").read_text() == WORDCOUNT["expect"]["stdout"]
    nodes_out = network.cod("nodes").stdout
    (liar,) = [line for line in nodes_out.splitlines() if network.liars[0] in line]
    assert "disagreed 0" not in liar


@pytest.mark.parametrize("nodes", [[], ["--node", "http://127.0.0.1:1"]], ids=["embedded devstack", "a dead node"])
def test_a_file_that_is_no_module_is_refused_before_any_node_is_asked(tmp_path: Path, nodes: list[str]) -> None:
    """`cod run --verify 3 README.md` fails as a local run does (exit 4, the same words), before a
    devstack starts or a node is asked: a dead node would otherwise make it exit 14, an embedded
    devstack 11 (incomplete) after uploading to 3 nodes."""
    readme = str(ROOT / "README.md")
    local = run_cod(tmp_path, "run", readme)
    verified = run_cod(tmp_path, "run", "--verify", "3", *nodes, readme)
    assert local.returncode == verified.returncode == 4, verified.stderr
    assert verified.stderr == local.stderr and "not a WebAssembly module" in verified.stderr
    assert "Traceback" not in verified.stderr and verified.stdout == ""
    assert json.loads(run_cod(tmp_path, "list", "--json").stdout) == []  # nothing ran, nothing recorded


@pytest.mark.parametrize("where", ["embedded devstack", "remote nodes"])
def test_a_verified_run_out_of_fuel_says_how_much_it_used_and_which_option_raises_it(
        where: str, tmp_path: Path, network: Network) -> None:
    """fuelbomb loops for ever: with --fuel 1000000 every node signs the trap out_of_fuel (a result,
    verified), and the report says the fuel each used and the option to raise, as a local run does."""
    job = ["run", "--verify", "2", str(VECTORS / "fuelbomb.wasm"), "--fuel", "1000000"]
    if where == "embedded devstack":
        proc = run_cod(tmp_path, *job)
    else:
        proc = network.cod(*job, *[f for url in network.honest for f in ("--node", url)])
    assert proc.returncode == 0, proc.stderr
    assert "Outcome:     VERIFIED" in proc.stderr
    assert "Exit code:   134 (trap: out_of_fuel)" in proc.stderr and "Fuel used:   1000000" in proc.stderr
    assert ("hint: every node ran out of fuel: the job used all the fuel it was given (1000000): give more with "
            "--fuel N") in proc.stderr
    assert "Traceback" not in proc.stderr


def test_fuel_over_the_nodes_cap_names_the_cap_and_the_option(tmp_path: Path) -> None:
    """--fuel above the max_fuel the devstack's nodes publish (10 x the default 10**12: cod/node/caps.py):
    every node refuses it (422 CapExceeded), and the report says which option to lower, to what."""
    proc = run_cod(tmp_path, "run", "--verify", "2", "--fuel", str(10**14), str(VECTORS / "hello.wasm"))
    assert proc.returncode == 11, proc.stderr
    assert ("hint: --fuel 100000000000000 is over the max_fuel the nodes publish (10000000000000): give --fuel "
            "10000000000000 or less, or nodes with a higher max_fuel") in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_devstack_of_random_liars_marks_them_and_the_referee_names_them(tmp_path: Path) -> None:
    """Stage 11 (SPEC 11.8): `cod devstack --bad-mode random` keeps its listing (each liar's line
    marked "(lies)", its mode after it); the liars agree on one lie, and the referee beats it."""
    env = dict(os.environ, COD_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    env.pop("COD_NODES", None)
    stack = subprocess.Popen([sys.executable, "-m", "cod", "devstack", "--nodes", "3", "--bad-nodes", "2",
                              "--bad-mode", "random"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, env=env)
    lines: list[str] = []
    try:
        assert stack.stdout is not None
        while len(lines) < 3:
            line = stack.stdout.readline()
            assert line, "devstack ended early"
            if line.startswith("node "):
                lines.append(line.rstrip("\n"))
        assert [line.endswith("  (lies) random") for line in lines] == [False, True, True]
        assert not lines[0].endswith(")") and len(lines[0].split()) == 4
        network = Network(env, [lines[0].split()[3]], [line.split()[3] for line in lines[1:]], tmp_path)
        view = json.loads(network.run(network.honest + network.liars, "--json", "--verify", "3", "--quorum", "2",
                                      "--referee", "self").stdout)
        by_url = {node["url"]: node for node in view["nodes"]}
        assert (view["outcome"], view["result_cid"]) == ("verified-by-referee", WORDCOUNT["expect"]["result_cid"])
        assert sorted(view["liars"]) == sorted(by_url[url]["node_id"] for url in network.liars)
        assert len({by_url[url]["result_cid"] for url in network.liars}) == 1  # they collude
    finally:
        stack.send_signal(signal.SIGINT)
        stack.wait(timeout=30)
