"""Every entity of an entry, after a complete migration, as a snapshot."""

from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from syrupy.assertion import SnapshotAssertion

from .helpers import entry_for, setup_entry
from .influx_server import InfluxServer
from .test_migration_services import call, wait_for_phase

# Figures that depend on the machine's speed, not on the data.
TIMING_DEPENDENT = {"throughput", "query_time_improvement", "eta"}


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_entity_states_after_a_migration(
    hass: HomeAssistant, influxd: InfluxServer, database: str, snapshot: SnapshotAssertion
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=3_000, days=3, seed=11)
    await call(hass, "start_migration", cleanup_delay_hours=0)
    assert await wait_for_phase(hass, entry.entry_id, {"complete", "failed"}) == "complete"

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
            value = "counted" if int(value) >= 0 else value
        shown[entity.entity_id.replace(database, "test_db")] = {
            "state": value,
            "entity_category": entity.entity_category,
            "device_class": state.attributes.get("device_class"),
            "unit": state.attributes.get("unit_of_measurement"),
            "icon_translation": key,
            "name": state.attributes.get("friendly_name", "").replace(database, "test_db"),
        }
    assert shown == snapshot
    await hass.config_entries.async_unload(entry.entry_id)
