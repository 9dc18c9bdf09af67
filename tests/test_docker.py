"""The docker executor against a real Docker Engine API: podman's, on a unix socket.

No Docker daemon runs on these machines; Debian's podman serves the same API (make test
installs it through tests/engine/setup.sh). Docker jobs are run, and reported unverifiable.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cod.docker import DockerEngine, demux
from cod.errors import EngineUnavailable
from cod.local import prepare_docker
from verifier import Devstack, Records, verify

from .helpers import VECTORS

IMAGE = "localhost/cod-busybox:1"


def test_demux_splits_the_multiplexed_log_stream() -> None:
    frames = b"".join(bytes([kind, 0, 0, 0]) + struct.pack(">I", len(data)) + data
                      for kind, data in [(1, b"out1 "), (2, b"err"), (1, b"out2")])
    assert demux(frames) == (b"out1 out2", b"err")


async def test_docker_jobs_need_an_engine(records: Records, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    job = prepare_docker("busybox", ["echo", "hi"])
    async with Devstack(1, base_dir=tmp_path / "stack") as stack:
        assert "docker" not in stack.nodes[0].node.info()["capabilities"]
        with pytest.raises(EngineUnavailable, match="Docker-compatible engine"):
            await verify(job, stack.urls, 1, records=records)


@pytest.fixture(scope="module")
def engine_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    if missing or not os.path.exists("/bin/busybox"):
        pytest.skip(f"no podman/runc/busybox here ({', '.join(missing) or 'busybox'}); tests/engine/setup.sh "
                    "installs them where root and apt-get are available")
    tmp = tmp_path_factory.mktemp("engine")
    conf = tmp / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")  # raising ulimits is refused here
    env = dict(os.environ, CONTAINERS_CONF=str(conf))
    root = tmp / "root" / "bin"
    root.mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "busybox")
    for tool in ("sh", "echo", "cat", "wc", "ls"):
        (root / tool).symlink_to("busybox")
    subprocess.run(["tar", "-C", str(tmp / "root"), "-cf", str(tmp / "bb.tar"), "."], check=True)
    imported = subprocess.run(["podman", "import", str(tmp / "bb.tar"), IMAGE], capture_output=True, text=True,
                              env=env)
    if imported.returncode != 0:
        pytest.skip(f"podman cannot import an image on this machine: {imported.stderr.strip()[:300]}")
    socket = tmp / "engine.sock"
    log = tmp / "service.log"
    with open(log, "w") as sink:
        service = subprocess.Popen(["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", "system", "service",
                                    "--time=0", f"unix://{socket}"], env=env, stdout=sink, stderr=sink)
    try:
        for _ in range(100):
            if socket.exists() and asyncio.run(DockerEngine(str(socket)).available()):
                break
            time.sleep(0.1)
        else:
            pytest.skip(f"podman's Docker API service did not answer here: {log.read_text().strip()[:300]}")
        probe = subprocess.run(["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", "run", "--rm",
                                "--network", "none", IMAGE, "echo", "ok"], capture_output=True, text=True, env=env)
        if probe.stdout.strip() != "ok":
            pytest.skip(f"podman cannot run containers on this machine: {probe.stderr.strip()[:300]}")
        yield str(socket)
    finally:
        service.terminate()
        service.wait(timeout=30)


async def test_a_docker_job_through_a_real_engine(engine_socket: str, records: Records, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{engine_socket}")
    job = prepare_docker(IMAGE, ["sh", "-c", "echo from a container; wc -c /inputs/moby.txt; "
                                 "echo written > /outputs/o.txt"], inputs=[str(VECTORS / "data" / "wordcount")])
    async with Devstack(2, base_dir=tmp_path / "stack") as stack:
        assert "docker" in stack.nodes[0].node.info()["capabilities"]
        result = await verify(job, stack.urls, 2, records=records, output_dir=tmp_path / "out")
    assert result.outcome == "unverifiable" and result.exit_code == 12  # even when the two agree
    assert all(a.profile == "docker" and a.signature_valid for a in result.answers)
    assert (tmp_path / "out" / "stdout").read_text() == "from a container\n227 /inputs/moby.txt\n"
    assert (tmp_path / "out" / "outputs" / "o.txt").read_text() == "written\n"
    assert (tmp_path / "out" / "exitCode").read_text() == "0"
