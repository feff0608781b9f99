"""Shared fixtures: a real InfluxDB server and Home Assistant test helpers."""

from collections.abc import Generator, Iterator
import itertools

import pytest

# Imported at module level so phcc's own custom_components package does not shadow ours.
import custom_components.ha_ingestor  # noqa: F401

from .influx_server import InfluxServer, running_influxd

_database_names = itertools.count()


@pytest.fixture(scope="session")
def influxd() -> Iterator[InfluxServer]:
    """One real influxd (auth enabled) for the whole session, stopped by its pid at the end."""
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
