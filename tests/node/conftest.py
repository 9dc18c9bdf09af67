"""`cod serve` processes for the tests of tests/node/: the ``Serve`` kit and the ``serves`` fixture
that stops every one a test started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import ROOT


class Serve:
    """`cod serve` in a subprocess of its own, on a free port."""

    def __init__(self, data_dir: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cod", "serve", "--data-dir", str(data_dir), "--port", "0", "--concurrency", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert " serving on " in line, line
        self.url = line.split(" serving on ")[1].strip()

    def call(self, method: str, path: str, body: bytes | None = None,
             content_type: str = "application/json") -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def children(self) -> list[int]:
        pid = self.process.pid
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


@pytest.fixture()
def serves() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for serve in started:
        serve.stop()
