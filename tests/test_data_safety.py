"""A migration never destroys data: one test per way it once could, inside Home Assistant.

Each test drives a real migration through the service actions against the real influxd
(through :class:`FaultyProxy` where the server must misbehave) and checks what the server
holds afterwards: every state change that existed in the legacy history or was recorded by
the integration is in some layout of a database that still exists, and data the integration
did not write is untouched.
"""

from collections.abc import Iterable
from datetime import timedelta
import functools
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ha_ingestor import migration, recording as ingest
from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.engine.line_protocol import Point, to_time_ns
from custom_components.ha_ingestor.engine.migration import removal
from custom_components.ha_ingestor.engine.retry import Backoff, RetryPolicy
from custom_components.ha_ingestor.engine.writer import PointWriter

from .faulty_proxy import FaultyProxy
from .helpers import entry_for, eventually, ingest_options, setup_entry, stored_points
from .influx_server import InfluxServer
from .test_migration_services import call, entity_state, wait_for_phase

# Retries and probes in fractions of a second, so outages and refusals play out quickly.
FAST = RetryPolicy(backoff=Backoff(base=0.05, maximum=0.3), failure_threshold=3, cool_down=0.5)

# Few entities, so few legacy measurements: discovery costs a few queries per measurement.
ENTITIES = 25

type StateKey = tuple[str, int]


@pytest.fixture(autouse=True)
def fast_recovery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writers spool after a second; deletes give up after three quick attempts."""
    monkeypatch.setattr(ingest, "LIVE_RETRY", FAST)
    monkeypatch.setattr(
        ingest,
        "PointWriter",
        functools.partial(PointWriter, spool_interval=1.0, stats_interval=0.1),
    )
    monkeypatch.setattr(removal, "DELETE_BACKOFF", Backoff(base=0.05, maximum=0.2))
    monkeypatch.setattr(removal, "DELETE_ATTEMPTS", 3)
    monkeypatch.setattr(migration, "_REMOVAL_RETRY_SECONDS", 0.5)


@pytest.fixture
async def proxy(influxd: InfluxServer) -> Any:
    proxy = FaultyProxy(influxd.url)
    await proxy.start()
    yield proxy
    await proxy.stop()


def through(proxy: FaultyProxy, entry: MockConfigEntry) -> MockConfigEntry:
    """The same entry, talking to InfluxDB through the proxy."""
    return MockConfigEntry(
        domain=entry.domain,
        title=entry.title,
        data={**entry.data, "url": proxy.url},
        options=entry.options,
        unique_id=f"{proxy.url}/{entry.data['database']}",
    )


def is_delete(path: str, query: str, body: bytes) -> bool:
    statement = " ".join(parse_qs(body.decode()).get("q", [])) + " ".join(
        parse_qs(query).get("q", [])
    )
    return path == "/query" and statement.lstrip().upper().startswith(("DELETE", "DROP"))


def is_legacy_write(path: str, _query: str, body: bytes) -> bool:
    return path == "/write" and b",domain=" in body


def record_fired(hass: HomeAssistant, prefix: str = "sensor.safety_") -> set[StateKey]:
    """(entity id, time) of every state change of our test entities from now on."""
    fired: set[StateKey] = set()

    @callback
    def changed(event: Event[EventStateChangedData]) -> None:
        state = event.data["new_state"]
        if state is not None and state.entity_id.startswith(prefix):
            fired.add((state.entity_id, to_time_ns(event.time_fired)))

    hass.bus.async_listen("state_changed", changed)
    return fired


def fire(hass: HomeAssistant, entity_id: str, count: int, unit: str = "W") -> None:
    for number in range(count):
        hass.states.async_set(entity_id, str(number), {"unit_of_measurement": unit})


def layout_of(point: Point) -> tuple[str, str] | None:
    """("legacy" or "optimized", full entity id) of a point of either layout."""
    entity = point.tags.get("entity_id", "")
    domain = point.tags.get("domain")
    if domain and "." not in entity:
        return "legacy", f"{domain}.{entity}"
    if "." in entity and entity.partition(".")[0] == point.measurement:
        return "optimized", entity
    return None


async def states_held(influxd: InfluxServer, databases: Iterable[str]) -> dict[str, set[StateKey]]:
    """Per layout, (entity id, time) of every point in the databases that exist."""
    (result,) = influxd.query("SHOW DATABASES")
    existing = {row[0] for series in result.get("series", []) for row in series["values"]}  # type: ignore[attr-defined]
    held: dict[str, set[StateKey]] = {"legacy": set(), "optimized": set()}
    for database in databases:
        if database not in existing:
            continue
        for points in (await stored_points(influxd, database)).values():
            for point in points:
                if (found := layout_of(point)) is not None:
                    held[found[0]].add((found[1], point.time_ns))
    return held


async def legacy_history(influxd: InfluxServer, database: str) -> set[StateKey]:
    return (await states_held(influxd, [database]))["legacy"]


async def settled(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Wait until the writers hold nothing in memory or in their spools."""
    await eventually(
        hass,
        lambda: (
            (stats := entry.runtime_data.ingestion.stats).queue_depth == 0
            and stats.spooled_points == 0
        ),
    )


async def completion_applied(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Wait until a completed migration wrote its recording into the options (a reload)."""
    await eventually(
        hass, lambda: entry.options.get("ingestion", {}).get("write_mode") == "optimized"
    )
    await hass.async_block_till_done()


def issue(hass: HomeAssistant, key: str, entry: MockConfigEntry) -> ir.IssueEntry | None:
    return ir.async_get(hass).async_get_issue(DOMAIN, f"{key}_{entry.entry_id}")


# 1. A rollback after the switchover loses nothing recorded since.


@pytest.mark.parametrize("strategy", ["dual_write", "blue_green"])
async def test_rollback_during_the_cleanup_wait_keeps_every_state_recorded_since_the_switchover(
    hass: HomeAssistant, influxd: InfluxServer, database: str, strategy: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=2_000, days=2, seed=4, entity_count=ENTITIES)
    history = await legacy_history(influxd, database)
    fired = record_fired(hass)
    started = await call(hass, "start_migration", strategy=strategy, cleanup_delay_hours=1)
    await wait_for_phase(hass, entry.entry_id, {"cleanup"})

    fire(hass, "sensor.safety_after_switchover", 25)
    await settled(hass, entry)
    response = await call(hass, "rollback", reason="not yet")
    assert response["phase"] == "rolled_back"
    assert response["points_removed"] > 0
    fire(hass, "sensor.safety_after_rollback", 5)
    await settled(hass, entry)
    await hass.config_entries.async_unload(entry.entry_id)

    held = await states_held(influxd, [database, started["target_database"]])
    assert len(fired) == 30
    # The legacy layout is complete again: history, the week before cleanup, after.
    assert fired <= held["legacy"]
    assert history <= held["legacy"]
    assert held["optimized"] == set()


# 2. A rollback leaves optimized points that were there before the migration.


async def test_rollback_keeps_optimized_points_recorded_before_the_migration(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database, ingest_options("both")))
    fired = record_fired(hass)
    fire(hass, "sensor.safety_recorded_before", 20)
    await settled(hass, entry)
    await call(hass, "generate_test_events", count=2_000, days=3, seed=5, entity_count=ENTITIES)
    before = await states_held(influxd, [database])
    assert fired <= before["optimized"]

    await call(hass, "start_migration", cleanup_delay_hours=1)
    await wait_for_phase(hass, entry.entry_id, {"cleanup"})
    await call(hass, "rollback")
    await hass.config_entries.async_unload(entry.entry_id)

    after = await states_held(influxd, [database])
    assert before["optimized"] <= after["optimized"]
    assert before["legacy"] <= after["legacy"]


# 3. A blue-green rollback never drops a database that was there before.


async def test_blue_green_rollback_keeps_a_target_database_that_held_other_data(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    shared = f"{database}_shared"
    influxd.create_database(shared)
    influxd.write("sentinel,kind=user value=42 1700000000000000000", shared)
    options = {"migration": {"target_database": shared}}
    entry = await setup_entry(hass, entry_for(influxd, database, options))
    await call(hass, "generate_test_events", count=2_000, days=2, seed=6, entity_count=ENTITIES)
    history = await legacy_history(influxd, database)
    started = await call(hass, "start_migration", strategy="blue_green", cleanup_delay_hours=1)
    assert started["target_database"] == shared
    await wait_for_phase(hass, entry.entry_id, {"cleanup"})

    await call(hass, "rollback")
    await hass.config_entries.async_unload(entry.entry_id)

    points = await stored_points(influxd, shared)
    assert [(p.tags, p.fields) for p in points["sentinel"]] == [({"kind": "user"}, {"value": 42.0})]
    assert (await states_held(influxd, [shared]))["optimized"] == set()
    assert history <= await legacy_history(influxd, database)
    influxd.drop_database(shared)


async def test_blue_green_rollback_keeps_the_copy_an_earlier_migration_completed(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=2_000, days=2, seed=7, entity_count=ENTITIES)
    first = await call(hass, "start_migration", strategy="blue_green", cleanup_delay_hours=0)
    green = first["target_database"]
    await wait_for_phase(hass, entry.entry_id, {"complete"})
    # Completed: the options now record the optimized layout into the green database.
    await completion_applied(hass, entry)
    assert entry.options["ingestion"]["optimized_database"] == green
    fired = record_fired(hass)
    fire(hass, "sensor.safety_after_first", 10)
    await settled(hass, entry)
    copy_before = (await states_held(influxd, [green]))["optimized"]
    assert fired <= copy_before

    await call(hass, "start_migration", strategy="blue_green", cleanup_delay_hours=1)
    await wait_for_phase(hass, entry.entry_id, {"cleanup"})
    await call(hass, "rollback")
    fire(hass, "sensor.safety_after_rollback", 10)
    await settled(hass, entry)
    await hass.config_entries.async_unload(entry.entry_id)

    copy_after = (await states_held(influxd, [green]))["optimized"]
    assert copy_before <= copy_after
    # Recording went back to what the first migration left: the optimized layout in green.
    assert fired <= copy_after
    influxd.drop_database(green)


# 4. The cleanup deletes legacy history only inside the migrated range.


async def test_cleanup_keeps_legacy_history_outside_the_migrated_time_range(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=3_000, days=6, seed=8, entity_count=ENTITIES)
    history = await legacy_history(influxd, database)
    now = dt_util.utcnow()
    start, end = now - timedelta(days=4), now - timedelta(days=2)
    await call(
        hass,
        "start_migration",
        start_time=start.isoformat(),
        end_time=end.isoformat(),
        delete_legacy_data=True,
        cleanup_delay_hours=0,
    )
    assert await wait_for_phase(hass, entry.entry_id, {"complete", "paused", "failed"}) == (
        "complete"
    )
    await hass.config_entries.async_unload(entry.entry_id)

    low, high = to_time_ns(start), to_time_ns(end)
    held = await states_held(influxd, [database])
    outside = {key for key in history if not low <= key[1] < high}
    inside = history - outside
    assert outside
    assert inside
    assert outside <= held["legacy"]
    assert inside.isdisjoint(held["legacy"]), "the migrated range was cleaned"
    assert inside <= held["optimized"]


# 5. Server errors during the cleanup: retried, then paused; never a loss.


async def test_a_transient_server_error_during_cleanup_is_retried(
    hass: HomeAssistant, influxd: InfluxServer, database: str, proxy: FaultyProxy
) -> None:
    entry = await setup_entry(hass, through(proxy, entry_for(influxd, database)))
    await call(hass, "generate_test_events", count=2_000, days=2, seed=9, entity_count=ENTITIES)
    history = await legacy_history(influxd, database)
    refused: list[int] = []

    def first_two_deletes(path: str, query: str, body: bytes) -> bool:
        if is_delete(path, query, body) and len(refused) < 2:
            refused.append(1)
            return True
        return False

    proxy.fail_when = first_two_deletes
    await call(hass, "start_migration", delete_legacy_data=True, cleanup_delay_hours=0)
    assert await wait_for_phase(hass, entry.entry_id, {"complete", "paused", "failed"}) == (
        "complete"
    )
    await hass.config_entries.async_unload(entry.entry_id)

    assert len(refused) == 2
    held = await states_held(influxd, [database])
    assert history <= held["optimized"]
    assert history.isdisjoint(held["legacy"])


async def test_a_cleanup_that_keeps_failing_pauses_records_both_layouts_and_resumes(
    hass: HomeAssistant, influxd: InfluxServer, database: str, proxy: FaultyProxy
) -> None:
    entry = await setup_entry(hass, through(proxy, entry_for(influxd, database)))
    await call(hass, "generate_test_events", count=2_000, days=2, seed=10, entity_count=ENTITIES)
    history = await legacy_history(influxd, database)
    deletes: list[int] = []

    def all_deletes_after_the_second(path: str, query: str, body: bytes) -> bool:
        if not is_delete(path, query, body):
            return False
        deletes.append(1)
        return len(deletes) > 2

    proxy.fail_when = all_deletes_after_the_second
    await call(hass, "start_migration", delete_legacy_data=True, cleanup_delay_hours=0)
    assert await wait_for_phase(hass, entry.entry_id, {"complete", "paused", "failed"}) == (
        "paused"
    )
    paused = issue(hass, "cleanup_paused", entry)
    assert paused is not None
    assert "500" in paused.translation_placeholders["error"]

    # Recording goes on in both layouts meanwhile.
    fired = record_fired(hass)
    fire(hass, "sensor.safety_during_pause", 10)
    await settled(hass, entry)
    held = await states_held(influxd, [database])
    assert fired <= held["legacy"]
    assert fired <= held["optimized"]
    # Some legacy history is gone already: a rollback would lose it, so it is refused.
    with pytest.raises(ServiceValidationError) as raised:
        await call(hass, "rollback")
    assert raised.value.translation_key == "rollback_after_cleanup"

    proxy.fail_when = None
    await call(hass, "resume_migration")
    assert await wait_for_phase(hass, entry.entry_id, {"complete", "paused", "failed"}) == (
        "complete"
    )
    assert issue(hass, "cleanup_paused", entry) is None
    await hass.config_entries.async_unload(entry.entry_id)

    held = await states_held(influxd, [database])
    assert history <= held["optimized"]
    assert history.isdisjoint(held["legacy"])
    assert fired <= held["optimized"]


# 6. Writers are never retired with points in memory or in their spool.


async def test_the_legacy_writer_retired_at_completion_replays_its_spool(
    hass: HomeAssistant, influxd: InfluxServer, database: str, proxy: FaultyProxy
) -> None:
    entry = await setup_entry(hass, through(proxy, entry_for(influxd, database)))
    await call(hass, "generate_test_events", count=1_000, days=1, seed=11, entity_count=ENTITIES)
    await call(hass, "start_migration", cleanup_delay_hours=1)
    await wait_for_phase(hass, entry.entry_id, {"cleanup"})
    # The legacy writes fail (as if influxd had restarted seconds before): they are spooled.
    proxy.fail_when = is_legacy_write
    fired = record_fired(hass)
    fire(hass, "sensor.safety_spooled", 30)
    await eventually(hass, lambda: entry.runtime_data.ingestion.stats.spooled_points >= 30)

    await entry.runtime_data.migration.async_run_cleanup_now()
    await wait_for_phase(hass, entry.entry_id, {"complete"})
    await completion_applied(hass, entry)
    # Retired, it still holds them, and says so.
    await eventually(hass, lambda: entity_state(hass, entry.entry_id, "spooled_points") != "0")
    assert not (await states_held(influxd, [database]))["legacy"] >= fired

    proxy.fail_when = None
    await eventually(hass, lambda: entity_state(hass, entry.entry_id, "spooled_points") == "0")
    await hass.config_entries.async_unload(entry.entry_id)
    held = await states_held(influxd, [database])
    assert fired <= held["legacy"]
    assert fired <= held["optimized"]
    storage = Path(hass.config.path(DOMAIN, entry.entry_id))
    assert list(storage.glob("spool-*/*.lp")) == []


async def test_a_spool_for_a_database_the_entry_no_longer_uses_is_replayed(
    hass: HomeAssistant, influxd: InfluxServer, database: str, proxy: FaultyProxy
) -> None:
    """Reconfigured to another database while points for the old one were spooled."""
    entry = await setup_entry(hass, through(proxy, entry_for(influxd, database)))
    proxy.fail_when = lambda path, query, _body: path == "/write" and f"db={database}" in query
    fired = record_fired(hass)
    fire(hass, "sensor.safety_old_database", 30)
    await eventually(hass, lambda: entry.runtime_data.ingestion.stats.spooled_points == 30)

    moved = f"{database}_moved"
    influxd.create_database(moved)
    hass.config_entries.async_update_entry(entry, data={**entry.data, "database": moved})
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.runtime_data.client.database == moved
    await eventually(hass, lambda: entity_state(hass, entry.entry_id, "spooled_points") == "30")

    proxy.fail_when = None
    await eventually(hass, lambda: entity_state(hass, entry.entry_id, "spooled_points") == "0")
    await hass.config_entries.async_unload(entry.entry_id)
    assert fired <= (await states_held(influxd, [database]))["legacy"]
    influxd.drop_database(moved)


# 7. Points the writers held during an outage are migrated.


async def test_points_held_before_the_cutover_reach_the_migration(
    hass: HomeAssistant, influxd: InfluxServer, database: str, proxy: FaultyProxy
) -> None:
    entry = await setup_entry(hass, through(proxy, entry_for(influxd, database)))
    await call(hass, "generate_test_events", count=1_500, days=2, seed=12, entity_count=ENTITIES)
    proxy.fail_when = is_legacy_write
    fired = record_fired(hass)
    # A unit nothing had before: its measurement does not exist when the migration starts.
    fire(hass, "sensor.safety_held", 30, unit="held units")
    await eventually(hass, lambda: entry.runtime_data.ingestion.stats.spooled_points >= 30)

    await call(hass, "start_migration", cleanup_delay_hours=1)
    await wait_for_phase(hass, entry.entry_id, {"backfill"})
    await eventually(hass, lambda: proxy.failed > 10)  # still refused while the backfill waits
    assert entity_state(hass, entry.entry_id, "migration_phase") == "backfill"
    proxy.fail_when = None
    await wait_for_phase(hass, entry.entry_id, {"cleanup", "paused", "failed"})
    state = entry.runtime_data.migration.state
    assert state.phase.value == "cleanup"
    assert state.validation.integrity_score == 1.0
    assert "held units" in state.checkpoints
    await call(hass, "rollback", keep_target_data=True)
    await hass.config_entries.async_unload(entry.entry_id)

    held = await states_held(influxd, [database])
    assert fired <= held["legacy"]
    assert fired <= held["optimized"]


# 8. A damaged stored record does not stop recording.


@pytest.mark.parametrize(
    "data",
    [
        [1, 2, 3],
        {"state": None},
        {"state": ["not", "a", "mapping"]},
        {"state": {"migration_id": "x", "phase": "nonsense"}},
        {"state": {"migration_id": "x", "phase": "backfill", "checkpoints": []}},
        {"state": {"migration_id": "x", "phase": "cleanup", "ledger": {"copied": 5}}},
    ],
)
async def test_an_unreadable_migration_record_is_set_aside_and_recording_starts(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    influxd: InfluxServer,
    database: str,
    data: Any,
) -> None:
    entry = entry_for(influxd, database)
    hass_storage[f"{DOMAIN}.{entry.entry_id}.migration"] = {"version": 1, "data": data}
    await setup_entry(hass, entry)
    assert entity_state(hass, entry.entry_id, "migration_phase") == "idle"
    fired = record_fired(hass)
    fire(hass, "sensor.safety_after_damage", 5)
    await settled(hass, entry)
    unreadable = issue(hass, "migration_state_unreadable", entry)
    assert unreadable is not None
    kept = Path(unreadable.translation_placeholders["path"])
    assert json.loads(kept.read_text()) == data
    assert f"{DOMAIN}.{entry.entry_id}.migration" not in hass_storage
    await hass.config_entries.async_unload(entry.entry_id)
    assert fired <= (await states_held(influxd, [database]))["legacy"]


# 11. The repair issue names the database that is missing.


async def test_a_dropped_blue_green_target_is_named_by_the_repair_issue(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=1_000, days=1, seed=13, entity_count=ENTITIES)
    started = await call(hass, "start_migration", strategy="blue_green", cleanup_delay_hours=1)
    green = started["target_database"]
    await wait_for_phase(hass, entry.entry_id, {"cleanup"})
    influxd.drop_database(green)
    fired = record_fired(hass)
    fire(hass, "sensor.safety_green_gone", 5)

    await eventually(hass, lambda: issue(hass, "database_missing", entry) is not None)
    missing = issue(hass, "database_missing", entry)
    assert missing is not None
    assert missing.translation_placeholders["database"] == green
    await hass.config_entries.async_unload(entry.entry_id)
    assert fired <= (await states_held(influxd, [database]))["legacy"]


# 12. Validation only of a finished backfill; a rollback resets the figures.


async def test_validation_during_the_backfill_is_refused_and_rollback_resets_the_sensors(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=40_000, days=30, seed=14)
    await call(hass, "start_migration", cleanup_delay_hours=1, batch_size=500, concurrent_batches=1)
    await wait_for_phase(hass, entry.entry_id, {"backfill"})
    await eventually(hass, lambda: entry.runtime_data.migration.state.records_migrated > 0)
    with pytest.raises(ServiceValidationError) as raised:
        await call(hass, "validate_migration")
    assert raised.value.translation_key == "validation_needs_backfill"
    assert entity_state(hass, entry.entry_id, "data_integrity") == "unknown"
    assert entry.runtime_data.migration.state.validation is None

    await call(hass, "rollback")
    for key, value in (
        ("migration_phase", "rolled_back"),
        ("records_migrated", "0"),
        ("records_failed", "0"),
        ("migration_progress", "0.0"),
        ("data_integrity", "unknown"),
        ("throughput", "unknown"),
        ("eta", "unknown"),
    ):
        assert entity_state(hass, entry.entry_id, key) == value, key
    with pytest.raises(ServiceValidationError) as raised:
        await call(hass, "validate_migration")
    assert raised.value.translation_key == "validation_needs_backfill"
    await hass.config_entries.async_unload(entry.entry_id)


# Rollback itself: kept data, a server that is down.


async def test_rollback_keeping_the_target_data_removes_nothing(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=1_500, days=2, seed=15, entity_count=ENTITIES)
    await call(hass, "start_migration", cleanup_delay_hours=1)
    await wait_for_phase(hass, entry.entry_id, {"cleanup"})
    copied = (await states_held(influxd, [database]))["optimized"]
    response = await call(hass, "rollback", keep_target_data=True)
    assert response["points_removed"] == 0
    assert response["kept_target_data"] is True
    await hass.config_entries.async_unload(entry.entry_id)
    assert copied <= (await states_held(influxd, [database]))["optimized"]


async def test_a_rollback_while_the_server_is_down_is_refused_and_changes_nothing(
    hass: HomeAssistant, influxd: InfluxServer, database: str, proxy: FaultyProxy
) -> None:
    entry = await setup_entry(hass, through(proxy, entry_for(influxd, database)))
    await call(hass, "generate_test_events", count=1_000, days=1, seed=16, entity_count=ENTITIES)
    await call(hass, "start_migration", cleanup_delay_hours=1)
    await wait_for_phase(hass, entry.entry_id, {"cleanup"})
    proxy.fail_when = lambda _path, _query, _body: True
    with pytest.raises(Exception) as raised:
        await call(hass, "rollback")
    assert getattr(raised.value, "translation_key", None) == "server_unavailable"
    assert entity_state(hass, entry.entry_id, "migration_phase") == "cleanup"
    proxy.fail_when = None
    assert (await call(hass, "rollback"))["phase"] == "rolled_back"
    await hass.config_entries.async_unload(entry.entry_id)


async def test_a_removal_that_fails_is_retried_until_done(
    hass: HomeAssistant,
    influxd: InfluxServer,
    database: str,
    proxy: FaultyProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    entry = await setup_entry(hass, through(proxy, entry_for(influxd, database)))
    await call(hass, "generate_test_events", count=1_000, days=1, seed=17, entity_count=ENTITIES)
    history = await legacy_history(influxd, database)
    await call(hass, "start_migration", cleanup_delay_hours=1)
    await wait_for_phase(hass, entry.entry_id, {"cleanup"})
    proxy.fail_when = is_delete
    with pytest.raises(HomeAssistantError) as raised:
        await call(hass, "rollback")
    assert raised.value.translation_key == "rollback_removal_failed"
    assert issue(hass, "rollback_incomplete", entry) is not None
    # The background attempt fails too, and is retried once the server takes deletes again.
    await eventually(hass, lambda: "Removing the rolled-back data failed" in caplog.text)
    proxy.fail_when = None
    ledger = entry.runtime_data.migration.state.ledger
    await eventually(hass, lambda: not ledger.removal_pending)
    assert issue(hass, "rollback_incomplete", entry) is None
    await hass.config_entries.async_unload(entry.entry_id)
    held = await states_held(influxd, [database])
    assert held["optimized"] == set()
    assert history <= held["legacy"]
