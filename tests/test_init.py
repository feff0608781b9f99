"""Setting up and unloading a config entry against a real InfluxDB."""

from collections.abc import Iterator
import logging
from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import (
    EVENT_HOMEASSISTANT_STOP,
    EVENT_STATE_CHANGED,
    STATE_OFF,
    STATE_ON,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
import pytest

from custom_components.ha_ingestor.const import DOMAIN

from .helpers import count, entry_for, eventually, ingest_options, setup_entry
from .influx_server import InfluxServer, running_influxd


@pytest.fixture
def own_influxd() -> Iterator[InfluxServer]:
    """A server this test may stop and start without disturbing the others."""
    with running_influxd(auth=True) as server:
        server.create_database("home")
        yield server


async def test_setup_creates_one_device_with_its_entities(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    assert entry.state is ConfigEntryState.LOADED

    device = dr.async_get(hass).async_get_device(identifiers={(DOMAIN, entry.entry_id)})
    assert device is not None
    assert device.name == f"{database} on 127.0.0.1"
    entities = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    assert {e.translation_key for e in entities} >= {
        "influxdb_connected",
        "migration_phase",
        "migration_progress",
        "write_queue_depth",
        "dead_letter_count",
        "migration_running",
    }
    assert all(e.device_id == device.id for e in entities)
    phase = next(e for e in entities if e.translation_key == "migration_phase")
    assert hass.states.get(phase.entity_id).state == "idle"
    connected = next(e for e in entities if e.translation_key == "influxdb_connected")
    assert hass.states.get(connected.entity_id).state == STATE_ON

    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED


async def test_unload_flushes_pending_points(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    for i in range(25):
        hass.states.async_set("sensor.flush_me", str(i), {"unit_of_measurement": "W"})
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert count(influxd, database, "W") == 25


async def test_rejected_credentials_start_reauth(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = entry_for(influxd, database)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, data={**entry.data, "password": "wrong"})
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]


async def test_missing_database_is_a_setup_error(
    hass: HomeAssistant, influxd: InfluxServer
) -> None:
    entry = entry_for(influxd, "never_created")
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert entry.reason
    assert "never_created" in entry.reason


async def test_stored_options_that_cannot_be_used_are_a_setup_error_naming_the_fix(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    # Written by hand or by an older version: a threshold below the error rate it must exceed.
    options = {"migration": {"max_error_rate": 0.2, "rollback_threshold": 0.1}}
    entry = await setup_entry(hass, entry_for(influxd, database, options))
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert entry.reason
    assert "Configure" in entry.reason
    assert "rollback" in entry.reason
    hass.states.async_set("sensor.outside", "3", {"unit_of_measurement": "°C"})
    await hass.async_block_till_done()
    assert count(influxd, database, "°C") == 0  # nothing records


async def test_a_storage_folder_that_cannot_be_made_is_a_setup_error(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = entry_for(influxd, database)
    entry.add_to_hass(hass)
    # A file where config/ha_ingestor/ should be: its entry folder cannot be created.
    blocker = Path(hass.config.path(DOMAIN))
    await hass.async_add_executor_job(blocker.write_text, "in the way")
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert entry.reason
    assert hass.config.path(DOMAIN, entry.entry_id) in entry.reason
    assert await hass.async_add_executor_job(blocker.read_text) == "in the way"


async def test_home_assistant_stopping_delivers_what_the_writers_hold(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database, ingest_options("both")))
    for i in range(30):
        hass.states.async_set("sensor.stopping", str(i), {"unit_of_measurement": "W"})
    # Well before the writers' own flush interval: only the stop can have sent them.
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await hass.async_block_till_done()
    assert count(influxd, database, "W") == 30
    assert count(influxd, database, "sensor") == 30
    writers = entry.runtime_data.ingestion.writers
    assert writers == {}, "the writers are stopped"


async def test_server_down_at_start_still_records_and_replays(
    hass: HomeAssistant, own_influxd: InfluxServer
) -> None:
    own_influxd.stop()
    entry = await setup_entry(hass, entry_for(own_influxd, "home", ingest_options("legacy")))
    assert entry.state is ConfigEntryState.LOADED
    for i in range(40):
        hass.states.async_set("sensor.outage", str(i), {"unit_of_measurement": "°C"})
    connection = next(
        e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        if e.translation_key == "influxdb_connected"
    )
    await eventually(hass, lambda: hass.states.get(connection).state == STATE_OFF)

    await hass.async_add_executor_job(own_influxd.start)
    await eventually(hass, lambda: count(own_influxd, "home", "°C") == 40, timeout=60)
    await eventually(hass, lambda: hass.states.get(connection).state == STATE_ON, timeout=30)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_figures_that_change_at_every_flush_are_disabled_by_default(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    """They would fill the recorder for ever; the migration's figures stay enabled."""
    entry = await setup_entry(hass, entry_for(influxd, database))
    entities = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    disabled = {e.translation_key for e in entities if e.disabled_by is not None}
    assert disabled == {"write_queue_depth", "points_written"}
    assert all(
        e.disabled_by is er.RegistryEntryDisabler.INTEGRATION
        and hass.states.get(e.entity_id) is None
        for e in entities
        if e.translation_key in disabled
    )
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_setup_failing_after_the_start_leaves_nothing_running(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    listening = hass.bus.async_listeners().get(EVENT_STATE_CHANGED, 0)
    entry = entry_for(influxd, database)
    entry.add_to_hass(hass)
    with patch.object(
        hass.config_entries, "async_forward_entry_setups", side_effect=RuntimeError("boom")
    ):
        assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert hass.bus.async_listeners().get(EVENT_STATE_CHANGED, 0) == listening
    assert not entry.runtime_data.ingestion.writers


def migration_store_key(entry_id: str) -> str:
    return f"ha_ingestor.{entry_id}.migration"


async def test_removing_the_entry_deletes_its_state_and_folder(
    hass: HomeAssistant, influxd: InfluxServer, database: str, hass_storage: dict[str, Any]
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    hass_storage[migration_store_key(entry.entry_id)] = {"version": 1, "data": {}}
    folder = Path(hass.config.path(DOMAIN, entry.entry_id))
    hass.states.async_set("sensor.kept", "1", {"unit_of_measurement": "W"})
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert count(influxd, database, "W") == 1
    assert folder.is_dir()

    await hass.config_entries.async_remove(entry.entry_id)
    assert migration_store_key(entry.entry_id) not in hass_storage
    assert not folder.exists()


async def test_removing_the_entry_keeps_a_folder_with_undelivered_points(
    hass: HomeAssistant,
    influxd: InfluxServer,
    database: str,
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    hass_storage[migration_store_key(entry.entry_id)] = {"version": 1, "data": {}}
    assert await hass.config_entries.async_unload(entry.entry_id)
    folder = Path(hass.config.path(DOMAIN, entry.entry_id))
    segment = folder / "spool-legacy-home" / "000000000001-1.lp"

    def spool_a_point() -> None:
        segment.parent.mkdir(parents=True, exist_ok=True)
        segment.write_text("W,domain=sensor,entity_id=lost value=1 1\n")

    await hass.async_add_executor_job(spool_a_point)
    with caplog.at_level(logging.WARNING):
        await hass.config_entries.async_remove(entry.entry_id)
    assert segment.read_text() == "W,domain=sensor,entity_id=lost value=1 1\n"
    assert migration_store_key(entry.entry_id) not in hass_storage
    assert str(folder) in caplog.text


async def test_a_database_dropped_while_recording_raises_a_repair_issue_until_it_is_back(
    hass: HomeAssistant, own_influxd: InfluxServer
) -> None:
    entry = await setup_entry(hass, entry_for(own_influxd, "home"))
    issue_id = f"database_missing_{entry.entry_id}"
    registry = ir.async_get(hass)
    await hass.async_add_executor_job(own_influxd.drop_database, "home")
    hass.states.async_set("sensor.orphan", "1", {"unit_of_measurement": "W"})
    await eventually(hass, lambda: registry.async_get_issue(DOMAIN, issue_id) is not None)
    issue = registry.async_get_issue(DOMAIN, issue_id)
    assert issue.translation_key == "database_missing"
    assert issue.translation_placeholders == {"database": "home"}
    assert issue.severity is ir.IssueSeverity.ERROR

    await hass.async_add_executor_job(own_influxd.create_database, "home")
    await eventually(hass, lambda: registry.async_get_issue(DOMAIN, issue_id) is None, timeout=60)
    await eventually(hass, lambda: count(own_influxd, "home", "W") == 1)
    assert await hass.config_entries.async_unload(entry.entry_id)
