"""The backfill: copies the legacy history into the optimized layout, window by window.

No Home Assistant in here: the glue (``migration.py``) drives it with HA's ``Store``.
"""

import asyncio
from bisect import bisect_left
from collections import deque
from collections.abc import (
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from enum import StrEnum
import logging
from pathlib import Path
from typing import Any, Final, Protocol

from ..influx import (
    Aggregate,
    CannotConnect,
    InfluxClient,
    PointsRejected,
    SeriesBlock,
)
from ..line_protocol import (
    Point,
    tag_value,
)
from ..retry import SYSTEM_TIMER, RetryPolicy, Timer, call_with_retry
from ..rollups import (
    HOUR_NS as _ROLLUP_ALIGN_NS,
    build_rollups,
    window_end,
)
from ..spool import DeadLetterFile
from .discovery import (
    DAY_NS,
    MIN_WINDOW_NS,
    DiscoveredSource,
    discover,
    legacy_entity_id,
    legacy_rows,
    range_ns,
)
from .model import (
    BackfillCheckpoint,
    MigrationState,
    ThroughputWindow,
    backfill_rate_limit,
    decide_on_error_rate,
)

_LOGGER = logging.getLogger(__name__)

DEFAULT_WINDOW_NS: Final = DAY_NS
# A window grows or shrinks at most this much from one to the next.
_WINDOW_STEP: Final = 4
PROGRESS_INTERVAL: Final = 0.5
# Blocks (of up to one server chunk) read ahead of the conversion.
_READ_AHEAD: Final = 2
# Measurements read at the same time.
_READERS: Final = 2
# Rows converted between two turns of the event loop (a few milliseconds of work).
_SLICE_ROWS: Final = 256


# One row of a legacy series → its optimized line without the timestamp ("" skips the row).
type RowEncoder = Callable[[Sequence[Any]], str]


class BulkTransform(Protocol):
    """What the backfill needs of the legacy → optimized transform.

    ``layouts.optimized.LegacyTransform`` is the one the integration uses; the engine names only
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
        self._default_window = max(window_ns, MIN_WINDOW_NS)
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
        _, config_end = range_ns(self.state.config)
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
                return max(MIN_WINDOW_NS, (last - first) * self._window_points // points)
        return self._default_window

    def _adapt(self, measurement: str, span: int, points: int) -> None:
        """Size the next window from the density of the last one."""
        if points == 0:
            size = span * _WINDOW_STEP
        else:
            size = span * self._window_points // points
            size = min(max(size, span // _WINDOW_STEP), span * _WINDOW_STEP)
        self._windows[measurement] = max(size, MIN_WINDOW_NS)

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
                self._windows[measurement] = max((end - position) // 2, MIN_WINDOW_NS)
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
