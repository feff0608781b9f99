"""Migrations driven through the service actions, inside Home Assistant, on a real InfluxDB."""

import asyncio
from collections import Counter
import json
from pathlib import Path
from typing import Any

from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.util import dt as dt_util
import pytest
from syrupy.assertion import SnapshotAssertion

from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.engine.line_protocol import Point
from custom_components.ha_ingestor.layouts.legacy import LegacyOptions
from custom_components.ha_ingestor.layouts.optimized import OptimizedOptions, to_optimized

from .helpers import entry_for, eventually, setup_entry, stored_points
from .influx_server import InfluxServer

OPTIMIZED_MEASUREMENTS = {
    "sensor",
    "binary_sensor",
    "light",
    "climate",
    "automation",
    "script",
    "device_tracker",
}


async def call(hass: HomeAssistant, service: str, **data: Any) -> dict[str, Any]:
    response = await hass.services.async_call(
        DOMAIN, service, data, blocking=True, return_response=True
    )
    return dict(response or {})


def entity_state(hass: HomeAssistant, entry_id: str, key: str) -> str:
    registry = er.async_get(hass)
    for entity in er.async_entries_for_config_entry(registry, entry_id):
        if entity.translation_key == key:
            return hass.states.get(entity.entity_id).state
    raise KeyError(key)


async def read_layouts(influxd: InfluxServer, database: str) -> tuple[list[Point], list[Point]]:
    """All points of a database, split into legacy and optimized layout."""
    legacy: list[Point] = []
    optimized: list[Point] = []
    for measurement, points in (await stored_points(influxd, database)).items():
        for point in points:
            if measurement in OPTIMIZED_MEASUREMENTS and "." in point.tags.get("entity_id", ""):
                optimized.append(point)
            else:
                legacy.append(point)
    return legacy, optimized


def key(point: Point) -> tuple:
    return (
        point.measurement,
        tuple(sorted(point.tags.items())),
        tuple(sorted(point.fields.items())),
        point.time_ns,
    )


def expected_optimized(legacy: list[Point]) -> Counter:
    options = LegacyOptions()
    optimized = OptimizedOptions()
    return Counter(
        key(p) for point in legacy if (p := to_optimized(point, options, optimized)) is not None
    )


async def wait_for_phase(
    hass: HomeAssistant, entry_id: str, phases: set[str], timeout: float = 120
) -> str:
    return await eventually(
        hass,
        lambda: (phase := entity_state(hass, entry_id, "migration_phase")) in phases and phase,
        timeout=timeout,
        interval=0.2,
    )


async def test_dual_write_migration_copies_every_point_exactly(
    hass: HomeAssistant, influxd: InfluxServer, database: str, snapshot: SnapshotAssertion
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=30_000, days=20, seed=3)
    events: list[Event] = []

    @callback
    def record(event: Event) -> None:
        events.append(event)
        if event.data["to_phase"] == "backfill":
            # A live state change while the backfill runs: after the cutover, so it reaches
            # the optimized layout through dual-write only.
            hass.states.async_set(
                "sensor.live_during_migration", "7.5", {"unit_of_measurement": "W"}
            )

    hass.bus.async_listen(f"{DOMAIN}_migration_event", record)

    plan = await call(hass, "start_migration", dry_run=True)
    assert plan["dry_run"] is True
    assert plan["estimated_points"] > 25_000
    assert entity_state(hass, entry.entry_id, "migration_phase") == "idle"

    started = await call(hass, "start_migration", cleanup_delay_hours=0, batch_size=2000)
    assert started["strategy"] == "dual_write"
    with pytest.raises(ServiceValidationError) as raised:
        await call(hass, "start_migration")
    assert raised.value.translation_key == "migration_already_running"

    assert await wait_for_phase(hass, entry.entry_id, {"complete", "failed", "paused"}) == (
        "complete"
    )
    await hass.config_entries.async_unload(entry.entry_id)

    legacy, optimized = await read_layouts(influxd, database)
    assert Counter(key(p) for p in optimized) == expected_optimized(legacy)
    assert any(p.tags["entity_id"] == "sensor.live_during_migration" for p in optimized)

    phases = [(e.data["from_phase"], e.data["to_phase"]) for e in events]
    assert phases == [
        ("idle", "preparation"),
        ("preparation", "dual_write"),
        ("dual_write", "backfill"),
        ("backfill", "validation"),
        ("validation", "switchover"),
        ("switchover", "cleanup"),
        ("cleanup", "complete"),
    ]
    storage = Path(hass.config.path(DOMAIN, entry.entry_id))
    audit = [json.loads(line) for line in (storage / "audit.jsonl").read_text().splitlines()]
    assert [r["to_phase"] for r in audit if "to_phase" in r][-1] == "complete"
    (report_file,) = storage.glob("migration_report_*.json")
    report = json.loads(report_file.read_text())
    assert report["validation"]["integrity_score"] == 1.0
    # Every legacy point older than the cutover was copied; the live one came by dual-write.
    assert report["records_migrated"] == len(legacy) - 1
    assert report["records_failed"] == 0
    assert all(
        t["legacy_ms"] > 0 and t["optimized_ms"] > 0 for t in report["validation"]["query_timings"]
    )


async def test_after_switchover_only_the_optimized_layout_is_written(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=2_000, days=2)
    await call(hass, "start_migration", strategy="immediate", cleanup_delay_hours=0)
    assert await wait_for_phase(hass, entry.entry_id, {"complete", "failed"}) == "complete"
    hass.states.async_set("sensor.after_switch", "1", {"unit_of_measurement": "lx"})
    await hass.config_entries.async_unload(entry.entry_id)
    legacy, optimized = await read_layouts(influxd, database)
    assert not [p for p in legacy if p.tags.get("entity_id") == "after_switch"]
    assert [p for p in optimized if p.tags["entity_id"] == "sensor.after_switch"]


async def test_manual_rollback_removes_migrated_data_and_keeps_legacy(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=5_000, days=5)
    legacy_before, _ = await read_layouts(influxd, database)
    await call(hass, "start_migration", cleanup_delay_hours=1)
    await wait_for_phase(hass, entry.entry_id, {"cleanup"})
    _, optimized = await read_layouts(influxd, database)
    assert optimized

    response = await call(hass, "rollback", reason="Dashboards not ready")
    assert response["phase"] == "rolled_back"
    assert entity_state(hass, entry.entry_id, "migration_phase") == "rolled_back"
    # Legacy writes are back on.
    hass.states.async_set("sensor.after_rollback", "2", {"unit_of_measurement": "W"})
    await hass.config_entries.async_unload(entry.entry_id)

    legacy_after, optimized_after = await read_layouts(influxd, database)
    assert optimized_after == []
    back = [p for p in legacy_after if p.tags.get("entity_id") != "after_rollback"]
    assert Counter(map(key, back)) == Counter(map(key, legacy_before))
    assert [p for p in legacy_after if p.tags.get("entity_id") == "after_rollback"]
    # A user's own rollback needs no repair issue; the report records why.
    assert (
        ir.async_get(hass).async_get_issue(DOMAIN, f"migration_rolled_back_{entry.entry_id}")
        is None
    )
    (report_file,) = Path(hass.config.path(DOMAIN, entry.entry_id)).glob("migration_report_*")
    assert json.loads(report_file.read_text())["rollback_reason"] == "Dashboards not ready"


async def test_blue_green_migrates_into_its_own_database_and_rollback_drops_it(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=3_000, days=3)
    legacy_before, _ = await read_layouts(influxd, database)
    started = await call(hass, "start_migration", strategy="blue_green", cleanup_delay_hours=1)
    green = started["target_database"]
    assert green == f"{database}_optimized"
    await wait_for_phase(hass, entry.entry_id, {"cleanup"})
    _, green_points = await read_layouts(influxd, green)
    assert Counter(map(key, green_points)) == expected_optimized(legacy_before)

    await call(hass, "rollback")
    databases = {row[0] for s in influxd.series("SHOW DATABASES", database) for row in s["values"]}  # type: ignore[union-attr]
    assert green not in databases
    legacy_after, _ = await read_layouts(influxd, database)
    assert Counter(map(key, legacy_after)) == Counter(map(key, legacy_before))
    await hass.config_entries.async_unload(entry.entry_id)


async def test_pause_and_resume_finish_exactly(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=40_000, days=30)
    await call(hass, "start_migration", cleanup_delay_hours=0, batch_size=500, concurrent_batches=1)
    await wait_for_phase(hass, entry.entry_id, {"backfill"})
    await eventually(
        hass, lambda: int(float(entity_state(hass, entry.entry_id, "records_migrated"))) > 0
    )
    paused = await call(hass, "pause_migration")
    assert paused["phase"] == "paused"
    # Interrupted mid-backfill, and nothing moves while paused.
    at_pause = int(float(entity_state(hass, entry.entry_id, "records_migrated")))
    total = int(float(entity_state(hass, entry.entry_id, "records_total")))
    assert 0 < at_pause < total
    await asyncio.sleep(1)
    await hass.async_block_till_done()
    assert int(float(entity_state(hass, entry.entry_id, "records_migrated"))) == at_pause
    assert entity_state(hass, entry.entry_id, "migration_phase") == "paused"
    with pytest.raises(ServiceValidationError) as raised:
        await call(hass, "pause_migration")
    assert raised.value.translation_key == "migration_not_running"
    resumed = await call(hass, "resume_migration")
    assert resumed["phase"] == "backfill"
    assert await wait_for_phase(hass, entry.entry_id, {"complete", "failed"}) == "complete"
    await hass.config_entries.async_unload(entry.entry_id)
    legacy, optimized = await read_layouts(influxd, database)
    assert Counter(map(key, optimized)) == expected_optimized(legacy)


async def test_restart_during_backfill_resumes_and_ends_exact(
    hass: HomeAssistant, influxd: InfluxServer, database: str, hass_storage: dict[str, Any]
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=40_000, days=30)
    await call(hass, "start_migration", cleanup_delay_hours=0, batch_size=500, concurrent_batches=1)
    await wait_for_phase(hass, entry.entry_id, {"backfill"})
    await eventually(
        hass, lambda: int(float(entity_state(hass, entry.entry_id, "records_migrated"))) > 0
    )
    # Home Assistant goes down mid-backfill and comes back.
    await hass.config_entries.async_unload(entry.entry_id)
    saved = hass_storage[f"{DOMAIN}.{entry.entry_id}.migration"]["data"]["state"]
    # Stopped mid-backfill: the saved state says so, with part of the history copied.
    assert saved["phase"] == "backfill"
    assert 0 < saved["records_migrated"] < saved["estimated_total_points"]
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert await wait_for_phase(hass, entry.entry_id, {"complete", "failed"}) == "complete"
    await hass.config_entries.async_unload(entry.entry_id)
    legacy, optimized = await read_layouts(influxd, database)
    assert Counter(map(key, optimized)) == expected_optimized(legacy)


async def test_actions_without_a_migration_say_so(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    for service in ("pause_migration", "resume_migration", "rollback", "validate_migration"):
        with pytest.raises(ServiceValidationError) as raised:
            await call(hass, service)
        assert raised.value.translation_key == "no_migration"
    await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize(
    ("data", "translation_key"),
    [
        ({"strategy": "yolo"}, "invalid_strategy"),
        ({"batch_size": 0}, "option_out_of_range"),
        ({"batch_size": 10**7}, "option_out_of_range"),
        ({"concurrent_batches": 99}, "option_out_of_range"),
        (
            {"max_error_rate": 0.5, "rollback_threshold": 0.1},
            "option_rollback_threshold_below_max_error_rate",
        ),
        ({"validate_percentage": 0}, "option_out_of_range"),
        (
            {"start_time": "2025-01-02 00:00:00", "end_time": "2025-01-01 00:00:00"},
            "option_start_not_before_end",
        ),
        ({"entities": ["not an entity id"]}, "option_invalid_entity_filter"),
    ],
)
async def test_bad_migration_options_are_refused_before_anything_starts(
    hass: HomeAssistant,
    influxd: InfluxServer,
    database: str,
    data: dict[str, Any],
    translation_key: str,
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    with pytest.raises(ServiceValidationError) as raised:
        await call(hass, "start_migration", **data)
    assert raised.value.translation_key == translation_key
    assert entity_state(hass, entry.entry_id, "migration_phase") == "idle"
    await hass.config_entries.async_unload(entry.entry_id)


async def test_rejections_above_the_threshold_roll_back_and_raise_a_repair_issue(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    response = await call(
        hass, "generate_test_events", count=5_000, days=3, seed=2, entity_count=40
    )
    legacy_before, _ = await read_layouts(influxd, database)
    # A text "value" already in the optimized "sensor" measurement, in every shard of the
    # period: every numeric sensor point the backfill writes is a field type conflict.
    start_ns = int(dt_util.parse_datetime(response["start"]).timestamp() * 1e9)
    lines = [
        f'sensor,entity_id=sensor.blocker value="text" {start_ns + hour * 3_600_000_000_000}'
        for hour in range(0, 24 * 4)
    ]
    influxd.write("\n".join(lines), database)

    await call(hass, "start_migration", cleanup_delay_hours=0)
    assert await wait_for_phase(hass, entry.entry_id, {"rolled_back", "complete"}) == (
        "rolled_back"
    )
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"migration_rolled_back_{entry.entry_id}")
    assert issue is not None
    assert "rollback threshold" in issue.translation_placeholders["reason"]
    # The run's figures stay in its report; the sensors no longer describe data that is gone.
    assert entry.runtime_data.migration.state.records_failed > 0
    assert entity_state(hass, entry.entry_id, "records_failed") == "0"
    assert entity_state(hass, entry.entry_id, "records_migrated") == "0"
    # The removal of what the migration wrote follows the recorded rollback.
    await eventually(hass, lambda: not entry.runtime_data.migration.state.ledger.removal_pending)
    await hass.config_entries.async_unload(entry.entry_id)

    legacy_after, optimized_after = await read_layouts(influxd, database)
    assert [p for p in optimized_after if p.tags["entity_id"] != "sensor.blocker"] == []
    assert Counter(map(key, legacy_after)) == Counter(map(key, legacy_before))


async def test_rejections_above_the_pause_threshold_pause_and_raise_a_repair_issue(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    response = await call(
        hass, "generate_test_events", count=5_000, days=3, seed=2, entity_count=40
    )
    start_ns = int(dt_util.parse_datetime(response["start"]).timestamp() * 1e9)
    lines = [
        f'sensor,entity_id=sensor.blocker value="text" {start_ns + hour * 3_600_000_000_000}'
        for hour in range(0, 24 * 4)
    ]
    influxd.write("\n".join(lines), database)

    await call(
        hass,
        "start_migration",
        cleanup_delay_hours=0,
        max_error_rate=0.01,
        rollback_threshold=1.0,
    )
    assert await wait_for_phase(hass, entry.entry_id, {"paused", "complete"}) == "paused"
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"migration_paused_{entry.entry_id}")
    assert issue is not None
    assert issue.translation_placeholders["threshold"] == "1.00%"
    # Resuming clears the issue; the cause is still there, so it pauses again.
    await call(hass, "resume_migration")
    assert await wait_for_phase(hass, entry.entry_id, {"paused", "complete"}) == "paused"
    await call(hass, "rollback")
    assert entity_state(hass, entry.entry_id, "migration_phase") == "rolled_back"
    await hass.config_entries.async_unload(entry.entry_id)
