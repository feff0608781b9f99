"""The InfluxDB client interface tests of test_influx_client.py, run against a real InfluxDB 2.x
server when one is configured (the `influxdb2` job of .github/workflows/tests.yml starts an
``influxdb:2`` service container); skipped elsewhere, where only the emulator stands in.

    HA_INGESTOR_INFLUXDB_V2_URL=http://127.0.0.1:8086 HA_INGESTOR_INFLUXDB_V2_TOKEN=<all-access>
    HA_INGESTOR_INFLUXDB_V2_ORG=<org> .venv/bin/python -m pytest tests/test_influx_v2_server.py

Every interface test there that needs nothing but ``client``, ``session`` and ``settings``
runs here too, each in a bucket of its own that is deleted afterwards; a new test there is
picked up without a change here.
"""

from collections.abc import AsyncIterator, Callable
import inspect
import itertools
import os
from typing import Any

import aiohttp
import pytest

from custom_components.ha_ingestor.engine.influx import (
    ApiVersion,
    InfluxClient,
    ServerSettings,
    create_client,
)

from . import test_influx_client as interface_tests

URL = os.environ.get("HA_INGESTOR_INFLUXDB_V2_URL")
TOKEN = os.environ.get("HA_INGESTOR_INFLUXDB_V2_TOKEN")
ORG = os.environ.get("HA_INGESTOR_INFLUXDB_V2_ORG")
SHARED_FIXTURES = {"client", "session", "settings"}

_buckets = itertools.count()


def _runs_on_the_server(name: str, test: Callable[..., Any]) -> bool:
    return (
        name.startswith("test_")
        and inspect.iscoroutinefunction(test)
        and set(inspect.signature(test).parameters) <= SHARED_FIXTURES
    )


for _name, _test in vars(interface_tests).items():
    if _runs_on_the_server(_name, _test):
        globals()[_name] = _test


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture(params=["v2-server"])
async def settings(session: aiohttp.ClientSession) -> AsyncIterator[ServerSettings]:
    """A fresh bucket on the real server, deleted after the test."""
    if not (URL and TOKEN and ORG):
        pytest.skip("no InfluxDB 2.x server configured (HA_INGESTOR_INFLUXDB_V2_URL …)")
    bucket = f"ha_ingestor_test_{os.getpid()}_{next(_buckets)}"
    server = ServerSettings(
        api_version=ApiVersion.V2, url=URL, database=bucket, token=TOKEN, organization=ORG
    )
    admin = create_client(session, server)
    await admin.create_database(bucket)
    try:
        yield server
    finally:
        await admin.drop_database(bucket)


@pytest.fixture
def client(session: aiohttp.ClientSession, settings: ServerSettings) -> InfluxClient:
    return create_client(session, settings)


def test_the_interface_tests_are_picked_up() -> None:
    """The selection is not empty, so a real-server run means something."""
    picked = [
        name for name, test in vars(interface_tests).items() if _runs_on_the_server(name, test)
    ]
    assert len(picked) >= 15
    assert "test_points_of_every_type_round_trip" in picked
