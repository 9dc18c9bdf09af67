from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from cod import Engine
from verifier.reputation import Records

settings.register_profile(
    "cod", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
settings.load_profile("cod")


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
