"""The write pipeline when the disk under its spool and dead-letter file fails.

A real disk that fills up: a small tmpfs mounted for the test (root only; skipped elsewhere).
Files that cannot be read or moved are made real too (a directory where a file should be).
The server is the real influxd.
"""

from collections.abc import Iterator
import contextlib
import logging
import os
from pathlib import Path
import shutil
import subprocess

import pytest

from custom_components.ha_ingestor.engine.influx import InfluxClient
from custom_components.ha_ingestor.engine.line_protocol import Point, encode
from custom_components.ha_ingestor.engine.spool import DAMAGED_DIR, DeadLetterFile, Spool
from custom_components.ha_ingestor.engine.writer import PointWriter

from . import test_writer
from .influx_server import InfluxServer
from .test_writer import FAST, count_rows, make_points, make_writer, wait_until

# The writer tests' fixtures: a session, a client of the real influxd and one of a dead port.
session = test_writer.session
client = test_writer.client
dead_client = test_writer.dead_client


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB file system of its own, so it can be filled without touching anything else."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill the file system to its last byte; the filler file, to delete to free it again."""
    filler = disk / "filler"
    with open(filler, "wb") as file:
        with contextlib.suppress(OSError):
            while True:
                file.write(b"\0" * 4096)
                file.flush()
    with contextlib.suppress(OSError), open(filler, "ab") as file:
        while True:
            file.write(b"\0")
            file.flush()
    return filler


async def test_a_full_disk_keeps_points_in_memory_until_space_is_freed_and_loses_none(
    client: InfluxClient,
    dead_client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    tmp_path: Path,
    small_disk: Path,
) -> None:
    target = test_writer.Switchable(dead_client)
    writer = PointWriter(
        target,
        Spool(small_disk / "spool"),
        DeadLetterFile(tmp_path / "dead_letters.jsonl"),
        database=database,
        flush_interval=0.05,
        retry=FAST,
        stats_interval=0.05,
        spool_interval=0.05,
    )
    (small_disk / "spool").mkdir()
    filler = fill(small_disk)
    writer.start()
    points = make_points(2000)
    for point in points:
        writer.enqueue(point)
    await wait_until(lambda: writer.stats.spool_error is not None)
    assert "No space left" in writer.stats.spool_error  # type: ignore[operator]
    assert writer.stats.spooled_points == 0
    assert writer.stats.queue_depth == 2000, "the points wait in memory"
    await wait_until(lambda: writer.stats.queue_depth == 2000 and not writer._queue)
    # Held in memory, they still hold up a migration's barrier at their time.
    assert writer.holds_before(points[-1].time_ns + 1)
    assert not writer.holds_before(points[0].time_ns)
    assert writer.stats.points_dropped == 0
    # A failed write leaves no half-written segment behind to be replayed later.
    assert os.listdir(small_disk / "spool") == []

    filler.unlink()
    await wait_until(lambda: writer.stats.spool_error is None and writer.stats.spooled_points > 0)
    target.client = client
    await wait_until(lambda: writer.stats.points_written == 2000)
    await writer.stop()
    assert count_rows(influxd, database) == 2000
    assert writer.stats.spooled_points == 0
    assert writer.stats.points_dropped == 0


async def test_a_refused_point_that_cannot_be_saved_on_a_full_disk_is_counted_and_reported(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    tmp_path: Path,
    small_disk: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await client.write(encode(Point("m", {"entity_id": "sensor.x"}, {"value": 1.0}, 1)).encode())
    writer = PointWriter(
        client.write,
        Spool(tmp_path / "spool"),
        DeadLetterFile(small_disk / "dead_letters.jsonl"),
        database=database,
        flush_interval=0.05,
        retry=FAST,
        stats_interval=0.05,
    )
    fill(small_disk)
    writer.start()
    good = make_points(20)
    conflicting = Point("m", {"entity_id": "sensor.x"}, {"value": "text"}, good[-1].time_ns + 1)
    for point in [*good[:10], conflicting, *good[10:]]:
        writer.enqueue(point)
    with caplog.at_level(logging.ERROR):
        await wait_until(lambda: writer.stats.points_written == 20)
        await wait_until(lambda: writer.stats.points_dropped == 1)
    await writer.stop()
    assert count_rows(influxd, database) == 21  # the 20 and the point written first
    assert writer.stats.dead_letter_count == 0
    assert "dead-letter file" in (writer.stats.last_error or "")
    assert any("could not be saved" in record.getMessage() for record in caplog.records)


async def test_a_segment_that_cannot_be_read_costs_only_its_own_points(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir)
    first, lost, last = make_points(3), make_points(4), make_points(5)
    for points in (first, lost, last):
        await spool.append("\n".join(map(encode, points)).encode(), len(points))  # type: ignore[arg-type]
    unreadable = sorted(name for name in os.listdir(spool_dir) if name.endswith(".lp"))[1]
    # Gone between the index and the replay (removed by hand, or a bad sector).
    (spool_dir / unreadable).unlink()

    writer = PointWriter(
        client.write,
        spool,  # opened: its index still lists the segment
        DeadLetterFile(tmp_path / "dead_letters.jsonl"),
        database=database,
        flush_interval=0.05,
        retry=FAST,
        stats_interval=0.05,
    )
    writer.start()
    await wait_until(lambda: writer.stats.points_written == 8 and writer.stats.spooled_points == 0)
    await writer.stop()
    assert count_rows(influxd, database) == 8
    assert writer.stats.points_dropped == 4
    assert unreadable in (writer.stats.last_error or "")


async def test_a_damaged_segment_that_cannot_be_moved_aside_is_still_never_replayed(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir)
    damaged_points, good = make_points(2), make_points(3)
    damaged = await spool.append("\n".join(map(encode, damaged_points)).encode(), 2)  # type: ignore[arg-type]
    await spool.append("\n".join(map(encode, good)).encode(), 3)  # type: ignore[arg-type]
    (spool_dir / damaged.name).write_bytes(b"m,entity_id=sensor.x value=9 1\nm value=")
    (spool_dir / DAMAGED_DIR).write_text("a file where the folder for damaged segments goes")

    writer = make_writer(client.write, tmp_path, database)
    writer.start()
    await wait_until(lambda: writer.stats.points_written == 3 and writer.stats.spooled_points == 0)
    await writer.stop()
    assert count_rows(influxd, database) == 3
    assert influxd.series('SELECT * FROM "m" WHERE time < 1000000000000000000', database) == []
    assert writer.stats.damaged_points == 2
    # Left where it was, for the user to look at; the next start sets it aside again.
    assert (spool_dir / damaged.name).exists()


async def test_discarding_a_writer_deletes_its_spool_and_counts_the_points(
    dead_client: InfluxClient, database: str, tmp_path: Path
) -> None:
    """Its database is gone (a blue-green target dropped): what it held has nowhere to go."""
    writer = make_writer(dead_client.write, tmp_path, database, spool_interval=0.05)
    writer.start()
    for point in make_points(600):
        writer.enqueue(point)
    await wait_until(lambda: writer.stats.spooled_points == 600)
    assert await writer.discard() == 600
    assert writer.finished
    assert [name for name in os.listdir(tmp_path / "spool") if name.endswith(".lp")] == []
    assert writer.stats.spooled_points == 0


async def test_a_retired_writer_can_be_taken_back_into_use(
    client: InfluxClient, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    """A rollback of a completion keeps the legacy writer that completion retired."""
    writer = make_writer(client.write, tmp_path, database)
    writer.start()
    writer.retire()
    assert writer.reactivate()
    for point in make_points(50):
        writer.enqueue(point)
    await wait_until(lambda: writer.stats.points_written == 50)
    assert writer.stats.points_dropped == 0
    await writer.stop()
    assert not writer.reactivate(), "a stopped writer stays stopped"
    assert count_rows(influxd, database) == 50


def put_directory_in_place_of(path: Path) -> None:
    """A file that cannot be deleted, even by root: a directory (with a file in it) instead."""
    path.unlink()
    path.mkdir()
    (path / "in the way").write_text("x")


async def test_discarding_a_spool_that_cannot_be_deleted_still_counts_its_points_and_says_so(
    dead_client: InfluxClient,
    database: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = make_writer(dead_client.write, tmp_path, database, spool_interval=0.05)
    writer.start()
    for point in make_points(600):
        writer.enqueue(point)
    await wait_until(lambda: writer.stats.spooled_points == 600)
    segments = sorted(name for name in os.listdir(tmp_path / "spool") if name.endswith(".lp"))
    put_directory_in_place_of(tmp_path / "spool" / segments[0])
    with caplog.at_level(logging.ERROR):
        assert await writer.discard() == 600
    assert writer.finished
    assert writer.stats.spooled_points == 0
    assert f"Cannot clear spool {tmp_path / 'spool'}" in caplog.text
    assert segments[0] in caplog.text
    left = [name for name in os.listdir(tmp_path / "spool") if name.endswith(".lp")]
    assert left == [segments[0]], "every other segment is deleted"


async def test_an_unreadable_dead_letter_file_is_reported_and_points_are_still_written(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "dead_letters.jsonl").mkdir()  # a directory where the file should be
    writer = make_writer(client.write, tmp_path, database)
    with caplog.at_level(logging.ERROR):
        writer.start()
        for point in make_points(300):
            writer.enqueue(point)
        await wait_until(lambda: writer.stats.points_written == 300)
    await writer.stop()
    assert count_rows(influxd, database) == 300
    assert f"dead-letter file {tmp_path / 'dead_letters.jsonl'}" in (writer.stats.last_error or "")
    assert "Cannot read dead-letter file" in caplog.text


@contextlib.contextmanager
def append_only(directory: Path) -> Iterator[None]:
    """Files in ``directory`` can be read and created but not deleted or renamed, even by
    root (the ext4 append-only flag); skipped where the file system has no such flag, or
    where there is no chattr (e2fsprogs: Debian always has it; scripts/stack-2026 installs it)."""
    if shutil.which("chattr") is None:
        pytest.skip("no chattr here to make a folder append-only (install e2fsprogs)")
    done = subprocess.run(
        ["chattr", "+a", str(directory)], capture_output=True, text=True, check=False
    )
    if done.returncode:
        pytest.skip(f"cannot make {directory} append-only here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-a", str(directory)], check=False)


async def test_a_delivered_segment_that_cannot_be_deleted_is_reported_and_lands_once(
    client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spool_dir = tmp_path / "spool"
    points = make_points(50)
    segment = await Spool(spool_dir).append("\n".join(map(encode, points)).encode(), 50)  # type: ignore[arg-type]
    with append_only(spool_dir):
        writer = make_writer(client.write, tmp_path, database)
        with caplog.at_level(logging.WARNING):
            writer.start()
            await wait_until(lambda: writer.stats.points_written == 50)
            await writer.stop()
        assert f"cannot delete spool segment {segment.name}" in (writer.stats.last_error or "")
        assert f"cannot delete spool segment {segment.name}" in caplog.text
        assert writer.stats.spooled_points == 0, "it is not replayed again in this run"
        assert (spool_dir / segment.name).exists()
    assert count_rows(influxd, database) == 50

    # The next start replays it: InfluxDB stores the same points once.
    again = make_writer(client.write, tmp_path, database)
    again.start()
    await wait_until(lambda: again.stats.points_written == 50)
    await again.stop()
    assert count_rows(influxd, database) == 50
    assert not (spool_dir / segment.name).exists()


async def test_an_empty_segment_is_deleted_without_writing_anything(
    client: InfluxClient, database: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    empty = await Spool(spool_dir).append(b"", 0)
    writes = 0

    async def write(body: bytes) -> None:
        nonlocal writes
        writes += 1
        await client.write(body)

    writer = make_writer(write, tmp_path, database)
    writer.start()
    await wait_until(lambda: not (spool_dir / empty.name).exists())
    await writer.stop()
    assert writes == 0
    assert writer.stats.points_written == 0
    assert writer.stats.connected


async def test_a_partly_delivered_segment_that_cannot_be_shrunk_stays_whole_and_is_reported(
    client: InfluxClient,
    dead_client: InfluxClient,
    influxd: InfluxServer,
    database: str,
    tmp_path: Path,
) -> None:
    """The server refuses one line and then goes away; the shortened copy cannot be renamed
    into place (append-only folder), so the whole segment stays spooled: nothing is lost."""
    spool_dir = tmp_path / "spool"
    t = make_points(1)[0].time_ns
    body = f'm value=1.0 {t}\nm value="text" {t + 1}\nm value=3.0 {t + 2}'.encode()
    segment = await Spool(spool_dir).append(body, 3)
    healed = False
    calls = 0

    async def write(data: bytes) -> None:
        nonlocal calls
        calls += 1
        # Gone after its first answer (the refusal), until healed.
        await (client if calls == 1 or healed else dead_client).write(data)

    with append_only(spool_dir):
        writer = make_writer(write, tmp_path, database)
        writer.start()
        await wait_until(lambda: writer.stats.spool_error is not None)
        assert "cannot write to spool" in (writer.stats.spool_error or "")
        assert (spool_dir / segment.name).read_bytes() == body
        assert writer.stats.spooled_points == 3
    healed = True
    await wait_until(lambda: writer.stats.spooled_points == 0)
    await writer.stop()
    assert count_rows(influxd, database) == 2
    assert [name for name in os.listdir(spool_dir) if name.endswith(".lp")] == []
    # The temporary copy the folder would not let go of is deleted at the next start.
    await Spool(spool_dir).open()
    assert os.listdir(spool_dir) == []
