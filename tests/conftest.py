"""Shared fixtures: a real InfluxDB server and Home Assistant test helpers."""

from collections.abc import AsyncIterator, Generator, Iterator
import itertools
from pathlib import Path
from unittest.mock import PropertyMock, _patch, patch

from aiohttp.resolver import AsyncResolver
from homeassistant.core import HomeAssistant
from hypothesis import settings
import pycares
import pytest
import pytest_asyncio
import pytest_socket
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.amber import AmberSnapshotExtension

# Imported at module level so phcc's own custom_components package does not shadow ours.
import custom_components.ha_ingestor  # noqa: F401

from .influx_server import InfluxServer, running_influxd
from .influx_v2_emulator import InfluxV2Emulator

# Property tests check what code does, not how fast: on a loaded 2-core machine Hypothesis's
# default 200 ms deadline per example fails correct code. Each test's own settings still apply.
settings.register_profile("ha_ingestor", deadline=None)
settings.load_profile("ha_ingestor")

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


@pytest.fixture(autouse=True, scope="session")
def pycares_shutdown_thread() -> None:
    """Start pycares' channel-shutdown thread before any test.

    pycares destroys channels on one daemon thread, started with the first channel made in
    the process and running until it exits (in HA, from its first DNS resolver on). phcc's
    session-wide resolver used to make that first channel before any test; with a resolver
    per instance (below) it is made in a test, and phcc 0.13.236 would count the thread as
    one the test left behind (0.13.316, like HA core's own tests, expects it).
    """
    pycares.Channel().close()


@pytest_asyncio.fixture(autouse=True, scope="session", loop_scope="session")
async def mock_zeroconf_resolver() -> AsyncIterator[_patch]:
    """phcc's stand-in for Home Assistant's DNS resolver, made the way HA makes its own.

    HA makes one resolver per instance, on that instance's event loop, and closes it when
    the instance closes. phcc's fixture of this name makes a single aiohttp AsyncResolver
    for the whole session, on the session's event loop, and hands it to every test's
    instance. Each test runs on a loop of its own, so a hostname lookup answered through the
    resolver's loop fails: with aiodns 4 (HA 2026.2), whose answers always come back through
    that loop, "attached to a different loop", and once the first instance has closed the
    shared resolver (phcc 0.13.316 lets HA close it) "'NoneType' object has no attribute
    'getaddrinfo'". Here each instance gets its own, made on its loop when HA asks for it.
    Same name, scope and loop as phcc's, which it overrides: phcc's sync fixtures still find
    the session's loop current, and disable_mock_zeroconf_resolver still works.
    """

    def make_resolver(hass: HomeAssistant) -> AsyncResolver:
        resolver = AsyncResolver()  # HA calls this on the instance's loop: bound to it
        resolver.real_close = resolver.close  # type: ignore[attr-defined]
        return resolver

    patcher = patch(
        "homeassistant.helpers.aiohttp_client._async_make_resolver", side_effect=make_resolver
    )
    patcher.start()
    try:
        yield patcher
    finally:
        patcher.stop()


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
