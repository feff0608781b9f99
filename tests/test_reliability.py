"""Faults against the real influxd: kills, stalls, late answers, 500s, refusals, a broken spool,
an abrupt stop. Whatever happens, every state change ends up in InfluxDB exactly once.

The writers run with a compressed retry policy (probes every half second instead of every
thirty) so that outages play out in seconds; the policy's logic is the product's own.
Server misbehaviour that influxd cannot produce by itself comes from :class:`FaultyProxy`, a
small HTTP reverse proxy on 127.0.0.1 placed between the integration and influxd.
"""

import asyncio
from collections.abc import AsyncIterator, Iterator
import functools
import logging
from pathlib import Path
import time

from aiohttp import ClientSession
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
import orjson
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ha_ingestor import connection, migration, recording as ingest
from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.engine.influx import ServerSettings
from custom_components.ha_ingestor.engine.retry import Backoff, RetryPolicy
from custom_components.ha_ingestor.engine.writer import PointWriter

from .faulty_proxy import CLIENT_TIMEOUT, Fault, FaultyProxy
from .helpers import (
    admin_client,
    count,
    entry_for,
    eventually,
    ingest_options,
    setup_entry,
)
from .influx_server import InfluxServer, running_influxd
from .test_migration_engine import (
    _history as legacy_history,
    assert_same,
    load,
    snapshot,
    transformed,
)

# Probes every half second once three writes in a row failed.
FAST = RetryPolicy(backoff=Backoff(base=0.05, maximum=0.3), failure_threshold=3, cool_down=0.5)


@pytest.fixture(autouse=True)
def fast_recovery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writers retry and probe quickly, and the client gives up on a write after a second."""
    monkeypatch.setattr(
        ingest,
        "PointWriter",
        functools.partial(PointWriter, retry=FAST, spool_interval=1.0, stats_interval=0.1),
    )
    monkeypatch.setattr(
        connection, "ServerSettings", functools.partial(ServerSettings, timeout=CLIENT_TIMEOUT)
    )


@pytest.fixture
def own_influxd() -> Iterator[InfluxServer]:
    """A server this test may kill and start without disturbing the others."""
    with running_influxd(auth=True) as server:
        server.create_database("home")
        yield server


@pytest.fixture
async def proxy(influxd: InfluxServer) -> AsyncIterator[FaultyProxy]:
    proxy = FaultyProxy(influxd.url)
    await proxy.start()
    yield proxy
    await proxy.stop()


def proxied_entry(
    proxy: FaultyProxy, influxd: InfluxServer, database: str, mode: str = "legacy"
) -> MockConfigEntry:
    entry = entry_for(influxd, database, ingest_options(mode))
    return MockConfigEntry(
        domain=entry.domain,
        title=entry.title,
        data={**entry.data, "url": proxy.url},
        options=entry.options,
        unique_id=f"{proxy.url}/{database}",
    )


def entity_id(hass: HomeAssistant, entry: MockConfigEntry, key: str) -> str:
    return next(
        e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        if e.translation_key == key
    )


def state_of(hass: HomeAssistant, entry: MockConfigEntry, key: str) -> str:
    return hass.states.get(entity_id(hass, entry, key)).state


def record_states(hass: HomeAssistant, entity: str) -> list[str]:
    """The states ``entity`` takes from now on, in order."""
    seen: list[str] = []

    @callback
    def _changed(event: Event[EventStateChangedData]) -> None:
        if event.data["new_state"] is not None:
            seen.append(event.data["new_state"].state)

    async_track_state_change_event(hass, entity, _changed)
    return seen


def values(influxd: InfluxServer, database: str, measurement: str, where: str = "") -> list[float]:
    """Every stored ``value`` of a measurement, sorted."""
    query = f'SELECT "value" FROM "{measurement}"' + (f" WHERE {where}" if where else "")
    found: list[float] = []
    for series in influxd.series(query, database):
        found += [row[1] for row in series["values"]]  # type: ignore[index]
    return sorted(found)


async def fire(
    hass: HomeAssistant, entity: str, numbers: range, unit: str = "W", pause: float = 0.01
) -> None:
    """One state change per number, pausing every 25 like a stream of real devices."""
    for number in numbers:
        hass.states.async_set(entity, str(number), {"unit_of_measurement": unit})
        if number % 25 == 0:
            await asyncio.sleep(pause)


def spool_files(hass: HomeAssistant, entry: MockConfigEntry) -> list[Path]:
    root = Path(hass.config.path("ha_ingestor", entry.entry_id))
    return sorted(p for p in root.glob("spool-*/*.lp") if p.is_file())


# Server killed and restarted.


async def test_every_point_lands_once_when_influxd_is_killed_three_times(
    hass: HomeAssistant, own_influxd: InfluxServer
) -> None:
    entry = await setup_entry(hass, entry_for(own_influxd, "home", ingest_options("both")))
    connection_states = record_states(hass, entity_id(hass, entry, "influxdb_connected"))
    per_entity = 600
    entities = ("sensor.power_a", "sensor.power_b", "sensor.power_c")
    producers = [
        asyncio.create_task(fire(hass, entity, range(per_entity), pause=0.15))
        for entity in entities
    ]
    for _ in range(3):
        await asyncio.sleep(0.4)
        await hass.async_add_executor_job(own_influxd.kill)
        await asyncio.sleep(0.6)
        await hass.async_add_executor_job(own_influxd.start)
    await asyncio.gather(*producers)

    total = per_entity * len(entities)
    await eventually(hass, lambda: count(own_influxd, "home", "W") == total, timeout=60)
    await eventually(hass, lambda: count(own_influxd, "home", "sensor") == total, timeout=60)
    for entity in entities:
        object_id = entity.split(".")[1]
        expected = [float(n) for n in range(per_entity)]
        assert values(own_influxd, "home", "W", f"entity_id = '{object_id}'") == expected
        assert values(own_influxd, "home", "sensor", f"entity_id = '{entity}'") == expected
    # The kills did hit writes in flight (the sensor saw it), and nothing was dropped.
    assert STATE_OFF in connection_states
    assert connection_states[-1] == STATE_ON
    assert entry.runtime_data.ingestion.stats.points_dropped == 0
    # A write the server stored but could not answer before it died was spooled: it is
    # replayed (and overwrites itself) once the server answers again.
    await eventually(hass, lambda: entry.runtime_data.ingestion.stats.spooled_points == 0)
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert spool_files(hass, entry) == []


# Server too slow to answer.


async def test_writes_that_time_out_are_spooled_and_land_once_when_the_server_answers_again(
    hass: HomeAssistant, influxd: InfluxServer, database: str, proxy: FaultyProxy
) -> None:
    entry = await setup_entry(hass, proxied_entry(proxy, influxd, database))
    ingestion = entry.runtime_data.ingestion
    proxy.fault = Fault.STALL
    await fire(hass, "sensor.slow", range(200))

    # Three timed-out writes open the circuit: the batch goes to the disk spool.
    await eventually(hass, lambda: ingestion.stats.spooled_points == 200, timeout=30)
    assert proxy.writes(Fault.STALL) >= FAST.failure_threshold
    assert not ingestion.stats.connected
    assert count(influxd, database, "W") == 0

    proxy.fault = Fault.NONE
    await eventually(hass, lambda: count(influxd, database, "W") == 200, timeout=30)
    await eventually(hass, lambda: ingestion.stats.spooled_points == 0)
    assert values(influxd, database, "W") == [float(n) for n in range(200)]
    assert ingestion.stats.points_dropped == 0
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_points_stored_but_answered_too_late_are_resent_without_duplicates(
    hass: HomeAssistant, influxd: InfluxServer, database: str, proxy: FaultyProxy
) -> None:
    entry = await setup_entry(hass, proxied_entry(proxy, influxd, database))
    ingestion = entry.runtime_data.ingestion
    proxy.fault = Fault.LATE
    await fire(hass, "sensor.late", range(150))

    # The server stored the points, but the writer never heard so and keeps them.
    await eventually(hass, lambda: ingestion.stats.spooled_points == 150, timeout=30)
    assert count(influxd, database, "W") == 150
    assert ingestion.stats.points_written == 0

    proxy.fault = Fault.NONE
    await eventually(hass, lambda: ingestion.stats.points_written == 150, timeout=30)
    assert values(influxd, database, "W") == [float(n) for n in range(150)]
    assert ingestion.stats.spooled_points == 0
    assert await hass.config_entries.async_unload(entry.entry_id)


# Server errors.


async def test_http_500s_switch_the_connection_sensor_off_and_on_and_lose_nothing(
    hass: HomeAssistant, influxd: InfluxServer, database: str, proxy: FaultyProxy
) -> None:
    entry = await setup_entry(hass, proxied_entry(proxy, influxd, database))
    assert state_of(hass, entry, "influxdb_connected") == STATE_ON
    proxy.fault = Fault.ERROR_500
    await fire(hass, "sensor.error", range(300))

    await eventually(hass, lambda: state_of(hass, entry, "influxdb_connected") == STATE_OFF)
    await eventually(hass, lambda: proxy.writes(Fault.ERROR_500) >= FAST.failure_threshold)
    assert count(influxd, database, "W") == 0

    proxy.fault = Fault.NONE
    await eventually(hass, lambda: count(influxd, database, "W") == 300, timeout=30)
    await eventually(hass, lambda: state_of(hass, entry, "influxdb_connected") == STATE_ON)
    assert values(influxd, database, "W") == [float(n) for n in range(300)]
    assert entry.runtime_data.ingestion.stats.points_dropped == 0
    assert await hass.config_entries.async_unload(entry.entry_id)


def outage_lines(caplog: pytest.LogCaptureFixture) -> dict[str, list[str]]:
    """The integration's log lines about the server going and coming back, by level."""
    found: dict[str, list[str]] = {}
    for record in caplog.records:
        message = record.getMessage()
        if record.name.startswith("custom_components.ha_ingestor") and (
            "unavailable" in message or "available again" in message
        ):
            found.setdefault(record.levelname, []).append(message)
    return found


async def test_an_outage_is_logged_once_at_info_and_its_end_once_however_many_writers(
    hass: HomeAssistant,
    influxd: InfluxServer,
    database: str,
    proxy: FaultyProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Quality scale log-when-unavailable: one line when InfluxDB goes, one when it is back,
    for the config entry, although both writers of a dual-write fail and recover."""
    caplog.set_level(logging.DEBUG, logger="custom_components.ha_ingestor")
    entry = await setup_entry(hass, proxied_entry(proxy, influxd, database, "both"))
    assert len(entry.runtime_data.ingestion.writers) == 2
    proxy.fault = Fault.ERROR_500
    await fire(hass, "sensor.outage", range(200))
    await eventually(hass, lambda: state_of(hass, entry, "influxdb_connected") == STATE_OFF)
    # Both writers find it down, and keep retrying and probing.
    await eventually(
        hass,
        lambda: all(not w.stats.connected for w in entry.runtime_data.ingestion.writers.values()),
    )
    await eventually(hass, lambda: proxy.writes(Fault.ERROR_500) >= 4 * FAST.failure_threshold)

    proxy.fault = Fault.NONE
    await eventually(hass, lambda: count(influxd, database, "W") == 200, timeout=30)
    await eventually(hass, lambda: count(influxd, database, "sensor") == 200, timeout=30)
    await eventually(hass, lambda: state_of(hass, entry, "influxdb_connected") == STATE_ON)
    assert await hass.config_entries.async_unload(entry.entry_id)

    lines = outage_lines(caplog)
    assert len(lines["INFO"]) == 2, lines
    assert lines["INFO"][0].startswith(f"InfluxDB at {proxy.url} is unavailable (cannot_connect")
    assert lines["INFO"][1].startswith(f"InfluxDB at {proxy.url} is available again")
    assert "WARNING" not in lines
    assert len(lines["DEBUG"]) >= 4, "each writer still says what it saw, at debug level"
    ours = [r for r in caplog.records if r.name.startswith("custom_components.ha_ingestor")]
    assert not [r.getMessage() for r in ours if r.levelno >= logging.WARNING]


async def test_a_server_down_at_setup_is_logged_once_and_its_return_once(
    hass: HomeAssistant, own_influxd: InfluxServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="custom_components.ha_ingestor")
    await hass.async_add_executor_job(own_influxd.stop)
    entry = await setup_entry(hass, entry_for(own_influxd, "home", ingest_options("both")))
    assert entry.state is ConfigEntryState.LOADED
    # Known down from the start: the connectivity sensor does not claim a connection.
    assert state_of(hass, entry, "influxdb_connected") == STATE_OFF
    await fire(hass, "sensor.outage", range(50))
    await eventually(
        hass, lambda: entry.runtime_data.ingestion.stats.last_error is not None, timeout=30
    )
    await hass.async_add_executor_job(own_influxd.start)
    await eventually(hass, lambda: count(own_influxd, "home", "W") == 50, timeout=60)
    await eventually(hass, lambda: state_of(hass, entry, "influxdb_connected") == STATE_ON)
    assert await hass.config_entries.async_unload(entry.entry_id)

    lines = outage_lines(caplog)
    assert len(lines["INFO"]) == 2, lines
    assert lines["INFO"][0].startswith(f"InfluxDB at {own_influxd.url} is unavailable (")
    assert lines["INFO"][1].startswith(f"InfluxDB at {own_influxd.url} is available again")
    assert "WARNING" not in lines


# Points the server refuses.


async def test_refused_points_go_to_the_dead_letter_file_and_the_rest_land(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    # "value" is already a string in measurement W, so every float value there is refused.
    seed_ns = time.time_ns() - 60_000_000_000
    influxd.write(f'W,domain=sensor,entity_id=seed value="text" {seed_ns}', database)
    entry = await setup_entry(hass, entry_for(influxd, database, ingest_options("legacy")))
    for number in range(50):
        if number % 5 < 2:  # 20 refused, interleaved with 30 good ones in the same batches
            hass.states.async_set("sensor.power", str(number), {"unit_of_measurement": "W"})
        else:
            hass.states.async_set("sensor.energy", str(number), {"unit_of_measurement": "kWh"})

    await eventually(hass, lambda: state_of(hass, entry, "dead_letter_count") == "20")
    assert values(influxd, database, "kWh") == [float(n) for n in range(50) if n % 5 >= 2]
    assert count(influxd, database, "W") == 1  # only the seed
    path = Path(hass.config.path("ha_ingestor", entry.entry_id, "dead_letter.jsonl"))
    content = await hass.async_add_executor_job(path.read_bytes)
    records = [orjson.loads(line) for line in content.splitlines()]
    assert len(records) == 20
    assert {r["database"] for r in records} == {database}
    assert all("field type conflict" in r["reason"] for r in records)
    refused = sorted(float(r["line"].split(" ")[1].removeprefix("value=")) for r in records)
    assert refused == [float(n) for n in range(50) if n % 5 < 2]
    assert all(r["line"].startswith("W,domain=sensor,entity_id=power ") for r in records)
    assert entry.runtime_data.ingestion.stats.points_written == 30
    assert await hass.config_entries.async_unload(entry.entry_id)


# The spool can't be written.


@pytest.mark.usefixtures("entity_registry_enabled_by_default")  # write_queue_depth
async def test_unwritable_spool_keeps_points_in_memory_and_says_so(
    hass: HomeAssistant, own_influxd: InfluxServer
) -> None:
    entry = entry_for(own_influxd, "home", ingest_options("legacy"))
    storage = Path(hass.config.path("ha_ingestor", entry.entry_id))

    def block_the_spool() -> None:
        # A regular file where the spool directory should be: root or not, nothing goes in.
        storage.mkdir(parents=True)
        (storage / "spool-legacy-home").write_text("in the way")

    await hass.async_add_executor_job(block_the_spool)
    await setup_entry(hass, entry)
    ingestion = entry.runtime_data.ingestion
    (writer,) = ingestion.writers.values()
    assert "spool-legacy-home" in (writer.stats.spool_error or "")
    assert "spool-legacy-home" in (ingestion.stats.last_error or "")

    await hass.async_add_executor_job(own_influxd.stop)
    await fire(hass, "sensor.held", range(120))
    await eventually(hass, lambda: state_of(hass, entry, "influxdb_connected") == STATE_OFF)
    await eventually(hass, lambda: state_of(hass, entry, "write_queue_depth") == "120")
    assert state_of(hass, entry, "spooled_points") == "0"
    assert "cannot_connect" in (ingestion.stats.last_error or "")
    assert writer.stats.spool_error is not None

    await hass.async_add_executor_job(own_influxd.start)
    await eventually(hass, lambda: count(own_influxd, "home", "W") == 120, timeout=30)
    await eventually(hass, lambda: state_of(hass, entry, "write_queue_depth") == "0")
    await eventually(hass, lambda: state_of(hass, entry, "influxdb_connected") == STATE_ON)
    assert values(own_influxd, "home", "W") == [float(n) for n in range(120)]
    assert ingestion.stats.points_dropped == 0
    assert await hass.config_entries.async_unload(entry.entry_id)


# Home Assistant stops abruptly.


async def test_spool_left_by_an_abrupt_stop_is_replayed_exactly_once(
    hass: HomeAssistant, own_influxd: InfluxServer
) -> None:
    entry = await setup_entry(hass, entry_for(own_influxd, "home", ingest_options("legacy")))
    ingestion = entry.runtime_data.ingestion
    await hass.async_add_executor_job(own_influxd.stop)
    await fire(hass, "sensor.crash", range(250))
    await eventually(
        hass,
        lambda: ingestion.stats.spooled_points == 250 and ingestion.stats.queue_depth == 0,
        timeout=30,
    )

    # The crash: the writer tasks die where they stand, nothing is flushed or spooled on top.
    writers = [t for t in asyncio.all_tasks() if t.get_name().startswith("ha_ingestor writer")]
    assert writers
    for task in writers:
        task.cancel()
    await asyncio.gather(*writers, return_exceptions=True)
    assert await hass.config_entries.async_unload(entry.entry_id)
    segments = spool_files(hass, entry)
    assert sum(int(p.name.split("-")[1].split(".")[0]) for p in segments) == 250
    # A segment the crash interrupted mid-write is never replayed.
    torn = segments[0].with_name("000000999999-1.lp.tmp")
    await hass.async_add_executor_job(
        torn.write_bytes, b"W,domain=sensor,entity_id=torn value=1 1700000000000000000"
    )

    await hass.async_add_executor_job(own_influxd.start)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await eventually(hass, lambda: count(own_influxd, "home", "W") == 250, timeout=30)
    await eventually(hass, lambda: not spool_files(hass, entry))
    assert await hass.config_entries.async_unload(entry.entry_id)

    # A second start finds nothing left to replay.
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert values(own_influxd, "home", "W") == [float(n) for n in range(250)]
    assert entry.state is ConfigEntryState.NOT_LOADED


# Server killed during a migration's backfill.


@pytest.fixture
def fast_backfill(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backfill waits out an outage with the same compressed policy as the writers."""
    monkeypatch.setattr(migration, "Backfill", functools.partial(migration.Backfill, retry=FAST))


async def test_backfill_survives_influxd_killed_three_times_and_copies_exactly(
    hass: HomeAssistant, own_influxd: InfluxServer, fast_backfill: None
) -> None:
    """SIGKILL at about 15%, 40% and 65% of the backfill: it waits each outage
    out, the entities say so meanwhile, and the optimized layout ends exactly right."""
    history = legacy_history(60_000, days=21, seed=5)
    await hass.async_add_executor_job(load, own_influxd, "home", history.lines)
    entry = await setup_entry(hass, entry_for(own_influxd, "home"))
    migration = entry.runtime_data.migration
    total = len(history.lines)

    await hass.services.async_call(
        DOMAIN,
        "start_migration",
        {"cleanup_delay_hours": 0, "batch_size": 500, "concurrent_batches": 1},
        blocking=True,
    )
    seen_during_outages: list[tuple[str, str, str, str]] = []
    live = 0
    # Early enough that a busy machine cannot let the backfill finish before the last kill.
    for share in (0.15, 0.4, 0.65):
        await eventually(
            hass,
            lambda share=share: migration.state.records_read > share * total,  # type: ignore[misc]
            timeout=120,
            interval=0.01,
        )
        read_at_kill = migration.state.records_read
        await hass.async_add_executor_job(own_influxd.kill)
        # Live state changes keep coming during the outage (dual-write: both layouts).
        await fire(hass, f"sensor.live_{live}", range(50))
        live += 1
        await eventually(hass, lambda: state_of(hass, entry, "influxdb_connected") == STATE_OFF)
        await asyncio.sleep(1.5)  # long enough for the backfill to fail, back off and wait
        seen_during_outages.append(
            (
                state_of(hass, entry, "influxdb_connected"),
                state_of(hass, entry, "migration_phase"),
                state_of(hass, entry, "migration_running"),
                str(migration.state.records_read < total),
            )
        )
        assert read_at_kill < total, "the backfill was still running when killed"
        await hass.async_add_executor_job(own_influxd.start)

    assert (
        await eventually(
            hass,
            lambda: (
                (phase := state_of(hass, entry, "migration_phase")) in ("complete", "failed")
                and phase
            ),
            timeout=180,
            interval=0.2,
        )
        == "complete"
    )
    assert seen_during_outages == [(STATE_OFF, "backfill", STATE_ON, "True")] * 3
    assert migration.state.validation is not None
    assert migration.state.validation.integrity_score == 1.0
    for number in range(live):
        await eventually(
            hass,
            lambda number=number: (
                len(  # type: ignore[misc]
                    values(own_influxd, "home", "sensor", f"entity_id = 'sensor.live_{number}'")
                )
                == 50
            ),
        )
    # The live writers replayed what they held and say so.
    await eventually(hass, lambda: state_of(hass, entry, "influxdb_connected") == STATE_ON)
    assert await hass.config_entries.async_unload(entry.entry_id)

    async with ClientSession() as session:
        client = admin_client(session, own_influxd, "home")
        legacy = await snapshot(client, "home", optimized=False)
        optimized = await snapshot(client, "home", optimized=True)
    # Legacy history untouched, live points in it once each.
    history_keys = {key for key in legacy if not dict(key[1])["entity_id"].startswith("live_")}
    assert len(history_keys) == total
    for number in range(live):
        where = f"entity_id = 'live_{number}'"
        assert values(own_influxd, "home", "W", where) == [float(n) for n in range(50)]
        optimized_where = f"entity_id = 'sensor.live_{number}'"
        assert values(own_influxd, "home", "sensor", optimized_where) == [
            float(n) for n in range(50)
        ]
    # Every legacy point, history and live alike, has exactly its optimized twin.
    assert_same(optimized, transformed(legacy))
    assert migration.state.records_read == total
    assert migration.state.records_failed == 0


async def test_connection_sensor_is_off_while_only_the_backfill_finds_the_server_down(
    hass: HomeAssistant, own_influxd: InfluxServer, fast_backfill: None
) -> None:
    history = legacy_history(30_000, days=14, seed=6)
    await hass.async_add_executor_job(load, own_influxd, "home", history.lines)
    entry = await setup_entry(hass, entry_for(own_influxd, "home"))
    migration = entry.runtime_data.migration
    await hass.services.async_call(
        DOMAIN,
        "start_migration",
        {"cleanup_delay_hours": 0, "batch_size": 500, "concurrent_batches": 1},
        blocking=True,
    )
    await eventually(hass, lambda: migration.state.records_read > 0, timeout=60, interval=0.01)
    await hass.async_add_executor_job(own_influxd.kill)
    try:
        # No state change happens meanwhile: only the backfill talks to InfluxDB.
        await asyncio.sleep(2)
        read = migration.state.records_read
        await asyncio.sleep(1)
        assert migration.state.records_read == read < len(history.lines), "it is waiting"
        assert state_of(hass, entry, "migration_phase") == "backfill"
        assert state_of(hass, entry, "influxdb_connected") == STATE_OFF
        await hass.async_add_executor_job(own_influxd.start)
        # Back as soon as the backfill reaches the server again, still without a state change.
        await eventually(
            hass,
            lambda: state_of(hass, entry, "influxdb_connected") == STATE_ON,
            timeout=30,
            interval=0.05,
        )
        await eventually(hass, lambda: migration.state.records_read > read, timeout=30)
    finally:
        if own_influxd.process is None or own_influxd.process.poll() is not None:
            await hass.async_add_executor_job(own_influxd.start)
        assert await hass.config_entries.async_unload(entry.entry_id)
