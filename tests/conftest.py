from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import signal

import aiohttp
import pytest
from hypothesis import HealthCheck, settings

from cod import Engine
from cod.node.server import RunningNode, start_node
from verifier.reputation import Records

settings.register_profile(
    "cod", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
settings.load_profile("cod")

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # A shell without job control (CI's, a `cmd &`) starts its background commands with SIGINT
    # ignored, and a process inherits that: cod run and cod devstack then leave Ctrl-C alone, as a
    # background job should, and every test that stops cod with SIGINT (as a user's Ctrl-C does)
    # would wait for its timeout. The test processes get SIGINT as a terminal's foreground job does.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The fault suite's table of figures, from the ``fault-figures.txt`` it wrote to its base
    temporary directory: this one, or a pytest-xdist worker's one below it."""
    if hasattr(config, "workerinput"):
        return  # a worker: the controller prints
    base = config._tmp_path_factory.getbasetemp()
    for path in sorted(base.glob("fault-figures.txt")) + sorted(base.glob("*/fault-figures.txt")):
        terminalreporter.section("fault suite figures")
        terminalreporter.write(path.read_text())
        terminalreporter.write_line(f"(also in {path})")


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return Engine(tmp_path_factory.mktemp("module-cache"))


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    """A results directory that does not exist yet."""
    return tmp_path / "results"


@pytest.fixture()
def records(tmp_path: Path) -> Records:
    return Records(tmp_path / "requester.db")


@pytest.fixture()
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    """A real node on loopback: one executor, a queue of two (tests may override it)."""
    running = await start_node(tmp_path / "node", concurrency=1, queue_size=2)
    yield running
    await running.stop()


@pytest.fixture()
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
