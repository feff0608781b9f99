"""Rollups: 5 min and 1 h aggregates kept live, filled by the backfill, validated, rolled back.

Every check reads what the real influxd holds and compares it with aggregates computed in
Python from the raw points the server holds (``rollups_of``).
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
import functools
import json
import math
from pathlib import Path
import random
from typing import Any

import aiohttp
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ha_ingestor import recording as ingest
from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.engine.influx import (
    ApiVersion,
    InfluxClient,
    ServerSettings,
    create_client,
)
from custom_components.ha_ingestor.engine.line_protocol import (
    Point,
    encode,
    encode_batch,
    to_time_ns,
)
from custom_components.ha_ingestor.engine.migration.backfill import BackfillOutcome
from custom_components.ha_ingestor.engine.migration.model import (
    BackfillCheckpoint,
    MigrationState,
)
from custom_components.ha_ingestor.engine.migration.removal import (
    inventory_optimized,
    remove_migrated,
)
from custom_components.ha_ingestor.engine.migration.validation import Validator
from custom_components.ha_ingestor.engine.retry import Backoff, RetryPolicy
from custom_components.ha_ingestor.engine.rollups import (
    HOUR_NS,
    MINUTE_NS,
    build_rollups,
    is_rollup_measurement,
    rollups_of,
    written_span,
)
from custom_components.ha_ingestor.engine.writer import PointWriter

from .conftest import V2_ORG, V2_TOKEN
from .faulty_proxy import FaultyProxy
from .helpers import admin_client, entry_for, eventually, ingest_options, setup_entry
from .influx_server import InfluxServer
from .influx_v2_emulator import InfluxV2Emulator
from .test_data_safety import through
from .test_migration_engine import (
    DAY_NS,
    START,
    TRANSFORM,
    History,
    Saves,
    _history,
    backfill_state,
    load,
    new_backfill,
    new_ledger,
)

EVERYTHING = (-(2**62), 2**62)
T0 = to_time_ns(datetime(2024, 3, 1, tzinfo=UTC))

STRINGS = Path(ingest.__file__).parent / "strings.json"

type Keyed = dict[tuple[str, tuple[tuple[str, str], ...], int], dict[str, Any]]


@pytest.fixture(scope="module")
def history() -> History:
    """About 6,000 legacy points of a 30-entity home over three days."""
    return _history(6_000, 3, seed=23, entities=30)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def client(session: aiohttp.ClientSession, influxd: InfluxServer, database: str) -> InfluxClient:
    return admin_client(session, influxd, database)


def keyed(points: list[Point]) -> Keyed:
    return {
        (p.measurement, tuple(sorted(p.tags.items())), p.time_ns): dict(p.fields) for p in points
    }


async def raw_and_rollups(client: InfluxClient, database: str) -> tuple[list[Point], Keyed]:
    """The optimized-layout raw points and the rollup points the database holds."""
    raw: list[Point] = []
    rollups: list[Point] = []
    for measurement in await client.measurements(database):
        async for point in client.read_points(measurement, *EVERYTHING, database):
            entity = point.tags.get("entity_id", "")
            if is_rollup_measurement(measurement):
                rollups.append(point)
            elif entity.partition(".")[0] == measurement:
                raw.append(point)
    return raw, keyed(rollups)


async def assert_rollups_match_raw(client: InfluxClient, database: str) -> Keyed:
    raw, stored = await raw_and_rollups(client, database)
    expected = keyed(rollups_of(raw))
    assert expected, "no numeric raw points to roll up"
    missing = expected.keys() - stored.keys()
    extra = stored.keys() - expected.keys()
    different = [k for k in expected.keys() & stored.keys() if expected[k] != stored[k]]
    assert not missing, f"{len(missing)} rollups missing, e.g. {sorted(missing)[:2]}"
    assert not extra, f"{len(extra)} rollups extra, e.g. {sorted(extra)[:2]}"
    assert not different, [(k, stored[k], expected[k]) for k in sorted(different)[:2]]
    return stored


# The aggregates themselves ---------------------------------------------------------------------


def test_rollups_are_mean_min_max_sum_count_last_per_aligned_window() -> None:
    tags = {"entity_id": "sensor.power", "unit_of_measurement": "W"}
    values = [(T0 + 10 * 10**9, 3.0), (T0 + 4 * MINUTE_NS, 1.0), (T0 + 6 * MINUTE_NS, 8.0)]
    points = [Point("sensor", tags, {"value": v}, t) for t, v in values]
    points.append(Point("sensor", tags, {"state": "on"}, T0 + 7 * MINUTE_NS))  # no value

    found = keyed(rollups_of(points))

    key = tuple(sorted(tags.items()))
    assert found == {
        ("sensor_5m", key, T0): {
            "mean": 2.0, "min": 1.0, "max": 3.0, "sum": 4.0, "count": 2, "last": 1.0
        },
        ("sensor_5m", key, T0 + 5 * MINUTE_NS): {
            "mean": 8.0, "min": 8.0, "max": 8.0, "sum": 8.0, "count": 1, "last": 8.0
        },
        ("sensor_1h", key, T0): {
            "mean": 4.0, "min": 1.0, "max": 8.0, "sum": 12.0, "count": 3, "last": 8.0
        },
    }  # fmt: skip


def test_the_mean_is_exactly_rounded_whatever_the_order() -> None:
    values = [0.1] * 10 + [1e16, -1e16]
    points = [
        Point("sensor", {"entity_id": "sensor.x"}, {"value": v}, T0 + i * 10**9)
        for i, v in enumerate(values)
    ]
    (five, _hour) = rollups_of(points)
    assert five.fields["sum"] == math.fsum(values)
    assert keyed(rollups_of(reversed(points))) == keyed(rollups_of(points))


def test_written_bodies_name_their_domains_and_time_spans() -> None:
    body = encode_batch(
        [
            Point("sensor", {"entity_id": "sensor.a"}, {"value": 1.0}, T0 + 5),
            Point("light", {"entity_id": "light.b"}, {"state": "on"}, T0 + 1),
            Point("sensor", {"entity_id": "sensor.c", "friendly_name": "x y"}, {"value": 2.0}, T0),
        ]
    )
    assert written_span(body) == {"sensor": (T0, T0 + 5), "light": (T0 + 1, T0 + 1)}


# Backfill, validation, rollback -----------------------------------------------------------------


async def test_a_backfill_without_the_option_writes_no_rollups(
    client: InfluxClient, influxd: InfluxServer, database: str, history: History, tmp_path: Path
) -> None:
    load(influxd, database, history.lines)
    state = backfill_state(history.end_ns)
    assert await new_backfill(client, state, tmp_path, Saves()).run() is BackfillOutcome.COMPLETE
    assert not [m for m in await client.measurements() if is_rollup_measurement(m)]
    # Rollups switched on later are not the migration's: its validation does not look for them.
    assert not state.rollups_filled


async def test_the_backfill_fills_rollups_equal_to_a_recomputation_from_raw(
    client: InfluxClient, influxd: InfluxServer, database: str, history: History, tmp_path: Path
) -> None:
    load(influxd, database, history.lines)
    state = backfill_state(history.end_ns)
    backfill = new_backfill(client, state, tmp_path, Saves(), rollups=True)

    assert await backfill.run() is BackfillOutcome.COMPLETE
    assert state.rollups_filled
    assert MigrationState.from_dict(state.to_dict()).rollups_filled

    stored = await assert_rollups_match_raw(client, database)
    assert backfill.rollup_points == len(stored)
    assert {key[0] for key in stored} >= {"sensor_5m", "sensor_1h"}
    # Three days of history: the 1 h rollups span them.
    hours = sorted({key[2] for key in stored if key[0] == "sensor_1h"})
    assert hours[-1] - hours[0] >= 2 * DAY_NS


async def test_validation_checks_rollups_and_finds_a_corrupted_one(
    client: InfluxClient, influxd: InfluxServer, database: str, history: History, tmp_path: Path
) -> None:
    load(influxd, database, history.lines)
    state = backfill_state(history.end_ns, validate_percentage=1.0)
    assert (
        await new_backfill(client, state, tmp_path, Saves(), rollups=True).run()
        is BackfillOutcome.COMPLETE
    )
    clean = await Validator(client, state, transform=TRANSFORM, repeats=1, rollups=True).run()
    assert clean.integrity_score == 1.0
    assert clean.rollups_compared > 0
    assert not clean.mismatches

    _, stored = await raw_and_rollups(client, database)
    # A 1 h rollup in the middle of the history (wholly inside the migrated range).
    hours = sorted((key, value) for key, value in stored.items() if key[0] == "sensor_1h")
    (measurement, tags, time_ns), fields = hours[len(hours) // 2]
    await client.write(
        encode_batch(
            [Point(measurement, dict(tags), {**fields, "max": fields["max"] + 1}, time_ns)]
        )
    )

    result = await Validator(client, state, transform=TRANSFORM, repeats=1, rollups=True).run()

    entity = dict(tags)["entity_id"]
    assert set(result.mismatches) == {entity}
    assert result.mismatches[entity].mismatched_rollups == 1
    assert result.mismatches[entity].mismatched_days == 0
    assert result.integrity_score < 1.0
    assert result.rollups_compared == clean.rollups_compared


async def test_rollback_removes_only_the_rollups_of_what_the_migration_wrote(
    client: InfluxClient, influxd: InfluxServer, database: str, history: History, tmp_path: Path
) -> None:
    """Rollups of optimized points recorded before the migration, and of another writer's
    series, stay exactly as they were; every other rollup goes with its raw points."""
    load(influxd, database, history.lines)
    day = history.config.start.timestamp() * 10**9 // DAY_NS
    # Day 2 of the history was recorded live before, for one sensor; another home's sensor too.
    sensor = "sensor.before"
    recorded = [
        Point(
            "sensor",
            {"entity_id": sensor},
            {"value": float(i % 7)},
            int(day + 1) * DAY_NS + i * 97 * 10**9,
        )
        for i in range(500)
    ]
    other = {"entity_id": "sensor.other_home"}
    foreign = [
        Point("sensor", other, {"value": float(i)}, to_time_ns(START) + i * 10**9)
        for i in range(50)
    ]
    await client.write(encode_batch(recorded + foreign))
    await build_rollups(client, database, *EVERYTHING)
    before = keyed(rollups_of(recorded + foreign))
    ledger = new_ledger(database)
    ledger.preexisting = await inventory_optimized(
        client, database, before_ns=ledger.inventoried_ns
    )
    state = backfill_state(history.end_ns, ledger=ledger)
    assert (
        await new_backfill(client, state, tmp_path, Saves(), rollups=True).run()
        is BackfillOutcome.COMPLETE
    )
    migrated = await assert_rollups_match_raw(client, database)

    removal = await remove_migrated(client, state, until_ns=history.end_ns)

    raw, left = await raw_and_rollups(client, database)
    assert {p.tags["entity_id"] for p in raw} == {sensor, "sensor.other_home"}
    assert left == before
    assert removal.rollup_points == len(migrated) - len(before)


async def test_a_rollback_recomputes_a_window_shared_with_points_it_keeps(
    client: InfluxClient, database: str
) -> None:
    """The hour holding the cutover also holds live points the rollback leaves (those of an
    entity this Home Assistant does not know): its rollups are recomputed from them."""
    sensor = {"entity_id": "sensor.edge"}
    cutover = T0 + 10 * MINUTE_NS
    copied = [Point("sensor", sensor, {"value": 1.0}, T0 - (20 - i) * MINUTE_NS) for i in range(30)]
    live = [
        Point("sensor", sensor, {"value": 10.0 + i}, cutover + i * MINUTE_NS) for i in range(20)
    ]
    await client.write(encode_batch(copied + live))
    await build_rollups(client, database, *EVERYTHING)
    ledger = new_ledger(database)
    ledger.copied = {"sensor.edge": ("W",)}
    state = backfill_state(cutover, ledger=ledger)
    state.checkpoints = {
        "W": BackfillCheckpoint(
            start_ns=T0 - 20 * MINUTE_NS, end_ns=cutover, completed_until_ns=cutover
        )
    }

    removal = await remove_migrated(client, state, until_ns=T0 + HOUR_NS)

    raw, left = await raw_and_rollups(client, database)
    assert keyed(raw) == keyed(live)
    assert left == keyed(rollups_of(live))
    assert removal.points == len(copied)


# Live, through Home Assistant ---------------------------------------------------------------------

FAST = RetryPolicy(backoff=Backoff(base=0.05, maximum=0.3), failure_threshold=3, cool_down=0.5)


@pytest.fixture
def fast_writers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "LIVE_RETRY", FAST)
    monkeypatch.setattr(
        ingest,
        "PointWriter",
        functools.partial(PointWriter, spool_interval=1.0, stats_interval=0.1),
    )


@pytest.fixture
async def proxy(influxd: InfluxServer) -> AsyncIterator[FaultyProxy]:
    proxy = FaultyProxy(influxd.url)
    await proxy.start()
    yield proxy
    await proxy.stop()


def set_power(hass: HomeAssistant, entity_id: str, values: list[float]) -> None:
    for value in values:
        hass.states.async_set(entity_id, str(value), {"unit_of_measurement": "W"})


def raw_count(influxd: InfluxServer, database: str) -> int:
    series = influxd.series('SELECT COUNT("value") FROM "sensor"', database)
    return int(series[0]["values"][0][1]) if series else 0  # type: ignore[index]


async def test_rollups_are_off_by_default_and_nothing_extra_is_written(
    hass: HomeAssistant, influxd: InfluxServer, database: str, client: InfluxClient
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database, ingest_options("optimized")))
    assert entry.runtime_data.ingestion.rollups is None
    set_power(hass, "sensor.rollup_power", [1.0, 2.0, 3.0])
    await eventually(hass, lambda: raw_count(influxd, database) == 3)
    await hass.config_entries.async_unload(entry.entry_id)
    assert await client.measurements() == ["sensor"]


async def test_live_points_get_correct_5m_and_1h_rollups(
    hass: HomeAssistant, influxd: InfluxServer, database: str, client: InfluxClient
) -> None:
    options = ingest_options("optimized", rollups=True)
    entry = await setup_entry(hass, entry_for(influxd, database, options))
    job = entry.runtime_data.ingestion.rollups
    assert job is not None
    set_power(hass, "sensor.rollup_power", [5.0, 1.5, 7.25, 3.0])
    set_power(hass, "sensor.rollup_other", [100.0, 200.0])
    await eventually(hass, lambda: raw_count(influxd, database) == 6)
    await eventually(hass, lambda: job.pending)

    assert await job.run_once() == 4  # two entities, two resolutions

    stored = await assert_rollups_match_raw(client, database)
    power = next(f for k, f in stored.items() if k[0] == "sensor_1h" and "rollup_power" in str(k))
    assert power == {"mean": 4.1875, "min": 1.5, "max": 7.25, "sum": 16.75, "count": 4, "last": 3.0}
    await hass.config_entries.async_unload(entry.entry_id)


async def test_points_arriving_late_after_an_outage_are_in_the_next_run(
    hass: HomeAssistant,
    influxd: InfluxServer,
    database: str,
    client: InfluxClient,
    proxy: FaultyProxy,
    fast_writers: None,
) -> None:
    options = ingest_options("optimized", rollups=True)
    entry = await setup_entry(hass, through(proxy, entry_for(influxd, database, options)))
    job = entry.runtime_data.ingestion.rollups
    assert job is not None
    set_power(hass, "sensor.rollup_power", [1.0, 2.0])
    await eventually(hass, lambda: raw_count(influxd, database) == 2)
    await eventually(hass, lambda: job.pending)
    await job.run_once()
    await assert_rollups_match_raw(client, database)

    proxy.fail_when = lambda path, _query, _body: path == "/write"
    set_power(hass, "sensor.rollup_power", [30.0, 40.0])
    await eventually(hass, lambda: entry.runtime_data.ingestion.stats.spooled_points == 2)
    assert await job.run_once() == 0  # nothing new reached the server
    proxy.fail_when = None
    await eventually(hass, lambda: raw_count(influxd, database) == 4)
    await eventually(hass, lambda: job.pending)

    await job.run_once()

    stored = await assert_rollups_match_raw(client, database)
    counts = [f["count"] for k, f in stored.items() if k[0] == "sensor_1h"]
    assert sum(counts) == 4
    await hass.config_entries.async_unload(entry.entry_id)


async def test_the_last_rollups_are_written_when_the_entry_unloads(
    hass: HomeAssistant, influxd: InfluxServer, database: str, client: InfluxClient
) -> None:
    options = ingest_options("optimized", rollups=True)
    entry = await setup_entry(hass, entry_for(influxd, database, options))
    set_power(hass, "sensor.rollup_power", [2.0, 4.0])
    await hass.config_entries.async_unload(entry.entry_id)
    await assert_rollups_match_raw(client, database)


def test_rollup_lines_carry_an_integer_count() -> None:
    (five, _) = rollups_of([Point("sensor", {"entity_id": "sensor.x"}, {"value": 2.0}, T0)])
    assert "count=1i" in (encode(five) or "")


# Rebuilding the rollups of existing history (the rebuild_rollups action) ------------------------


def optimized_history(days: int = 2, seed: int = 5) -> list[Point]:
    """Optimized-layout raw points at irregular times: three sensors, a binary sensor, and
    a sensor that reports only text states (no value, so no rollups)."""
    rand = random.Random(seed)
    points: list[Point] = []
    for entity_id, every in (
        ("sensor.rebuild_power", 90),
        ("sensor.rebuild_temperature", 400),
        ("sensor.rebuild_humidity", 1_300),
        ("binary_sensor.rebuild_door", 5_000),
    ):
        domain = entity_id.partition(".")[0]
        tags = {"entity_id": entity_id, "unit_of_measurement": "W"}
        time_ns = T0 + rand.randrange(60) * 10**9
        while time_ns < T0 + days * DAY_NS:
            value = float(rand.randrange(2)) if domain == "binary_sensor" else rand.uniform(0, 99)
            points.append(Point(domain, tags, {"value": value}, time_ns))
            time_ns += rand.randrange(1, 2 * every) * 10**9
    points += [
        Point("sensor", {"entity_id": "sensor.rebuild_mode"}, {"state": "eco"}, T0 + i * HOUR_NS)
        for i in range(5)
    ]
    return points


def hours_spanned(points: list[Point]) -> int:
    """Whole hours from the first to the last numeric point, summed over the domains."""
    spans: dict[str, list[int]] = {}
    for point in points:
        if "value" in point.fields:
            spans.setdefault(point.measurement, []).append(point.time_ns // HOUR_NS)
    return sum(max(hours) - min(hours) + 1 for hours in spans.values())


async def rebuild(hass: HomeAssistant, **data: Any) -> dict[str, Any]:
    response = await hass.services.async_call(
        DOMAIN, "rebuild_rollups", data, blocking=True, return_response=True
    )
    assert isinstance(response, dict)
    return response


async def test_rebuild_gives_the_rollups_a_recomputation_from_raw_gives(
    hass: HomeAssistant, influxd: InfluxServer, database: str, client: InfluxClient
) -> None:
    """Switched on after the history was recorded, rollups are built for all of it."""
    history = optimized_history()
    await client.write(encode_batch(history))
    entry = await setup_entry(
        hass, entry_for(influxd, database, ingest_options("optimized", rollups=True))
    )

    response = await rebuild(hass)

    stored = await assert_rollups_match_raw(client, database)
    assert stored == keyed(rollups_of(history))
    assert response["database"] == database
    assert response["domains"] == ["binary_sensor", "sensor"]
    assert response["rollup_points_written"] == len(stored)
    assert response["hours_read"] == hours_spanned(history)
    assert {key[0] for key in stored} == {
        "sensor_5m", "sensor_1h", "binary_sensor_5m", "binary_sensor_1h"
    }  # fmt: skip
    assert entry.runtime_data.ingestion.rollups.rebuilding is None  # type: ignore[union-attr]
    await hass.config_entries.async_unload(entry.entry_id)


async def test_rebuilding_again_changes_nothing_and_repairs_a_wrong_window(
    hass: HomeAssistant, influxd: InfluxServer, database: str, client: InfluxClient
) -> None:
    await client.write(encode_batch(optimized_history()))
    entry = await setup_entry(
        hass, entry_for(influxd, database, ingest_options("optimized", rollups=True))
    )
    first = await rebuild(hass)
    _, before = await raw_and_rollups(client, database)

    second = await rebuild(hass)

    _, after = await raw_and_rollups(client, database)
    assert after == before
    assert second == first

    (measurement, tags, time_ns), fields = sorted(before.items())[len(before) // 2]
    await client.write(
        encode_batch([Point(measurement, dict(tags), {**fields, "sum": -1.0}, time_ns)])
    )
    await rebuild(hass)
    _, repaired = await raw_and_rollups(client, database)
    assert repaired == before
    await hass.config_entries.async_unload(entry.entry_id)


async def test_a_rebuild_of_a_range_recomputes_the_whole_hours_it_touches_only(
    hass: HomeAssistant, influxd: InfluxServer, database: str, client: InfluxClient
) -> None:
    history = optimized_history()
    await client.write(encode_batch(history))
    entry = await setup_entry(
        hass, entry_for(influxd, database, ingest_options("optimized", rollups=True))
    )
    start_ns = T0 + 10 * HOUR_NS + 17 * MINUTE_NS
    end_ns = T0 + 13 * HOUR_NS + 2 * MINUTE_NS

    response = await rebuild(
        hass,
        start=datetime.fromtimestamp(start_ns / 10**9, UTC).isoformat(),
        end=datetime.fromtimestamp(end_ns / 10**9, UTC).isoformat(),
    )

    _, stored = await raw_and_rollups(client, database)
    hours = [p for p in history if T0 + 10 * HOUR_NS <= p.time_ns < T0 + 14 * HOUR_NS]
    assert stored == keyed(rollups_of(hours))
    assert response["hours_read"] == hours_spanned(hours)
    assert response["start"] == "2024-03-01T10:17:00+00:00"
    await hass.config_entries.async_unload(entry.entry_id)


async def test_a_second_rebuild_is_refused_while_one_runs_and_live_runs_wait_their_turn(
    hass: HomeAssistant, influxd: InfluxServer, database: str, client: InfluxClient
) -> None:
    await client.write(encode_batch(optimized_history(days=1)))
    entry = await setup_entry(
        hass, entry_for(influxd, database, ingest_options("optimized", rollups=True))
    )
    job = entry.runtime_data.ingestion.rollups
    assert job is not None
    # A live run in progress holds the job's lock: the rebuild waits for it between days.
    async with job._lock:
        first = hass.async_create_task(rebuild(hass))
        await eventually(hass, lambda: job.rebuilding is not None)
        with pytest.raises(ServiceValidationError) as raised:
            await rebuild(hass)
        assert raised.value.translation_key == "rollups_rebuild_running"
        assert raised.value.translation_placeholders == {"database": database, "percent": "0"}
        assert not [m for m in await client.measurements() if is_rollup_measurement(m)]

    response = await first
    assert job.rebuilding is None
    stored = await assert_rollups_match_raw(client, database)
    assert response["rollup_points_written"] == len(stored)
    await hass.config_entries.async_unload(entry.entry_id)


async def test_a_rebuild_stopped_by_a_server_failure_leaves_correct_windows_and_resumes(
    hass: HomeAssistant,
    influxd: InfluxServer,
    database: str,
    client: InfluxClient,
    proxy: FaultyProxy,
) -> None:
    history = optimized_history(days=3)
    await client.write(encode_batch(history))
    options = ingest_options("optimized", rollups=True)
    entry = await setup_entry(hass, through(proxy, entry_for(influxd, database, options)))
    writes = 0

    def third_write_on(path: str, _query: str, _body: bytes) -> bool:
        nonlocal writes
        writes += path == "/write"
        return path == "/write" and writes >= 3

    proxy.fail_when = third_write_on
    with pytest.raises(HomeAssistantError) as raised:
        await rebuild(hass)
    assert raised.value.translation_key == "rollups_rebuild_failed"
    assert raised.value.translation_placeholders["database"] == database
    # Two days were written before the failure, each window whole and right.
    _, partial = await raw_and_rollups(client, database)
    expected = keyed(rollups_of(history))
    assert partial
    assert len(partial) < len(expected)
    assert all(expected[key] == fields for key, fields in partial.items())

    proxy.fail_when = None
    await rebuild(hass)

    assert await assert_rollups_match_raw(client, database) == expected
    await hass.config_entries.async_unload(entry.entry_id)


async def test_rebuild_is_refused_while_rollups_are_off_and_says_how_to_turn_them_on(
    hass: HomeAssistant, influxd: InfluxServer, database: str, client: InfluxClient
) -> None:
    await client.write(encode_batch(optimized_history(days=1)))
    entry = await setup_entry(hass, entry_for(influxd, database, ingest_options("optimized")))

    with pytest.raises(ServiceValidationError) as raised:
        await rebuild(hass)

    assert raised.value.translation_key == "rollups_off"
    message = load_translations()["exceptions"]["rollups_off"]["message"]
    assert "Keep rollups" in message
    assert raised.value.translation_placeholders == {"title": entry.title}
    assert not [m for m in await client.measurements() if is_rollup_measurement(m)]
    await hass.config_entries.async_unload(entry.entry_id)


async def test_rebuild_without_optimized_history_says_there_is_nothing_to_roll_up(
    hass: HomeAssistant, influxd: InfluxServer, database: str, client: InfluxClient
) -> None:
    # Legacy points only: measurements named by unit, entity ids without their domain.
    await client.write(b"W,domain=sensor,entity_id=power value=3 1709251200000000000")
    entry = await setup_entry(
        hass, entry_for(influxd, database, ingest_options("both", rollups=True))
    )
    with pytest.raises(ServiceValidationError) as raised:
        await rebuild(hass)
    assert raised.value.translation_key == "rollups_no_history"
    assert raised.value.translation_placeholders == {"database": database}

    with pytest.raises(ServiceValidationError) as raised:
        await rebuild(hass, start="2024-03-02T00:00:00+00:00", end="2024-03-01T00:00:00+00:00")
    assert raised.value.translation_key == "option_start_not_before_end"
    await hass.config_entries.async_unload(entry.entry_id)


def load_translations() -> dict[str, Any]:
    return dict(json.loads(STRINGS.read_text()))


# Through the 2.x API ------------------------------------------------------------------------------


def v2_entry(
    v2_emulator: InfluxV2Emulator, bucket: str, options: dict[str, Any]
) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        title=f"{bucket} (2.x)",
        data={
            "api_version": "2",
            "url": v2_emulator.url,
            "token": V2_TOKEN,
            "organization": V2_ORG,
            "bucket": bucket,
            "verify_ssl": True,
        },
        options=options,
        unique_id=f"{v2_emulator.url}/{bucket}",
    )


def v2_client(
    session: aiohttp.ClientSession, v2_emulator: InfluxV2Emulator, bucket: str
) -> InfluxClient:
    return create_client(
        session,
        ServerSettings(
            api_version=ApiVersion.V2,
            url=v2_emulator.url,
            database=bucket,
            token=V2_TOKEN,
            organization=V2_ORG,
        ),
    )


async def test_live_rollups_through_the_2x_api_are_the_recomputation_from_raw(
    hass: HomeAssistant,
    influxd: InfluxServer,
    v2_emulator: InfluxV2Emulator,
    database: str,
    client: InfluxClient,
) -> None:
    """The live job reads raw points and writes rollups through the 2.x client (Flux reads,
    the /api/v2/write endpoint); what lands in the server is read back through 1.x."""
    options = ingest_options("optimized", rollups=True)
    entry = await setup_entry(hass, v2_entry(v2_emulator, database, options))
    job = entry.runtime_data.ingestion.rollups
    assert job is not None
    assert entry.runtime_data.client.settings.api_version is ApiVersion.V2
    set_power(hass, "sensor.rollup_power", [5.0, 1.5, 7.25, 3.0])
    set_power(hass, "sensor.rollup_other", [100.0, 200.0])
    await eventually(hass, lambda: raw_count(influxd, database) == 6)
    await eventually(hass, lambda: job.pending)
    v2_emulator.requests.clear()

    assert await job.run_once() == 4

    # The job's reads and its rollup write went through the 2.x endpoints.
    assert "POST /api/v2/query" in v2_emulator.requests
    assert "POST /api/v2/write" in v2_emulator.requests
    stored = await assert_rollups_match_raw(client, database)
    power = next(f for k, f in stored.items() if k[0] == "sensor_5m" and "rollup_power" in str(k))
    assert power == {"mean": 4.1875, "min": 1.5, "max": 7.25, "sum": 16.75, "count": 4, "last": 3.0}
    assert isinstance(power["count"], int)  # written as an integer field through 2.x too
    await hass.config_entries.async_unload(entry.entry_id)


async def test_the_backfill_through_the_2x_api_fills_the_same_rollups_as_through_1x(
    session: aiohttp.ClientSession,
    client: InfluxClient,
    influxd: InfluxServer,
    v2_emulator: InfluxV2Emulator,
    database: str,
    history: History,
    tmp_path: Path,
) -> None:
    load(influxd, database, history.lines)
    state = backfill_state(history.end_ns)
    backfill = new_backfill(
        v2_client(session, v2_emulator, database), state, tmp_path, Saves(), rollups=True
    )

    assert await backfill.run() is BackfillOutcome.COMPLETE
    assert state.rollups_filled

    through_v2 = await assert_rollups_match_raw(client, database)
    assert backfill.rollup_points == len(through_v2)
    # Rebuilt through 1.x from the same raw points: not one rollup changes.
    assert await build_rollups(client, database, *EVERYTHING) == len(through_v2)
    _, through_v1 = await raw_and_rollups(client, database)
    assert through_v1 == through_v2
    result = await Validator(
        v2_client(session, v2_emulator, database),
        state,
        transform=TRANSFORM,
        repeats=1,
        rollups=True,
    ).run()
    assert result.rollups_compared > 0
    assert not result.mismatches


async def test_the_rebuild_action_works_through_the_2x_api(
    hass: HomeAssistant,
    v2_emulator: InfluxV2Emulator,
    database: str,
    client: InfluxClient,
) -> None:
    history = optimized_history(days=1)
    await client.write(encode_batch(history))
    options = ingest_options("optimized", rollups=True)
    entry = await setup_entry(hass, v2_entry(v2_emulator, database, options))

    response = await rebuild(hass)

    stored = await assert_rollups_match_raw(client, database)
    assert stored == keyed(rollups_of(history))
    assert response["rollup_points_written"] == len(stored)
    await hass.config_entries.async_unload(entry.entry_id)
