"""The migration engine against a real influxd: exact, resumable, safe to roll back.

Legacy history is generated the way HA core writes it (generator states through
LegacyLayout), and every check compares what InfluxDB holds, read back in full.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
import itertools
import json
from pathlib import Path
import time
from typing import Any

import aiohttp
from homeassistant.core import State
import pytest

from custom_components.ha_ingestor.engine.generator import GeneratorConfig, Pattern, generate
from custom_components.ha_ingestor.engine.influx import (
    ApiVersion,
    DatabaseNotFound,
    InfluxClient,
    ServerSettings,
    create_client,
)
from custom_components.ha_ingestor.engine.line_protocol import (
    Point,
    encode_batch,
    encode_like_core_v1,
    to_time_ns,
)
from custom_components.ha_ingestor.engine.migration.backfill import Backfill, BackfillOutcome
from custom_components.ha_ingestor.engine.migration.discovery import (
    DiscoveredSource,
    discover,
    is_optimized_series,
    legacy_entity_id,
)
from custom_components.ha_ingestor.engine.migration.ledger import Layout, MigrationLedger, Recording
from custom_components.ha_ingestor.engine.migration.model import (
    MigrationConfig,
    MigrationState,
    Phase,
    Strategy,
    backfill_rate_limit,
)
from custom_components.ha_ingestor.engine.migration.removal import (
    clean_legacy,
    inventory_optimized,
    remove_migrated,
)
from custom_components.ha_ingestor.engine.migration.validation import Validator, in_sample
from custom_components.ha_ingestor.engine.retry import Backoff, RetryPolicy, Timer
from custom_components.ha_ingestor.layouts.legacy import LegacyLayout, LegacyOptions
from custom_components.ha_ingestor.layouts.optimized import (
    LegacyTransform,
    OptimizedLayout,
    OptimizedOptions,
)

from .conftest import V2_ORG, V2_TOKEN
from .helpers import admin_client
from .influx_server import InfluxServer
from .influx_v2_emulator import InfluxV2Emulator

START = datetime(2024, 1, 1, tzinfo=UTC)
START_NS = to_time_ns(START)
DAY_NS = 86_400 * 10**9
EVERYTHING = (-(2**62), 2**62)

TRANSFORM = LegacyTransform(LegacyOptions(), OptimizedOptions())
# Outages play out in seconds, not minutes.
FAST_RETRY = RetryPolicy(
    backoff=Backoff(base=0.05, maximum=0.5), failure_threshold=3, cool_down=0.5
)

type Snapshot = dict[tuple[str, tuple[tuple[str, str], ...], int], Mapping[str, Any]]


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The engine needs no Home Assistant instance; skip starting one for every test."""


@dataclass(frozen=True)
class History:
    """Generated legacy history: the line-protocol lines core would have written."""

    config: GeneratorConfig
    lines: list[str] = field(repr=False)
    times: list[int] = field(repr=False)

    @property
    def end_ns(self) -> int:
        return to_time_ns(self.config.end)


def _states(config: GeneratorConfig) -> Iterator[tuple[State, datetime]]:
    for generated in generate(config):
        yield (
            State(generated.entity_id, generated.state, generated.attributes),
            generated.time_fired,
        )


def _history(count: int, days: int, seed: int, entities: int | None = None) -> History:
    config = GeneratorConfig(
        count=count,
        pattern=Pattern.MIXED,
        entity_count=entities,
        start=START,
        end=START + timedelta(days=days),
        seed=seed,
    )
    layout = LegacyLayout(LegacyOptions())
    lines, times = [], []
    for state, time_fired in _states(config):
        point = layout.point(state, time_fired)
        if point is not None and (line := encode_like_core_v1(point)) is not None:
            lines.append(line)
            times.append(point.time_ns)
    return History(config, lines, times)


@pytest.fixture(scope="module")
def big_history() -> History:
    """Over 100,000 legacy points of a 300-entity home over four weeks."""
    history = _history(103_000, 28, seed=7)
    assert len(history.lines) >= 100_000
    return history


@pytest.fixture(scope="module")
def small_history() -> History:
    """About 15,000 legacy points of a 60-entity home over a week, for single behaviours."""
    return _history(15_000, 7, seed=11, entities=60)


def load(influxd: InfluxServer, database: str, lines: list[str]) -> None:
    for first in range(0, len(lines), 10_000):
        influxd.write("\n".join(lines[first : first + 10_000]), database)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def client(session: aiohttp.ClientSession, influxd: InfluxServer, database: str) -> InfluxClient:
    return admin_client(session, influxd, database)


def backfill_state(
    cutover_ns: int,
    strategy: Strategy = Strategy.DUAL_WRITE,
    *,
    ledger: MigrationLedger | None = None,
    **settings: Any,
) -> MigrationState:
    return MigrationState(
        migration_id="test",
        config=MigrationConfig(strategy=strategy, **settings),
        phase=Phase.BACKFILL,
        cutover_ns=cutover_ns,
        ledger=ledger,
    )


def new_ledger(database: str, target: str | None = None, **fields: Any) -> MigrationLedger:
    """The ledger of a migration prepared now: the target inventoried empty."""
    fields.setdefault("inventoried_ns", to_time_ns(datetime.now(UTC)))
    return MigrationLedger(source_database=database, target_database=target or database, **fields)


class Saves:
    """The save callback: keeps what HA's Store would hold (a JSON round trip)."""

    def __init__(self, then: Callable[[MigrationState], None] | None = None) -> None:
        self.saved: list[dict[str, Any]] = []
        self._then = then

    async def __call__(self, state: MigrationState) -> None:
        self.saved.append(json.loads(json.dumps(state.to_dict())))
        if self._then is not None:
            self._then(state)

    @property
    def last(self) -> MigrationState:
        return MigrationState.from_dict(self.saved[-1])


def new_backfill(
    client: InfluxClient,
    state: MigrationState,
    tmp_path: Path,
    save: Callable[[MigrationState], Any],
    **options: Any,
) -> Backfill:
    return Backfill(
        client,
        state,
        transform=TRANSFORM,
        save=save,
        dead_letter_path=tmp_path / "dead_letter.jsonl",
        retry=FAST_RETRY,
        **options,
    )


async def snapshot(client: InfluxClient, database: str, *, optimized: bool) -> Snapshot:
    """Every point of one layout in a database, keyed by series and time."""
    points: Snapshot = {}
    for measurement in await client.measurements(database):
        async for point in client.read_points(measurement, *EVERYTHING, database):
            entity_id = point.tags.get("entity_id", "")
            if is_optimized_series(measurement, entity_id) is optimized:
                key = (measurement, tuple(sorted(point.tags.items())), point.time_ns)
                assert key not in points
                points[key] = point.fields
    return points


def transformed(legacy: Snapshot, before_ns: int = EVERYTHING[1]) -> Snapshot:
    """What the optimized layout must hold for the legacy points older than ``before_ns``."""
    expected: Snapshot = {}
    for (measurement, tags, time_ns), fields in legacy.items():
        if time_ns >= before_ns:
            continue
        point = TRANSFORM(Point(measurement, dict(tags), fields, time_ns))
        if point is not None:
            key = (point.measurement, tuple(sorted(point.tags.items())), point.time_ns)
            assert key not in expected, "two legacy points for one optimized point"
            expected[key] = point.fields
    return expected


def assert_same(actual: Snapshot, expected: Snapshot) -> None:
    """Equal as sets of points; on failure name a few differences, not 100,000 of them."""
    missing = expected.keys() - actual.keys()
    extra = actual.keys() - expected.keys()
    different = [key for key in expected.keys() & actual.keys() if actual[key] != expected[key]]
    assert not missing, f"{len(missing)} points missing, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} points extra, e.g. {sorted(extra)[:3]}"
    assert not different, (
        f"{len(different)} points differ, e.g. "
        f"{[(k, actual[k], expected[k]) for k in sorted(different)[:3]]}"
    )


# Which series are which ----------------------------------------------------------------------


def test_legacy_series_carry_a_domain_and_an_object_id() -> None:
    assert legacy_entity_id({"domain": "sensor", "entity_id": "kitchen"}) == "sensor.kitchen"
    assert legacy_entity_id({"entity_id": "sensor.kitchen"}) is None
    assert legacy_entity_id({"domain": "sensor", "entity_id": "sensor.kitchen"}) is None
    assert legacy_entity_id({"domain": "sensor"}) is None


def test_optimized_series_are_named_by_domain_and_full_entity_id() -> None:
    assert is_optimized_series("sensor", "sensor.kitchen")
    assert not is_optimized_series("sensor", "kitchen")
    assert not is_optimized_series("°C", "sensor.kitchen")
    assert not is_optimized_series("sensor.kitchen", "kitchen")


def test_the_validation_sample_is_stable_and_about_the_asked_share() -> None:
    days = [19_700 * DAY_NS + day * DAY_NS for day in range(100)]
    units = [(f"sensor.s{i}", day) for i in range(100) for day in days]
    chosen = [unit for unit in units if in_sample(*unit, 0.1)]
    assert chosen == [unit for unit in units if in_sample(*unit, 0.1)]
    assert 0.09 < len(chosen) / len(units) < 0.11
    assert all(in_sample(*unit, 1.0) for unit in units)


# Discovery -----------------------------------------------------------------------------------


async def test_discovery_finds_measurements_entities_fields_range_and_counts(
    client: InfluxClient, influxd: InfluxServer, database: str, small_history: History
) -> None:
    load(influxd, database, small_history.lines)
    legacy = await snapshot(client, database, optimized=False)

    found = await discover(client, database)

    assert isinstance(found, DiscoveredSource)
    assert set(found.measurements) == {m for m, _, _ in legacy}
    entities = {legacy_entity_id(dict(tags)) for _, tags, _ in legacy}
    assert {s.entity_id for s in found.series} == entities
    assert len(entities) > 50
    # Every generated entity's points all carry a value or all carry a state: exact counts.
    assert sum(s.point_count for s in found.series) == len(small_history.lines)
    assert found.first_time == START + timedelta(
        microseconds=(min(small_history.times) - to_time_ns(START)) // 1000
    )
    assert to_time_ns(found.last_time) == max(small_history.times)  # type: ignore[arg-type]
    seen: dict[str, set[str]] = {}
    for (measurement, _, _), fields in legacy.items():
        seen.setdefault(measurement, set()).update(fields)
    assert {m: set(keys) for m, keys in found.field_keys.items()} == seen


async def test_discovery_honours_the_entity_filter_and_time_range(
    client: InfluxClient, influxd: InfluxServer, database: str, small_history: History
) -> None:
    load(influxd, database, small_history.lines)
    config = MigrationConfig(
        entities=("sensor.*",), start=START + timedelta(days=2), end=START + timedelta(days=3)
    )
    found = await discover(client, database, config)
    assert found.series
    assert all(s.entity_id.startswith("sensor.") for s in found.series)
    low, high = to_time_ns(START + timedelta(days=2)), to_time_ns(START + timedelta(days=3))
    assert all(low <= first and last < high for first, last in found.extents.values())


# Backfill ------------------------------------------------------------------------------------


async def test_backfill_copies_every_legacy_point_exactly_and_nothing_else(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    big_history: History,
    tmp_path: Path,
) -> None:
    """100,000+ points, legacy and optimized layouts sharing one database."""
    load(influxd, database, big_history.lines)
    legacy = await snapshot(client, database, optimized=False)
    state = backfill_state(big_history.end_ns)
    saves = Saves()
    progress: list[float] = []

    outcome = await new_backfill(
        client,
        state,
        tmp_path,
        saves,
        on_progress=lambda _: progress.append(time.monotonic()),
    ).run()

    assert outcome is BackfillOutcome.COMPLETE
    expected = transformed(legacy)
    assert_same(await snapshot(client, database, optimized=True), expected)
    assert await snapshot(client, database, optimized=False) == legacy
    assert state.records_read == len(legacy) == len(big_history.lines)
    assert state.records_migrated == len(expected)
    assert state.records_failed == 0
    assert state.records_skipped == state.records_read - state.records_migrated
    assert all(checkpoint.done for checkpoint in state.checkpoints.values())
    assert saves.last.to_dict() == state.to_dict()
    # Progress is pushed while it runs, at most every half second (the last report is final).
    assert len(progress) >= 2
    assert all(b - a >= 0.45 for a, b in itertools.pairwise(progress[:-1]))


async def test_a_cancelled_backfill_resumes_from_its_checkpoint_without_gaps_or_duplicates(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    big_history: History,
    tmp_path: Path,
) -> None:
    load(influxd, database, big_history.lines[:50_000])
    legacy = await snapshot(client, database, optimized=False)
    total = len(legacy)
    task: asyncio.Task[BackfillOutcome] | None = None

    def cancel_a_third_of_the_way(state: MigrationState) -> None:
        if state.records_read > total // 3 and task is not None:
            task.cancel()

    saves = Saves(then=cancel_a_third_of_the_way)
    first = new_backfill(client, backfill_state(big_history.end_ns), tmp_path, saves)
    task = asyncio.create_task(first.run())
    with pytest.raises(asyncio.CancelledError):
        await task

    resumed_from = saves.last
    assert total // 3 < resumed_from.records_read < total
    assert not all(cp.done for cp in resumed_from.checkpoints.values())
    outcome = await new_backfill(client, resumed_from, tmp_path, Saves()).run()

    assert outcome is BackfillOutcome.COMPLETE
    expected = transformed(legacy)
    assert_same(await snapshot(client, database, optimized=True), expected)
    # Counted once each, although the window in flight at the cancel was written twice.
    assert resumed_from.records_read == total
    assert resumed_from.records_migrated == len(expected)


async def test_a_stopped_backfill_saves_what_landed_and_resumes_exactly(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    load(influxd, database, small_history.lines)
    legacy = await snapshot(client, database, optimized=False)
    backfill: Backfill | None = None

    def stop_after_three_saves(state: MigrationState) -> None:
        if len(saves.saved) == 3 and backfill is not None:
            backfill.stop()

    saves = Saves(then=stop_after_three_saves)
    state = backfill_state(small_history.end_ns, batch_size=200, concurrent_batches=2)
    backfill = new_backfill(client, state, tmp_path, saves, window_ns=DAY_NS // 4)

    assert await backfill.run() is BackfillOutcome.STOPPED
    assert saves.last.to_dict() == state.to_dict()
    assert 0 < state.records_read < len(legacy)

    resumed = MigrationState.from_dict(saves.saved[-1])
    assert await new_backfill(client, resumed, tmp_path, Saves()).run() is (
        BackfillOutcome.COMPLETE
    )
    assert_same(await snapshot(client, database, optimized=True), transformed(legacy))
    assert resumed.records_read == len(legacy)


async def test_backfill_waits_for_a_stopped_server_and_finishes_exactly(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    big_history: History,
    tmp_path: Path,
) -> None:
    load(influxd, database, big_history.lines[:60_000])
    legacy = await snapshot(client, database, optimized=False)
    outage: asyncio.Task[None] | None = None
    down: list[float] = []

    async def take_the_server_down() -> None:
        await asyncio.to_thread(influxd.stop)
        down.append(time.monotonic())
        try:
            await asyncio.sleep(3)
        finally:
            await asyncio.to_thread(influxd.start)
            down.append(time.monotonic())

    def stop_the_server_a_tenth_of_the_way(state: MigrationState) -> None:
        nonlocal outage
        if outage is None and state.records_read > len(legacy) // 10:
            outage = asyncio.create_task(take_the_server_down())

    state = backfill_state(big_history.end_ns)
    heard: list[bool] = []
    try:
        outcome = await new_backfill(
            client,
            state,
            tmp_path,
            Saves(then=stop_the_server_a_tenth_of_the_way),
            on_connection=heard.append,
        ).run()
    finally:
        if outage is not None:
            await outage
    finished = time.monotonic()

    counters = (state.records_read, state.records_migrated, state.records_failed)
    assert outcome is BackfillOutcome.COMPLETE, counters
    assert len(down) == 2, "the server was stopped and started again"
    assert finished > down[1], "the backfill outlived the outage"
    # The listener heard the server go away and come back, each change once.
    assert heard[0] is False
    assert heard[-1] is True
    assert all(a is not b for a, b in itertools.pairwise(heard))
    expected = transformed(legacy)
    assert_same(await snapshot(client, database, optimized=True), expected)
    assert counters == (len(legacy), len(expected), 0)


async def test_live_writes_after_the_cutover_are_neither_lost_nor_doubled(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    """The dual-writer keeps writing both layouts while the backfill copies the past."""
    cutover_ns = to_time_ns(START + timedelta(days=4))
    layout = OptimizedLayout(OptimizedOptions())
    live = [
        point
        for state, time_fired in _states(small_history.config)
        if time_fired >= START + timedelta(days=4)
        and (point := layout.point(state, time_fired)) is not None
    ]
    assert len(live) > 1000
    # The legacy writer wrote everything, including what came after the cutover.
    load(influxd, database, small_history.lines)
    legacy = await snapshot(client, database, optimized=False)

    async def dual_write() -> None:
        for first in range(0, len(live), 100):
            await client.write(encode_batch(live[first : first + 100]))
            await asyncio.sleep(0)

    writer = asyncio.create_task(dual_write())
    state = backfill_state(cutover_ns)
    outcome = await new_backfill(client, state, tmp_path, Saves()).run()
    await writer

    assert outcome is BackfillOutcome.COMPLETE
    expected = transformed(legacy, before_ns=cutover_ns)
    for point in live:
        key = (point.measurement, tuple(sorted(point.tags.items())), point.time_ns)
        assert key not in expected
        expected[key] = point.fields
    assert_same(await snapshot(client, database, optimized=True), expected)
    assert state.records_read == sum(1 for t in small_history.times if t < cutover_ns)


async def test_points_the_server_refuses_go_to_the_dead_letter_file_and_the_rest_lands(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    load(influxd, database, small_history.lines)
    legacy = await snapshot(client, database, optimized=False)
    # hvac_action is text in the optimized layout; make it a number in every shard.
    influxd.write(
        "\n".join(
            f"climate,entity_id=climate.conflict hvac_action=1.0 {day * DAY_NS}"
            for day in range(19_700, 19_730)
        ),
        database,
    )
    expected = transformed(legacy)
    refused = {key for key, fields in expected.items() if "hvac_action" in fields}
    assert 0 < len(refused) < len(expected) // 10
    state = backfill_state(
        small_history.end_ns, max_error_rate=0.5, rollback_threshold=0.5, batch_size=500
    )

    backfill = new_backfill(client, state, tmp_path, Saves())
    assert await backfill.run() is BackfillOutcome.COMPLETE

    stored = await snapshot(client, database, optimized=True)
    stored = {key: fields for key, fields in stored.items() if "conflict" not in str(key)}
    assert_same(stored, {k: v for k, v in expected.items() if k not in refused})
    assert state.records_failed == len(refused) == backfill.dead_letter_count
    letters = [
        json.loads(line) for line in (tmp_path / "dead_letter.jsonl").read_text().splitlines()
    ]
    assert len(letters) == len(refused)
    assert all("conflict" in letter["reason"] for letter in letters)
    assert all(letter["database"] == database for letter in letters)
    assert all("hvac_action=" in letter["line"] for letter in letters)


async def test_rejections_above_the_threshold_end_in_rollback_that_spares_legacy_data(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    load(influxd, database, small_history.lines[:6000])
    legacy = await snapshot(client, database, optimized=False)
    # Every binary sensor (about a tenth of the points) collides with a text "value".
    influxd.write(
        "\n".join(
            f'binary_sensor,entity_id=binary_sensor.conflict value="x" {day * DAY_NS}'
            for day in range(19_700, 19_730)
        ),
        database,
    )
    state = backfill_state(
        small_history.end_ns,
        max_error_rate=0.05,
        rollback_threshold=0.05,
        ledger=new_ledger(database),
    )

    outcome = await new_backfill(client, state, tmp_path, Saves()).run()

    assert outcome is BackfillOutcome.ROLLBACK
    assert state.records_failed > 0.05 * (state.records_migrated + state.records_failed)
    copied = await snapshot(client, database, optimized=True)
    assert len(copied) > 40
    assert state.ledger is not None
    assert state.ledger.dead_lettered
    assert all(entity.startswith("binary_sensor.") for entity in state.ledger.dead_lettered)
    removal = await remove_migrated(client, state, until_ns=small_history.end_ns)
    assert removal.points == len(copied) - 30  # the 30 conflicting points were not ours
    assert removal.dropped_database is None
    left = await snapshot(client, database, optimized=True)
    assert {dict(tags)["entity_id"] for _, tags, _ in left} == {"binary_sensor.conflict"}
    assert await snapshot(client, database, optimized=False) == legacy


async def test_rollback_removes_only_what_the_backfill_copied_and_keeps_what_was_there(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    """Optimized points recorded before the migration (and other writers' series) stay."""
    load(influxd, database, small_history.lines)
    legacy = await snapshot(client, database, optimized=False)
    expected = transformed(legacy)
    # Days 1 and 2 of one sensor were recorded live in the optimized layout before.
    recorded_entity = next(dict(tags)["entity_id"] for m, tags, _ in expected if m == "sensor")
    day = to_time_ns(START) // DAY_NS
    recorded = {
        key: fields
        for key, fields in expected.items()
        if dict(key[1])["entity_id"] == recorded_entity and day + 1 <= key[2] // DAY_NS <= day + 2
    }
    assert recorded
    await client.write(
        encode_batch(Point(m, dict(tags), fields, t) for (m, tags, t), fields in recorded.items())
    )
    foreign = Point("sensor", {"entity_id": "sensor.other_home"}, {"value": 1.0}, START_NS + 5)
    await client.write(encode_batch([foreign]))
    ledger = new_ledger(database)
    ledger.preexisting = await inventory_optimized(
        client, database, before_ns=ledger.inventoried_ns
    )
    assert set(ledger.preexisting) == {recorded_entity, "sensor.other_home"}
    assert ledger.preexisting[recorded_entity] == (
        (
            (day + 1) * DAY_NS,
            (day + 3) * DAY_NS,
        ),
    )
    state = backfill_state(small_history.end_ns, ledger=ledger)
    assert await new_backfill(client, state, tmp_path, Saves()).run() is BackfillOutcome.COMPLETE
    assert_same(
        {
            k: v
            for k, v in (await snapshot(client, database, optimized=True)).items()
            if "other_home" not in str(k)
        },
        expected,
    )

    removal = await remove_migrated(client, state, until_ns=small_history.end_ns)

    left = await snapshot(client, database, optimized=True)
    assert left == {
        **recorded,
        ("sensor", (("entity_id", "sensor.other_home"),), START_NS + 5): {"value": 1.0},
    }
    assert removal.points == len(expected) - len(recorded)
    assert await snapshot(client, database, optimized=False) == legacy


async def test_rollback_keeps_everything_when_the_target_was_recorded_before(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    """Write mode "optimized" into the same database: what was copied before the inventory
    day goes, everything from then on (the live recording) stays."""
    load(influxd, database, small_history.lines)
    inventory = small_history.end_ns - 2 * DAY_NS
    ledger = new_ledger(
        database,
        inventoried_ns=inventory,
        recorded_before=(Recording(Layout.OPTIMIZED, database),),
    )
    state = backfill_state(small_history.end_ns, ledger=ledger)
    await new_backfill(client, state, tmp_path, Saves()).run()
    copied = await snapshot(client, database, optimized=True)

    await remove_migrated(
        client, state, until_ns=small_history.end_ns + DAY_NS, known_entities=["sensor.x"]
    )

    kept_from = inventory - inventory % DAY_NS
    assert await snapshot(client, database, optimized=True) == {
        key: fields for key, fields in copied.items() if key[2] >= kept_from
    }


async def test_rollback_without_an_inventory_deletes_nothing(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    """A migration saved before ledgers existed: what the target held is unknown."""
    load(influxd, database, small_history.lines[:3000])
    state = backfill_state(small_history.end_ns, ledger=new_ledger(database))
    await new_backfill(client, state, tmp_path, Saves()).run()
    before = await snapshot(client, database, optimized=True)
    assert state.ledger is not None
    state.ledger.inventoried_ns = None
    assert (await remove_migrated(client, state, until_ns=small_history.end_ns)).points == 0
    assert await snapshot(client, database, optimized=True) == before


async def test_blue_green_fills_a_separate_database_and_rollback_drops_it(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    load(influxd, database, small_history.lines)
    legacy = await snapshot(client, database, optimized=False)
    green = f"{database}_green"
    await client.create_database(green)
    state = backfill_state(
        small_history.end_ns,
        Strategy.BLUE_GREEN,
        ledger=new_ledger(database, green, created_target=True),
    )
    try:
        outcome = await new_backfill(client, state, tmp_path, Saves(), target_database=green).run()

        assert outcome is BackfillOutcome.COMPLETE
        assert_same(await snapshot(client, green, optimized=True), transformed(legacy))
        assert await snapshot(client, database, optimized=True) == {}
        removal = await remove_migrated(client, state, until_ns=small_history.end_ns)
        assert removal.dropped_database == green
        assert removal.points == len(transformed(legacy))
        assert not await client.database_exists(green)
        assert await snapshot(client, database, optimized=False) == legacy
    finally:
        await client.drop_database(green)


async def test_blue_green_rollback_never_drops_a_database_it_did_not_create(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    load(influxd, database, small_history.lines[:4000])
    green = f"{database}_existing"
    await client.create_database(green)
    sentinel = Point("sentinel", {"kind": "user data"}, {"value": 42.0}, START_NS)
    await client.write(encode_batch([sentinel]), green)
    state = backfill_state(
        small_history.end_ns, Strategy.BLUE_GREEN, ledger=new_ledger(database, green)
    )
    try:
        await new_backfill(client, state, tmp_path, Saves(), target_database=green).run()
        removal = await remove_migrated(client, state, until_ns=small_history.end_ns)
        assert removal.dropped_database is None
        assert removal.points > 0
        assert await client.database_exists(green)
        assert await snapshot(client, green, optimized=True) == {}
        assert [p async for p in client.read_points("sentinel", *EVERYTHING, green)] == [sentinel]
    finally:
        await client.drop_database(green)


async def test_gradual_strategy_spreads_the_backfill_over_time(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    load(influxd, database, small_history.lines[:6000])
    state = backfill_state(
        small_history.end_ns, Strategy.GRADUAL, migration_window_hours=1, batch_size=500
    )
    # The window spreads the points discovery counts: 6,000 over an hour. The backfill's timer
    # is a test clock that moves only when the backfill sleeps, so the hour passes at once and
    # the pacing is exact.
    clock = TestTimer()
    outcome = await new_backfill(client, state, tmp_path, Saves(), timer=clock.timer).run()

    assert outcome is BackfillOutcome.COMPLETE
    assert state.records_migrated == 6000
    rate = backfill_rate_limit(state.config, 6000)
    assert rate == 6000 / 3600
    # Batch n (0-based) is handed over once n x 500 points' time has passed, never earlier: the
    # last of the 12 batches at 5,500 / rate seconds, 55 minutes into the hour.
    assert clock.now == pytest.approx(5500 / rate)
    assert len(clock.sleeps) == 11
    assert all(seconds <= 500 / rate + 1e-6 for seconds in clock.sleeps)
    # Without the strategy nothing is paced.
    assert backfill_rate_limit(backfill_state(0).config, 6000) is None


class TestTimer:
    """A clock that only moves when the code under test sleeps on it."""

    __test__ = False

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.timer = Timer(monotonic=lambda: self.now, sleep=self.sleep)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_the_entity_filter_limits_what_is_copied(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    load(influxd, database, small_history.lines)
    legacy = await snapshot(client, database, optimized=False)
    state = backfill_state(small_history.end_ns, entities=("binary_sensor.*", "light.*"))
    assert await new_backfill(client, state, tmp_path, Saves()).run() is (BackfillOutcome.COMPLETE)
    expected = {
        key: fields
        for key, fields in transformed(legacy).items()
        if key[0] in ("binary_sensor", "light")
    }
    assert_same(await snapshot(client, database, optimized=True), expected)
    assert state.records_read == sum(
        1 for _, tags, _ in legacy if dict(tags)["domain"] in ("binary_sensor", "light")
    )


async def test_backfill_needs_a_cutover(client: InfluxClient, tmp_path: Path) -> None:
    state = MigrationState(migration_id="x", phase=Phase.BACKFILL)
    with pytest.raises(ValueError, match="cutover"):
        await new_backfill(client, state, tmp_path, Saves()).run()


async def test_a_backfill_runs_once(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    load(influxd, database, small_history.lines[:500])
    backfill = new_backfill(client, backfill_state(small_history.end_ns), tmp_path, Saves())
    assert await backfill.run() is BackfillOutcome.COMPLETE
    with pytest.raises(RuntimeError, match="runs once"):
        await backfill.run()


async def test_after_a_run_the_counts_and_the_throughput_are_what_landed(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    load(influxd, database, small_history.lines[:2000])
    state = backfill_state(small_history.end_ns, batch_size=500)
    backfill = new_backfill(client, state, tmp_path, Saves())
    assert backfill.points_per_second is None

    assert await backfill.run() is BackfillOutcome.COMPLETE

    assert backfill.live_counts == (2000, state.records_migrated, 0)
    assert backfill.points_per_second is not None
    assert backfill.points_per_second > 0


async def test_a_fatal_write_error_is_raised_as_itself(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    """Not wrapped in the task groups of the pipeline: the glue tells the user what it is."""
    load(influxd, database, small_history.lines[:500])
    backfill = new_backfill(
        client,
        backfill_state(small_history.end_ns),
        tmp_path,
        Saves(),
        target_database=f"{database}_missing",
    )
    with pytest.raises(DatabaseNotFound):
        await backfill.run()


async def test_legacy_measurements_that_appear_during_the_backfill_are_copied_too(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    """Another writer's backlog may land in a measurement discovery did not see."""
    load(influxd, database, small_history.lines[:2000])
    source = await discover(client, database, until_ns=small_history.end_ns)
    late = f"late_unit,domain=sensor,entity_id=late_meter value=5.0 {START_NS + DAY_NS}"
    influxd.write(late, database)
    legacy = await snapshot(client, database, optimized=False)
    state = backfill_state(small_history.end_ns)

    outcome = await new_backfill(client, state, tmp_path, Saves(), source=source).run()

    assert outcome is BackfillOutcome.COMPLETE
    assert "late_unit" not in source.measurements
    assert state.checkpoints["late_unit"].done
    assert_same(await snapshot(client, database, optimized=True), transformed(legacy))
    assert state.records_read == 2001


async def test_stop_wakes_a_paced_backfill_at_once(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    """A gradual backfill waiting for its next turn stops without waiting it out."""
    load(influxd, database, small_history.lines[:3000])
    state = backfill_state(
        small_history.end_ns, Strategy.GRADUAL, migration_window_hours=24, batch_size=500
    )
    waiting = asyncio.Event()

    async def sleep_for_ever(seconds: float) -> None:
        waiting.set()
        await asyncio.Event().wait()

    backfill = new_backfill(
        client, state, tmp_path, Saves(), timer=Timer(monotonic=lambda: 0.0, sleep=sleep_for_ever)
    )
    run = asyncio.create_task(backfill.run())
    await asyncio.wait_for(waiting.wait(), 30)
    backfill.stop()

    assert await asyncio.wait_for(run, 30) is BackfillOutcome.STOPPED
    # Only the first batch was handed over before the wait; nothing after it was recorded.
    assert state.records_migrated <= 500
    assert not all(checkpoint.done for checkpoint in state.checkpoints.values())


# Validation ----------------------------------------------------------------------------------


async def test_validation_scores_an_exact_migration_1_and_times_real_queries(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    load(influxd, database, small_history.lines)
    state = backfill_state(small_history.end_ns)
    await new_backfill(client, state, tmp_path, Saves()).run()

    result = await Validator(client, state, transform=TRANSFORM).run()

    assert result.integrity_score == 1.0
    assert result.mismatches == {}
    assert result.entities_checked == len({s.entity_id for s in (await discover(client)).series})
    # About validate_percentage (10 %) of the points, chosen by entity and day.
    assert 0.05 * state.records_migrated < result.records_sampled < 0.2 * state.records_migrated
    assert [t.name for t in result.query_timings] == [
        "entity_hourly_mean",
        "sensor_last_values",
        "sensor_daily_count",
    ]
    for timing in result.query_timings:
        assert timing.legacy_ms > 0
        assert timing.optimized_ms > 0
    assert result.query_time_improvement_percent is not None


async def test_dashboard_timings_are_the_median_of_the_repeats(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    load(influxd, database, small_history.lines[:2000])
    state = backfill_state(small_history.end_ns)
    await new_backfill(client, state, tmp_path, Saves()).run()
    # Each query is timed three times: 5, 1 and 2 ms on the validator's stopwatch (the mean
    # would be 2.67 ms).
    readings = itertools.cycle([0.0, 0.005, 0.0, 0.001, 0.0, 0.002])

    result = await Validator(
        client, state, transform=TRANSFORM, repeats=3, stopwatch=lambda: next(readings)
    ).run()

    assert len(result.query_timings) == 3
    for timing in result.query_timings:
        assert timing.legacy_ms == pytest.approx(2.0)
        assert timing.optimized_ms == pytest.approx(2.0)


async def test_validation_finds_tampered_and_missing_points(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    load(influxd, database, small_history.lines)
    state = backfill_state(small_history.end_ns, validate_percentage=1.0)
    await new_backfill(client, state, tmp_path, Saves()).run()
    optimized = await snapshot(client, database, optimized=True)
    changed_entity = next(
        dict(tags)["entity_id"]
        for (m, tags, _), fields in optimized.items()
        if m == "sensor" and "value" in fields
    )
    changed = [
        Point(m, dict(tags), {**fields, "value": float(fields["value"]) + 1000}, t)
        for (m, tags, t), fields in optimized.items()
        if dict(tags)["entity_id"] == changed_entity
    ][:5]
    assert len(changed) == 5
    await client.write(encode_batch(changed))
    dropped_entity = next(dict(tags)["entity_id"] for (m, tags, _) in optimized if m == "light")
    await client.delete_range(
        "light", {"entity_id": dropped_entity}, start_ns=EVERYTHING[0], end_ns=EVERYTHING[1]
    )

    result = await Validator(client, state, transform=TRANSFORM).run()

    assert result.integrity_score < 1.0
    assert set(result.mismatches) == {changed_entity, dropped_entity}
    assert result.mismatches[changed_entity].mismatched_records == 5
    assert result.mismatches[changed_entity].mismatched_days == 0
    assert result.mismatches[dropped_entity].optimized_points == 0
    assert result.mismatches[dropped_entity].mismatched_days > 0


# Cleanup --------------------------------------------------------------------------------------


async def test_cleanup_deletes_only_proven_entities_inside_the_copied_range(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    small_history: History,
    tmp_path: Path,
) -> None:
    """start_time/end_time bound the copy, so they bound the cleanup; an entity the validation
    did not prove, or with refused points, keeps its legacy history."""
    load(influxd, database, small_history.lines)
    legacy = await snapshot(client, database, optimized=False)
    start = START + timedelta(days=2)
    end = START + timedelta(days=4)
    state = backfill_state(
        small_history.end_ns,
        delete_legacy_data=True,
        start=start,
        end=end,
        ledger=new_ledger(database),
    )
    await new_backfill(client, state, tmp_path, Saves()).run()
    validator = Validator(client, state, transform=TRANSFORM, repeats=1)
    result = await validator.run()
    assert result.integrity_score == 1.0
    ledger = state.ledger
    assert ledger is not None
    span = validator.migrated_range()
    proven = sorted(validator.compared_entities)
    unproven, refused = proven[0], proven[1]
    ledger.verified = dict.fromkeys(proven[2:], span)
    ledger.dead_lettered = {refused}
    ledger.verified[refused] = span
    saves = Saves()

    deleted, deletions = await clean_legacy(client, state, save=saves)

    low, high = to_time_ns(start), to_time_ns(end)
    kept = {
        key: fields
        for key, fields in legacy.items()
        if not low <= key[2] < high or legacy_entity_id(dict(key[1])) in (unproven, refused)
    }
    assert await snapshot(client, database, optimized=False) == kept
    assert deleted == len(legacy) - len(kept) > 0
    assert deletions == len(saves.saved)
    assert set(ledger.cleaned) == set(proven[2:])
    # Done once: a second run (after a restart, say) has nothing left to do.
    assert await clean_legacy(client, state, save=saves) == (0, 0)


# The 2.x API ----------------------------------------------------------------------------------


async def test_the_whole_migration_works_through_the_v2_api(
    session: aiohttp.ClientSession,
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    v2_emulator: InfluxV2Emulator,
    small_history: History,
    tmp_path: Path,
) -> None:
    lines = small_history.lines[:2500]
    load(influxd, database, lines)
    legacy = await snapshot(client, database, optimized=False)
    v2 = create_client(
        session,
        ServerSettings(
            api_version=ApiVersion.V2,
            url=v2_emulator.url,
            database=database,
            token=V2_TOKEN,
            organization=V2_ORG,
        ),
    )
    state = backfill_state(small_history.end_ns, batch_size=300, ledger=new_ledger(database))

    assert await new_backfill(v2, state, tmp_path, Saves()).run() is BackfillOutcome.COMPLETE
    assert_same(await snapshot(client, database, optimized=True), transformed(legacy))
    result = await Validator(v2, state, transform=TRANSFORM, repeats=1).run()
    assert result.integrity_score == 1.0
    assert result.records_sampled > 0

    assert (await remove_migrated(v2, state, until_ns=small_history.end_ns)).points > 0
    assert await snapshot(client, database, optimized=True) == {}
    assert await snapshot(client, database, optimized=False) == legacy
