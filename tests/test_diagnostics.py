"""Diagnostics: useful for a bug report, and never a secret in it."""

import re
from typing import Any

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion

from .helpers import entry_for, ingest_options, setup_entry
from .influx_server import ADMIN_PASSWORD, InfluxServer


def stable(value: Any, influxd: InfluxServer) -> Any:
    """Replace what differs between runs (ports, ids) so the snapshot is stable."""
    if isinstance(value, dict):
        return {k: stable(v, influxd) for k, v in value.items()}
    if isinstance(value, list):
        return [stable(v, influxd) for v in value]
    if isinstance(value, str):
        value = value.replace(influxd.url, "http://influxdb:8086")
        return re.sub(r"test_db_\d+", "test_db", value)
    return value


async def test_diagnostics_redact_secrets_and_show_the_state(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    influxd: InfluxServer,
    database: str,
    snapshot: SnapshotAssertion,
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database, ingest_options("both")))
    hass.states.async_set("sensor.diag", "1", {"unit_of_measurement": "W"})
    await hass.config_entries.async_unload(entry.entry_id)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)

    assert ADMIN_PASSWORD not in str(diagnostics)
    assert diagnostics["entry"]["data"]["password"] == "**REDACTED**"
    assert diagnostics["ingestion"]["stats"]["points_written"] == 0
    assert stable(diagnostics, influxd) == snapshot
    await hass.config_entries.async_unload(entry.entry_id)
