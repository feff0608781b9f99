"""What Home Assistant shows about a migration is true, and the user can act on it.

Progress, counters, ETA and throughput agree with each other and with the data; the cleanup
wait is visible and can be ended; repair issues name their cause and offer Resume and Roll
back; entity ids are predictable; service answers count points and messages name fields.
"""

import asyncio
from datetime import timedelta
from typing import Any

from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest

from custom_components.ha_ingestor.const import DOMAIN

from .helpers import entry_for, eventually, setup_entry
from .influx_server import InfluxServer
from .test_migration_services import call, entity_state, read_layouts, wait_for_phase


def state(hass: HomeAssistant, entity_id: str) -> str:
    found = hass.states.get(entity_id)
    assert found is not None, entity_id
    return found.state


async def test_the_first_entry_has_the_entity_ids_the_examples_use(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    ids = {
        e.entity_id for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    }
    assert {
        "sensor.ha_ingestor_migration_phase",
        "sensor.ha_ingestor_migration_progress",
        "sensor.ha_ingestor_records_migrated",
        "sensor.ha_ingestor_records_total",
        "sensor.ha_ingestor_error_rate",
        "sensor.ha_ingestor_data_integrity",
        "sensor.ha_ingestor_cleanup_due",
        "binary_sensor.ha_ingestor_migration_running",
        "binary_sensor.ha_ingestor_influxdb_connected",
    } <= ids
    # Before any migration the counters read 0 and the gauge has a number.
    assert state(hass, "sensor.ha_ingestor_migration_progress") == "0.0"
    assert state(hass, "sensor.ha_ingestor_records_migrated") == "0"
    assert state(hass, "sensor.ha_ingestor_error_rate") == "0.0"
    second_db = f"{database}_second"
    influxd.create_database(second_db)
    second = await setup_entry(hass, entry_for(influxd, second_db))
    assert hass.states.get("sensor.ha_ingestor_migration_phase_2") is not None
    await hass.config_entries.async_unload(second.entry_id)
    await hass.config_entries.async_unload(entry.entry_id)
    influxd.drop_database(second_db)


async def test_progress_counters_eta_and_throughput_agree_while_the_backfill_runs(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=40_000, days=30, seed=21)
    await call(hass, "start_migration", cleanup_delay_hours=1, batch_size=500, concurrent_batches=1)
    await wait_for_phase(hass, entry.entry_id, {"backfill"})
    migration = entry.runtime_data.migration
    samples: list[tuple[float, int, int]] = []

    def sample() -> bool:
        if migration.phase.value != "backfill":
            return True
        progress = float(entity_state(hass, entry.entry_id, "migration_progress"))
        migrated = int(entity_state(hass, entry.entry_id, "records_migrated"))
        total = int(entity_state(hass, entry.entry_id, "records_total"))
        samples.append((progress, migrated, total))
        eta = entity_state(hass, entry.entry_id, "eta")
        if eta != "unknown":
            assert dt_util.parse_datetime(eta) > dt_util.utcnow() - timedelta(seconds=6)
        return False

    await eventually(hass, sample, timeout=180, interval=0.3)
    assert len(samples) >= 3
    for progress, migrated, total in samples:
        # Progress is points read of the points counted; migrated points can only be fewer.
        assert 0 <= progress <= 99.9
        assert migrated <= total
        assert migrated / total * 100 <= progress + 0.5
    assert any(0 < progress < 99.9 for progress, _, _ in samples)
    await wait_for_phase(hass, entry.entry_id, {"cleanup"})
    assert entity_state(hass, entry.entry_id, "migration_progress") == "100.0"
    assert entity_state(hass, entry.entry_id, "throughput") == "unknown"
    assert entity_state(hass, entry.entry_id, "eta") == "unknown"
    await call(hass, "rollback", keep_target_data=True)
    await hass.config_entries.async_unload(entry.entry_id)


async def test_the_cleanup_wait_is_shown_and_run_cleanup_ends_it(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=1_000, days=2, seed=22, entity_count=20)
    with pytest.raises(ServiceValidationError) as raised:
        await call(hass, "run_cleanup")
    assert raised.value.translation_key == "no_migration"
    legacy_before, _ = await read_layouts(influxd, database)
    await call(hass, "start_migration", cleanup_delay_hours=2, delete_legacy_data=True)
    await wait_for_phase(hass, entry.entry_id, {"cleanup"})
    await eventually(hass, lambda: entity_state(hass, entry.entry_id, "cleanup_due") != "unknown")
    due = dt_util.parse_datetime(entity_state(hass, entry.entry_id, "cleanup_due"))
    assert due is not None
    assert abs((due - dt_util.utcnow()) - timedelta(hours=2)) < timedelta(minutes=2)
    with pytest.raises(ServiceValidationError) as raised:
        await call(hass, "start_migration")
    assert raised.value.translation_key == "migration_already_running"

    # Finish now, but keep the legacy history after all.
    answer = await call(hass, "run_cleanup", delete_legacy_data=False)
    assert answer["delete_legacy_data"] is False
    assert await wait_for_phase(hass, entry.entry_id, {"complete", "paused", "failed"}) == (
        "complete"
    )
    assert entity_state(hass, entry.entry_id, "cleanup_due") == "unknown"
    with pytest.raises(ServiceValidationError) as raised:
        await call(hass, "run_cleanup")
    assert raised.value.translation_key == "not_in_cleanup"
    await hass.config_entries.async_unload(entry.entry_id)
    legacy_after, _ = await read_layouts(influxd, database)
    assert len(legacy_after) == len(legacy_before)


@pytest.mark.parametrize("action", ["resume", "rollback"])
async def test_a_paused_migration_repair_names_the_cause_and_its_fix_flow_acts(
    hass: HomeAssistant, influxd: InfluxServer, database: str, action: str
) -> None:
    assert await async_setup_component(hass, "repairs", {})
    entry = await setup_entry(hass, entry_for(influxd, database))
    response = await call(
        hass, "generate_test_events", count=5_000, days=3, seed=2, entity_count=40
    )
    # A text "value" already in the optimized "sensor" measurement: a type conflict for
    # every numeric sensor point the backfill writes.
    start_ns = int(dt_util.parse_datetime(response["start"]).timestamp() * 1e9)
    influxd.write(
        "\n".join(
            f'sensor,entity_id=sensor.blocker value="text" {start_ns + hour * 3_600_000_000_000}'
            for hour in range(24 * 4)
        ),
        database,
    )
    await call(
        hass, "start_migration", max_error_rate=0.05, rollback_threshold=1, cleanup_delay_hours=1
    )
    assert await wait_for_phase(hass, entry.entry_id, {"paused", "complete", "failed"}) == (
        "paused"
    )
    issue_id = f"migration_paused_{entry.entry_id}"
    # Raised once the pause is saved, a moment after the phase shows.
    for _ in range(100):
        if (issue := ir.async_get(hass).async_get_issue(DOMAIN, issue_id)) is not None:
            break
        await asyncio.sleep(0.1)
    assert issue is not None
    assert issue.is_fixable
    placeholders = issue.translation_placeholders or {}
    assert "pause threshold" in placeholders["cause"]
    assert "conflict" in placeholders["example"]
    assert int(placeholders["failed"].replace(",", "")) > 0

    manager = repairs_flow_manager(hass)
    assert manager is not None
    result: Any = await manager.async_init(DOMAIN, data={"issue_id": issue_id})
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["resume", "rollback"]
    result = await manager.async_configure(result["flow_id"], {"next_step_id": action})
    assert result["type"] is FlowResultType.FORM
    result = await manager.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    phase = entry.runtime_data.migration.phase.value
    if action == "rollback":
        assert phase == "rolled_back"
    else:
        # Resumed: it goes on from its checkpoint; the refused points keep the validation
        # from passing, so it pauses again, with the issue back.
        assert phase in ("backfill", "validation", "paused")
        assert await wait_for_phase(hass, entry.entry_id, {"paused", "cleanup"}) == "paused"
        assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
        await call(hass, "rollback")
    await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize(
    ("data", "key", "field"),
    [
        ({"count": "many"}, "invalid_whole_number", "Events"),
        ({"count": 0}, "invalid_count_low", None),
        ({"count": 10, "days": "a week"}, "invalid_number", "Days of history"),
        ({"count": 10, "entity_count": 2.5}, "invalid_whole_number", "Entities"),
    ],
)
async def test_bad_generator_fields_get_a_message_naming_the_field(
    hass: HomeAssistant,
    influxd: InfluxServer,
    database: str,
    data: dict[str, Any],
    key: str,
    field: str | None,
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    with pytest.raises(ServiceValidationError) as raised:
        await call(hass, "generate_test_events", **data)
    assert raised.value.translation_key == key
    if field is not None:
        assert raised.value.translation_placeholders["field"] == field
    await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize(
    ("data", "key", "field"),
    [
        ({"batch_size": 0}, "option_out_of_range", "Batch size"),
        ({"batch_size": "lots"}, "invalid_number", "Batch size"),
        ({"concurrent_batches": 2.5}, "option_not_an_integer", "Concurrent batches"),
        (
            {"max_error_rate": 0.5, "rollback_threshold": 0.1},
            "option_rollback_threshold_below_max_error_rate",
            "Rollback threshold",
        ),
        (
            {"start_time": "2025-01-02 00:00:00", "end_time": "2025-01-01 00:00:00"},
            "option_start_not_before_end",
            "Until",
        ),
        ({"entities": ["not an entity id"]}, "option_invalid_entity_filter", "Entities"),
    ],
)
async def test_bad_migration_options_get_a_message_naming_the_field(
    hass: HomeAssistant,
    influxd: InfluxServer,
    database: str,
    data: dict[str, Any],
    key: str,
    field: str,
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    with pytest.raises(ServiceValidationError) as raised:
        await call(hass, "start_migration", **data)
    assert raised.value.translation_key == key
    assert raised.value.translation_placeholders["field"] == field
    await hass.config_entries.async_unload(entry.entry_id)


async def test_live_events_answer_how_many_points_were_written_or_are_held(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(
        hass, entry_for(influxd, database, {"ingestion": {"write_mode": "both"}})
    )
    answer = await call(hass, "generate_test_events", mode="live", count=300, seed=3)
    assert answer["layouts_recorded"] == 2
    recorded = answer["events"] - answer["events_not_written"]
    assert 0 < recorded <= answer["events"]
    assert (
        answer["points_written"] + answer["points_spooled"] + answer["points_in_memory"]
        == 2 * recorded
    )
    assert answer["points_written"] == 2 * recorded
    history = await call(hass, "generate_test_events", count=2_000, days=2, seed=4)
    assert history["events"] == 2_000
    assert history["points_written"] + history["events_not_written"] == 2_000
    await hass.config_entries.async_unload(entry.entry_id)


async def test_the_dry_run_answers_with_a_summary_first_and_a_measured_estimate(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=20_000, days=10, seed=5)
    plan = await call(hass, "start_migration", dry_run=True)
    assert next(iter(plan)) == "summary"
    assert f"{plan['estimated_points']:,} points" in plan["summary"]
    assert plan["rate_basis"] == "read_measured_now"
    assert plan["points_per_second"] > 0
    assert plan["estimated_backfill_seconds"] is not None
    assert isinstance(plan["estimated_backfill_seconds"], int)
    assert len(plan["entity_ids"]) <= 20
    assert plan["entities"] == len(plan["entity_ids"]) + plan["more_entities"]
    await hass.config_entries.async_unload(entry.entry_id)


async def test_points_written_goes_on_from_its_last_value_after_a_reload(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    registry = er.async_get(hass)
    registry.async_update_entity("sensor.ha_ingestor_points_written", disabled_by=None)
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await call(hass, "generate_test_events", mode="live", count=50, seed=6)
    await eventually(
        hass, lambda: state(hass, "sensor.ha_ingestor_points_written") not in ("0", "unknown")
    )
    before = int(state(hass, "sensor.ha_ingestor_points_written"))
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert int(state(hass, "sensor.ha_ingestor_points_written")) == before
    await hass.config_entries.async_unload(entry.entry_id)
