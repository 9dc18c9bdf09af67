"""One process per directory (Stage 9 point 36): a second `cod serve` on a data dir another
holds, or a second `cod devstack` on a base dir another holds, is refused with a clear error
and a non-zero exit, and the first serves on. Real `cod` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from cod.errors import LocalPathError

from ..helpers import cod_env, devstack
from .conftest import Serve


def _second(tmp: Path, *args: str) -> tuple[str, int, str]:
    """Start ``cod ARGS`` and read its first line of stdout: a process refused at start prints
    none and exits; one that starts is stopped here. (first line, exit code, stderr)"""
    proc = subprocess.Popen([sys.executable, "-m", "cod", *args], cwd=tmp, env=cod_env(tmp), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        if line:  # it started: the bug; stop it before reporting
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        return line, proc.wait(), err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _refused(line: str, code: int, err: str, what: str, path: Path) -> None:
    assert line == "", f"a second process started on {path}: {line}"
    assert code == LocalPathError.code, (code, err)
    assert f"{what} {str(path)!r} is in use by another cod process" in err, err
    assert "Traceback" not in err and "stop that process first" in err, err


def test_a_second_serve_on_one_data_dir_is_refused(tmp_path: Path, serves: list[Serve]) -> None:
    data = tmp_path / "node"
    first = Serve(data)
    serves.append(first)
    status, info = first.call("GET", "/v1/info")
    assert status == 200
    line, code, err = _second(tmp_path, "serve", "--data-dir", str(data), "--port", "0", "--concurrency", "1")
    _refused(line, code, err, "data directory", data)
    assert first.call("GET", "/v1/info") == (200, info)  # the first serves on, the same node
    assert first.call("GET", "/v1/health")[0] == 200
    first.stop()
    again = Serve(data)  # a stopped node's lock is gone
    serves.append(again)
    assert again.call("GET", "/v1/info")[1]["node_id"] == info["node_id"]


def test_a_second_devstack_on_one_base_dir_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "stack"
    env = cod_env(tmp_path)
    with devstack(env, tmp_path, 1, 0, "--base-dir", str(base)) as nodes:
        line, code, err = _second(tmp_path, "devstack", "--nodes", "1", "--base-dir", str(base))
        _refused(line, code, err, "devstack base directory", base)
        node = base / "node-0"  # a node's data dir inside it is held too
        line, code, err = _second(tmp_path, "serve", "--data-dir", str(node), "--port", "0", "--concurrency", "1")
        _refused(line, code, err, "data directory", node)
        assert len(nodes) == 1
    line, code, err = _second(tmp_path, "devstack", "--nodes", "1", "--base-dir", str(base))
    assert line.startswith("node "), (line, code, err)  # free again once the first stopped


def test_the_lock_is_not_inherited_by_executors(tmp_path: Path, serves: list[Serve]) -> None:
    """The lock file's descriptor is close-on-exec: executor processes never hold it (a leaked
    executor would keep the data dir locked after its node died)."""
    data = tmp_path / "node"
    first = Serve(data)
    serves.append(first)
    lock = str(data / "cod.lock")
    for pid in first.children():
        fds = Path(f"/proc/{pid}/fd")
        assert all(os.readlink(fds / fd) != lock for fd in os.listdir(fds)), pid
    held = Path(f"/proc/{first.process.pid}/fd")
    assert any(os.readlink(held / fd) == lock for fd in os.listdir(held))
