"""Line protocol kept on disk: the spool of batches waiting for the server, and dead letters.

All file access runs in worker threads through aiofiles, so nothing here blocks Home
Assistant's event loop; a segment is written, or read and checked, in one worker job.
"""

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
import logging
import os
from pathlib import Path
import re
import zlib

import aiofiles  # type: ignore[import-untyped, unused-ignore]
import aiofiles.os  # type: ignore[import-untyped, unused-ignore]
import orjson

from .line_protocol import split_lines

_LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 512 * 1024 * 1024

# <sequence>-<points>-<crc32>.lp: zero-padded so that name order is write order, the point
# count lets a restart know what is spooled without reading every segment, and the checksum
# of the body tells a segment cut short or damaged on disk from a good one. Segments of an
# earlier version have no checksum; their lines are counted and checked instead.
_SEGMENT_NAME = re.compile(r"^(\d{12})-(\d+)(?:-([0-9a-f]{8}))?\.lp$")
_TEMP_SUFFIX = ".tmp"
# Where segments whose body does not match their name are moved; never replayed from there.
DAMAGED_DIR = "damaged"
# Every line the writer spools ends with its timestamp in nanoseconds: 19 digits for any time
# of the live recording (2001 to 2286).
_TIMESTAMP = re.compile(rb" (-?\d+)$")
_TIMESTAMP_DIGITS = 19


class SpoolError(Exception):
    """A batch could not be put into or taken out of the spool."""


class SpoolFull(SpoolError):
    """The spool has reached its size bound; it refuses new batches rather than drop old ones."""


class SpoolUnavailable(SpoolError):
    """The spool directory or a segment could not be read or written."""


class SegmentDamaged(SpoolError):
    """A segment's body does not match its name (cut short, or damaged on disk)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One spooled batch: a file of line protocol."""

    name: str
    sequence: int
    points: int
    size: int
    crc: int | None = None


def segment_name(sequence: int, points: int, body: bytes) -> str:
    """The file name of a segment: its place, its point count and its body's checksum."""
    return f"{sequence:012d}-{points}-{zlib.crc32(body):08x}.lp"


def check_body(segment: Segment, body: bytes) -> None:
    """Raise SegmentDamaged unless ``body`` is what was spooled under ``segment``'s name."""
    if segment.crc is not None:
        if zlib.crc32(body) != segment.crc:
            raise SegmentDamaged(
                f"spool segment {segment.name} is damaged: its checksum does not match"
            )
        return
    # Without a checksum: the count must match, and a line cut short shows in its timestamp
    # (a torn one would be stored as a point in 1970).
    lines = split_lines(body)
    if len(lines) != segment.points:
        raise SegmentDamaged(
            f"spool segment {segment.name} is damaged: it holds {len(lines)} lines, "
            f"its name says {segment.points}"
        )
    for line in lines:
        stamp = _TIMESTAMP.search(line)
        if stamp is None or len(stamp.group(1).lstrip(b"-")) != _TIMESTAMP_DIGITS:
            raise SegmentDamaged(
                f"spool segment {segment.name} is damaged: a line is cut short ({line[-40:]!r})"
            )


def _scan(directory: Path) -> list[Segment]:
    """The segments in a spool directory, oldest first (runs in a worker thread).

    Temporary files are what a crash during a write leaves: they are deleted, never replayed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    found: dict[int, Segment] = {}
    for entry in sorted(os.scandir(directory), key=lambda entry: entry.name):
        if entry.name.endswith(_TEMP_SUFFIX):
            os.remove(entry.path)
            continue
        if not entry.is_file() or not (match := _SEGMENT_NAME.match(entry.name)):
            continue
        crc = int(match[3], 16) if match[3] else None
        segment = Segment(entry.name, int(match[1]), int(match[2]), entry.stat().st_size, crc)
        if (other := found.get(segment.sequence)) is not None:
            # A crash between writing the shortened copy of a partly delivered segment and
            # deleting the original: the copy (fewer points) is the live one.
            stale, segment = sorted((other, segment), key=lambda s: -s.points)
            os.remove(directory / stale.name)
        found[segment.sequence] = segment
    return list(found.values())


# One thread hop for the whole directory rather than one per file.
_scan_directory = aiofiles.os.wrap(_scan)


def _write_segment(final: Path, body: bytes) -> None:
    """Write a segment under a temporary name, flush it to disk, then rename it into place
    (runs in a worker thread: one hop instead of one per step). A failed write leaves no
    temporary file behind when it can be removed, and never a segment under its final name.
    """
    temp = final.with_name(final.name + _TEMP_SUFFIX)
    try:
        with open(temp, "wb") as file:
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, final)
    except OSError:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise
    _sync_directory(final.parent)


def _sync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` survive a power cut: the directory entry is data of its
    own, which only an fsync of the directory flushes. Where a file system refuses that (some
    network ones), the segment is still written and in place: the write does not fail."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _read_segment(path: Path, segment: Segment) -> bytes:
    """A segment's body, checked against its name (runs in a worker thread)."""
    body = path.read_bytes()
    check_body(segment, body)
    return body


_write_segment_file = aiofiles.os.wrap(_write_segment)
_read_segment_file = aiofiles.os.wrap(_read_segment)


class Spool:
    """A directory of segment files, replayed oldest first, surviving restarts.

    A segment is written under a temporary name, flushed to disk and then renamed, so a crash
    never leaves a half-written segment that would be replayed. One spool directory belongs to
    one writer at a time.
    """

    def __init__(self, directory: Path | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        # Keyed by sequence; dicts keep insertion order, which is sequence order here.
        self._segments: dict[int, Segment] = {}
        self._next_sequence = 0
        self._points = 0
        self._size = 0
        self._opened = False
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._segments)

    @property
    def points(self) -> int:
        return self._points

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def is_open(self) -> bool:
        return self._opened

    def segments(self) -> list[Segment]:
        """The spooled segments, oldest first."""
        return list(self._segments.values())

    def oldest(self, skip: set[int] | frozenset[int] = frozenset()) -> Segment | None:
        """The oldest segment whose sequence is not in ``skip``."""
        for sequence, segment in self._segments.items():
            if sequence not in skip:
                return segment
        return None

    async def open(self) -> None:
        """Create the directory if needed and index the segments already in it.

        Leftover temporary files (from a crash during a write) are deleted. Raises
        SpoolUnavailable when the directory cannot be created or listed.
        """
        async with self._lock:
            await self._open()

    async def _open(self) -> None:
        if self._opened:
            return
        try:
            found: list[Segment] = await _scan_directory(self.directory)
        except OSError as err:
            raise SpoolUnavailable(f"spool directory {self.directory}: {err}") from err
        self._segments = {segment.sequence: segment for segment in found}
        self._points = sum(segment.points for segment in self._segments.values())
        self._size = sum(segment.size for segment in self._segments.values())
        self._next_sequence = max(self._segments, default=-1) + 1
        self._opened = True

    async def append(self, body: bytes, points: int) -> Segment:
        """Write one batch as the newest segment.

        Raises SpoolFull when it would take the spool over ``max_bytes``, SpoolUnavailable when
        it cannot be written.
        """
        async with self._lock:
            await self._open()
            if self._size + len(body) > self.max_bytes:
                raise SpoolFull(
                    f"spool {self.directory} is full ({self._size} of {self.max_bytes} bytes)"
                )
            sequence = self._next_sequence
            segment = Segment(
                segment_name(sequence, points, body), sequence, points, len(body), zlib.crc32(body)
            )
            await self._write(segment, body)
            self._next_sequence += 1
            self._add(segment)
            return segment

    async def read(self, segment: Segment) -> bytes:
        """The body of a segment; SegmentDamaged when it does not match the segment's name."""
        try:
            body: bytes = await _read_segment_file(self.directory / segment.name, segment)
        except OSError as err:
            raise SpoolUnavailable(f"cannot read spool segment {segment.name}: {err}") from err
        return body

    async def set_aside(self, segment: Segment) -> Path:
        """Move a damaged segment out of the replay into the ``damaged`` folder; its path."""
        async with self._lock:
            self._discard(segment)
            target = self.directory / DAMAGED_DIR / segment.name
            try:
                await aiofiles.os.makedirs(target.parent, exist_ok=True)
                await aiofiles.os.replace(self.directory / segment.name, target)
            except OSError as err:
                raise SpoolUnavailable(
                    f"cannot move damaged spool segment {segment.name} aside: {err}"
                ) from err
            return target

    async def clear(self) -> int:
        """Delete every segment (their points are not wanted any more); how many points.

        Raises SpoolUnavailable when a file cannot be deleted; the index forgets it anyway.
        """
        async with self._lock:
            await self._open()
            points = self._points
            failed: list[str] = []
            for segment in list(self._segments.values()):
                self._discard(segment)
                try:
                    await aiofiles.os.remove(self.directory / segment.name)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    failed.append(f"{segment.name}: {err}")
            if failed:
                raise SpoolUnavailable(f"cannot delete spool segments {'; '.join(failed)}")
            return points

    async def remove(self, segment: Segment) -> None:
        """Delete a delivered segment.

        It leaves the index even if the file cannot be deleted; replaying such a file after a
        restart only re-sends points, which InfluxDB stores once.
        """
        async with self._lock:
            self._discard(segment)
            try:
                await aiofiles.os.remove(self.directory / segment.name)
            except FileNotFoundError:
                pass
            except OSError as err:
                raise SpoolUnavailable(
                    f"cannot delete spool segment {segment.name}: {err}"
                ) from err

    async def replace(self, segment: Segment, body: bytes, points: int) -> Segment:
        """Shrink a partly delivered segment to what is left of it, keeping its place."""
        async with self._lock:
            new = Segment(
                segment_name(segment.sequence, points, body),
                segment.sequence,
                points,
                len(body),
                zlib.crc32(body),
            )
            await self._write(new, body)
            if self._segments.get(segment.sequence) == segment:
                self._points -= segment.points
                self._size -= segment.size
            self._add(new)  # same key: keeps its place in the order
            if new.name != segment.name:
                try:
                    await aiofiles.os.remove(self.directory / segment.name)
                except OSError as err:
                    # Both files replay after a restart until open() picks the shorter one.
                    raise SpoolUnavailable(
                        f"cannot delete spool segment {segment.name}: {err}"
                    ) from err
            return new

    def forget(self, segment: Segment) -> None:
        """Drop a segment from the index without touching the disk (it cannot be read)."""
        self._discard(segment)

    async def _write(self, segment: Segment, body: bytes) -> None:
        try:
            await _write_segment_file(self.directory / segment.name, body)
        except OSError as err:
            raise SpoolUnavailable(f"cannot write to spool {self.directory}: {err}") from err

    def _add(self, segment: Segment) -> None:
        self._segments[segment.sequence] = segment
        self._points += segment.points
        self._size += segment.size

    def _discard(self, segment: Segment) -> None:
        if self._segments.get(segment.sequence) == segment:
            del self._segments[segment.sequence]
            self._points -= segment.points
            self._size -= segment.size


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A point the server refused for good, and why."""

    time: datetime
    reason: str
    line: str
    database: str


class DeadLetterFile:
    """Append-only JSON lines of refused points: {time, reason, line, database}.

    One file may be shared by several writers (one per database).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._count = 0
        self._opened = False
        self._lock = asyncio.Lock()

    @property
    def count(self) -> int:
        """How many dead letters the file holds (including those from earlier runs)."""
        return self._count

    async def open(self) -> None:
        """Count the records already in the file; raises OSError when it cannot be read."""
        async with self._lock:
            await self._open()

    async def _open(self) -> None:
        if self._opened:
            return
        count = 0
        try:
            async with aiofiles.open(self.path, "rb") as file:
                while chunk := await file.read(1 << 20):
                    count += chunk.count(b"\n")
        except FileNotFoundError:
            pass
        self._count = count
        self._opened = True
        await self._repair_tail()

    async def _repair_tail(self) -> None:
        """Cut off a torn last record (a write that failed half-way, e.g. on a full disk).

        The fragment goes to ``<file>.torn`` so nothing is silently thrown away, and the
        next record starts on a line of its own instead of being glued to it.
        """
        try:
            size = (await aiofiles.os.stat(self.path)).st_size
        except FileNotFoundError:
            return
        if size == 0:
            return
        async with aiofiles.open(self.path, "rb+") as file:
            await file.seek(max(size - (1 << 16), 0))
            tail: bytes = await file.read()
            if tail.endswith(b"\n"):
                return
            cut = tail.rfind(b"\n")
            if cut < 0 and size > len(tail):
                await file.seek(0)  # one record longer than the window: read it all
                tail = await file.read()
                cut = tail.rfind(b"\n")
            keep = size - len(tail) + cut + 1
            fragment = tail[cut + 1 :]
            async with aiofiles.open(self.path.with_name(self.path.name + ".torn"), "ab") as torn:
                await torn.write(fragment + b"\n")
            await file.truncate(keep)
        _LOGGER.warning(
            "The dead-letter file %s ended in a torn record (%d bytes); it was moved to %s.torn",
            self.path,
            len(fragment),
            self.path.name,
        )

    async def append(
        self, *, reason: str, line: str, database: str, time: datetime | None = None
    ) -> None:
        """Record one refused point; raises OSError when the file cannot be written.

        A write that fails half-way is cut back off, so the file never keeps half a record.
        """
        record = {
            "time": (time or datetime.now(UTC)).isoformat(),
            "reason": reason,
            "line": line,
            "database": database,
        }
        async with self._lock:
            await self._open()
            await aiofiles.os.makedirs(self.path.parent, exist_ok=True)
            async with aiofiles.open(self.path, "ab") as file:
                before = await file.tell()
                try:
                    await file.write(orjson.dumps(record) + b"\n")
                    await file.flush()
                except OSError:
                    with contextlib.suppress(OSError):
                        await file.truncate(before)
                    raise
            self._count += 1

    async def last(self) -> DeadLetter | None:
        """The newest readable record (read from the end of the file), or None."""
        try:
            async with aiofiles.open(self.path, "rb") as file:
                size = (await aiofiles.os.stat(self.path)).st_size
                await file.seek(max(size - (1 << 16), 0))
                tail: bytes = await file.read()
        except FileNotFoundError:
            return None
        for raw in reversed(tail.split(b"\n")):
            if letter := _letter(raw):
                return letter
        return None

    async def read(self) -> list[DeadLetter]:
        """Every record in the file, oldest first."""
        try:
            async with aiofiles.open(self.path, "rb") as file:
                content: bytes = await file.read()
        except FileNotFoundError:
            return []
        return [letter for raw in content.split(b"\n") if (letter := _letter(raw, self.path))]


def _letter(raw: bytes, path: Path | None = None) -> DeadLetter | None:
    """One dead-letter record, or None for an empty or unreadable line."""
    if not raw.strip():
        return None
    try:
        record = orjson.loads(raw)
        return DeadLetter(
            time=datetime.fromisoformat(record["time"]),
            reason=record["reason"],
            line=record["line"],
            database=record["database"],
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        if path is not None:
            _LOGGER.warning("Skipping an unreadable record in %s", path)
        return None
