from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ..hostile_gateway import Gateway


@pytest.fixture()
async def gateway() -> AsyncIterator[Gateway]:
    """A hostile IPFS gateway on loopback whose answers the test writes (``gateway.handler``)."""
    gw = Gateway()
    await gw.start()
    yield gw
    await gw.stop()
