"""The migration's work on InfluxDB: discover, backfill, validate, roll back, clean up.

No Home Assistant in here: the glue (``migration.py``) drives these with HA's ``Store``, bus
and entities; the rules (phases, thresholds, arithmetic) are in ``migration_model``.
"""

import asyncio
from bisect import bisect_left
from collections import deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from enum import StrEnum
import hashlib
import logging
from pathlib import Path
import statistics
import time
from typing import Any, Final, Protocol, runtime_checkable

from .influx import (
    Aggregate,
    AggregateRow,
    CannotConnect,
    InfluxClient,
    PointsRejected,
    QueryFailed,
    SeriesBlock,
)
from .line_protocol import (
    FieldValue,
    Point,
    as_written,
    encode,
    from_time_ns,
    tag_value,
    to_time_ns,
)
from .migration_ledger import (
    Deletion,
    Span,
    cleanup_plan,
    in_spans,
    rollback_plan,
    spans_from_days,
)
from .migration_model import (
    BackfillCheckpoint,
    EntityMismatch,
    MigrationConfig,
    MigrationState,
    MismatchExample,
    QueryTiming,
    SourceSeries,
    SourceSummary,
    ThroughputWindow,
    ValidationResult,
    backfill_rate_limit,
    decide_on_error_rate,
)
from .retry import SYSTEM_TIMER, Backoff, CircuitBreaker, RetryPolicy, Timer, call_with_retry
from .rollups import (
    HOUR_NS as _ROLLUP_ALIGN_NS,
    RESOLUTIONS,
    build_rollups,
    check_rollups,
    rollup_measurement,
    window_end,
    window_start,
)
from .spool import DeadLetterFile

_LOGGER = logging.getLogger(__name__)

type Transform = Callable[[Point], Point | None]
# One row of a legacy series → its optimized line without the timestamp ("" skips the row).
type RowEncoder = Callable[[Sequence[Any]], str]


@runtime_checkable
class _ReadsFields(Protocol):
    """A transform that says which legacy fields it reads (validation asks for only those)."""

    @property
    def fields_read(self) -> frozenset[str]: ...


class BulkTransform(Protocol):
    """What the backfill needs of the legacy → optimized transform.

    ``optimized_layout.LegacyTransform`` is the one the integration uses; the engine names only
    this, so it stays free of Home Assistant (the layouts are built on HA's ``State``).
    """

    @property
    def fields_read(self) -> frozenset[str]:
        """The legacy fields the transform looks at (a bulk read asks for no others)."""
        ...

    def __call__(self, legacy: Point, /) -> Point | None:
        """The optimized point of one legacy point, or None when it has none."""
        ...

    def series_encoder(
        self, fields: Sequence[str], point_of: Callable[[Sequence[Any]], Point | None]
    ) -> RowEncoder:
        """The row encoder of one legacy series whose rows hold ``fields``."""
        ...


type SaveState = Callable[[MigrationState], Awaitable[None]]
type ProgressListener = Callable[[MigrationState], None]
type ConnectionListener = Callable[[bool], None]

HOUR_NS: Final = 3_600 * 10**9
DAY_NS: Final = 24 * HOUR_NS
# The range InfluxDB can store: a query over it misses nothing.
_ALL_TIME: Final = (-(2**63) + 2, 2**63 - 2)

# Every legacy point has a numeric "value" or a textual "state" field (or both); counting
# these two is how both layouts are counted without reading every attribute column.
STATE_FIELDS: Final = ("value", "state")

DEFAULT_WINDOW_NS: Final = DAY_NS
_MIN_WINDOW_NS: Final = 60 * 10**9
# A window grows or shrinks at most this much from one to the next.
_WINDOW_STEP: Final = 4
PROGRESS_INTERVAL: Final = 0.5
# Blocks (of up to one server chunk) read ahead of the conversion.
_READ_AHEAD: Final = 2
# Measurements read at the same time.
_READERS: Final = 2
# The validation sample's unit of time (weeks from the epoch), and how many are compared at once.
_SAMPLE_SPAN_NS: Final = 7 * DAY_NS
_COMPARING_SPANS: Final = 2
# Live pairs are read this much of the dual-write window at a time (memory stays bounded).
_LIVE_CHUNK_NS: Final = 6 * HOUR_NS
# Points this recent may still be on their way to one layout: live pairs stop short of them.
LIVE_SETTLE_NS: Final = 30 * 10**9
# Differences shown as examples in a validation result.
_EXAMPLES: Final = 10
# Rows converted between two turns of the event loop (a few milliseconds of work).
_SLICE_ROWS: Final = 256

# InfluxDB 1.x counts the points a partial write refused ("... dropped=12").


def legacy_entity_id(tags: Mapping[str, str]) -> str | None:
    """The full entity id of a legacy-layout series, or None for any other series.

    The legacy layout tags the domain and the object id; an ``entity_id`` tag holding a dot
    is a full id, which only the optimized layout writes.
    """
    domain = tags.get("domain")
    object_id = tags.get("entity_id")
    if not domain or not object_id or "." in object_id:
        return None
    return f"{domain}.{object_id}"


def is_optimized_series(measurement: str, entity_id: str) -> bool:
    """Whether a series is the optimized layout's: measurement = domain, entity_id a full id."""
    domain, dot, _ = entity_id.partition(".")
    return bool(dot) and domain == measurement


def _range_ns(config: MigrationConfig) -> tuple[int, int]:
    start = _ALL_TIME[0] if config.start is None else to_time_ns(config.start)
    end = _ALL_TIME[1] if config.end is None else to_time_ns(config.end)
    return start, end


# Discovery ------------------------------------------------------------------------------------


async def legacy_rows(
    client: InfluxClient,
    measurement: str,
    function: Aggregate,
    *,
    selects: Callable[[str], bool],
    start_ns: int,
    end_ns: int,
    database: str,
    every_ns: int | None = None,
    fields: Collection[str] = STATE_FIELDS,
) -> AsyncIterator[tuple[int, str, AggregateRow]]:
    """``function`` of each state field of one legacy measurement, per selected legacy series.

    Yields (index of the field in STATE_FIELDS, full entity id, row); fields not in
    ``fields`` are not asked for, and series of the optimized layout never come up.
    """
    for index, name in enumerate(STATE_FIELDS):
        if name not in fields:
            continue
        rows = await client.aggregate(
            measurement,
            name,
            function,
            start_ns=start_ns,
            end_ns=end_ns,
            group_by=("domain", "entity_id"),
            every_ns=every_ns,
            database=database,
        )
        for row in rows:
            entity_id = legacy_entity_id(row.tags)
            if entity_id is not None and selects(entity_id):
                yield index, entity_id, row


@dataclass(frozen=True, kw_only=True)
class DiscoveredSource(SourceSummary):
    """What discovery found, with the details the backfill and validation reuse.

    ``point_count`` of each series is max(count of ``value``, count of ``state``), counted
    by the server: exact for an entity whose points all carry a number, or all carry a text
    state (numeric sensors, on/off entities, text states alike), and a lower bound for one
    that mixes plain numbers with states that are no number at all.
    """

    # Legacy measurement → its field keys.
    field_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Legacy measurement → (first, last) point time in ns, over the selected entities.
    extents: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def measurements(self) -> tuple[str, ...]:
        """The legacy measurements holding selected entities, by name."""
        return tuple(sorted(self.extents))

    def points_in(self, measurement: str) -> int:
        """Estimated points of one measurement."""
        return sum(s.point_count for s in self.series if s.measurement == measurement)


# Measurements discovered at the same time (each is a handful of small queries).
_DISCOVERING: Final = 4


async def discover(
    client: InfluxClient,
    database: str | None = None,
    config: MigrationConfig | None = None,
    *,
    until_ns: int | None = None,
    skip: Collection[str] = (),
) -> DiscoveredSource:
    """Find the legacy-layout history: measurements, entities, field keys, time range, counts.

    Only entities the config selects and points inside its time range (and before
    ``until_ns``, the cutover) count; measurements in ``skip`` are not looked at. Series of
    the optimized layout in the same database are not legacy data and are left out.
    """
    config = config or MigrationConfig()
    database = database or client.database
    start_ns, end_ns = _range_ns(config)
    if until_ns is not None:
        end_ns = min(end_ns, until_ns)
    slots = asyncio.Semaphore(_DISCOVERING)

    async def one(measurement: str) -> tuple[str, tuple[str, ...], dict[str, int], int, int] | None:
        async with slots:
            if not await client.tag_values("domain", measurement, database):
                return None  # no legacy series at all
            keys = tuple(await client.field_keys(measurement, database))
            counts: dict[str, int] = {}
            first: int | None = None
            last: int | None = None
            for function in (Aggregate.COUNT, Aggregate.FIRST, Aggregate.LAST):
                async for _, entity_id, row in legacy_rows(
                    client,
                    measurement,
                    function,
                    selects=config.selects,
                    start_ns=start_ns,
                    end_ns=end_ns,
                    database=database,
                    fields=keys,
                ):
                    if function is Aggregate.COUNT:
                        counts[entity_id] = max(counts.get(entity_id, 0), int(row.value))
                    elif function is Aggregate.FIRST:
                        first = row.time_ns if first is None else min(first, row.time_ns)
                    else:
                        last = row.time_ns if last is None else max(last, row.time_ns)
        if not counts or first is None or last is None:
            return None
        return measurement, keys, counts, first, last

    names = [m for m in await client.measurements(database) if m not in skip]
    found = [result for result in await asyncio.gather(*map(one, names)) if result]
    series: list[SourceSeries] = []
    field_keys: dict[str, tuple[str, ...]] = {}
    extents: dict[str, tuple[int, int]] = {}
    for measurement, keys, counts, first, last in found:
        field_keys[measurement] = keys
        extents[measurement] = (first, last)
        series.extend(
            SourceSeries(measurement=measurement, entity_id=entity_id, point_count=count)
            for entity_id, count in sorted(counts.items())
        )
    first_ns = min((first for first, _ in extents.values()), default=None)
    last_ns = max((last for _, last in extents.values()), default=None)
    return DiscoveredSource(
        series=tuple(series),
        first_time=None if first_ns is None else from_time_ns(first_ns),
        last_time=None if last_ns is None else from_time_ns(last_ns),
        field_keys=field_keys,
        extents=extents,
    )


async def legacy_measurements(client: InfluxClient, database: str) -> list[str]:
    """The measurements of a database holding legacy-layout series (a ``domain`` tag)."""
    return [
        measurement
        for measurement in await client.measurements(database)
        if await client.tag_values("domain", measurement, database)
    ]


# Points a dry run reads to measure the server's read rate.
_PROBE_POINTS: Final = 20_000


async def measure_read_rate(
    client: InfluxClient, database: str, source: DiscoveredSource
) -> float | None:
    """Points per second this server streams legacy points at, from a short timed read of
    the largest measurement; None when there is too little history to measure."""
    if not source.extents:
        return None
    measurement = max(source.measurements, key=source.points_in)
    points = source.points_in(measurement)
    first, last = source.extents[measurement]
    if points < 1_000 or last <= first:
        return None
    span = max((last - first) * _PROBE_POINTS // points, _MIN_WINDOW_NS)
    started = time.perf_counter()
    read = 0
    async for block in client.read_series(measurement, first, first + span, database):
        read += len(block.rows)
    elapsed = time.perf_counter() - started
    return read / elapsed if read >= 1_000 and elapsed > 0 else None


# Backfill -------------------------------------------------------------------------------------


class BackfillOutcome(StrEnum):
    """How a backfill run ended."""

    # Every window up to the cutover is in the target.
    COMPLETE = "complete"
    # stop() was called; the run resumes from the saved checkpoints.
    STOPPED = "stopped"
    # The error rate went above max_error_rate / rollback_threshold: the glue acts on it.
    PAUSE = "pause"
    ROLLBACK = "rollback"


_SEVERITY: Final = {"continue": 0, "pause": 1, "rollback": 2}


class _Stopping(Exception):
    """A write or wait gave up because the run is stopping."""


@dataclass(slots=True, eq=False)
class _Window:
    """One time window of one measurement on its way to the target."""

    measurement: str
    end_ns: int
    read: int = 0
    skipped: int = 0
    migrated: int = 0
    failed: int = 0
    # Batches holding some of its lines that have not landed yet.
    pending: int = 0
    # Read to its end (or abandoned after a failed read): no more lines will come.
    closed: bool = False
    # A read that failed half-way: its lines are written anyway, but a fresh read of the
    # window is what counts.
    abandoned: bool = False


# A block of a window's points, or (window, None) once the window was read to its end.
type _BlockItem = tuple[_Window, SeriesBlock | None]


@dataclass(slots=True)
class _Batch:
    lines: list[str] = field(default_factory=list)
    # (window, index of its first line): the lines of one window are contiguous.
    segments: list[tuple[_Window, int]] = field(default_factory=list)


class Backfill:
    """Copies the legacy history older than the cutover into the optimized layout.

    Measurement by measurement, oldest window first: the points of a window are streamed
    from the source, transformed, encoded and written in batches of ``batch_size`` lines with
    up to ``concurrent_batches`` writes in flight while reading goes on. A window's checkpoint
    is recorded once all of its lines landed (and windows are recorded in the order they were
    read), then saved through ``save``; a new Backfill given the saved state continues after
    the last recorded window. A window that was partly written before a crash or a stop is
    copied again, which adds nothing: a point re-written with the same series and time
    replaces itself.

    Windows adapt to the density of each measurement (aiming at a fixed number of points per
    window) and are read with time bounds, never with LIMIT/OFFSET.

    Rows become lines through the transform's :class:`SeriesEncoder`, which converts each
    distinct record of a series once: a state that repeats (a door that opens again) or a
    value beside unchanged attributes costs a dictionary look-up, not a transform and an
    encode. The optimized layout keeps the legacy time, so a line is its record's conversion
    followed by the row's own timestamp.

    Failures: points the server refuses are isolated by bisection, appended to the dead-letter
    file and counted as failed (a window copied again after a stop or crash may append its
    refused lines once more); an unreachable server is retried with the shared retry policy,
    and while its circuit is open the backfill waits in place, reading again from the start
    of the window it was in. After every recorded window the error rate is judged
    (:func:`decide_on_error_rate`); above a threshold the run stops with PAUSE or ROLLBACK for
    the glue to act on.
    """

    def __init__(
        self,
        client: InfluxClient,
        state: MigrationState,
        *,
        transform: BulkTransform,
        save: SaveState,
        dead_letter_path: Path | str,
        source_database: str | None = None,
        target_database: str | None = None,
        on_progress: ProgressListener | None = None,
        on_connection: ConnectionListener | None = None,
        source: DiscoveredSource | None = None,
        retry: RetryPolicy | None = None,
        window_ns: int = DEFAULT_WINDOW_NS,
        progress_interval: float = PROGRESS_INTERVAL,
        rollups: bool = False,
        timer: Timer = SYSTEM_TIMER,
    ) -> None:
        """Prepare a run; ``source`` (from :func:`discover`) sizes the first windows.

        ``on_connection`` hears False when the server stops answering the backfill and True
        when it answers again. With ``rollups``, once everything is copied the rollups of the
        migrated range are recomputed from the target's raw points (all of it again after a
        resume: it is idempotent). ``timer`` paces, backs off and measures throughput.
        """
        self._timer = timer
        self._rollups = rollups
        self.rollup_points = 0
        self.state = state
        self._client = client
        self._transform = transform
        self._save = save
        self._dead_letters = DeadLetterFile(dead_letter_path)
        self._source_db = source_database or client.database
        self._target_db = target_database or self._source_db
        self._on_progress = on_progress
        self._on_connection = on_connection
        self._reachable = True
        self._source = source
        policy = retry or RetryPolicy()
        self._backoff = policy.backoff
        self._breaker = policy.new_breaker(timer.monotonic)
        self._default_window = max(window_ns, _MIN_WINDOW_NS)
        self._progress_interval = progress_interval

        config = state.config
        self._batch_size = config.batch_size
        self._concurrency = config.concurrent_batches
        # Enough points per window that per-window queries are noise, few enough that a
        # resume repeats little.
        self._window_points = min(
            max(config.batch_size * config.concurrent_batches * 10, 20_000), 200_000
        )
        self._windows: dict[str, int] = {}
        self._pending: deque[_Window] = deque()
        self._batch = _Batch()
        # Measurement → (series, its encoder), least recently used first.
        self._encoders: dict[str, tuple[tuple[Mapping[str, str], tuple[str, ...]], RowEncoder]] = {}
        self._stop = asyncio.Event()
        self._decision = "continue"
        self._dirty = asyncio.Event()
        self._finished = False
        self._processed = 0
        self._emitted = 0
        self._rate: float | None = None
        self._rate_started = 0.0
        self._throughput = ThroughputWindow()
        self._last_progress = 0.0
        self._progress_timer: asyncio.TimerHandle | None = None
        self._ran = False
        self._rediscovered = False

    @property
    def points_per_second(self) -> float | None:
        """Points written or dead-lettered per second over the last minute."""
        return self._throughput.points_per_second(self._timer.monotonic())

    @property
    def live_counts(self) -> tuple[int, int, int]:
        """Points read, migrated and failed so far, windows not yet recorded included.

        What progress shows while a large window is still being copied (the state's counters
        move once per recorded window).
        """
        state = self.state
        pending = [window for window in self._pending if not window.abandoned]
        return (
            state.records_read + sum(window.read for window in pending),
            state.records_migrated + sum(window.migrated for window in pending),
            state.records_failed + sum(window.failed for window in pending),
        )

    @property
    def dead_letter_count(self) -> int:
        """Records in the dead-letter file (this run's and earlier ones)."""
        return self._dead_letters.count

    def stop(self) -> None:
        """Stop soon: writes in flight finish, recorded windows are saved, run() returns."""
        self._stop.set()

    async def run(self) -> BackfillOutcome:
        """Copy until done, stopped or the error rate says otherwise; raises on fatal errors.

        Fatal errors are the ones waiting cannot fix (InvalidAuth, DatabaseNotFound,
        QueryFailed); the windows recorded before one are in ``state`` and were saved.
        """
        if self._ran:
            raise RuntimeError("a Backfill runs once; create a new one to resume")
        self._ran = True
        state = self.state
        if state.cutover_ns is None:
            raise ValueError("the backfill needs the cutover time of the migration")
        await self._dead_letters.open()
        if not state.checkpoints:
            await self._plan(state.cutover_ns, await self._discover())
        self._rate = self._rate_limit()
        self._rate_started = self._timer.monotonic()
        try:
            while True:
                await self._run_pipeline()
                if self._decision != "continue" or self._stop.is_set():
                    break
                if not all(checkpoint.done for checkpoint in state.checkpoints.values()):
                    break
                # Everything planned is copied. Legacy points that reached the server late
                # (another writer's backlog) may sit in a measurement nobody planned: look
                # once more, and copy what turned up.
                if self._rediscovered or not await self._plan_late_arrivals(state.cutover_ns):
                    break
        finally:
            if self._progress_timer is not None:
                self._progress_timer.cancel()
                self._progress_timer = None
        self._report_progress()
        if self._decision != "continue":
            return BackfillOutcome(self._decision)
        if not all(checkpoint.done for checkpoint in state.checkpoints.values()):
            return BackfillOutcome.STOPPED
        if self._rollups and not await self._fill_rollups(state.cutover_ns):
            return BackfillOutcome.STOPPED
        return BackfillOutcome.COMPLETE

    async def _fill_rollups(self, cutover_ns: int) -> bool:
        """Roll up the migrated range, up to the end of the hour holding the cutover (whose
        window also holds live points); whether it got to the end."""
        starts = [checkpoint.start_ns for checkpoint in self.state.checkpoints.values()]
        if not starts:
            return True

        async def fill() -> int:
            return await build_rollups(
                self._client,
                self._target_db,
                min(starts),
                window_end(cutover_ns + 1, _ROLLUP_ALIGN_NS),
                stopped=self._stop.is_set,
            )

        self.rollup_points = await call_with_retry(
            fill, backoff=self._backoff, breaker=self._breaker
        )
        if self._stop.is_set():
            return False
        self.state.rollups_filled = True
        return True

    async def _run_pipeline(self) -> None:
        try:
            await self._pipeline()
        except BaseExceptionGroup as group:
            # Report what went wrong, not the task groups around it.
            error: BaseException = group
            while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
                error = error.exceptions[0]
            if error is group:
                raise
            raise error from None

    # Planning

    async def _discover(self) -> DiscoveredSource:
        return self._source or await discover(
            self._client, self._source_db, self.state.config, until_ns=self.state.cutover_ns
        )

    async def _plan(self, cutover_ns: int, source: DiscoveredSource) -> None:
        """Give every legacy measurement a checkpoint from its first point to the cutover."""
        self._source = source
        _, config_end = _range_ns(self.state.config)
        end_ns = min(cutover_ns, config_end)
        state = self.state
        # What progress and the ETA are measured against: the points to copy, counted now.
        added = sum(source.points_in(m) for m in source.measurements if m not in state.checkpoints)
        state.estimated_total_points = (
            (state.estimated_total_points or 0) + added if state.checkpoints else added
        )
        for measurement in source.measurements:
            if measurement in self.state.checkpoints:
                continue
            first, _ = source.extents[measurement]
            # Not the last point seen by discovery: legacy points keep arriving until the
            # cutover, and all of them are the backfill's.
            self.state.checkpoints[measurement] = BackfillCheckpoint.starting(
                first, max(first, end_ns)
            )
        ledger = self.state.ledger
        if ledger is not None:
            for series in source.series:
                ledger.record_copied(series.measurement, (series.entity_id,))
        await self._save(self.state)

    async def _plan_late_arrivals(self, cutover_ns: int) -> bool:
        """Discover again; plan measurements that turned up since; whether there were any."""
        self._rediscovered = True
        config = self.state.config
        again = await discover(
            self._client, self._source_db, config, until_ns=cutover_ns, skip=self.state.checkpoints
        )
        new = list(again.measurements)
        await self._plan(cutover_ns, again)
        if new:
            _LOGGER.info("Legacy measurements appeared during the backfill: %s", ", ".join(new))
        return bool(new)

    def _rate_limit(self) -> float | None:
        state = self.state
        estimate = state.estimated_total_points
        if estimate is None and self._source is not None:
            estimate = sum(s.point_count for s in self._source.series)
        limit = backfill_rate_limit(state.config, estimate or 0)
        if limit is not None and limit <= 0:
            _LOGGER.warning("No point estimate to spread the backfill over; not rate limiting")
            return None
        return limit

    def _first_window(self, measurement: str) -> int:
        source = self._source
        if source is not None and measurement in source.extents:
            first, last = source.extents[measurement]
            points = source.points_in(measurement)
            if points > 0 and last > first:
                return max(_MIN_WINDOW_NS, (last - first) * self._window_points // points)
        return self._default_window

    def _adapt(self, measurement: str, span: int, points: int) -> None:
        """Size the next window from the density of the last one."""
        if points == 0:
            size = span * _WINDOW_STEP
        else:
            size = span * self._window_points // points
            size = min(max(size, span // _WINDOW_STEP), span * _WINDOW_STEP)
        self._windows[measurement] = max(size, _MIN_WINDOW_NS)

    # The pipeline

    async def _pipeline(self) -> None:
        # Reading, converting and writing overlap: the reader asks for the next window while
        # earlier blocks are converted, and writes are in flight while conversion goes on.
        self._finished = False
        blocks: asyncio.Queue[_BlockItem | None] = asyncio.Queue(maxsize=_READ_AHEAD)
        batches: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=self._concurrency)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._save_loop())
            writers = [
                group.create_task(self._write_loop(batches)) for _ in range(self._concurrency)
            ]
            reader = group.create_task(self._read_all(blocks))
            await self._convert_all(blocks, batches)
            # Stopping early leaves the reader waiting for room in the queue.
            reader.cancel()
            for _ in writers:
                await batches.put(None)
            await asyncio.wait(writers)
            self._finished = True
            self._dirty.set()

    async def _read_all(self, blocks: asyncio.Queue[_BlockItem | None]) -> None:
        """Stream every window of every unfinished measurement into ``blocks``.

        A few measurements are read at once, each oldest window first, so that one query's
        round trips overlap another's data: histories hold many small measurements.
        """
        checkpoints = self.state.checkpoints
        todo = deque(
            sorted(
                (name for name, checkpoint in checkpoints.items() if not checkpoint.done),
                key=lambda name: (checkpoints[name].completed_until_ns, name),
            )
        )

        async def reader() -> None:
            while todo and not self._stop.is_set():
                await self._read_measurement(todo.popleft(), blocks)

        async with asyncio.TaskGroup() as readers:
            for _ in range(_READERS):
                readers.create_task(reader())
        await blocks.put(None)

    async def _read_measurement(
        self, measurement: str, blocks: asyncio.Queue[_BlockItem | None]
    ) -> None:
        checkpoint = self.state.checkpoints[measurement]
        position = checkpoint.completed_until_ns
        self._windows.setdefault(measurement, self._first_window(measurement))
        while position < checkpoint.end_ns and not self._stop.is_set():
            end = min(position + self._windows[measurement], checkpoint.end_ns)
            window = _Window(measurement, end)
            self._pending.append(window)
            try:
                read = await self._read_window(blocks, window, position, end)
                if read == 0:
                    # Skip the whole gap up to the next point in one go.
                    window.end_ns = await self._next_point(measurement, end, checkpoint.end_ns)
            except CannotConnect as err:
                self._reached(False)
                window.abandoned = True
                await blocks.put((window, None))
                # Debug only: the integration logs the outage once for the config entry.
                _LOGGER.debug(
                    "Reading %s failed (%s); waiting for InfluxDB, then reading it again",
                    measurement,
                    err,
                )
                self._breaker.record_failure()
                # Smaller windows, in case the server gave up on a large one.
                self._windows[measurement] = max((end - position) // 2, _MIN_WINDOW_NS)
                await self._wait_for_server()
                continue
            self._reached(True)
            await blocks.put((window, None))
            if read:
                self._adapt(measurement, end - position, read)
            position = window.end_ns

    async def _read_window(
        self, blocks: asyncio.Queue[_BlockItem | None], window: _Window, start: int, end: int
    ) -> int:
        """Queue the blocks of one window; return how many points they hold."""
        selects = self.state.config.selects if self.state.config.entities else None
        read = 0
        async for block in self._client.read_series(
            window.measurement, start, end, self._source_db, fields=self._transform.fields_read
        ):
            entity_id = legacy_entity_id(block.tags)
            if entity_id is None or (selects is not None and not selects(entity_id)):
                continue  # optimized series in a shared database, or not selected
            read += len(block.rows)
            await blocks.put((window, block))
        return read

    async def _convert_all(
        self, blocks: asyncio.Queue[_BlockItem | None], batches: asyncio.Queue[_Batch | None]
    ) -> None:
        while (item := await blocks.get()) is not None:
            window, block = item
            if block is None:
                window.closed = True
                self._commit()
            else:
                await self._copy(block, window, batches)
            if self._stop.is_set():
                return
        await self._emit(batches)

    async def _next_point(self, measurement: str, start: int, end: int) -> int:
        """Time of the first point to copy in [start, end), or ``end`` when there is none."""
        found = end
        async for _, _, row in legacy_rows(
            self._client,
            measurement,
            Aggregate.FIRST,
            selects=self.state.config.selects,
            start_ns=start,
            end_ns=end,
            database=self._source_db,
        ):
            found = min(found, row.time_ns)
        return found

    async def _copy(
        self, block: SeriesBlock, window: _Window, queue: asyncio.Queue[_Batch | None]
    ) -> None:
        """The hot path: one row of a series at a time into the current batch."""
        encoder = self._encoder_for(block)
        batch_size = self._batch_size
        self._join(window)
        lines = self._batch.lines
        skipped = 0
        rows = block.rows
        for first in range(0, len(rows), _SLICE_ROWS):
            for row in rows[first : first + _SLICE_ROWS]:
                prefix = encoder(row)
                if not prefix:
                    skipped += 1
                    continue
                lines.append(f"{prefix} {row[0]}")
                if len(lines) >= batch_size:
                    await self._emit(queue)
                    if self._stop.is_set():
                        return
                    self._join(window)
                    lines = self._batch.lines
            # Converting is CPU work that never waits: let the loop serve the sockets (the
            # next chunk, the next query, write answers) every few milliseconds.
            await asyncio.sleep(0)
        window.read += len(block.rows)
        window.skipped += skipped

    def _encoder_for(self, block: SeriesBlock) -> RowEncoder:
        """The encoder of the block's series (kept for the few series being read at once;
        another series of the same measurement starts afresh)."""
        series = (block.tags, block.fields)
        encoders = self._encoders
        found = encoders.pop(block.measurement, None)
        if found is None or found[0] != series:
            found = (series, self._transform.series_encoder(block.fields, block.point))
        encoders[block.measurement] = found
        if len(encoders) > 2 * _READERS:
            del encoders[next(iter(encoders))]
        return found[1]

    def _join(self, window: _Window) -> None:
        """Make the current batch's next lines count for ``window``."""
        segments = self._batch.segments
        if not segments or segments[-1][0] is not window:
            segments.append((window, len(self._batch.lines)))
            window.pending += 1

    async def _emit(self, queue: asyncio.Queue[_Batch | None]) -> None:
        """Hand the current batch to the writers (waiting while they are all busy)."""
        batch, self._batch = self._batch, _Batch()
        if not batch.lines:
            self._land(batch, [])
            return
        if self._rate is not None:
            due = self._rate_started + self._emitted / self._rate
            if (delay := due - self._timer.monotonic()) > 0:
                await self._sleep(delay)
        self._emitted += len(batch.lines)
        await queue.put(batch)

    async def _write_loop(self, queue: asyncio.Queue[_Batch | None]) -> None:
        while (batch := await queue.get()) is not None:
            if self._stop.is_set():
                continue  # its windows stay unrecorded and are copied again on resume
            try:
                failed = await self._deliver(batch.lines, 0, len(batch.lines))
            except _Stopping:
                continue
            self._land(batch, failed)

    async def _deliver(self, lines: list[str], low: int, high: int) -> list[int]:
        """Write lines[low:high]; return the indexes of the lines the server refused."""
        body = "\n".join(lines[low:high]).encode()
        try:
            await call_with_retry(
                lambda: self._write(body),
                backoff=self._backoff,
                breaker=self._breaker,
                sleep=self._sleep,
            )
        except PointsRejected as err:
            # The valid points of a refused write are stored anyway, so halves can be
            # re-sent until every refused line is found.
            reason = str(err)
            halves = err.halves(lines[low:high])
            if halves is None:
                ledger = self.state.ledger
                for line in lines[low:high]:
                    if ledger is not None and (entity := tag_value(line, "entity_id")):
                        # Recorded before the line is: a refused point must never be cleaned.
                        ledger.dead_lettered.add(entity)
                    await self._dead_letters.append(
                        reason=reason, line=line, database=self._target_db
                    )
                return list(range(low, high))
            middle = low + len(halves[0])
            return await self._deliver(lines, low, middle) + await self._deliver(
                lines, middle, high
            )
        return []

    async def _write(self, body: bytes) -> None:
        if self._stop.is_set():
            raise _Stopping
        try:
            await self._client.write(body, self._target_db)
        except CannotConnect:
            self._reached(False)
            raise
        except PointsRejected:
            self._reached(True)
            raise
        self._reached(True)

    async def _wait_for_server(self) -> None:
        """Return once the server answers again (the circuit breaker paces the probes)."""
        try:
            await call_with_retry(
                self._ping, backoff=self._backoff, breaker=self._breaker, sleep=self._sleep
            )
        except _Stopping:
            return

    async def _ping(self) -> None:
        if self._stop.is_set():
            raise _Stopping
        try:
            await self._client.ping()
        except CannotConnect:
            self._reached(False)
            raise
        self._reached(True)

    def _reached(self, reachable: bool) -> None:
        """Tell the listener when the server stops or starts answering again."""
        if reachable != self._reachable:
            self._reachable = reachable
            if self._on_connection is not None:
                self._on_connection(reachable)

    async def _sleep(self, seconds: float) -> None:
        """Sleep on the timer, but wake up at once when the run is stopping."""
        if self._stop.is_set():
            return
        sleeping = asyncio.ensure_future(self._timer.sleep(seconds))
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((sleeping, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            stopping.cancel()

    # Accounting

    def _land(self, batch: _Batch, failed: list[int]) -> None:
        """Count a written batch towards its windows and record the windows now complete."""
        segments = batch.segments
        total = len(batch.lines)
        for index, (window, first) in enumerate(segments):
            last = segments[index + 1][1] if index + 1 < len(segments) else total
            refused = bisect_left(failed, last) - bisect_left(failed, first)
            window.failed += refused
            window.migrated += last - first - refused
            window.pending -= 1
        self._processed += total
        self._throughput.add(self._timer.monotonic(), self._processed)
        self._commit()
        self._schedule_progress()

    def _commit(self) -> None:
        """Record the finished windows at the head of the queue, in the order they were read."""
        state = self.state
        pending = self._pending
        recorded = False
        while pending and pending[0].closed and pending[0].pending == 0:
            window = pending.popleft()
            if window.abandoned:
                continue
            state.record_window(
                window.measurement,
                window.end_ns,
                read=window.read,
                migrated=window.migrated,
                failed=window.failed,
                skipped=window.skipped,
            )
            recorded = True
            decision = decide_on_error_rate(state.config, state)
            if _SEVERITY[decision] > _SEVERITY[self._decision]:
                self._decision = decision
                _LOGGER.warning(
                    "Backfill error rate is too high (%s of %s points failed): %s",
                    state.records_failed,
                    state.records_migrated + state.records_failed,
                    decision,
                )
                self._stop.set()
        if recorded:
            self._dirty.set()
            self._schedule_progress()

    async def _save_loop(self) -> None:
        """Save the state whenever windows were recorded, one save at a time."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._save(self.state)
            if self._finished and not self._dirty.is_set():
                return

    def _schedule_progress(self) -> None:
        if self._on_progress is None or self._progress_timer is not None:
            return
        wait = self._last_progress + self._progress_interval - self._timer.monotonic()
        if wait <= 0:
            self._report_progress()
        else:
            self._progress_timer = asyncio.get_running_loop().call_later(
                wait, self._report_progress
            )

    def _report_progress(self) -> None:
        self._progress_timer = None
        self._last_progress = self._timer.monotonic()
        if self._on_progress is not None:
            self._on_progress(self.state)


# Validation -----------------------------------------------------------------------------------

type _Counts = dict[tuple[str, int], list[int]]


def in_sample(entity_id: str, span_ns: int, share: float) -> bool:
    """Whether one entity-week (the week starting at ``span_ns``) belongs to the record-level
    sample; the same on every run."""
    digest = hashlib.blake2b(f"{entity_id}|{span_ns}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) < share * 2**64


class Validator:
    """Compares what the backfill wrote with what it read.

    - Counts per entity and UTC day, of the ``value`` and of the ``state`` fields, in both
      layouts over the migrated range: legacy by measurement + ``domain`` + ``entity_id``
      (object id), optimized by measurement (the domain) + ``entity_id`` (full id).
    - Record by record for a ``validate_percentage`` sample of the entity-weeks (chosen by a
      hash of entity and week, so a re-run checks the same ones): ``transform`` of every legacy
      point against the optimized point actually stored at that time.
    - The integrity score is matching / compared, over entity-day counts and sampled records
      together; 1.0 when everything compared is identical.
    - Representative dashboard queries are timed against both layouts (median of a few runs).

    - Live pairs: from the cutover both layouts are recorded live for the same states. For
      every state recorded in both (legacy points and optimized point at the same entity and
      time, up to ``live_until_ns``), ``transform`` of the legacy points must give exactly the
      optimized point. The backfill sample can only show that the backfill wrote what the
      transform gives; the live pairs show whether the transform gives what the live writer
      writes, on the user's own data, including history another writer (core's
      ``influxdb`` integration) keeps adding to the source.

    Every legacy measurement is counted, not only the planned ones, so legacy points the
    backfill never saw show up as a difference. With the migration's ledger, entities whose
    legacy points the cleanup already deleted are left out, and on days that held optimized
    points before the migration the optimized layout only has to hold every legacy point
    (it may hold more). After :meth:`run`, ``compared_entities`` names the entities compared.
    Every difference counts against the integrity score and against its entity in
    ``mismatches`` (so it is not proven), and the first few are kept as examples.
    """

    def __init__(
        self,
        client: InfluxClient,
        state: MigrationState,
        *,
        transform: Transform,
        source_database: str | None = None,
        target_database: str | None = None,
        repeats: int = 3,
        live_until_ns: int | None = None,
        rollups: bool = False,
    ) -> None:
        """Prepare a validation of the windows ``state`` records as copied.

        Live pairs are compared up to ``live_until_ns`` (default: ``LIVE_SETTLE_NS`` before
        the run starts, so points still on their way are not read half-delivered).
        """
        self.state = state
        self._client = client
        self._transform = transform
        self._source_db = source_database or client.database
        self._target_db = target_database or self._source_db
        self._repeats = max(repeats, 1)
        self._ledger = state.ledger
        self._live_until_ns = live_until_ns
        self._rollups = rollups
        self._examples: list[MismatchExample] = []
        self.compared_entities: frozenset[str] = frozenset()

    def _protected(self, entity: str) -> tuple[Span, ...]:
        return () if self._ledger is None else self._ledger.protected_spans(entity)

    def _cleaned(self, entity: str) -> bool:
        return self._ledger is not None and bool(self._ledger.cleaned.get(entity))

    def migrated_range(self) -> tuple[int, int]:
        """[start, end) of the history the checkpoints say was copied."""
        checkpoints = self.state.checkpoints.values()
        start = min((cp.start_ns for cp in checkpoints), default=0)
        end = max((cp.completed_until_ns for cp in checkpoints), default=start)
        return start, max(start, end)

    async def run(self) -> ValidationResult:
        """Count, sample and time; the result goes into ``state.validation`` by the caller."""
        start, end = self.migrated_range()
        share = self.state.config.validate_percentage
        legacy, places = await self._legacy_counts(start, end)
        domains = sorted({entity.partition(".")[0] for entity in places})
        optimized = await self._optimized_counts(domains, start, end)
        for counts in (legacy, optimized):
            for key in [key for key in counts if self._cleaned(key[0])]:
                del counts[key]

        mismatches: dict[str, dict[str, int]] = {}

        def mismatch(entity: str) -> dict[str, int]:
            return mismatches.setdefault(
                entity, {"days": 0, "records": 0, "live_pairs": 0, "rollups": 0}
            )

        compared = matching = 0
        for key in legacy.keys() | optimized.keys():
            compared += 1
            want, have = legacy.get(key, [0, 0]), optimized.get(key, [0, 0])
            if want == have or (
                in_spans(key[1], self._protected(key[0]))
                and all(h >= w for w, h in zip(want, have, strict=True))
            ):
                matching += 1
            else:
                mismatch(key[0])["days"] += 1
        # Sampled by entity and week: one query per measurement reads a week of every
        # sampled entity in it, and the sample is still spread over the whole history.
        sample = sorted(
            {
                (span, entity)
                for entity, day in legacy.keys() | optimized.keys()
                if in_sample(entity, span := day - day % _SAMPLE_SPAN_NS, share)
            }
        )
        records = 0
        # Spans are compared a few at once: each is a few small queries per measurement.
        slots = asyncio.Semaphore(_COMPARING_SPANS)

        async def compare(span: int, group: list[str]) -> tuple[int, dict[str, int]]:
            async with slots:
                return await self._compare_records(
                    group, places, max(span, start), min(span + _SAMPLE_SPAN_NS, end)
                )

        async with asyncio.TaskGroup() as comparisons:
            tasks = [
                comparisons.create_task(compare(span, group))
                for span, group in _group_by_span(sample)
            ]
        for task in tasks:
            checked, wrong = task.result()
            records += checked
            matching += checked - sum(wrong.values())
            for entity, count in wrong.items():
                mismatch(entity)["records"] += count
        compared += records

        pairs, wrong_pairs = await self._compare_live_pairs()
        compared += pairs
        matching += pairs - sum(wrong_pairs.values())
        for entity, count in wrong_pairs.items():
            mismatch(entity)["live_pairs"] += count

        rollups_compared = 0
        if self._rollups:
            # The same entity-weeks as the records: their rollups against a recomputation.
            for span, group in _group_by_span(sample):
                check = await check_rollups(
                    self._client,
                    self._target_db,
                    group,
                    max(span, start),
                    min(span + _SAMPLE_SPAN_NS, end),
                )
                rollups_compared += check.compared
                matching += check.compared - sum(check.mismatches.values())
                for entity, count in check.mismatches.items():
                    mismatch(entity)["rollups"] += count
            compared += rollups_compared

        legacy_points, optimized_points = _points_per_entity(legacy), _points_per_entity(optimized)
        result_mismatches = {
            entity: EntityMismatch(
                legacy_points=legacy_points.get(entity, 0),
                optimized_points=optimized_points.get(entity, 0),
                mismatched_days=found["days"],
                mismatched_records=found["records"],
                mismatched_live_pairs=found["live_pairs"],
                mismatched_rollups=found["rollups"],
            )
            for entity, found in sorted(mismatches.items())
        }
        self.compared_entities = frozenset(entity for entity, _ in legacy.keys() | optimized.keys())
        return ValidationResult(
            integrity_score=matching / compared if compared else 1.0,
            entities_checked=len(self.compared_entities),
            records_sampled=records,
            mismatches=result_mismatches,
            query_timings=await self._time_queries(legacy, places, start, end),
            live_pairs_compared=pairs,
            rollups_compared=rollups_compared,
            examples=tuple(sorted(self._examples, key=lambda e: (e.time_ns, e.entity_id))),
        )

    async def _legacy_counts(self, start: int, end: int) -> tuple[_Counts, dict[str, set[str]]]:
        """Per (entity, day): [value count, state count]; and entity → legacy measurements."""
        counts: _Counts = {}
        places: dict[str, set[str]] = {}
        for measurement in sorted(await legacy_measurements(self._client, self._source_db)):
            async for index, entity, row in legacy_rows(
                self._client,
                measurement,
                Aggregate.COUNT,
                selects=self.state.config.selects,
                start_ns=start,
                end_ns=end,
                database=self._source_db,
                every_ns=DAY_NS,
            ):
                counts.setdefault((entity, row.time_ns), [0, 0])[index] += int(row.value)
                places.setdefault(entity, set()).add(measurement)
        return counts, places

    async def _optimized_counts(self, domains: Iterable[str], start: int, end: int) -> _Counts:
        counts: _Counts = {}
        selects = self.state.config.selects
        for domain in domains:
            for index, name in enumerate(STATE_FIELDS):
                rows = await self._client.aggregate(
                    domain,
                    name,
                    Aggregate.COUNT,
                    start_ns=start,
                    end_ns=end,
                    group_by=("entity_id",),
                    every_ns=DAY_NS,
                    database=self._target_db,
                )
                for row in rows:
                    entity = row.tags.get("entity_id", "")
                    if not is_optimized_series(domain, entity) or not selects(entity):
                        continue
                    counts.setdefault((entity, row.time_ns), [0, 0])[index] += int(row.value)
        return counts

    async def _compare_records(
        self,
        entities: list[str],
        places: Mapping[str, set[str]],
        start: int,
        end: int,
    ) -> tuple[int, dict[str, int]]:
        """Compare [start, end) of the sampled entities; (records compared, wrong per entity)."""
        wanted = set(entities)
        expected: dict[tuple[str, int], Point | None] = {}
        by_measurement: dict[str, set[str]] = {}
        for entity in entities:
            for measurement in places.get(entity, ()):
                by_measurement.setdefault(measurement, set()).add(entity.partition(".")[2])
        for measurement, object_ids in sorted(by_measurement.items()):
            async for block in self._client.read_series(
                measurement, start, end, self._source_db, where={"entity_id": object_ids}
            ):
                legacy_id = legacy_entity_id(block.tags)
                if legacy_id is None or legacy_id not in wanted:
                    continue
                for point in block.points():
                    expected[(legacy_id, point.time_ns)] = self._transform(point)
        actual: dict[tuple[str, int], Point] = {}
        by_domain: dict[str, set[str]] = {}
        for entity in entities:
            by_domain.setdefault(entity.partition(".")[0], set()).add(entity)
        for domain, ids in sorted(by_domain.items()):
            async for point in self._client.read_points(
                domain, start, end, self._target_db, where={"entity_id": ids}
            ):
                actual[(point.tags["entity_id"], point.time_ns)] = point
        checked = 0
        wrong: dict[str, int] = {}
        for key in expected.keys() | actual.keys():
            want, have = expected.get(key), actual.get(key)
            if want is None and have is None:
                continue  # a legacy point with nothing to copy, and nothing copied
            if key not in expected and in_spans(key[1], self._protected(key[0])):
                continue  # recorded in the optimized layout before the migration
            checked += 1
            written = None if want is None else as_written(want)
            if written != have:
                wrong[key[0]] = wrong.get(key[0], 0) + 1
                self._example(key, "backfill", [] if written is None else [written], have)
        return checked, wrong

    async def _compare_live_pairs(self) -> tuple[int, dict[str, int]]:
        """Compare the states recorded in both layouts since the cutover; (pairs compared,
        differing pairs per entity)."""
        cutover = self.state.cutover_ns
        until = self._live_until_ns
        if until is None:
            until = time.time_ns() - LIVE_SETTLE_NS
        if cutover is None or until <= cutover:
            return 0, {}
        selects = self.state.config.selects
        fields = self._transform.fields_read if isinstance(self._transform, _ReadsFields) else None
        # Which stretches of the window hold legacy points, and in which measurements: the
        # window may be long (a paused migration keeps recording), most of it quiet.
        chunks: dict[int, set[str]] = {}
        for measurement in sorted(await legacy_measurements(self._client, self._source_db)):
            async for _, _, row in legacy_rows(
                self._client,
                measurement,
                Aggregate.COUNT,
                selects=selects,
                start_ns=cutover,
                end_ns=until,
                database=self._source_db,
                every_ns=_LIVE_CHUNK_NS,
            ):
                if row.value:
                    chunks.setdefault(row.time_ns, set()).add(measurement)
        checked = 0
        wrong: dict[str, int] = {}
        for bucket, measurements in sorted(chunks.items()):
            chunk, chunk_end = max(bucket, cutover), min(bucket + _LIVE_CHUNK_NS, until)
            expected: dict[tuple[str, int], list[Point]] = {}
            for measurement in sorted(measurements):
                async for block in self._client.read_series(
                    measurement, chunk, chunk_end, self._source_db, fields=fields
                ):
                    entity = legacy_entity_id(block.tags)
                    if entity is None or not selects(entity) or self._cleaned(entity):
                        continue
                    for point in block.points():
                        found = expected.setdefault((entity, point.time_ns), [])
                        if (optimized := self._transform(point)) is not None:
                            found.append(as_written(optimized))
            by_domain: dict[str, set[str]] = {}
            for entity, _ in expected:
                by_domain.setdefault(entity.partition(".")[0], set()).add(entity)
            actual: dict[tuple[str, int], list[Point]] = {}
            for domain, ids in sorted(by_domain.items()):
                async for point in self._client.read_points(
                    domain, chunk, chunk_end, self._target_db, where={"entity_id": ids}
                ):
                    key = (point.tags["entity_id"], point.time_ns)
                    actual.setdefault(key, []).append(point)
            # A state in only one layout is not a pair: it tells nothing about the transform
            # (its other point may still be on its way, or was never meant to be written).
            for key in sorted(expected.keys() & actual.keys()):
                checked += 1
                want, have = expected[key], actual[key]
                if sorted(map(_canonical, want)) != sorted(map(_canonical, have)):
                    wrong[key[0]] = wrong.get(key[0], 0) + 1
                    self._example(key, "live_pair", want, have)
        return checked, wrong

    def _example(
        self, key: tuple[str, int], source: str, want: list[Point], have: Point | list[Point] | None
    ) -> None:
        if len(self._examples) >= _EXAMPLES:
            return
        stored = [] if have is None else [have] if isinstance(have, Point) else have
        # With several points for one state (two writers of the legacy layout, say), show a
        # transformed one that matches nothing stored, against the stored one closest to it.
        unmatched = [p for p in want if _canonical(p) not in map(_canonical, stored)]
        extra = [p for p in stored if _canonical(p) not in map(_canonical, want)]
        if unmatched or extra:
            expected = unmatched[0] if unmatched else None
            candidates = extra or stored
            found = next(
                (
                    p
                    for p in candidates
                    if expected is not None and p.tags.keys() == expected.tags.keys()
                ),
                candidates[0] if candidates else None,
            )
            differences = point_differences(expected, found)
        else:
            differences = {"points": (len(want), len(stored))}
        self._examples.append(
            MismatchExample(
                entity_id=key[0], time_ns=key[1], source=source, differences=differences
            )
        )

    async def _time_queries(
        self, legacy: _Counts, places: Mapping[str, set[str]], start: int, end: int
    ) -> tuple[QueryTiming, ...]:
        """Time what dashboards ask most, on both layouts, over the migrated range."""
        if not legacy:
            return ()
        busiest: dict[str, int] = {}
        for (entity, _), (values, _) in legacy.items():
            busiest[entity] = busiest.get(entity, 0) + values
        entity = max(busiest, key=lambda e: (busiest[e], e))
        domain, _, object_id = entity.partition(".")
        domains = {e.partition(".")[0] for e in places}
        shown = "sensor" if "sensor" in domains else domain
        shown_measurements = sorted(
            {m for e, ms in places.items() if e.partition(".")[0] == shown for m in ms}
        )
        aggregate = self._client.aggregate
        queries: list[tuple[str, Callable[[], Awaitable[object]], Callable[[], Awaitable[object]]]]
        queries = [
            (
                "entity_hourly_mean",
                lambda: aggregate(
                    sorted(places[entity]),
                    "value",
                    Aggregate.MEAN,
                    start_ns=start,
                    end_ns=end,
                    every_ns=HOUR_NS,
                    where={"domain": [domain], "entity_id": [object_id]},
                    database=self._source_db,
                ),
                lambda: aggregate(
                    domain,
                    "value",
                    Aggregate.MEAN,
                    start_ns=start,
                    end_ns=end,
                    every_ns=HOUR_NS,
                    where={"entity_id": [entity]},
                    database=self._target_db,
                ),
            ),
            (
                f"{shown}_last_values",
                lambda: aggregate(
                    shown_measurements,
                    "value",
                    Aggregate.LAST,
                    start_ns=start,
                    end_ns=end,
                    group_by=("entity_id",),
                    where={"domain": [shown]},
                    database=self._source_db,
                ),
                lambda: aggregate(
                    shown,
                    "value",
                    Aggregate.LAST,
                    start_ns=start,
                    end_ns=end,
                    group_by=("entity_id",),
                    database=self._target_db,
                ),
            ),
            (
                f"{shown}_daily_count",
                lambda: aggregate(
                    shown_measurements,
                    "value",
                    Aggregate.COUNT,
                    start_ns=start,
                    end_ns=end,
                    every_ns=DAY_NS,
                    where={"domain": [shown]},
                    database=self._source_db,
                ),
                lambda: aggregate(
                    shown,
                    "value",
                    Aggregate.COUNT,
                    start_ns=start,
                    end_ns=end,
                    every_ns=DAY_NS,
                    database=self._target_db,
                ),
            ),
        ]
        timings: list[QueryTiming] = []
        for name, on_legacy, on_optimized in queries:
            try:
                legacy_ms = await self._median_ms(on_legacy)
                optimized_ms = await self._median_ms(on_optimized)
            except QueryFailed as err:
                # The timings are information only; data the server cannot aggregate (a
                # field written with two types) must not fail the validation.
                _LOGGER.warning("Dashboard query %s could not be timed: %s", name, err)
                continue
            timings.append(QueryTiming(name=name, legacy_ms=legacy_ms, optimized_ms=optimized_ms))
        return tuple(timings)

    async def _median_ms(self, query: Callable[[], Awaitable[object]]) -> float:
        timings = []
        for _ in range(self._repeats):
            started = time.perf_counter()
            await query()
            timings.append((time.perf_counter() - started) * 1000)
        return statistics.median(timings)


def point_differences(
    expected: Point | None, stored: Point | None
) -> dict[str, tuple[FieldValue | None, FieldValue | None]]:
    """What differs between two points: "measurement", "tag <key>", "field <key>" →
    (expected, stored); "point" when one of them is missing."""
    if expected is None or stored is None:
        return {"point": (_describe(expected), _describe(stored))}
    differences: dict[str, tuple[FieldValue | None, FieldValue | None]] = {}
    if expected.measurement != stored.measurement:
        differences["measurement"] = (expected.measurement, stored.measurement)
    for kind, want, have in (
        ("tag", expected.tags, stored.tags),
        ("field", expected.fields, stored.fields),
    ):
        for key in sorted(want.keys() | have.keys()):
            if want.get(key) != have.get(key):
                differences[f"{kind} {key}"] = (want.get(key), have.get(key))
    return differences


def _canonical(point: Point) -> tuple[object, ...]:
    return (
        point.measurement,
        sorted(point.tags.items()),
        sorted((key, repr(value)) for key, value in point.fields.items()),
    )


def _describe(point: Point | None) -> str | None:
    return None if point is None else encode(point)


def _group_by_span(sample: list[tuple[int, str]]) -> list[tuple[int, list[str]]]:
    groups: dict[int, list[str]] = {}
    for span, entity in sample:
        groups.setdefault(span, []).append(entity)
    return sorted(groups.items())


def _points_per_entity(counts: _Counts) -> dict[str, int]:
    """Points per entity: each point has a value or a state field, or both."""
    totals: dict[str, int] = {}
    for (entity, _), per_field in counts.items():
        totals[entity] = totals.get(entity, 0) + max(per_field)
    return totals


# Rollback and cleanup -------------------------------------------------------------------------


async def _optimized_rows(
    client: InfluxClient,
    database: str,
    function: Aggregate,
    *,
    start_ns: int,
    end_ns: int,
    every_ns: int | None = None,
) -> AsyncIterator[tuple[str, AggregateRow]]:
    """``function`` of each state field per optimized-layout series: (entity id, row)."""
    for measurement in await client.measurements(database):
        for name in STATE_FIELDS:
            rows = await client.aggregate(
                measurement,
                name,
                function,
                start_ns=start_ns,
                end_ns=end_ns,
                group_by=("entity_id",),
                every_ns=every_ns,
                database=database,
            )
            for row in rows:
                entity_id = row.tags.get("entity_id", "")
                if is_optimized_series(measurement, entity_id):
                    yield entity_id, row


async def inventory_optimized(
    client: InfluxClient, database: str, *, before_ns: int
) -> dict[str, tuple[Span, ...]]:
    """Entity → the UTC days before ``before_ns`` on which the database holds its optimized
    points: what a rollback must leave alone because it was there before the migration.

    Found from the data (counts per day), not from the tag index, which keeps listing a
    deleted series.
    """
    if not await client.database_exists(database):
        return {}
    first: int | None = None
    async for _, row in _optimized_rows(
        client, database, Aggregate.FIRST, start_ns=_ALL_TIME[0], end_ns=before_ns
    ):
        first = row.time_ns if first is None else min(first, row.time_ns)
    if first is None:
        return {}
    days: dict[str, set[int]] = {}
    async for entity_id, row in _optimized_rows(
        client,
        database,
        Aggregate.COUNT,
        start_ns=first - first % DAY_NS,
        end_ns=before_ns,
        every_ns=DAY_NS,
    ):
        days.setdefault(entity_id, set()).add(row.time_ns - row.time_ns % DAY_NS)
    return {entity_id: spans_from_days(found) for entity_id, found in sorted(days.items())}


async def recorded_entities(client: InfluxClient, database: str, span: Span) -> set[str]:
    """Entities with optimized points in the database inside ``span``."""
    return {
        entity_id
        async for entity_id, _ in _optimized_rows(
            client, database, Aggregate.COUNT, start_ns=span[0], end_ns=span[1]
        )
    }


async def count_points(
    client: InfluxClient, deletion: Deletion, fields: Sequence[str] = STATE_FIELDS
) -> int:
    """Points a deletion would remove (each carries one of ``fields``: a value or a state
    field, or both, in the optimized and legacy layouts)."""
    most = 0
    for name in fields:
        rows = await client.aggregate(
            deletion.measurement,
            name,
            Aggregate.COUNT,
            start_ns=deletion.start_ns,
            end_ns=deletion.end_ns,
            where={key: [value] for key, value in deletion.tags.items()},
            database=deletion.database,
        )
        most = max(most, sum(int(row.value) for row in rows))
    return most


async def count_database(client: InfluxClient, database: str) -> int:
    """Points in a whole database, counted by their state fields."""
    total = 0
    for measurement in await client.measurements(database):
        counts = []
        for name in STATE_FIELDS:
            rows = await client.aggregate(
                measurement,
                name,
                Aggregate.COUNT,
                start_ns=_ALL_TIME[0],
                end_ns=_ALL_TIME[1],
                database=database,
            )
            counts.append(sum(int(row.value) for row in rows))
        total += max(counts)
    return total


# A delete that keeps failing is retried this often (with backoff) before the step gives up
# and says so; the step can be run again, and every delete is idempotent.
DELETE_ATTEMPTS: Final = 6
DELETE_BACKOFF: Final = Backoff(base=1.0, maximum=30.0)


async def delete(
    client: InfluxClient,
    deletion: Deletion,
    *,
    attempts: int | None = None,
    backoff: Backoff | None = None,
    breaker: CircuitBreaker | None = None,
    fields: Sequence[str] = STATE_FIELDS,
) -> int:
    """Count and make one time-bounded deletion, retrying transient failures; the count."""

    async def count_and_delete() -> int:
        removed = await count_points(client, deletion, fields)
        if removed:
            await client.delete_range(
                deletion.measurement,
                deletion.tags,
                start_ns=deletion.start_ns,
                end_ns=deletion.end_ns,
                database=deletion.database,
            )
        return removed

    return await call_with_retry(
        count_and_delete,
        backoff=backoff or DELETE_BACKOFF,
        breaker=breaker or RetryPolicy().new_breaker(),
        max_attempts=attempts or DELETE_ATTEMPTS,
    )


@dataclass(frozen=True, kw_only=True)
class Removal:
    """What a rollback removed from the target."""

    points: int
    dropped_database: str | None
    deletions: int
    # Rollup points removed with the raw points they summarized.
    rollup_points: int = 0


async def remove_migrated(
    client: InfluxClient,
    state: MigrationState,
    *,
    until_ns: int,
    known_entities: Collection[str] = (),
    attempts: int | None = None,
) -> Removal:
    """Remove what the ledger says the migration wrote to the target, nothing else.

    The live writer's points from the cutover to ``until_ns`` count as the migration's for
    the entities in ``known_entities`` that have points there (those this Home Assistant
    records), unless the target was recorded anyway before the migration.
    """
    ledger = state.ledger
    if ledger is None:
        raise ValueError("the migration has no ledger: nothing may be removed")
    target = ledger.target_database
    live_span = (state.cutover_ns, until_ns) if state.cutover_ns is not None else None
    live: set[str] = set()
    if (
        live_span is not None
        and not ledger.target_recorded_before
        and await client.database_exists(target)
    ):
        live = await recorded_entities(client, target, live_span) & set(known_entities)
    removal = rollback_plan(ledger, state.planned_spans(), live_span=live_span, live_entities=live)
    removed = 0
    if removal.drop_database is not None and await client.database_exists(removal.drop_database):
        removed = await count_database(client, removal.drop_database)
        await client.drop_database(removal.drop_database)
    for deletion in removal.deletions:
        removed += await delete(client, deletion, attempts=attempts)
    return Removal(
        points=removed,
        dropped_database=removal.drop_database,
        deletions=len(removal.deletions),
        rollup_points=await remove_rollups(client, removal.deletions, attempts=attempts),
    )


async def remove_rollups(
    client: InfluxClient, deletions: Iterable[Deletion], *, attempts: int | None = None
) -> int:
    """Remove the rollups of raw points that ``deletions`` removed; rollup points removed.

    Per deletion (an entity's time span), the rollup windows overlapping the span are deleted
    (the span widened to whole hours), and the hours at both of its ends, which may also hold
    raw points from outside it, are recomputed from the raw points that remain: afterwards
    every touched window is what the remaining raw points give, and no other is touched.
    """
    present: dict[str, set[str]] = {}
    removed = 0
    for deletion in deletions:
        database = deletion.database
        if database not in present:
            present[database] = set(await client.measurements(database))
        names = [
            name
            for resolution in RESOLUTIONS
            if (name := rollup_measurement(deletion.measurement, resolution)) in present[database]
        ]
        if not names:
            continue
        first = window_start(deletion.start_ns, _ROLLUP_ALIGN_NS)
        last = window_start(deletion.end_ns - 1, _ROLLUP_ALIGN_NS)
        for name in names:
            removed += await delete(
                client,
                Deletion(
                    database=database,
                    measurement=name,
                    tags=deletion.tags,
                    start_ns=first,
                    end_ns=last + _ROLLUP_ALIGN_NS,
                ),
                attempts=attempts,
                fields=("count",),
            )
        for edge in sorted({first, last}):

            async def recompute(
                edge: int = edge, deletion: Deletion = deletion, database: str = database
            ) -> int:
                return await build_rollups(
                    client,
                    database,
                    edge,
                    edge + _ROLLUP_ALIGN_NS,
                    domains=(deletion.measurement,),
                    where={key: [value] for key, value in deletion.tags.items()},
                )

            await call_with_retry(
                recompute,
                backoff=DELETE_BACKOFF,
                breaker=RetryPolicy().new_breaker(),
                max_attempts=attempts or DELETE_ATTEMPTS,
            )
    return removed


async def clean_legacy(
    client: InfluxClient,
    state: MigrationState,
    *,
    save: SaveState,
    attempts: int | None = None,
) -> tuple[int, int]:
    """Delete the legacy points the ledger proves copied; (points deleted, deletions made).

    Each deletion is recorded in the ledger and saved before the next one, so a cleanup that
    stops (an error, a restart) continues where it was and never repeats one.
    """
    ledger = state.ledger
    if ledger is None:
        raise ValueError("the migration has no ledger: nothing may be deleted")
    deleted = 0
    deletions = cleanup_plan(ledger, state.copied_spans())
    for deletion in deletions:
        deleted += await delete(client, deletion, attempts=attempts)
        ledger.record_cleaned(
            f"{deletion.tags['domain']}.{deletion.tags['entity_id']}", deletion.measurement
        )
        await save(state)
    return deleted, len(deletions)
