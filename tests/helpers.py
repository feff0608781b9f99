"""Helpers shared by the Home Assistant level tests."""

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
import time
from typing import Any

import aiohttp
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.engine.influx import (
    ApiVersion,
    InfluxClient,
    ServerSettings,
    create_client,
)
from custom_components.ha_ingestor.engine.line_protocol import Point

from .influx_server import ADMIN_PASSWORD, ADMIN_USER, InfluxServer


def entry_for(
    influxd: InfluxServer, database: str, options: dict[str, Any] | None = None
) -> MockConfigEntry:
    """A 1.x config entry for a database on the given server."""
    return MockConfigEntry(
        domain=DOMAIN,
        title=f"{database} on 127.0.0.1",
        data={
            "api_version": "1",
            "url": influxd.url,
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
            "database": database,
            "verify_ssl": True,
        },
        options=options or {},
        unique_id=f"{influxd.url}/{database}",
    )


async def setup_entry(hass: HomeAssistant, entry: MockConfigEntry) -> MockConfigEntry:
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def eventually(
    hass: HomeAssistant, check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1
) -> Any:
    """Wait until ``check()`` (run in the executor: it may block) returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await hass.async_add_executor_job(check)
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last value {last!r})")


def count(influxd: InfluxServer, database: str, measurement: str, field: str = "*") -> int:
    """Points in a measurement (the largest per-field count of COUNT(*))."""
    series = influxd.series(f'SELECT COUNT({field}) FROM "{measurement}"', database)
    if not series:
        return 0
    row = series[0]["values"][0]  # type: ignore[index]
    return max(int(v) for v in row[1:] if v is not None)


def ingest_options(mode: str, **ingestion: Any) -> dict[str, Any]:
    return {"ingestion": {"write_mode": mode, **ingestion}}


def admin_settings(influxd: InfluxServer, database: str) -> ServerSettings:
    """1.x settings with the test server's admin account, for reading data back."""
    return ServerSettings(
        api_version=ApiVersion.V1,
        url=influxd.url,
        database=database,
        username=ADMIN_USER,
        password=ADMIN_PASSWORD,
    )


def admin_client(
    session: aiohttp.ClientSession, influxd: InfluxServer, database: str
) -> InfluxClient:
    """Our own 1.x client with the admin account: what tests read data back with."""
    return create_client(session, admin_settings(influxd, database))


async def stored_points(influxd: InfluxServer, database: str) -> dict[str, list[Point]]:
    """Every point of a database, by measurement."""
    async with aiohttp.ClientSession() as session:
        client = admin_client(session, influxd, database)
        return {
            measurement: [p async for p in client.read_points(measurement, 0, 2**62)]
            for measurement in await client.measurements()
        }


def run_in_own_loop[T](work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from this sync test in a thread with an event loop of its own.

    ``asyncio.run`` here would leave the test thread without an event loop when it ends,
    and with pytest-asyncio 1.x every later test would then fail to get one.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()
