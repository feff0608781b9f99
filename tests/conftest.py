"""Shared fixtures: a real InfluxDB server and Home Assistant test helpers."""

from collections.abc import AsyncIterator, Generator, Iterator
import itertools
from pathlib import Path
from unittest.mock import PropertyMock, patch

import pytest
import pytest_socket
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.amber import AmberSnapshotExtension

# Imported at module level so phcc's own custom_components package does not shadow ours.
import custom_components.ha_ingestor  # noqa: F401

from .influx_server import InfluxServer, running_influxd
from .influx_v2_emulator import InfluxV2Emulator

V2_TOKEN = "emulated-token-SECRET"
V2_ORG = "home"

_database_names = itertools.count()


@pytest.fixture(scope="session")
def influxd() -> Iterator[InfluxServer]:
    """One real influxd (auth enabled) for the whole session, stopped by its pid at the end."""
    # Session fixtures run before the per-test socket_enabled fixture; phcc has already
    # blocked sockets for this test, so lift the block (loopback only stays enforced).
    pytest_socket.enable_socket()
    with running_influxd(auth=True) as server:
        yield server


@pytest.fixture
def database(influxd: InfluxServer) -> Generator[str]:
    """A fresh, empty database on the shared server, dropped after the test."""
    name = f"test_db_{next(_database_names)}"
    influxd.create_database(name)
    yield name
    influxd.drop_database(name)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom_components/ha_ingestor in every test."""


@pytest.fixture(autouse=True)
def allow_loopback_sockets(socket_enabled: None) -> None:
    """phcc blocks sockets; our tests talk to a real server on 127.0.0.1 only."""
    pytest_socket.socket_allow_hosts(["127.0.0.1", "::1"], allow_unix_socket=True)


@pytest.fixture
async def v2_emulator(influxd: InfluxServer) -> AsyncIterator[InfluxV2Emulator]:
    """An InfluxDB 2.x API stand-in storing into the real influxd (see its module docstring)."""
    emulator = InfluxV2Emulator(influxd, token=V2_TOKEN, org=V2_ORG)
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
def entity_registry_enabled_by_default() -> Iterator[None]:
    """Every entity enabled, also those disabled by default (as HA core's own tests do)."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        new_callable=PropertyMock,
        return_value=True,
    ):
        yield


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Syrupy's own amber snapshots in tests/__snapshots__/, on every stack.

    phcc and syrupy both define ``snapshot`` and the plugin loaded last wins, which depends on
    install order; phcc's reads tests/snapshots/. A conftest fixture overrides both plugins,
    so this one decides.
    """
    return snapshot.use_extension(AmberSnapshotExtension)


@pytest.fixture(autouse=True)
def private_config_dir(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Give each Home Assistant test its own config dir (spools, audit logs, reports)."""
    if "hass" in request.fixturenames:
        request.getfixturevalue("hass").config.config_dir = str(tmp_path)
