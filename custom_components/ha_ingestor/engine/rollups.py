"""Rollups: per-entity aggregates of the optimized layout's ``value`` at 5 minutes and 1 hour.

Derived data, computed by the integration from the raw points rather than by the server's
continuous queries, which never look back at a window once it is closed and so miss points
that reach the server late (a spool replayed after an outage, the backfill). A window is
always recomputed whole from the raw points, so computing it again is idempotent: the point
replaces itself. No Home Assistant in here; ``recording.py`` runs the live :class:`RollupJob`,
and the migration's backfill, validation and removal fill, check and remove rollups with the
functions below.

Layout: measurement ``<domain>_5m`` / ``<domain>_1h`` in the database of the raw points, the
raw series' tags, time = the window start, fields ``mean``, ``min``, ``max``, ``sum``,
``last`` (floats) and ``count`` (integer).
"""

import asyncio
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
import contextlib
from dataclasses import dataclass, field
import logging
import math
import re
from typing import Final

from .influx import Aggregate, InfluxClient, InfluxError, TagFilter
from .line_protocol import FieldValue, Point, encode

_LOGGER = logging.getLogger(__name__)

MINUTE_NS: Final = 60 * 10**9
HOUR_NS: Final = 60 * MINUTE_NS
DAY_NS: Final = 24 * HOUR_NS


@dataclass(frozen=True, slots=True)
class Resolution:
    """One rollup interval: the measurement suffix and the window length."""

    suffix: str
    every_ns: int


RESOLUTIONS: Final = (Resolution("5m", 5 * MINUTE_NS), Resolution("1h", HOUR_NS))
# Every resolution divides this, so windows never straddle two reads.
_ALIGN_NS: Final = HOUR_NS
ROLLUP_FIELDS: Final = ("mean", "min", "max", "sum", "count", "last")
SOURCE_FIELD: Final = "value"
# Raw points read at once when building: a day of one domain.
BUILD_CHUNK_NS: Final = DAY_NS
# Lines per write.
_WRITE_LINES: Final = 5_000
# How often the live job recomputes the windows written points fell into.
ROLLUP_INTERVAL: Final = 60.0
# Domains are slugs; a legacy measurement (a unit, an entity id) usually is not one.
_DOMAIN: Final = re.compile(r"^[a-z0-9_]+$")


def rollup_measurement(domain: str, resolution: Resolution) -> str:
    """The rollup measurement of a domain at one resolution (``sensor_1h``)."""
    return f"{domain}_{resolution.suffix}"


def is_rollup_measurement(name: str) -> bool:
    """Whether a measurement name is a rollup's."""
    return any(name.endswith(f"_{resolution.suffix}") for resolution in RESOLUTIONS)


def window_start(time_ns: int, every_ns: int) -> int:
    """The start of the window of length ``every_ns`` (aligned to the epoch) holding a time."""
    return time_ns - time_ns % every_ns


def window_end(time_ns: int, every_ns: int) -> int:
    """The first window boundary at or after ``time_ns``."""
    return -window_start(-time_ns, every_ns)


@dataclass(slots=True)
class _Accumulator:
    values: list[float] = field(default_factory=list)
    last_time: int = -(2**63)
    last: float = 0.0

    def add(self, time_ns: int, value: float) -> None:
        self.values.append(value)
        if time_ns >= self.last_time:
            self.last_time, self.last = time_ns, value

    def fields(self) -> dict[str, FieldValue]:
        total = math.fsum(self.values)
        return {
            "mean": total / len(self.values),
            "min": min(self.values),
            "max": max(self.values),
            "sum": total,
            "count": len(self.values),
            "last": self.last,
        }


type SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


class RollupBuilder:
    """Aggregates raw points into the rollup points of every resolution (pure)."""

    def __init__(self, resolutions: Sequence[Resolution] = RESOLUTIONS) -> None:
        self._resolutions = tuple(resolutions)
        self._windows: dict[tuple[SeriesKey, int, int], _Accumulator] = {}

    def add(self, measurement: str, tags: Mapping[str, str], time_ns: int, value: float) -> None:
        """Count one raw point (of an optimized-layout series)."""
        key = (measurement, tuple(sorted(tags.items())))
        for index, resolution in enumerate(self._resolutions):
            start = window_start(time_ns, resolution.every_ns)
            accumulator = self._windows.get((key, index, start))
            if accumulator is None:
                accumulator = self._windows[(key, index, start)] = _Accumulator()
            accumulator.add(time_ns, value)

    def points(self) -> list[Point]:
        """The rollup points of everything added, in a stable order."""
        return [
            Point(
                rollup_measurement(measurement, self._resolutions[index]),
                dict(tags),
                accumulator.fields(),
                start,
            )
            for ((measurement, tags), index, start), accumulator in sorted(
                self._windows.items(), key=lambda item: item[0]
            )
        ]


def rollups_of(points: Iterable[Point]) -> list[Point]:
    """The rollup points of raw optimized points (what the database must hold for them)."""
    builder = RollupBuilder()
    for point in points:
        value = point.fields.get(SOURCE_FIELD)
        if isinstance(value, float | int) and not isinstance(value, bool):
            builder.add(point.measurement, point.tags, point.time_ns, float(value))
    return builder.points()


def _is_source_series(measurement: str, tags: Mapping[str, str]) -> bool:
    # An optimized-layout series: measurement = domain, entity_id a full id of that domain.
    domain, dot, _ = tags.get("entity_id", "").partition(".")
    return bool(dot) and domain == measurement


async def source_domains(client: InfluxClient, database: str) -> list[str]:
    """The measurements of a database that can hold optimized-layout raw points."""
    return [
        name
        for name in await client.measurements(database)
        if _DOMAIN.match(name) and not is_rollup_measurement(name)
    ]


async def computed_rollups(
    client: InfluxClient,
    database: str,
    domain: str,
    start_ns: int,
    end_ns: int,
    *,
    where: TagFilter | None = None,
) -> list[Point]:
    """The rollup points the raw points of one domain give for the windows in [start, end).

    ``start_ns``/``end_ns`` must be window boundaries of every resolution (whole hours).
    """
    builder = RollupBuilder()
    async for block in client.read_series(
        domain, start_ns, end_ns, database, where=where, fields=(SOURCE_FIELD,)
    ):
        if not _is_source_series(block.measurement, block.tags) or SOURCE_FIELD not in block.fields:
            continue
        column = block.fields.index(SOURCE_FIELD) + 1
        for row in block.rows:
            value = row[column]
            if value is not None and not isinstance(value, bool):
                builder.add(block.measurement, block.tags, int(row[0]), float(value))
        # A block is at most one server chunk: let the event loop run between them.
        await asyncio.sleep(0)
    return builder.points()


async def stored_rollups(
    client: InfluxClient,
    database: str,
    domain: str,
    start_ns: int,
    end_ns: int,
    *,
    where: TagFilter | None = None,
) -> list[Point]:
    """The rollup points the database holds for one domain in [start, end)."""
    found: list[Point] = []
    for resolution in RESOLUTIONS:
        measurement = rollup_measurement(domain, resolution)
        async for point in client.read_points(
            measurement, start_ns, end_ns, database, where=where, fields=ROLLUP_FIELDS
        ):
            found.append(point)
    return found


@dataclass(slots=True, kw_only=True)
class BuildProgress:
    """How far a :func:`build_rollups` run is (updated after every chunk)."""

    database: str
    domains: tuple[str, ...] = ()
    # Domains whose rollups are done (every chunk written).
    domains_done: int = 0
    # The domain being built, and the time up to which its rollups are written.
    domain: str | None = None
    done_until_ns: int | None = None
    # Hours of raw history to read in all, and read so far.
    hours_total: int = 0
    hours_done: int = 0
    points_written: int = 0
    finished: bool = False

    @property
    def fraction(self) -> float:
        """The share of the hours read so far (0 to 1; 0 until the hours are known)."""
        if self.finished:
            return 1.0
        return self.hours_done / self.hours_total if self.hours_total else 0.0


async def build_rollups(
    client: InfluxClient,
    database: str,
    start_ns: int,
    end_ns: int,
    *,
    domains: Collection[str] | None = None,
    where: TagFilter | None = None,
    stopped: Callable[[], bool] | None = None,
    lock: asyncio.Lock | None = None,
    progress: Callable[[BuildProgress], None] | None = None,
) -> int:
    """Recompute, from the raw points, every rollup window touching [start_ns, end_ns).

    Whole hours are read a day at a time per domain and written back (a window already
    stored is replaced by its recomputation). Windows without raw points are not written.
    Returns the rollup points written; stops between days when ``stopped()`` says so.
    ``lock`` is held while one day is read and written, so that another writer of the same
    windows (the live job) never has its newer recomputation overwritten by an older one;
    ``progress`` is called after every day and once at the end.
    """
    if end_ns <= start_ns:
        return 0
    first = window_start(start_ns, _ALIGN_NS)
    last = window_end(end_ns, _ALIGN_NS)
    if domains is None:
        domains = await source_domains(client, database)
    state = BuildProgress(database=database, domains=tuple(sorted(domains)))
    extents: dict[str, tuple[int, int]] = {}
    for domain in state.domains:
        extent = await _extent(client, database, domain, first, last, where=where)
        if extent is not None:
            extents[domain] = (
                window_start(extent[0], _ALIGN_NS),
                window_end(extent[1] + 1, _ALIGN_NS),
            )
            state.hours_total += (extents[domain][1] - extents[domain][0]) // HOUR_NS
    for domain in state.domains:
        state.domain = domain
        if domain not in extents:
            state.domains_done += 1
            continue
        chunk, last_chunk = extents[domain]
        while chunk < last_chunk:
            if stopped is not None and stopped():
                return state.points_written
            chunk_end = min(chunk + BUILD_CHUNK_NS, last_chunk)
            async with lock or contextlib.nullcontext():
                points = await computed_rollups(
                    client, database, domain, chunk, chunk_end, where=where
                )
                for offset in range(0, len(points), _WRITE_LINES):
                    lines = [
                        line
                        for point in points[offset : offset + _WRITE_LINES]
                        if (line := encode(point)) is not None
                    ]
                    await client.write("\n".join(lines).encode(), database)
                    state.points_written += len(lines)
            state.hours_done += (chunk_end - chunk) // HOUR_NS
            state.done_until_ns = chunk = chunk_end
            if progress is not None:
                progress(state)
        state.domains_done += 1
    state.domain = None
    state.finished = True
    if progress is not None:
        progress(state)
    return state.points_written


async def _extent(
    client: InfluxClient,
    database: str,
    domain: str,
    start_ns: int,
    end_ns: int,
    *,
    where: TagFilter | None,
) -> tuple[int, int] | None:
    """(first, last) time of the raw values of a domain in [start, end), or None."""
    times = []
    for function in (Aggregate.FIRST, Aggregate.LAST):
        rows = await client.aggregate(
            domain,
            SOURCE_FIELD,
            function,
            start_ns=start_ns,
            end_ns=end_ns,
            where=where,
            database=database,
        )
        if not rows:
            return None
        times.append(
            min(row.time_ns for row in rows)
            if function is Aggregate.FIRST
            else max(row.time_ns for row in rows)
        )
    return times[0], times[1]


def _comparable(point: Point) -> tuple[tuple[str, tuple[tuple[str, str], ...], int], Point]:
    return (point.measurement, tuple(sorted(point.tags.items())), point.time_ns), point


@dataclass(frozen=True, slots=True, kw_only=True)
class RollupCheck:
    """What comparing stored rollups with their recomputation found."""

    compared: int = 0
    # Entity → rollup windows missing, extra or different.
    mismatches: Mapping[str, int] = field(default_factory=dict)
    # (entity, measurement, window start ns, field → (recomputed, stored)) of a few of them.
    examples: tuple[tuple[str, str, int, Mapping[str, tuple[object, object]]], ...] = ()


async def check_rollups(
    client: InfluxClient,
    database: str,
    entity_ids: Collection[str],
    start_ns: int,
    end_ns: int,
    *,
    examples: int = 10,
) -> RollupCheck:
    """Compare the stored rollups of some entities with their recomputation from raw.

    Only the windows wholly inside [start_ns, end_ns) are compared: one that straddles an
    end also holds points from outside the range.
    """
    first, last = window_end(start_ns, _ALIGN_NS), window_start(end_ns, _ALIGN_NS)
    if last <= first or not entity_ids:
        return RollupCheck()
    by_domain: dict[str, set[str]] = {}
    for entity_id in entity_ids:
        domain, dot, _ = entity_id.partition(".")
        if dot:
            by_domain.setdefault(domain, set()).add(entity_id)
    compared = 0
    mismatches: dict[str, int] = {}
    found: list[tuple[str, str, int, Mapping[str, tuple[object, object]]]] = []
    for domain, entities in sorted(by_domain.items()):
        where = {"entity_id": entities}
        want = dict(
            map(
                _comparable,
                await computed_rollups(client, database, domain, first, last, where=where),
            )
        )
        have = dict(
            map(
                _comparable,
                await stored_rollups(client, database, domain, first, last, where=where),
            )
        )
        for key in sorted(want.keys() | have.keys()):
            compared += 1
            wanted, stored = want.get(key), have.get(key)
            if wanted is not None and stored is not None and wanted.fields == stored.fields:
                continue
            entity_id = dict(key[1]).get("entity_id", "")
            mismatches[entity_id] = mismatches.get(entity_id, 0) + 1
            if len(found) < examples:
                names = sorted(
                    set(wanted.fields if wanted else ()) | set(stored.fields if stored else ())
                )
                differences = {
                    name: (
                        wanted.fields.get(name) if wanted else None,
                        stored.fields.get(name) if stored else None,
                    )
                    for name in names
                    if (wanted.fields.get(name) if wanted else None)
                    != (stored.fields.get(name) if stored else None)
                }
                found.append((entity_id, key[0], key[2], differences))
    return RollupCheck(compared=compared, mismatches=mismatches, examples=tuple(found))


def written_span(body: bytes) -> dict[str, tuple[int, int]]:
    """Domain → (first, last) point time of an encoded optimized-layout body.

    Optimized lines always carry an ``entity_id`` tag, so the measurement (a domain, which
    needs no escaping) ends at the first comma; the time is the last word.
    """
    spans: dict[str, tuple[int, int]] = {}
    for line in body.split(b"\n"):
        comma = line.find(b",")
        space = line.rfind(b" ")
        if comma <= 0 or space <= comma:
            continue
        try:
            time_ns = int(line[space + 1 :])
        except ValueError:
            continue
        domain = line[:comma].decode(errors="replace")
        low, high = spans.get(domain, (time_ns, time_ns))
        spans[domain] = (min(low, time_ns), max(high, time_ns))
    return spans


class RollupJob:
    """Keeps the rollups of live-written points up to date.

    The optimized writers report every body the server accepted (:meth:`written`); each run
    recomputes, from the raw points, every window those points fell into, however old they
    are, so a spool replayed after an outage is rolled up by the next run like any other
    write. A run that fails keeps its windows for the next one.
    """

    def __init__(self, client: InfluxClient, *, interval: float = ROLLUP_INTERVAL) -> None:
        self._client = client
        self.interval = interval
        # (database, domain) → (first, last) time of points written since the last run.
        self._dirty: dict[tuple[str, str], tuple[int, int]] = {}
        self._lock = asyncio.Lock()
        self.points_written = 0
        # How far a rebuild of existing history is, while one runs.
        self.rebuilding: BuildProgress | None = None

    @property
    def pending(self) -> bool:
        """Whether written points wait for their rollups."""
        return bool(self._dirty)

    def written(self, database: str, body: bytes) -> None:
        """Note a body of optimized points the server stored in ``database``."""
        for domain, span in written_span(body).items():
            self._mark((database, domain), span)

    def _mark(self, key: tuple[str, str], span: tuple[int, int]) -> None:
        known = self._dirty.get(key)
        self._dirty[key] = (
            span if known is None else (min(known[0], span[0]), max(known[1], span[1]))
        )

    async def run_once(self) -> int:
        """Recompute the windows of everything written since the last run; points written."""
        async with self._lock:
            dirty, self._dirty = self._dirty, {}
            written = 0
            for (database, domain), (low, high) in sorted(dirty.items()):
                try:
                    written += await build_rollups(
                        self._client, database, low, high + 1, domains=(domain,)
                    )
                except InfluxError as err:
                    self._mark((database, domain), (low, high))
                    _LOGGER.debug(
                        "Rollups of %s in %s wait for the next run: %s", domain, database, err
                    )
            self.points_written += written
            return written

    async def rebuild(self, database: str, start_ns: int, end_ns: int) -> BuildProgress:
        """Recompute the rollups of the raw history in [start_ns, end_ns) of a database.

        Every window touching the range is recomputed whole, a day of a domain at a time, so
        a rebuild stopped half-way leaves correct windows behind and running it again writes
        the same points. Windows the live job recomputes meanwhile are never overwritten
        with an older answer: each day is read and written under the job's lock.
        """
        if self.rebuilding is not None:
            raise RuntimeError("a rebuild of the rollups is already running")
        self.rebuilding = final = BuildProgress(database=database)
        logged = -1

        def note(state: BuildProgress) -> None:
            nonlocal final, logged
            self.rebuilding = final = state
            # About every tenth of the way.
            if (tenth := int(state.fraction * 10)) > logged:
                logged = tenth
                _LOGGER.info(
                    "Rebuilding the rollups of %s: %.0f %% (%d of %d hours, %d rollup points)",
                    database,
                    100 * state.fraction,
                    state.hours_done,
                    state.hours_total,
                    state.points_written,
                )

        try:
            await build_rollups(
                self._client, database, start_ns, end_ns, lock=self._lock, progress=note
            )
        finally:
            self.rebuilding = None
        self.points_written += final.points_written
        return final

    async def run(self) -> None:
        """Run every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            if self._dirty:
                try:
                    await self.run_once()
                except Exception:  # the job must outlive one bad run
                    _LOGGER.exception("Computing rollups failed")
