"""Fixtures of the fast tier: Home Assistant as usual, InfluxDB in memory.

Run the tier alone with ``pytest tests/fast`` (or ``-m fast``); everything here is also marked
``fast``. No influxd is started: the ``influxd`` and ``database`` fixtures are not used here.
"""

import asyncio
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
import time
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.ha_ingestor.const import DOMAIN

from ..fake_influx import ADMIN_PASSWORD, ADMIN_USER, FakeInfluxServer

DATABASE = "home_assistant"


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.fast)


@pytest.fixture
def influx() -> Iterator[FakeInfluxServer]:
    """The InfluxDB 1.x server of the test, in memory, holding one empty database."""
    server = FakeInfluxServer()
    server.create_database(DATABASE)
    # The tier's only stand-in: the one place the integration builds its InfluxDB client
    # (connection.async_create_influx_client, which setup and every flow go through).
    with patch("custom_components.ha_ingestor.connection.create_client", server.create_client):
        yield server


def entry_data(server: FakeInfluxServer, **overrides: Any) -> dict[str, Any]:
    """The data of a 1.x config entry for the fake server."""
    return {
        "api_version": "1",
        "url": server.url,
        "username": ADMIN_USER,
        "password": ADMIN_PASSWORD,
        "database": DATABASE,
        "verify_ssl": True,
    } | overrides


def fake_entry(
    server: FakeInfluxServer, options: dict[str, Any] | None = None, **data: Any
) -> MockConfigEntry:
    settings = entry_data(server, **data)
    return MockConfigEntry(
        domain=DOMAIN,
        title=f"{settings['database']} on influxdb.fake",
        data=settings,
        options=options or {},
        unique_id=f"{server.url}/{settings['database']}",
    )


async def set_up(hass: HomeAssistant, entry: MockConfigEntry) -> MockConfigEntry:
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def entity_state(hass: HomeAssistant, entry: MockConfigEntry, key: str) -> str | None:
    """The state of the entry's entity with this translation key (None: not in the states)."""
    for entity in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id):
        if entity.translation_key == key:
            state = hass.states.get(entity.entity_id)
            return None if state is None else state.state
    raise KeyError(key)


async def until(hass: HomeAssistant, check: Callable[[], Any], within: float = 15.0) -> Any:
    """Wait until ``check()`` is truthy, firing time forward so timers need not run out.

    Each round runs the timers due in the next 6 s (the writers' retry pauses, their 5 s stats
    push). What compares the loop's clock itself (a batch's 1 s age, the circuit breaker's
    5 s cool-down) still takes that long.
    """
    deadline = time.monotonic() + within
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {check()!r}")
        async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=6))
        await asyncio.sleep(0.02)
    return found
