"""Attacks on the commands over the requester's records (`cod list`, `nodes`, `get`, `logs`):
damaged records, odd destinations, and a `cod get` that must never report success without
delivering checked bytes.

Real parts: `cod` subprocesses, real devstacks, real SQLite files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import VECTORS, cod_env, devstack, run_cod

HELLO = str(VECTORS / "hello.wasm")


# -- damaged records, odd paths ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["garbage", "directory"])
def test_damaged_records_are_a_local_path_error(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "home" / "requester.db"
    db.parent.mkdir()
    if kind == "garbage":
        db.write_bytes(os.urandom(4096))
    else:
        db.mkdir()
    for args in (("list",), ("nodes",), ("dashboard", "--once"), ("nodes", "forget", "abcdefgh")):
        out = run_cod(tmp_path, *args)
        assert out.returncode == 22, (args, out.stderr)
        assert out.stderr.startswith("error: cannot use the records database") and "Traceback" not in out.stderr


# -- cod get: success only with checked bytes ----------------------------------------------------------
@pytest.fixture
def verified(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], dict[str, Any]]]:
    env = cod_env(tmp_path)
    with devstack(env, tmp_path, 2) as nodes:
        env["COD_NODES"] = ",".join(url for _, url, _ in nodes)
        ran = subprocess.run([sys.executable, "-m", "cod", "run", "--json", "--verify", "2", HELLO], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr
        yield tmp_path, env, json.loads(ran.stdout)


def get(tmp: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cod", "get", *args], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=120)


def test_get_refetches_a_deleted_or_tampered_copy_and_logs_never_print_a_tampered_one(
        verified: tuple[Path, dict[str, str], dict[str, Any]]) -> None:
    tmp, env, view = verified
    results = Path(view["results_dir"])
    shutil.rmtree(tmp / "cod-results")
    out = get(tmp, env, view["short_id"])
    assert out.returncode == 0, out.stderr
    assert (results / "stdout").read_text() == "hello from cod\n"  # really there again
    (results / "stdout").write_text("TAMPERED\n")
    logs = subprocess.run([sys.executable, "-m", "cod", "logs", view["short_id"]], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=120)
    assert logs.stdout == "hello from cod\n", logs.stderr
    (results / "stdout").write_text("TAMPERED\n")
    out = get(tmp, env, view["short_id"], "--output-dir", str(results))
    assert out.returncode == 0 and (results / "stdout").read_text() == "hello from cod\n"


def test_get_refuses_odd_destinations(verified: tuple[Path, dict[str, str], dict[str, Any]]) -> None:
    tmp, env, view = verified
    both = get(tmp, env, view["short_id"], "--output-dir", str(tmp / "a"), "--car", str(tmp / "a.car"))
    assert both.returncode == 2 and "not both" in both.stderr
    os.mkfifo(tmp / "fifo")
    fifo = get(tmp, env, view["short_id"], "--car", str(tmp / "fifo"))
    assert fifo.returncode == 22 and "not a regular file" in fifo.stderr
    (tmp / "link").symlink_to(tmp / "nowhere")
    link = get(tmp, env, view["short_id"], "--output-dir", str(tmp / "link"))
    assert link.returncode == 22 and "symlink" in link.stderr
    assert not [p for p in tmp.iterdir() if p.name.startswith(".cod-staging-")]
    inside = get(tmp, env, view["short_id"], "--output-dir", str(Path(view["results_dir"]) / "outputs" / "x"))
    assert inside.returncode == 22 and "inside the job's own results" in inside.stderr


# -- results holding links where a node writes files ------------------------------------------------
def _hostile_record(tmp: Path, link: str, target: Path) -> str:
    """Records (in tmp/home) of a job whose results, agreed by hostile signers, hold ``link`` as
    a symlink to ``target``; the result CID is the tree's real CID, so the copy checks."""
    from cod.content.cid import CID, RAW
    from cod.content.unixfs import cid_of_tree
    from verifier.reputation import Records

    results = tmp / "cod-results" / "hostile"
    results.mkdir(parents=True)
    (results / "exitCode").write_text("0")
    for name in ("stdout", "stderr"):
        if name != link:
            (results / name).write_text(f"honest {name}\n")
    os.symlink(target, results / link)
    job_cid = str(CID.of(RAW, b"a hostile job"))
    records = Records(tmp / "home" / "requester.db")
    records.record_run(job_cid, started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:01Z",
                       outcome="verified-by-quorum", result_cid=str(cid_of_tree(results)), n=1, quorum=1, spec={},
                       answers=[], extra={"results_dir": str(results), "result_checked": True})
    return job_cid


@pytest.mark.parametrize("link", ["stdout", "stderr"])
def test_logs_and_describe_never_print_a_local_file_a_result_links_to(tmp_path: Path, link: str) -> None:
    secret = tmp_path / "id_ed25519"
    secret.write_text("PRIVATE KEY OF THE REQUESTER\n")
    job_cid = _hostile_record(tmp_path, link, secret)
    for args in (("logs", job_cid), ("describe", job_cid)):
        out = run_cod(tmp_path, *args)
        assert "PRIVATE KEY" not in out.stdout + out.stderr, (args, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr, out.stderr
    logs = run_cod(tmp_path, "logs", job_cid)
    assert logs.returncode != 0 and f"{link} of results" in logs.stderr and "symlink" in logs.stderr, logs.stderr
    described = run_cod(tmp_path, "describe", job_cid)
    assert described.returncode == 0 and f"[refused: {link} of results" in described.stdout, described.stdout


def test_get_into_an_earlier_result_holding_links_never_touches_what_they_point_at(
        verified: tuple[Path, dict[str, str], dict[str, Any]]) -> None:
    tmp, env, view = verified
    keep = tmp / "keep"
    keep.mkdir()
    (keep / "id_ed25519").write_text("KEY\n")
    earlier = tmp / "earlier"
    earlier.mkdir()
    (earlier / "exitCode").write_text("0")
    os.symlink(keep / "id_ed25519", earlier / "stdout")
    os.symlink(keep, earlier / "outputs")  # a previous hostile result's links, left in the directory
    out = get(tmp, env, view["short_id"], "--output-dir", str(earlier))
    assert out.returncode == 0, out.stderr
    assert (keep / "id_ed25519").read_text() == "KEY\n" and sorted(os.listdir(keep)) == ["id_ed25519"]
    assert not (earlier / "stdout").is_symlink() and (earlier / "stdout").read_text() == "hello from cod\n"
    assert not (earlier / "outputs").is_symlink()


def test_run_show_output_refuses_a_symlinked_stdout(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    from cod.cli.run import _show_output
    from cod.errors import LocalPathError

    secret = tmp_path / "shadow"
    secret.write_text("root:SECRET-HASH\n")
    results = tmp_path / "results"
    results.mkdir()
    os.symlink(secret, results / "stdout")
    with pytest.raises(LocalPathError, match="stdout of results .* is a symlink"):
        _show_output(results)
    (results / "stdout").unlink()
    (results / "stdout").write_text("fine\n")
    os.symlink(secret, results / "stderr")
    with pytest.raises(LocalPathError, match="stderr of results .* is a symlink"):
        _show_output(results)
    assert b"SECRET" not in capsysbinary.readouterr().out + capsysbinary.readouterr().err
