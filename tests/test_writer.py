"""The resilient write pipeline, against a real influxd: nothing lost, nothing doubled."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import inspect
import itertools
import logging
import os
from pathlib import Path
import threading
import time
from typing import Any, cast

import aiohttp
from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.ha_ingestor.engine.influx import (
    ApiVersion,
    InfluxClient,
    ServerSettings,
    create_client,
)
from custom_components.ha_ingestor.engine.line_protocol import Point, encode, encode_batch
from custom_components.ha_ingestor.engine.retry import Backoff, RetryPolicy
from custom_components.ha_ingestor.engine.spool import DeadLetterFile, Spool
from custom_components.ha_ingestor.engine.writer import (
    PointWriter,
    ServerProblem,
    WriterStats,
    split_lines,
)

from .influx_server import ADMIN_PASSWORD, ADMIN_USER, InfluxServer, free_port
from .manual_clock import ManualClock

T0 = 1_700_000_000_000_000_000
_offsets = itertools.count()

# Retries and probes every few tens of milliseconds, so outages play out quickly.
FAST = RetryPolicy(backoff=Backoff(base=0.01, maximum=0.05), failure_threshold=3, cool_down=0.1)
# Once open, the circuit stays open for the whole test.
STAYS_OPEN = RetryPolicy(
    backoff=Backoff(base=0.01, maximum=0.05), failure_threshold=1, cool_down=60
)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def make_client(
    session: aiohttp.ClientSession,
    url: str,
    database: str,
    password: str = ADMIN_PASSWORD,
) -> InfluxClient:
    return create_client(
        session,
        ServerSettings(
            api_version=ApiVersion.V1,
            url=url,
            database=database,
            username=ADMIN_USER,
            password=password,
            timeout=5.0,
        ),
    )


@pytest.fixture
def client(session: aiohttp.ClientSession, influxd: InfluxServer, database: str) -> InfluxClient:
    return make_client(session, influxd.url, database)


@pytest.fixture
def dead_client(session: aiohttp.ClientSession, database: str) -> InfluxClient:
    """A client for a port nobody listens on: every write is CannotConnect."""
    return make_client(session, f"http://127.0.0.1:{free_port()}", database)


def make_writer(
    write: Callable[[bytes], Awaitable[None]], directory: Path, database: str, **options: Any
) -> PointWriter:
    defaults: dict[str, Any] = {"flush_interval": 0.05, "retry": FAST, "stats_interval": 0.05}
    return PointWriter(
        write,
        Spool(directory / "spool"),
        DeadLetterFile(directory / "dead_letters.jsonl"),
        database=database,
        **(defaults | options),
    )


def make_points(count: int, measurement: str = "m") -> list[Point]:
    """Points with distinct timestamps, so each one is its own row in InfluxDB."""
    base = T0 + next(_offsets) * 10**12
    return [
        Point(measurement, {"entity_id": "sensor.x"}, {"value": float(i)}, base + i * 1000)
        for i in range(count)
    ]


def count_rows(influxd: InfluxServer, database: str, measurement: str = "m") -> int:
    series = influxd.series(f'SELECT COUNT("value") FROM "{measurement}"', database)
    return int(series[0]["values"][0][1]) if series else 0  # type: ignore[index]


async def wait_until(predicate: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


class Switchable:
    """Writes through one real client or another, to take the server away and bring it back."""

    def __init__(self, client: InfluxClient) -> None:
        self.client = client
        self.calls = 0

    async def __call__(self, body: bytes) -> None:
        self.calls += 1
        await self.client.write(body)


async def test_full_batches_go_out_at_once(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    write = Switchable(client)
    writer = make_writer(write, tmp_path, database, batch_size=1000, flush_interval=60)
    writer.start()
    for point in make_points(3000):
        writer.enqueue(point)
    await wait_until(lambda: writer.stats.points_written == 3000)
    await writer.stop()
    assert write.calls == 3
    assert count_rows(influxd, database) == 3000


async def test_a_partial_batch_goes_out_after_the_flush_interval(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    clock = ManualClock()
    write = Switchable(client)
    writer = make_writer(write, tmp_path, database, flush_interval=60, timer=clock.timer)
    writer.start()
    for point in make_points(10):
        writer.enqueue(point)
    await wait_until(lambda: clock.sleeping > 0)  # the dispatcher waits for the interval
    await clock.advance(59.9)
    await asyncio.sleep(0.1)  # what would go out early has its chance to
    assert write.calls == 0
    assert writer.stats.queue_depth == 10
    await clock.advance(0.1)
    await wait_until(lambda: writer.stats.points_written == 10)
    assert write.calls == 1
    assert count_rows(influxd, database) == 10
    await writer.stop()


async def test_stop_with_flush_writes_everything(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    writer = make_writer(client.write, tmp_path, database, batch_size=1000, flush_interval=60)
    writer.start()
    for point in make_points(2500):
        writer.enqueue(point)
    await writer.stop(flush=True)
    assert count_rows(influxd, database) == 2500
    assert writer.stats.queue_depth == 0
    assert writer.stats.spooled_points == 0


async def test_stop_without_flush_spools_everything(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    writer = make_writer(client.write, tmp_path, database, flush_interval=60)
    writer.start()
    for point in make_points(1500):
        writer.enqueue(point)
    await writer.stop(flush=False)
    assert writer.stats.spooled_points == 1500
    assert count_rows(influxd, database) == 0


async def test_every_point_lands_exactly_once_across_a_server_outage(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    seen: list[WriterStats] = []
    writer = make_writer(
        client.write, tmp_path, database, batch_size=250, max_queue=1000, on_change=seen.append
    )
    points = make_points(5000)

    async def feed(chunk: list[Point]) -> None:
        for start in range(0, len(chunk), 100):
            for point in chunk[start : start + 100]:
                writer.enqueue(point)
            await asyncio.sleep(0.01)

    writer.start()
    try:
        await feed(points[:2000])
        await wait_until(lambda: writer.stats.points_written >= 1000)
        # The server goes away part-way, while batches are being written and points keep coming.
        await asyncio.gather(asyncio.to_thread(influxd.stop), feed(points[2000:3500]))
        await feed(points[3500:4000])
        await wait_until(lambda: writer.stats.spooled_points > 0)
        assert not writer.stats.connected
    finally:
        await asyncio.gather(asyncio.to_thread(influxd.start), feed(points[4000:4500]))
    await feed(points[4500:])
    await wait_until(
        lambda: (
            writer.stats.spooled_points == 0
            and writer.stats.queue_depth == 0
            and writer.stats.connected
        ),
        within=90,
    )
    await writer.stop()

    assert count_rows(influxd, database) == 5000
    values = cast(list[list[Any]], influxd.series('SELECT "value" FROM "m"', database)[0]["values"])
    assert sorted(row[1] for row in values) == [float(i) for i in range(5000)]
    assert writer.stats.points_dropped == 0
    assert any(not stats.connected and stats.spooled_points for stats in seen)
    assert os.listdir(tmp_path / "spool") == []


async def test_a_new_writer_replays_the_spool_left_on_disk(
    client: InfluxClient,
    dead_client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    tmp_path: Path,
) -> None:
    first = make_writer(dead_client.write, tmp_path, database)
    first.start()
    for point in make_points(1500):
        first.enqueue(point)
    await first.stop()
    assert first.stats.spooled_points == 1500
    assert not first.stats.connected

    second = make_writer(client.write, tmp_path, database)
    second.start()
    await wait_until(lambda: second.stats.points_written == 1500)
    await second.stop()
    assert count_rows(influxd, database) == 1500
    assert second.stats.spooled_points == 0
    assert os.listdir(tmp_path / "spool") == []


async def test_refused_points_go_to_dead_letters_and_the_rest_land(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    influxd.write("m value=1.0 1", database)
    points = [
        Point(p.measurement, p.tags, {"value": "oops"}, p.time_ns) if i % 100 == 7 else p
        for i, p in enumerate(make_points(1000))
    ]
    writer = make_writer(client.write, tmp_path, database, batch_size=1000)
    writer.start()
    for point in points:
        writer.enqueue(point)
    await writer.stop()

    assert count_rows(influxd, database) == 1 + 990
    assert writer.stats.points_written == 990
    assert writer.stats.dead_letter_count == 10
    letters = await DeadLetterFile(tmp_path / "dead_letters.jsonl").read()
    assert sorted(letter.line for letter in letters) == sorted(
        str(encode(p)) for p in points if p.fields["value"] == "oops"
    )
    assert all("field type conflict" in letter.reason for letter in letters)
    assert {letter.database for letter in letters} == {database}


async def test_a_write_the_server_refuses_whole_is_dead_lettered_line_by_line(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    """The server's dropped count saves the bisection, not the one record per point."""
    points = [Point(p.measurement, p.tags, {"value": "oops"}, p.time_ns) for p in make_points(8)]
    # A float "value" in the same shard, so each of the strings conflicts with it.
    influxd.write(f"{points[0].measurement} value=1.0 {points[0].time_ns - 1}", database)
    writes = 0

    async def counting_write(body: bytes) -> None:
        nonlocal writes
        writes += 1
        await client.write(body)

    writer = make_writer(counting_write, tmp_path, database, batch_size=100)
    writer.start()
    for point in points:
        writer.enqueue(point)
    await writer.stop()

    assert writes == 1  # "dropped=8" of 8: no halves sent again
    assert writer.stats.points_written == 0
    assert writer.stats.dead_letter_count == 8
    letters = await DeadLetterFile(tmp_path / "dead_letters.jsonl").read()
    assert sorted(letter.line for letter in letters) == sorted(str(encode(p)) for p in points)
    assert count_rows(influxd, database) == 1


async def test_a_refused_point_in_a_spooled_segment_is_isolated_exactly(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    """String fields with line breaks don't confuse the split of a segment read from disk."""
    influxd.write("m value=1.0 1", database)
    good = [
        Point(p.measurement, p.tags, {**p.fields, "note": f'line\n"{i}"\\'}, p.time_ns)
        for i, p in enumerate(make_points(9))
    ]
    bad = Point("m", {"entity_id": "sensor.x"}, {"value": "a\nb"}, T0 - 1)
    spool = Spool(tmp_path / "spool")
    await spool.append(encode_batch([*good[:4], bad, *good[4:]]), 10)

    writer = make_writer(client.write, tmp_path, database)
    writer.start()
    await wait_until(lambda: writer.stats.dead_letter_count == 1)
    await writer.stop()
    assert writer.stats.points_written == 9
    assert count_rows(influxd, database) == 1 + 9
    (letter,) = await DeadLetterFile(tmp_path / "dead_letters.jsonl").read()
    assert letter.line == encode(bad)


async def test_an_unwritable_spool_keeps_points_in_memory_and_says_so(
    dead_client: InfluxClient, database: str, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("a file, not a directory")
    writer = PointWriter(
        dead_client.write,
        Spool(tmp_path / "file" / "spool"),
        DeadLetterFile(tmp_path / "dead_letters.jsonl"),
        database=database,
        flush_interval=0.05,
        retry=STAYS_OPEN,
    )
    writer.start()
    for point in make_points(500):
        writer.enqueue(point)
    await wait_until(lambda: writer.stats.spool_error is not None)
    stats = writer.stats
    assert stats.queue_depth == 500
    assert stats.spooled_points == 0
    assert stats.last_error is not None
    assert "spool" in stats.last_error
    await writer.stop()


async def test_points_kept_in_memory_are_written_when_the_server_is_back(
    client: InfluxClient,
    dead_client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    tmp_path: Path,
) -> None:
    (tmp_path / "file").write_text("a file, not a directory")
    write = Switchable(dead_client)
    writer = PointWriter(
        write,
        Spool(tmp_path / "file" / "spool"),
        DeadLetterFile(tmp_path / "dead_letters.jsonl"),
        database=database,
        flush_interval=0.05,
        retry=FAST,
    )
    writer.start()
    for point in make_points(500):
        writer.enqueue(point)
    await wait_until(lambda: writer.stats.spool_error is not None)
    write.client = client
    await wait_until(lambda: writer.stats.points_written == 500)
    await writer.stop()
    assert count_rows(influxd, database) == 500
    assert writer.stats.points_dropped == 0


async def test_a_full_spool_keeps_points_in_memory_and_reports_it(
    dead_client: InfluxClient, database: str, tmp_path: Path
) -> None:
    writer = PointWriter(
        dead_client.write,
        Spool(tmp_path / "spool", max_bytes=10_000),
        DeadLetterFile(tmp_path / "dead_letters.jsonl"),
        database=database,
        batch_size=100,
        flush_interval=0.05,
        retry=STAYS_OPEN,
    )
    writer.start()
    for point in make_points(1000):
        writer.enqueue(point)
    await wait_until(lambda: writer.stats.spool_error is not None)
    stats = writer.stats
    assert "full" in (stats.spool_error or "")
    assert 0 < stats.spooled_points < 1000
    assert stats.spooled_points + stats.queue_depth == 1000
    await writer.stop()


async def test_a_point_that_cannot_be_encoded_costs_only_itself(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    writer = make_writer(client.write, tmp_path, database)
    writer.start()
    points = make_points(10)
    points[3] = Point("m", {}, {"value": None}, points[3].time_ns)  # type: ignore[dict-item]
    for point in points:
        writer.enqueue(point)
    await writer.stop()
    assert writer.stats.points_dropped == 1
    assert count_rows(influxd, database) == 9


async def test_items_are_converted_and_encoded_in_a_worker_thread(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    points = make_points(2500)
    threads: set[int] = set()

    def to_point(index: int) -> Point:
        threads.add(threading.get_ident())
        return points[index]

    writer = make_writer(client.write, tmp_path, database, to_point=to_point)
    writer.start()
    for index in range(len(points)):
        writer.enqueue(index)
    assert not threads, "enqueue must not convert"
    await writer.stop()
    assert threads
    assert threading.get_ident() not in threads
    assert count_rows(influxd, database) == 2500


async def test_items_are_converted_ahead_in_chunks_and_sent_as_one_batch(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    """The items (states) are freed long before the batch is due; the batch is still one write."""
    points = make_points(250)
    converted: list[int] = []

    def to_point(index: int) -> Point:
        converted.append(index)
        return points[index]

    write = Switchable(client)
    writer = make_writer(
        write,
        tmp_path,
        database,
        batch_size=1000,
        flush_interval=60,
        encode_chunk=100,
        to_point=to_point,
    )
    writer.start()
    for index in range(len(points)):
        writer.enqueue(index)
        await asyncio.sleep(0)
    await wait_until(lambda: len(converted) >= 200, within=5)
    assert write.calls == 0, "nothing is sent before the batch is due"
    assert writer.stats.queue_depth == 250
    await writer.stop()
    assert sorted(converted) == list(range(250))
    assert write.calls == 1
    assert count_rows(influxd, database) == 250


async def test_an_item_that_cannot_be_converted_costs_only_itself(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    points = make_points(10)

    def to_point(index: int) -> Point:
        if index == 3:
            raise KeyError("no such thing")
        return points[index]

    writer = make_writer(client.write, tmp_path, database, to_point=to_point)
    writer.start()
    for index in range(len(points)):
        writer.enqueue(index)
    await writer.stop()
    assert writer.stats.points_dropped == 1
    assert "no such thing" in (writer.stats.last_error or "")
    assert count_rows(influxd, database) == 9


async def test_points_are_encoded_on_the_loop_once_the_executor_is_shut_down(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    """Home Assistant shuts its executor down late in stopping: slow then beats lost."""
    writer = make_writer(client.write, tmp_path, database)
    writer.start()
    writer.enqueue(make_points(1)[0])
    await wait_until(lambda: writer.stats.points_written == 1)
    await asyncio.get_running_loop().shutdown_default_executor()
    for point in make_points(1500):
        writer.enqueue(point)
    await writer.stop()
    assert count_rows(influxd, database) == 1501


async def test_points_nobody_takes_are_counted_as_dropped(
    dead_client: InfluxClient, database: str, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("a file, not a directory")
    writer = PointWriter(
        dead_client.write,
        Spool(tmp_path / "file" / "spool"),
        DeadLetterFile(tmp_path / "dead_letters.jsonl"),
        database=database,
        batch_size=100,
        max_queue=100,
        max_memory_points=300,
        flush_interval=0.05,
        retry=STAYS_OPEN,
    )
    writer.start()
    for point in make_points(1000):
        writer.enqueue(point)
    assert writer.stats.points_dropped == 700
    assert writer.stats.queue_depth == 300
    await writer.stop()
    assert writer.stats.points_dropped == 1000
    assert writer.stats.queue_depth == 0


async def test_rejected_credentials_spool_points_and_report_invalid_auth(
    session: aiohttp.ClientSession, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    bad_client = make_client(session, influxd.url, database, password="wrong")
    writer = make_writer(bad_client.write, tmp_path, database)
    writer.start()
    for point in make_points(100):
        writer.enqueue(point)
    await wait_until(lambda: writer.stats.spooled_points == 100)
    assert writer.stats.problem is ServerProblem.INVALID_AUTH
    assert not writer.stats.connected
    await writer.stop()


async def test_a_missing_database_spools_points_and_is_reported(
    session: aiohttp.ClientSession, influxd: InfluxServer, tmp_path: Path
) -> None:
    missing = make_client(session, influxd.url, "no_such_database")
    writer = make_writer(missing.write, tmp_path, "no_such_database")
    writer.start()
    for point in make_points(100):
        writer.enqueue(point)
    await wait_until(lambda: writer.stats.spooled_points == 100)
    assert writer.stats.problem is ServerProblem.DATABASE_NOT_FOUND
    await writer.stop()


async def test_enqueue_never_awaits_and_loses_nothing(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    """Its cost is in benchmarks/ingest.py's CPU per state change; here: it never yields."""
    assert not inspect.iscoroutinefunction(PointWriter.enqueue)
    writer = make_writer(client.write, tmp_path, database, max_queue=100_000)
    writer.start()
    for point in make_points(50_000):
        writer.enqueue(point)
    # Nothing could be sent yet: the loop never ran while the points were handed over.
    assert writer.stats.points_written == 0
    assert writer.stats.queue_depth == 50_000
    await writer.stop()
    assert count_rows(influxd, database) == 50_000


async def test_no_more_than_concurrent_writes_are_in_flight(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    in_flight = 0
    most = 0

    async def slow_write(body: bytes) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.02)
        await client.write(body)
        in_flight -= 1

    writer = make_writer(slow_write, tmp_path, database, batch_size=100, concurrent_writes=2)
    writer.start()
    for point in make_points(1000):
        writer.enqueue(point)
    await writer.stop()
    assert most == 2
    assert count_rows(influxd, database) == 1000


async def test_a_slow_server_makes_the_writer_spool_beyond_max_queue(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    seen: list[WriterStats] = []

    async def slow_write(body: bytes) -> None:
        await asyncio.sleep(0.05)
        await client.write(body)

    writer = make_writer(
        slow_write,
        tmp_path,
        database,
        batch_size=200,
        max_queue=400,
        concurrent_writes=1,
        on_change=seen.append,
    )
    writer.start()
    for point in make_points(3000):
        writer.enqueue(point)
        if writer.stats.queue_depth % 200 == 0:
            await asyncio.sleep(0)
    await wait_until(lambda: writer.stats.spooled_points == 0 and writer.stats.queue_depth == 0)
    await writer.stop()
    assert max(stats.spooled_points for stats in seen) > 0
    assert max(stats.queue_depth for stats in seen) <= 3000
    assert count_rows(influxd, database) == 3000


async def test_stats_changes_are_coalesced(
    client: InfluxClient, database: str, tmp_path: Path
) -> None:
    """Progress is told at most once per stats interval, with the stats as they are then."""
    clock = ManualClock()
    seen: list[WriterStats] = []
    writer = make_writer(
        client.write,
        tmp_path,
        database,
        on_change=seen.append,
        stats_interval=5,
        timer=clock.timer,
    )
    writer.start()
    for point in make_points(5000):
        writer.enqueue(point)
    await wait_until(lambda: writer.stats.points_written == 5000)
    assert seen == []
    await clock.advance(5)
    await wait_until(lambda: len(seen) == 1)
    assert seen[0].points_written == 5000
    assert seen[0].queue_depth == 0
    await writer.stop()
    assert len(seen) == 1, "the final stats are the ones already told"


async def test_an_outage_is_logged_once_and_the_recovery_once_at_debug_level(
    client: InfluxClient,
    dead_client: InfluxClient,
    database: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The integration logs outages at info, once per config entry; a writer only debugs."""
    caplog.set_level(logging.DEBUG, logger="custom_components.ha_ingestor.engine.writer")
    write = Switchable(dead_client)
    writer = make_writer(write, tmp_path, database, batch_size=100)
    writer.start()
    for point in make_points(1000):
        writer.enqueue(point)
    await wait_until(lambda: write.calls > 8)
    write.client = client
    await wait_until(lambda: writer.stats.points_written == 1000)
    await writer.stop()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len([m for level, m in messages if "unavailable" in m and level == logging.DEBUG]) == 1
    assert (
        len([m for level, m in messages if "available again" in m and level == logging.DEBUG]) == 1
    )
    assert not [m for level, m in messages if level > logging.DEBUG]


_name = st.text(st.sampled_from('ab "\\,= =\n\t#é'), min_size=1, max_size=8)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    points=st.lists(
        st.builds(
            Point,
            measurement=_name,
            tags=st.dictionaries(_name, _name, max_size=2),
            fields=st.dictionaries(
                _name,
                st.one_of(
                    st.text(st.characters(codec="utf-8"), max_size=20),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.integers(-(2**63), 2**63 - 1),
                    st.booleans(),
                ),
                min_size=1,
                max_size=3,
            ),
            time_ns=st.integers(-(2**62), 2**62),
        ),
        max_size=8,
    )
)
def test_split_lines_undoes_encode_batch(points: list[Point]) -> None:
    expected = [line.encode() for p in points if (line := encode(p)) is not None]
    assert split_lines(encode_batch(points)) == expected


# Damaged spool segments, retirement and the "flushed" barrier.


async def test_a_segment_whose_body_does_not_match_its_name_is_set_aside_not_replayed(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    """Cut short on disk (or copied badly): a torn last line would land as a point in 1970."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    good = [encode(p) for p in make_points(3)]
    torn = [encode(p) for p in make_points(3)]
    bad_crc = [encode(p) for p in make_points(2)]
    # A segment of the checksum-less format: three points by its name, the third one torn.
    body = "\n".join([*torn[:2], torn[2][:-12]]).encode()  # type: ignore[list-item]
    (spool_dir / "000000000000-3.lp").write_bytes(body)
    # A checksummed segment whose body was changed afterwards.
    original = "\n".join(bad_crc).encode()  # type: ignore[arg-type]
    spool = Spool(spool_dir)
    written = await spool.append(original, 2)
    (spool_dir / written.name).write_bytes(original.replace(b"value=", b"value=9"))
    # And one that is fine.
    await spool.append("\n".join(good).encode(), 3)  # type: ignore[arg-type]

    writer = make_writer(client.write, tmp_path, database)
    writer.start()
    await wait_until(lambda: writer.stats.points_written == 3 and writer.stats.spooled_points == 0)
    await writer.stop()

    assert count_rows(influxd, database) == 3
    assert influxd.series('SELECT * FROM "m" WHERE time < 1000000000000000000', database) == []
    assert writer.stats.damaged_points == 5
    assert "damaged" in (writer.stats.last_error or "")
    assert sorted(os.listdir(spool_dir / "damaged")) == sorted(["000000000000-3.lp", written.name])
    assert [name for name in os.listdir(spool_dir) if name.endswith(".lp")] == []


async def test_a_retired_writer_takes_no_new_points_and_stops_once_its_spool_is_delivered(
    client: InfluxClient,
    dead_client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    target = Switchable(dead_client)
    writer = make_writer(target, tmp_path, database, spool_interval=0.05, timer=clock.timer)
    writer.start()
    for point in make_points(700):
        writer.enqueue(point)
    await clock.run_until(lambda: writer.stats.spooled_points == 700, step=0.05)
    writer.retire()
    writer.enqueue(make_points(1)[0])
    assert writer.stats.points_dropped == 1
    calls = target.calls
    await clock.run_for(5, step=0.05)  # fifty cool-downs, each ending in a failed probe
    assert target.calls > calls
    assert not writer.finished, "a retired writer holding points keeps going"

    target.client = client
    await clock.run_until(lambda: writer.finished, step=0.05)
    assert count_rows(influxd, database) == 700
    assert writer.stats.spooled_points == 0
    assert [name for name in os.listdir(tmp_path / "spool") if name.endswith(".lp")] == []


async def test_flushed_waits_until_no_older_point_is_held_in_memory_or_spool(
    client: InfluxClient,
    dead_client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    target = Switchable(dead_client)
    writer = make_writer(target, tmp_path, database, spool_interval=0.05, timer=clock.timer)
    writer.start()
    old = make_points(300)
    for point in old:
        writer.enqueue(point)
    cutover = old[-1].time_ns + 1
    await clock.run_until(lambda: writer.stats.spooled_points == 300, step=0.05)
    assert writer.holds_before(cutover)
    assert not writer.holds_before(old[0].time_ns)
    waiting = asyncio.create_task(writer.flushed(cutover, poll=0.02))
    await clock.run_for(5, step=0.05)
    assert not waiting.done(), "spooled points are not in the database yet"

    target.client = client
    await clock.run_until(waiting.done, step=0.05)
    await waiting
    assert count_rows(influxd, database) == 300
    # Newer points may still be held; they do not hold the barrier up.
    assert not writer.holds_before(cutover)
    await writer.stop()


@pytest.mark.parametrize(
    "sizes",
    [{"batch_size": 0}, {"concurrent_writes": 0}, {"batch_size": 100, "max_queue": 10}],
)
def test_a_writer_refuses_sizes_it_cannot_work_with(sizes: dict[str, int], tmp_path: Path) -> None:
    async def write(_body: bytes) -> None:
        return None

    with pytest.raises(ValueError, match="need batch_size >= 1"):
        make_writer(write, tmp_path, "db", **sizes)


async def test_a_stats_listener_that_fails_does_not_stop_the_writing(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[WriterStats] = []

    def broken_listener(stats: WriterStats) -> None:
        calls.append(stats)
        raise RuntimeError("listener bug")

    writer = make_writer(client.write, tmp_path, database, on_change=broken_listener)
    writer.start()
    for point in make_points(500):
        writer.enqueue(point)
    await wait_until(lambda: writer.stats.points_written == 500)
    await writer.stop()
    assert count_rows(influxd, database) == 500
    assert calls, "the listener was called"
    assert "Error in the writer's stats listener" in caplog.text
    assert "listener bug" in caplog.text


async def test_an_unexpected_error_while_writing_keeps_the_points_for_a_later_delivery(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug in the write path (not an InfluxDB error) must neither lose points nor stop."""
    broken = True
    calls = 0

    async def write(body: bytes) -> None:
        nonlocal calls
        calls += 1
        if broken:
            raise RuntimeError("a bug in the write path")
        await client.write(body)

    writer = make_writer(write, tmp_path, database, batch_size=100, spool_interval=0.05)
    writer.start()
    for point in make_points(300):
        writer.enqueue(point)
    await wait_until(lambda: calls >= 3 and writer.stats.spooled_points == 300)
    assert "unexpected: RuntimeError('a bug in the write path')" in (writer.stats.last_error or "")
    assert "Unexpected error writing to InfluxDB" in caplog.text
    broken = False
    await wait_until(lambda: writer.stats.points_written == 300)
    await writer.stop()
    assert count_rows(influxd, database) == 300
    assert writer.stats.points_dropped == 0
    assert writer.stats.spooled_points == 0


async def test_a_writer_runs_once_whether_started_or_run(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    writer = make_writer(client.write, tmp_path, database)
    running = asyncio.create_task(writer.run())
    await asyncio.sleep(0)  # the task claims the writer
    with pytest.raises(RuntimeError, match="already running"):
        await writer.run()
    for point in make_points(20):
        writer.enqueue(point)
    await wait_until(lambda: writer.stats.points_written == 20)
    await writer.stop()
    await running
    assert count_rows(influxd, database) == 20


async def test_a_writer_stopped_before_it_started_keeps_what_it_was_given(
    dead_client: InfluxClient, database: str, tmp_path: Path
) -> None:
    """Stopping a writer that never ran still spools its points instead of losing them."""
    writer = make_writer(dead_client.write, tmp_path, database)
    for point in make_points(40):
        writer.enqueue(point)
    await writer.stop()
    assert writer.finished
    assert writer.stats.points_dropped == 0
    reopened = Spool(tmp_path / "spool")
    await reopened.open()
    assert reopened.points == 40


async def test_a_point_enqueued_after_the_stop_is_dropped_counted_and_logged_once(
    client: InfluxClient, database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = make_writer(client.write, tmp_path, database)
    writer.start()
    await writer.stop()
    for point in make_points(3):
        writer.enqueue(point)
    assert writer.stats.points_dropped == 3
    assert caplog.text.count("A point arrived after the writer stopped; it was dropped") == 1


async def test_points_still_queued_count_for_holds_before(
    dead_client: InfluxClient, database: str, tmp_path: Path
) -> None:
    writer = make_writer(dead_client.write, tmp_path, database)
    points = make_points(10)
    for point in points:
        writer.enqueue(point)  # not started: they wait in the queue
    assert writer.holds_before(points[0].time_ns + 1)
    assert not writer.holds_before(points[0].time_ns)
    await writer.stop()
