"""The everyday job commands (Stage 5): short IDs, one job object everywhere, the output
options, describe in words, logs, run -f / --dry-run / --detach, the job's stderr after a run.

Real parts throughout: `cod` subprocesses, a real `cod devstack` with a liar, real SQLite records.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from verifier.jobview import short_ids

from ..helpers import ROOT, VECTORS

ANSI = re.compile(r"\x1b\[[0-9;]*m")
HELLO = str(VECTORS / "hello.wasm")
WORDCOUNT = [str(VECTORS / "wordcount.wasm"), "-i", str(VECTORS / "data" / "wordcount")]

# a module that writes "to stdout\n" on fd 1 and "to stderr\n" on fd 2, then exits 3
NOISY_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "to stdout\n")
  (data (i32.const 96) "to stderr\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 10))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 96)) (i32.store (i32.const 4) (i32.const 10))
    (drop (call $w (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 16)))
    (call $exit (i32.const 3))))
"""


def cod(*args: str, env: dict[str, str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cod", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, input=stdin)


@pytest.fixture
def home(tmp_path: Path) -> tuple[dict[str, str], Path]:
    env = dict(os.environ, COD_HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               PYTHONPATH=str(ROOT))
    env.pop("COD_NODES", None)
    return env, tmp_path


@pytest.fixture
def noisy(tmp_path: Path) -> str:
    path = tmp_path / "noisy.wasm"
    path.write_bytes(wasmtime.wat2wasm(NOISY_WAT))
    return str(path)


# -- short IDs ----------------------------------------------------------------------------------
def test_every_job_cid_starts_with_the_prefix_short_ids_leave_out() -> None:
    # CIDv1 (0x01), json codec 0x0200 as a varint (0x80 0x04), sha2-256 (0x12), 32 bytes (0x20):
    # five bytes, eight base32 characters after the multibase 'b'
    assert "b" + base64.b32encode(bytes([0x01, 0x80, 0x04, 0x12, 0x20])).decode().lower() == "bagaaiera"


def test_short_ids_are_the_shortest_unambiguous_tails() -> None:
    cids = ["bagaaieraabcdefghij", "bagaaieraabcdefghxx", "bagaaierazzzzzzzzzz", "bagaaierazzzzzzzqqq"]
    # by hand: the first two share "abcdefgh" (8), so they need 9; the last two share "zzzzzzz" (7), so 8
    assert short_ids(cids) == {"bagaaieraabcdefghij": "abcdefghi", "bagaaieraabcdefghxx": "abcdefghx",
                               "bagaaierazzzzzzzzzz": "zzzzzzzz", "bagaaierazzzzzzzqqq": "zzzzzzzq"}
    assert short_ids(["bagaaierakj2phhhbeq3y"]) == {"bagaaierakj2phhhbeq3y": "kj2phhhb"}


# -- one job object everywhere, and the output options ---------------------------------------------
def test_a_local_run_is_recorded_and_every_view_is_the_same_object(home: tuple[dict[str, str], Path]) -> None:
    env, tmp = home
    ran = cod("run", "--json", HELLO, env=env, cwd=tmp)
    assert ran.returncode == 0, ran.stderr
    view = json.loads(ran.stdout)
    assert view["schema"] == "cod.job/1" and view["outcome"] == "local"
    assert view["stdout"] == "hello from cod\n" and view["stderr"] == "" and view["exit_code"] == 0
    assert view["short_id"] == view["job_cid"][len("bagaaiera"):][:8]
    described = json.loads(cod("describe", view["short_id"], "--json", env=env, cwd=tmp).stdout)
    listed = json.loads(cod("list", "--json", env=env, cwd=tmp).stdout)
    assert described == view  # the same data, not just the same keys
    assert len(listed) == 1 and listed[0] == view
    lines = cod("list", "--nl", env=env, cwd=tmp).stdout.splitlines()
    assert [json.loads(line) for line in lines] == [view]


def test_list_as_csv_and_as_a_plain_table(home: tuple[dict[str, str], Path], noisy: str) -> None:
    env, tmp = home
    cod("run", HELLO, env=env, cwd=tmp)
    cod("run", noisy, env=env, cwd=tmp)
    rows = list(csv.DictReader(io.StringIO(cod("list", "--csv", env=env, cwd=tmp).stdout)))
    assert [r["exit_code"] for r in rows] == ["3", "0"]  # newest first
    assert all(r["job_cid"].startswith("bagaaiera") and r["outcome"] == "local" for r in rows)
    table = cod("list", env=env, cwd=tmp).stdout  # not a terminal: plain text, no escape codes
    assert not ANSI.search(table)
    header, *body = table.splitlines()
    assert header.split()[:4] == ["ID", "AGE", "OUTCOME", "K/N"] and len(body) == 2
    assert body[0].split()[0] == rows[0]["short_id"]


def test_list_outcome_takes_any_case_and_refuses_an_outcome_that_does_not_exist(home: tuple[dict[str, str], Path]) -> None:
    env, tmp = home
    cod("run", HELLO, env=env, cwd=tmp)
    for spelled in ("local", "LOCAL", "Local"):  # the table prints some outcomes in capitals (MISMATCH)
        listed = json.loads(cod("list", "--json", "--outcome", spelled, env=env, cwd=tmp).stdout)
        assert [view["outcome"] for view in listed] == ["local"], spelled
    assert json.loads(cod("list", "--json", "--outcome", "MISMATCH", env=env, cwd=tmp).stdout) == []
    for wrong in ("foo", "mismatched", ""):
        refused = cod("list", "--outcome", wrong, env=env, cwd=tmp)
        assert refused.returncode == 2 and "no jobs yet" not in refused.stdout + refused.stderr, wrong
        assert "--outcome" in refused.stderr and "verified-by-quorum" in refused.stderr, refused.stderr  # the choices


def test_list_of_an_outcome_no_job_has_does_not_say_there_are_no_jobs(home: tuple[dict[str, str], Path]) -> None:
    """A second round of point 33: with jobs recorded, `cod list --outcome mismatch` (a valid choice
    that no job has) said "no jobs yet: run one with cod run --verify 3 MODULE.wasm"."""
    env, tmp = home
    cod("run", HELLO, env=env, cwd=tmp)
    listed = cod("list", "--outcome", "mismatch", env=env, cwd=tmp)
    assert listed.returncode == 0, listed.stderr
    said = listed.stdout + listed.stderr
    assert "no jobs yet" not in said and "mismatch" in said, said


def test_describe_reads_as_text_and_takes_a_short_id_prefix(home: tuple[dict[str, str], Path]) -> None:
    env, tmp = home
    view = json.loads(cod("run", "--json", HELLO, env=env, cwd=tmp).stdout)
    text = cod("describe", view["short_id"][:5], env=env, cwd=tmp)
    assert text.returncode == 0, text.stderr
    assert f"Job:         {view['job_cid']}" in text.stdout and "Outcome:     LOCAL" in text.stdout
    assert "--- stdout ---\nhello from cod\n" in text.stdout
    assert not text.stdout.lstrip().startswith("{")  # words by default, JSON only when asked


def test_logs_prints_stdout_and_stderr_where_they_belong(home: tuple[dict[str, str], Path], noisy: str) -> None:
    env, tmp = home
    ran = cod("run", noisy, env=env, cwd=tmp)
    assert ran.returncode == 0, ran.stderr  # a local run's exit is cod's; the job's 3 is reported
    assert ran.stdout == "to stdout\n"
    assert ran.stderr.endswith("--- stderr ---\nto stderr\n") and "Exit code:   3" in ran.stderr
    short = json.loads(cod("list", "--json", env=env, cwd=tmp).stdout)[0]["short_id"]
    logs = cod("logs", short, env=env, cwd=tmp)
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, "to stdout\n", "to stderr\n")
    only = cod("logs", short, "--stderr", env=env, cwd=tmp)
    assert (only.stdout, only.stderr) == ("", "to stderr\n")


def test_an_ambiguous_or_unknown_id_is_a_clear_error(home: tuple[dict[str, str], Path]) -> None:
    env, tmp = home
    for args in (["a"], ["b"], ["c"]):
        cod("run", HELLO, *args, env=env, cwd=tmp)
    shorts = [row["short_id"] for row in json.loads(cod("list", "--json", env=env, cwd=tmp).stdout)]
    missing = cod("describe", "zzzzzzzzzzzz", env=env, cwd=tmp)
    assert missing.returncode == 17 and missing.stderr.startswith("error: no job zzzzzzzzzzzz"), missing.stderr
    everything = cod("describe", "bagaaiera", env=env, cwd=tmp)
    assert everything.returncode == 2 and "matches several jobs" in everything.stderr
    assert len(set(shorts)) == 3


# -- run -f, --dry-run ---------------------------------------------------------------------------
def test_dry_run_prints_the_spec_and_job_cid_and_runs_nothing(home: tuple[dict[str, str], Path]) -> None:
    env, tmp = home
    dry = cod("run", "--dry-run", "--json", *WORDCOUNT, env=env, cwd=tmp)
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert not (tmp / "cod-results").exists() and cod("list", "--json", env=env, cwd=tmp).stdout.strip() == "[]"
    ran = json.loads(cod("run", "--json", *WORDCOUNT, env=env, cwd=tmp).stdout)
    assert planned["job_cid"] == ran["job_cid"] and planned["spec"] == ran["spec"]
    text = cod("run", "--dry-run", *WORDCOUNT, env=env, cwd=tmp)
    assert json.loads(text.stdout) == planned["spec"] and planned["job_cid"] in text.stderr


def test_a_job_file_runs_the_same_job_and_the_command_line_wins(home: tuple[dict[str, str], Path]) -> None:
    env, tmp = home
    (tmp / "jobs").mkdir()
    os.symlink(VECTORS / "wordcount.wasm", tmp / "jobs" / "wordcount.wasm")
    job = {"module": "wordcount.wasm", "inputs": [f"{VECTORS / 'data' / 'wordcount'}:/inputs"],
           "limits": {"fuel": 123456789, "memory": "64MiB"}}
    (tmp / "jobs" / "job.json").write_text(json.dumps(job))
    from_file = json.loads(cod("run", "--dry-run", "--json", "-f", "jobs/job.json", env=env, cwd=tmp).stdout)
    assert from_file["spec"]["limits"]["fuel"] == 123456789
    assert from_file["spec"]["limits"]["memory_bytes"] == 64 << 20
    by_hand = json.loads(cod("run", "--dry-run", "--json", "--fuel", "123456789", "--memory", "64MiB", *WORDCOUNT,
                             env=env, cwd=tmp).stdout)
    assert from_file["job_cid"] == by_hand["job_cid"]  # relative paths are the file's, not the cwd's
    overridden = json.loads(cod("run", "--dry-run", "--json", "-f", "jobs/job.json", "--fuel", "99", env=env,
                                cwd=tmp).stdout)
    assert overridden["spec"]["limits"]["fuel"] == 99
    # a saved dry run is a job file too (from stdin here), and gives the same job
    again = json.loads(cod("run", "--dry-run", "--json", "-f", "-", env=env, cwd=tmp,
                           stdin=json.dumps(from_file)).stdout)
    assert again["job_cid"] == from_file["job_cid"]


@pytest.mark.parametrize("content, text", [
    ('{"module": "x.wasm", "fule": 1}', "unknown key(s) 'fule'"),
    ('{"args": []}', "module"),
    ('[1, 2]', "not an object"),
    ('{"module": "x.wasm", "limits": {"fuel": true}}', "limits.fuel"),
    ('{"module": "x.wasm", "verify": 0}', "positive integer"),
    ('{"module": "x.wasm", "inputs": "data"}', "list of strings"),
    ('{"module": 5}', "must be a string"),
    ('\xff', "not UTF-8 JSON"),
])
def test_a_bad_job_file_is_refused_with_what_is_wrong(content: str, text: str,
                                                      home: tuple[dict[str, str], Path]) -> None:
    env, tmp = home
    (tmp / "job.json").write_bytes(content.encode("latin-1"))
    out = cod("run", "-f", "job.json", env=env, cwd=tmp)
    assert out.returncode == 3, out.stderr
    assert out.stderr.startswith("error: ") and text in out.stderr and "Traceback" not in out.stderr
    assert "hint: " in out.stderr


def test_job_file_and_module_together_or_neither_are_usage_errors(home: tuple[dict[str, str], Path]) -> None:
    env, tmp = home
    (tmp / "job.json").write_text(json.dumps({"module": HELLO}))
    both = cod("run", "-f", "job.json", HELLO, env=env, cwd=tmp)
    neither = cod("run", env=env, cwd=tmp)
    missing = cod("run", "-f", "nope.json", env=env, cwd=tmp)
    detach_local = cod("run", "--detach", HELLO, env=env, cwd=tmp)
    assert (both.returncode, neither.returncode, missing.returncode, detach_local.returncode) == (2, 2, 5, 2)
    assert "not both" in both.stderr and "MODULE" in neither.stderr and "nope.json" in missing.stderr
    assert "--detach goes with --verify" in detach_local.stderr


# -- a real network with a liar -------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path, list[str], str]]:
    tmp = tmp_path_factory.mktemp("jobs-net")
    env = dict(os.environ, COD_HOME=str(tmp / "home"), XDG_CONFIG_HOME=str(tmp / "config"), PYTHONPATH=str(ROOT))
    env.pop("COD_NODES", None)
    proc = subprocess.Popen([sys.executable, "-m", "cod", "devstack", "--nodes", "3", "--bad-nodes", "1"],
                            cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    urls: list[str] = []
    liar = ""
    try:
        assert proc.stdout is not None
        while len(urls) < 3:
            line = proc.stdout.readline()
            assert line, "devstack ended early"
            if line.startswith("node "):
                urls.append(line.split()[3])
                if "(lies)" in line:
                    liar = line.split()[1]
        yield dict(env, COD_NODES=",".join(urls)), tmp, urls, liar
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_a_verified_run_prints_the_same_object_describe_prints(
        stack: tuple[dict[str, str], Path, list[str], str]) -> None:
    env, tmp, _, liar = stack
    ran = cod("run", "--json", "--referee", "none", "--verify", "3", "--quorum", "2", *WORDCOUNT, env=env, cwd=tmp)
    assert ran.returncode == 0, ran.stderr
    view = json.loads(ran.stdout)
    assert view["outcome"] == "verified-by-quorum" and view["agreeing"] == 2 and view["n"] == 3
    assert [n["node_id"] for n in view["nodes"] if n["status"] == "DISAGREES"] == [liar]
    assert json.loads(cod("describe", view["short_id"], "--json", env=env, cwd=tmp).stdout) == view
    local = json.loads(cod("run", "--json", *WORDCOUNT, env=env, cwd=tmp).stdout)
    assert set(local) == set(view) and local["result_cid"] == view["result_cid"]


def test_a_mismatch_names_the_outvoted_node(stack: tuple[dict[str, str], Path, list[str], str]) -> None:
    env, tmp, _, liar = stack
    out = cod("run", "--referee", "none", "--verify", "3", *WORDCOUNT, env=env, cwd=tmp)
    assert out.returncode == 10, out.stderr
    (named,) = [line for line in out.stderr.splitlines() if line.startswith("Outvoted:")]
    assert liar in named


def test_detach_then_get_collects_compares_and_fetches(stack: tuple[dict[str, str], Path, list[str], str]) -> None:
    env, tmp, _, liar = stack
    sent = cod("run", "--verify", "3", "--quorum", "2", "--detach", "--json", HELLO, "detached", env=env, cwd=tmp)
    assert sent.returncode == 0, sent.stderr
    view = json.loads(sent.stdout)
    assert view["outcome"] == "submitted" and {n["status"] for n in view["nodes"]} == {"submitted"}
    assert not (tmp / "cod-results" / view["job_cid"]).exists()  # nothing fetched yet
    got = cod("get", view["short_id"], env=env, cwd=tmp)
    assert got.returncode == 0, got.stderr
    # the claims differ: cod get referees them (SPEC 11.3), fetching the job by CID from the signers
    assert "VERIFIED-BY-REFEREE" in got.stderr and liar in got.stderr
    after = json.loads(cod("describe", view["short_id"], "--json", env=env, cwd=tmp).stdout)
    assert after["outcome"] == "verified-by-referee" and [r["outcome"] for r in after["runs"]][-2:] == [
        "submitted", "verified-by-referee"]
    assert after["liars"] == [liar]
    assert [n["node_id"] for n in after["nodes"] if n["status"] == "DISAGREES"] == [liar]
    assert after["stdout"] == "hello from cod\n"
    logs = cod("logs", view["short_id"], env=env, cwd=tmp)
    assert logs.stdout == "hello from cod\n"


def test_detach_all_three_with_a_liar_is_collected_and_refereed(
        stack: tuple[dict[str, str], Path, list[str], str]) -> None:
    """All three asked, one lies: the vote alone is a mismatch; collecting referees it, and the
    honest result is accepted with the liar named."""
    env, tmp, _, liar = stack
    sent = json.loads(cod("run", "--verify", "3", "--detach", "--json", HELLO, "mismatch", env=env, cwd=tmp).stdout)
    logs = cod("logs", sent["short_id"], env=env, cwd=tmp)
    assert logs.returncode == 0 and "VERIFIED-BY-REFEREE" in logs.stderr, logs.stderr
    assert f"proven liar(s): {liar}" in logs.stderr
    assert logs.stdout.startswith("hello from cod")


def test_detach_needs_nodes_that_outlive_the_command(home: tuple[dict[str, str], Path]) -> None:
    env, tmp = home
    out = cod("run", "--verify", "2", "--detach", HELLO, env=env, cwd=tmp)
    assert out.returncode == 2 and "embedded devstack" in out.stderr, out.stderr


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_a_job_file_that_is_no_regular_file_is_refused_without_waiting(kind: str,
                                                                      home: tuple[dict[str, str], Path]) -> None:
    env, tmp = home
    path = {"fifo": tmp / "job.fifo", "directory": tmp, "device": Path("/dev/zero")}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    out = cod("run", "-f", str(path), env=env, cwd=tmp)  # a FIFO would block for ever; /dev/zero never end
    assert out.returncode == 5 and "not a regular file" in out.stderr, out.stderr


def test_a_huge_job_file_is_refused_unread(home: tuple[dict[str, str], Path]) -> None:
    env, tmp = home
    (tmp / "job.json").write_bytes(b'{"module": "' + b"x" * (2 << 20) + b'"}')
    out = cod("run", "-f", "job.json", env=env, cwd=tmp)
    assert out.returncode == 3 and "over 1048576 bytes" in out.stderr, out.stderr
