"""The disk spool and the dead-letter file."""

from collections.abc import AsyncIterator
import contextlib
from datetime import UTC, datetime
import os
from pathlib import Path
import stat
from typing import Any
import zlib

import aiofiles
import pytest

from custom_components.ha_ingestor.engine import spool as spool_module
from custom_components.ha_ingestor.engine.spool import (
    DeadLetterFile,
    SegmentDamaged,
    Spool,
    SpoolFull,
    SpoolUnavailable,
)


async def test_segments_come_back_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    bodies = [f"m value={i}.0 {i}".encode() for i in range(12)]
    for body in bodies:
        await spool.append(body, 1)
    assert [await spool.read(segment) for segment in spool.segments()] == bodies
    assert (spool.points, len(spool)) == (12, 12)


async def test_file_name_order_is_write_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    names = [(await spool.append(b"m v=1.0 1", 1)).name for _ in range(11)]
    assert sorted(os.listdir(tmp_path)) == names


async def test_a_new_spool_on_the_same_directory_sees_what_was_spooled(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    await first.append(b"m v=1.0 1\nm v=2.0 2", 2)
    await first.append(b"m v=3.0 3", 1)

    second = Spool(tmp_path)
    await second.open()
    assert [segment.points for segment in second.segments()] == [2, 1]
    assert second.points == 3
    assert second.size_bytes == first.size_bytes
    new = await second.append(b"m v=4.0 4", 1)
    assert new.sequence == 2


async def test_a_half_written_segment_is_never_replayed(tmp_path: Path) -> None:
    # What a crash in the middle of a write leaves behind: the temporary file.
    (tmp_path / "000000000000-5.lp.tmp").write_bytes(b"m v=1.0 1\nm v=")
    spool = Spool(tmp_path)
    await spool.open()
    assert len(spool) == 0
    assert os.listdir(tmp_path) == []


async def test_removing_a_segment_deletes_its_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first = await spool.append(b"m v=1.0 1", 1)
    second = await spool.append(b"m v=2.0 2", 1)
    await spool.remove(first)
    assert spool.segments() == [second]
    assert os.listdir(tmp_path) == [second.name]
    assert spool.points == 1


async def test_a_full_spool_refuses_new_batches_and_keeps_the_old(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=20)
    kept = await spool.append(b"m v=1.0 1", 1)
    with pytest.raises(SpoolFull):
        await spool.append(b"m v=2.0 2\nm v=3.0 3", 2)
    assert spool.segments() == [kept]


async def test_an_unwritable_directory_is_reported(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    spool = Spool(tmp_path / "file" / "spool")
    with pytest.raises(SpoolUnavailable):
        await spool.append(b"m v=1.0 1", 1)
    assert len(spool) == 0


async def test_replace_shrinks_a_segment_in_place(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first = await spool.append(b"m v=1.0 1\nm v=2.0 2\nm v=3.0 3", 3)
    second = await spool.append(b"m v=4.0 4", 1)
    shrunk = await spool.replace(first, b"m v=3.0 3", 1)
    assert spool.segments() == [shrunk, second]
    assert await spool.read(shrunk) == b"m v=3.0 3"
    assert spool.points == 2
    assert sorted(os.listdir(tmp_path)) == [shrunk.name, second.name]


async def test_after_a_crash_during_replace_the_shorter_copy_wins(tmp_path: Path) -> None:
    t = 1_700_000_000_000_000_000
    (tmp_path / "000000000000-3.lp").write_bytes(
        f"m v=1.0 {t}\nm v=2.0 {t + 1}\nm v=3.0 {t + 2}".encode()
    )
    (tmp_path / "000000000000-1.lp").write_bytes(f"m v=3.0 {t + 2}".encode())
    spool = Spool(tmp_path)
    await spool.open()
    (segment,) = spool.segments()
    assert await spool.read(segment) == f"m v=3.0 {t + 2}".encode()
    assert os.listdir(tmp_path) == ["000000000000-1.lp"]


async def test_segment_names_carry_the_point_count_and_a_checksum(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    body = b"m v=1.0 1\nm v=2.0 2"
    segment = await spool.append(body, 2)
    assert segment.name == f"000000000000-2-{zlib.crc32(body):08x}.lp"
    reopened = Spool(tmp_path)
    await reopened.open()
    assert reopened.segments() == [segment]
    assert await reopened.read(segment) == body


@pytest.mark.parametrize(
    ("name", "body"),
    [
        # Checksum-less (an earlier version's) segments: a count that disagrees, a torn line.
        ("000000000000-3.lp", b"m v=1.0 1700000000000000000\nm v=2.0 1700000000000000001"),
        ("000000000000-2.lp", b"m v=1.0 1700000000000000000\nm v=2.0 17000000"),
        ("000000000000-1.lp", b"m v=1.0"),
        # A checksummed segment whose body changed.
        ("000000000000-1-00000000.lp", b"m v=1.0 1700000000000000000"),
    ],
)
async def test_a_damaged_segment_is_refused_and_can_be_set_aside(
    tmp_path: Path, name: str, body: bytes
) -> None:
    (tmp_path / name).write_bytes(body)
    spool = Spool(tmp_path)
    await spool.open()
    (segment,) = spool.segments()
    with pytest.raises(SegmentDamaged):
        await spool.read(segment)
    moved = await spool.set_aside(segment)
    assert moved == tmp_path / "damaged" / name
    assert moved.read_bytes() == body
    assert spool.segments() == []
    assert spool.points == 0


async def test_dead_letters_are_json_lines_with_time_reason_line_and_database(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dead" / "letters.jsonl"
    dead = DeadLetterFile(path)
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    await dead.append(reason="field type conflict", line='m v="x" 1', database="home", time=when)
    await dead.append(reason="bad", line="m v=1.0 2", database="home")
    assert dead.count == 2
    (first, second) = await dead.read()
    assert (first.time, first.reason, first.line, first.database) == (
        when,
        "field type conflict",
        'm v="x" 1',
        "home",
    )
    assert second.reason == "bad"
    assert path.read_text().count("\n") == 2


async def test_dead_letter_count_includes_earlier_runs(tmp_path: Path) -> None:
    path = tmp_path / "letters.jsonl"
    await DeadLetterFile(path).append(reason="r", line="l", database="d")
    reopened = DeadLetterFile(path)
    await reopened.open()
    assert reopened.count == 1
    await reopened.append(reason="r", line="l2", database="d")
    assert reopened.count == 2


async def test_a_torn_dead_letter_record_is_cut_off_before_the_next_one_is_appended(
    tmp_path: Path,
) -> None:
    """A write that failed half-way (a full disk) must not glue the next record onto it."""
    path = tmp_path / "dead_letter.jsonl"
    first = DeadLetterFile(path)
    await first.append(reason="refused", line="m value=1 1", database="home")
    with path.open("ab") as file:
        file.write(b'{"time": "2026-01-01T00:00:00+00:00", "reason": "ref')

    letters = DeadLetterFile(path)
    await letters.append(reason="refused again", line="m value=2 2", database="home")

    read = await letters.read()
    assert [letter.reason for letter in read] == ["refused", "refused again"]
    assert letters.count == 2
    assert path.read_bytes().count(b"\n") == 2
    assert (tmp_path / "dead_letter.jsonl.torn").read_bytes().startswith(b'{"time"')


async def test_a_failed_dead_letter_write_leaves_no_half_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "dead_letter.jsonl"
    letters = DeadLetterFile(path)
    await letters.append(reason="refused", line="m value=1 1", database="home")
    real_open = aiofiles.open

    class HalfWrite:
        def __init__(self, file: Any) -> None:
            self._file = file

        async def write(self, data: bytes) -> int:
            await self._file.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

        def __getattr__(self, name: str) -> Any:
            return getattr(self._file, name)

    @contextlib.asynccontextmanager
    async def full_disk(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with real_open(*args, **kwargs) as file:
            yield HalfWrite(file)

    monkeypatch.setattr(spool_module.aiofiles, "open", full_disk)
    with pytest.raises(OSError, match="No space"):
        await letters.append(reason="refused", line="m value=2 2", database="home")
    monkeypatch.setattr(spool_module.aiofiles, "open", real_open)

    await letters.append(reason="third", line="m value=3 3", database="home")
    assert [letter.reason for letter in await letters.read()] == ["refused", "third"]


def put_directory_in_place_of(path: Path) -> None:
    """A file that cannot be deleted, even by root: a directory (with a file in it) instead."""
    path.unlink()
    path.mkdir()
    (path / "in the way").write_text("x")


async def test_a_segment_that_cannot_be_deleted_is_reported_and_leaves_the_index(
    tmp_path: Path,
) -> None:
    """Replaying it after a restart only re-sends points InfluxDB stores once."""
    spool = Spool(tmp_path)
    first = await spool.append(b"m v=1.0 1", 1)
    second = await spool.append(b"m v=2.0 2", 1)
    put_directory_in_place_of(tmp_path / first.name)
    with pytest.raises(SpoolUnavailable, match=f"cannot delete spool segment {first.name}"):
        await spool.remove(first)
    assert spool.segments() == [second]
    assert spool.points == 1
    assert spool.size_bytes == second.size


async def test_removing_a_segment_already_gone_is_not_an_error(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first = await spool.append(b"m v=1.0 1", 1)
    (tmp_path / first.name).unlink()
    await spool.remove(first)
    assert spool.segments() == []
    assert spool.points == 0


async def test_a_shrunk_segment_whose_original_cannot_be_deleted_is_reported_and_wins(
    tmp_path: Path,
) -> None:
    t = 1_700_000_000_000_000_000
    spool = Spool(tmp_path)
    first = await spool.append(f"m v=1.0 {t}\nm v=2.0 {t + 1}".encode(), 2)
    put_directory_in_place_of(tmp_path / first.name)
    with pytest.raises(SpoolUnavailable, match=f"cannot delete spool segment {first.name}"):
        await spool.replace(first, f"m v=2.0 {t + 1}".encode(), 1)
    (shrunk,) = spool.segments()
    assert shrunk.points == 1
    assert spool.points == 1
    # The shortened copy is on disk under its own name: a restart replays it, not the original.
    reopened = Spool(tmp_path)
    await reopened.open()
    assert reopened.segments() == [shrunk]
    assert await reopened.read(shrunk) == f"m v=2.0 {t + 1}".encode()


async def test_clearing_reports_segments_it_cannot_delete_and_deletes_the_rest(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    stuck = await spool.append(b"m v=1.0 1", 1)
    gone = await spool.append(b"m v=2.0 2\nm v=3.0 3", 2)
    put_directory_in_place_of(tmp_path / stuck.name)
    with pytest.raises(SpoolUnavailable, match=stuck.name):
        await spool.clear()
    assert not (tmp_path / gone.name).exists()
    assert spool.segments() == []
    assert spool.points == 0


async def test_a_failed_segment_write_leaves_neither_a_segment_nor_a_temporary_file(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    await spool.open()
    # The next segment's final name is taken by a directory: the rename fails.
    body = b"m v=1.0 1"
    (tmp_path / spool_module.segment_name(0, 1, body)).mkdir()
    with pytest.raises(SpoolUnavailable, match="cannot write to spool"):
        await spool.append(body, 1)
    assert os.listdir(tmp_path) == [spool_module.segment_name(0, 1, body)]
    assert spool.segments() == []
    assert spool.points == 0


async def test_a_segment_that_cannot_be_read_is_reported(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    segment = await spool.append(b"m v=1.0 1", 1)
    put_directory_in_place_of(tmp_path / segment.name)
    with pytest.raises(SpoolUnavailable, match=f"cannot read spool segment {segment.name}"):
        await spool.read(segment)


async def test_an_empty_dead_letter_file_counts_none_and_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "dead_letter.jsonl"
    path.write_bytes(b"")
    letters = DeadLetterFile(path)
    await letters.open()
    assert letters.count == 0
    assert not (tmp_path / "dead_letter.jsonl.torn").exists()
    assert await letters.last() is None
    assert await letters.read() == []


async def test_a_torn_record_longer_than_the_tail_window_is_cut_off_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dead_letter.jsonl"
    first = DeadLetterFile(path)
    await first.append(reason="kept", line="m value=1 1", database="home")
    fragment = b'{"time": "2026-01-01T00:00:00+00:00", "line": "' + b"x" * (1 << 17)
    with path.open("ab") as file:
        file.write(fragment)

    letters = DeadLetterFile(path)
    await letters.open()
    assert [letter.reason for letter in await letters.read()] == ["kept"]
    assert path.read_bytes().endswith(b"\n")
    assert (tmp_path / "dead_letter.jsonl.torn").read_bytes() == fragment + b"\n"


async def test_the_last_dead_letter_is_the_newest_readable_record(tmp_path: Path) -> None:
    path = tmp_path / "dead_letter.jsonl"
    letters = DeadLetterFile(path)
    assert await letters.last() is None
    assert await letters.read() == []
    await letters.append(reason="older", line="m value=1 1", database="home")
    await letters.append(reason="newest", line="m value=2 2", database="home")
    with path.open("ab") as file:
        file.write(b'{"not": "a dead letter"}\nnot json at all\n')
    last = await letters.last()
    assert last is not None
    assert (last.reason, last.line, last.database) == ("newest", "m value=2 2", "home")


async def test_unreadable_dead_letter_records_are_skipped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "dead_letter.jsonl"
    letters = DeadLetterFile(path)
    await letters.append(reason="first", line="m value=1 1", database="home")
    with path.open("ab") as file:
        file.write(b'{"time": "yesterday", "reason": "r", "line": "l", "database": "d"}\n')
        file.write(b"[1, 2]\n")
    await letters.append(reason="second", line="m value=2 2", database="home")
    assert [letter.reason for letter in await letters.read()] == ["first", "second"]
    assert caplog.text.count(f"Skipping an unreadable record in {path}") == 2


async def test_a_segment_is_durable_once_appended_its_folder_entry_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is fsynced, and then its folder, so the rename survives a power cut."""
    synced: list[tuple[bool, bool]] = []  # (a folder?, the segment there yet?)
    real_fsync = os.fsync

    def watching_fsync(descriptor: int) -> None:
        is_folder = stat.S_ISDIR(os.fstat(descriptor).st_mode)
        synced.append((is_folder, any(tmp_path.glob("spool/*.lp"))))
        real_fsync(descriptor)

    monkeypatch.setattr(spool_module.os, "fsync", watching_fsync)
    spool = Spool(tmp_path / "spool")
    await spool.append(b"m value=1 1", 1)
    assert synced == [(False, False), (True, True)]
