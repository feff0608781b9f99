"""Every entity of an entry, after a complete migration, as a snapshot."""

import json
from pathlib import Path

from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
import pytest
from syrupy.assertion import SnapshotAssertion

from .helpers import entry_for, eventually, setup_entry
from .influx_server import InfluxServer
from .test_migration_services import call, wait_for_phase

# Figures that depend on the machine's speed, not on the data.
TIMING_DEPENDENT = {"throughput", "query_time_improvement", "eta"}
ICONS = json.loads(
    (Path(__file__).parent.parent / "custom_components/ha_ingestor/icons.json").read_text()
)["entity"]
PROBE = "sensor.snapshot_probe"


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_entity_states_after_a_migration(
    hass: HomeAssistant, influxd: InfluxServer, database: str, snapshot: SnapshotAssertion
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=3_000, days=3, seed=11)
    await call(hass, "start_migration", cleanup_delay_hours=0)
    assert await wait_for_phase(hass, entry.entry_id, {"complete", "failed"}) == "complete"
    # Five live state changes after the switchover: recorded in the optimized layout, counted
    # by the points-written sensor (which also counts the entities' own changes since setup).
    for value in range(5):
        hass.states.async_set(PROBE, str(value), {"unit_of_measurement": "W"})
        await hass.async_block_till_done()
    probe = f'SELECT COUNT("value") FROM "sensor" WHERE "entity_id" = \'{PROBE}\''
    await eventually(hass, lambda: influxd.series(probe, database))
    assert influxd.series(probe, database)[0]["values"][0][1] == 5
    written = "sensor.ha_ingestor_points_written"
    await eventually(hass, lambda: int(hass.states.get(written).state) >= 5)

    registry = er.async_get(hass)
    shown = {}
    for entity in sorted(
        er.async_entries_for_config_entry(registry, entry.entry_id), key=lambda e: e.unique_id
    ):
        state = hass.states.get(entity.entity_id)
        key = entity.translation_key
        value = state.state
        if key in TIMING_DEPENDENT:
            value = "measured" if value not in ("unknown", "unavailable") else value
        elif key == "points_written":
            value = "counted"  # at least the probe's five, asserted above
        shown[entity.entity_id.replace(database, "test_db")] = {
            "state": value,
            "entity_category": entity.entity_category,
            "device_class": state.attributes.get("device_class"),
            "unit": state.attributes.get("unit_of_measurement"),
            # The icon the frontend shows: icons.json's default for the translation key.
            "icon": ICONS[entity.domain][key]["default"],
            "name": state.attributes.get("friendly_name", "").replace(database, "test_db"),
        }
    assert shown == snapshot
    await hass.config_entries.async_unload(entry.entry_id)


async def test_asking_for_an_update_reads_the_figures_again(
    hass: HomeAssistant, influxd: InfluxServer, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing is polled, but homeassistant.update_entity (an automation, the UI) still works:
    it takes a new snapshot instead of failing."""
    assert await async_setup_component(hass, "homeassistant", {})
    entry = await setup_entry(hass, entry_for(influxd, database))
    coordinator = entry.runtime_data.coordinator
    before = coordinator.data
    phase = "sensor.ha_ingestor_migration_phase"
    await hass.services.async_call(
        "homeassistant", "update_entity", {"entity_id": [phase]}, blocking=True
    )
    await hass.async_block_till_done()
    assert coordinator.data is not before  # a snapshot taken for the request
    assert coordinator.last_update_success
    assert hass.states.get(phase).state == "idle"
    assert "Error fetching" not in caplog.text
