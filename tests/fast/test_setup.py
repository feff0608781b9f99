"""Setting up an entry, recording state changes, and outages, seen through Home Assistant."""

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)

from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.engine.line_protocol import Point, to_time_ns

from ..fake_influx import ADMIN_PASSWORD, FakeInfluxServer
from .conftest import DATABASE, entity_state, fake_entry, set_up, until


async def test_setup_with_the_server_up_shows_an_idle_connected_entry(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    entry = await set_up(hass, fake_entry(influx))
    assert entry.state is ConfigEntryState.LOADED
    device = dr.async_get(hass).async_get_device(identifiers={(DOMAIN, entry.entry_id)})
    assert device is not None
    assert device.model == "InfluxDB 1.x"
    entities = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    assert all(entity.device_id == device.id for entity in entities)
    assert {
        key: entity_state(hass, entry, key)
        for key in (
            "influxdb_connected",
            "migration_running",
            "migration_phase",
            "spooled_points",
            "dead_letter_count",
            "records_migrated",
        )
    } == {
        "influxdb_connected": STATE_ON,
        "migration_running": STATE_OFF,
        "migration_phase": "idle",
        "spooled_points": "0",
        "dead_letter_count": "0",
        "records_migrated": "0",
    }
    assert influx.points(DATABASE) == [], "setting up writes nothing"
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED


async def test_a_state_change_is_recorded_in_the_layout_core_writes(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    entry = await set_up(hass, fake_entry(influx))
    hass.states.async_set(
        "sensor.kitchen_temperature",
        "21.5",
        {"unit_of_measurement": "°C", "friendly_name": "Kitchen"},
    )
    hass.states.async_set("switch.kettle", "on")
    fired = {
        state.entity_id: to_time_ns(state.last_updated)
        for state in (
            hass.states.get("sensor.kitchen_temperature"),
            hass.states.get("switch.kettle"),
        )
        if state is not None
    }
    await until(hass, lambda: len(influx.points(DATABASE)) == 2)
    # Core's legacy layout: the measurement is the unit (the entity id without one), the tags
    # the domain and the object id, the number in "value", the attributes as fields.
    assert influx.points(DATABASE) == [
        Point(
            "switch.kettle",
            {"domain": "switch", "entity_id": "kettle"},
            {"state": "on", "value": 1.0},
            fired["switch.kettle"],
        ),
        Point(
            "°C",
            {"domain": "sensor", "entity_id": "kitchen_temperature"},
            {"value": 21.5, "friendly_name_str": "Kitchen"},
            fired["sensor.kitchen_temperature"],
        ),
    ]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_measurement_by_domain_is_what_core_writes_with_that_option(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    options = {"legacy_layout": {"measurement_attr": "domain__device_class"}}
    entry = await set_up(hass, fake_entry(influx, options))
    hass.states.async_set("sensor.power", "120", {"unit_of_measurement": "W"})
    hass.states.async_set("sensor.door", "3", {"device_class": "battery"})
    await until(hass, lambda: len(influx.points(DATABASE)) == 2)
    assert {
        (p.measurement, p.tags["entity_id"], p.fields["value"]) for p in influx.points(DATABASE)
    } == {
        ("sensor", "power", 120.0),
        ("sensor__battery", "door", 3.0),
    }
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_unloading_delivers_what_the_writer_still_holds(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    entry = await set_up(hass, fake_entry(influx))
    for number in range(25):
        hass.states.async_set("sensor.flush_me", str(number), {"unit_of_measurement": "W"})
    # Before the writer's own flush interval: only the unload can have sent them.
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert [p.fields["value"] for p in influx.points(DATABASE, "W")] == [
        float(number) for number in range(25)
    ]


async def test_a_server_down_at_setup_spools_and_replays_when_it_is_back(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    influx.stop()
    entry = await set_up(hass, fake_entry(influx))
    assert entry.state is ConfigEntryState.LOADED
    assert entity_state(hass, entry, "influxdb_connected") == STATE_OFF
    for number in range(5):
        hass.states.async_set("sensor.outage", str(number), {"unit_of_measurement": "°C"})
    spooled = await until(hass, lambda: int(entity_state(hass, entry, "spooled_points") or 0))
    assert spooled == 5
    assert entity_state(hass, entry, "influxdb_connected") == STATE_OFF
    assert influx.databases[DATABASE].series == {}

    influx.start()
    # Replayed once the writer's circuit breaker lets a probe through (5 s after it opened).
    await until(
        hass,
        lambda: (
            entity_state(hass, entry, "spooled_points") == "0"
            and entity_state(hass, entry, "influxdb_connected") == STATE_ON
        ),
    )
    assert [p.fields["value"] for p in influx.points(DATABASE, "°C")] == [
        float(number) for number in range(5)
    ]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_rejected_credentials_at_setup_start_a_reauth_that_fixes_them(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    entry = await set_up(hass, fake_entry(influx, password="wrong"))
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]

    result = await hass.config_entries.flow.async_configure(
        flows[0]["flow_id"], {"username": "admin", "password": "still wrong"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(
        flows[0]["flow_id"], {"username": "admin", "password": ADMIN_PASSWORD}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data["password"] == ADMIN_PASSWORD
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_missing_database_is_a_setup_error_naming_it(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    entry = await set_up(hass, fake_entry(influx, database="never_created"))
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert entry.reason is not None
    assert "never_created" in entry.reason
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []
    assert "never_created" not in influx.databases, "setup never creates it"


async def test_a_database_dropped_while_recording_raises_a_repair_issue(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    entry = await set_up(hass, fake_entry(influx))
    influx.drop_database(DATABASE)
    hass.states.async_set("sensor.lost", "1", {"unit_of_measurement": "W"})
    issue_id = f"database_missing_{entry.entry_id}"
    issue = await until(hass, lambda: ir.async_get(hass).async_get_issue(DOMAIN, issue_id))
    assert issue.translation_placeholders == {"database": DATABASE}
    assert entity_state(hass, entry, "influxdb_connected") == STATE_OFF
    assert await hass.config_entries.async_unload(entry.entry_id)
