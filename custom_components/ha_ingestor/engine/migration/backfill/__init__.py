"""The backfill: copies the legacy history into the optimized layout, window by window.

No Home Assistant in here: the glue (the ``migration`` package) drives it with HA's ``Store``.
The parts, in this package: ``plan`` (checkpoints, window sizes, rate), ``window_reader``,
``line_batcher`` (conversion, pacing), ``batch_writer`` (retry, bisection, dead letters),
``copy_windows`` (what is recorded when), ``progress``, ``server_link`` (retries, waits).
"""

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import Final

from ...influx import InfluxClient
from ...retry import SYSTEM_TIMER, RetryPolicy, Timer, call_with_retry
from ...rollups import (
    HOUR_NS as _ROLLUP_ALIGN_NS,
    build_rollups,
    window_end,
)
from ...spool import DeadLetterFile
from ..discovery import DAY_NS, DiscoveredSource
from ..model import MigrationState
from .batch_writer import BatchWriter
from .copy_windows import BlockItem, LineBatch, WindowQueue
from .line_batcher import BulkTransform, LineBatcher, RowEncoder
from .plan import BackfillPlan, SaveState
from .progress import BackfillProgress, ProgressListener, StateSaves
from .server_link import ConnectionListener, ServerLink, StopRequest
from .window_reader import READERS, WindowReader

__all__ = [
    "DEFAULT_WINDOW_NS",
    "PROGRESS_INTERVAL",
    "Backfill",
    "BackfillOutcome",
    "BulkTransform",
    "ConnectionListener",
    "ProgressListener",
    "RowEncoder",
    "SaveState",
]

DEFAULT_WINDOW_NS: Final = DAY_NS
PROGRESS_INTERVAL: Final = 0.5
# Blocks (of up to one server chunk) read ahead of the conversion.
_READ_AHEAD: Final = 2


class BackfillOutcome(StrEnum):
    """How a backfill run ended."""

    # Every window up to the cutover is in the target.
    COMPLETE = "complete"
    # stop() was called; the run resumes from the saved checkpoints.
    STOPPED = "stopped"
    # The error rate went above max_error_rate / rollback_threshold: the glue acts on it.
    PAUSE = "pause"
    ROLLBACK = "rollback"


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

    Failures: points the server refuses are isolated by bisection, appended to the dead-letter
    file and counted as failed (a window copied again after a stop or crash may append its
    refused lines once more); an unreachable server is retried with the shared retry policy,
    and while its circuit is open the backfill waits in place, reading again from the start
    of the window it was in. After every recorded window the error rate is judged
    (``decide_on_error_rate``); above a threshold the run stops with PAUSE or ROLLBACK for
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
        """Prepare a run; ``source`` (from ``discover``) sizes the first windows.

        ``on_connection`` hears False when the server stops answering the backfill and True
        when it answers again. With ``rollups``, once everything is copied the rollups of the
        migrated range are recomputed from the target's raw points (all of it again after a
        resume: it is idempotent). ``timer`` paces, backs off and measures throughput.
        """
        self.state = state
        self.rollup_points = 0
        self._client = client
        self._rollups = rollups
        source_db = source_database or client.database
        self._target_db = target_database or source_db
        self._dead_letters = DeadLetterFile(dead_letter_path)
        self._stop = StopRequest(timer)
        self._link = ServerLink(
            client,
            self._stop,
            retry=retry or RetryPolicy(),
            timer=timer,
            on_connection=on_connection,
        )
        self._saves = StateSaves(state, save)
        self._progress = BackfillProgress(
            state, on_progress=on_progress, interval=progress_interval, timer=timer
        )
        self._plan = BackfillPlan(
            client, state, database=source_db, save=save, source=source, default_window_ns=window_ns
        )
        self._windows = WindowQueue(state, self._stop, self._recorded)
        self._reader = WindowReader(
            client,
            state,
            database=source_db,
            fields=transform.fields_read,
            plan=self._plan,
            windows=self._windows,
            link=self._link,
            stop=self._stop,
        )
        self._batcher = LineBatcher(
            transform,
            batch_size=state.config.batch_size,
            windows=self._windows,
            land=self._land,
            stop=self._stop,
            timer=timer,
            series_kept=2 * READERS,
        )
        self._writer = BatchWriter(
            state,
            database=self._target_db,
            link=self._link,
            dead_letters=self._dead_letters,
            land=self._land,
            stop=self._stop,
        )
        self._ran = False

    @property
    def points_per_second(self) -> float | None:
        """Points written or dead-lettered per second over the last minute."""
        return self._progress.points_per_second

    @property
    def live_counts(self) -> tuple[int, int, int]:
        """Points read, migrated and failed so far, windows not yet recorded included.

        What progress shows while a large window is still being copied (the state's counters
        move once per recorded window).
        """
        return self._windows.live_counts

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
            await self._plan.discover_and_plan(state.cutover_ns)
        self._batcher.pace(self._plan.rate_limit())
        try:
            while True:
                await self._run_pipeline()
                if self._windows.decision != "continue" or self._stop.is_set():
                    break
                if not all(checkpoint.done for checkpoint in state.checkpoints.values()):
                    break
                # Everything planned is copied. Legacy points that reached the server late
                # (another writer's backlog) may sit in a measurement nobody planned: look
                # once more, and copy what turned up.
                if not await self._plan.plan_late_arrivals(state.cutover_ns):
                    break
        finally:
            self._progress.cancel()
        self._progress.report()
        if self._windows.decision != "continue":
            return BackfillOutcome(self._windows.decision)
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
            fill, backoff=self._link.backoff, breaker=self._link.breaker
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

    async def _pipeline(self) -> None:
        # Reading, converting and writing overlap: the reader asks for the next window while
        # earlier blocks are converted, and writes are in flight while conversion goes on.
        self._saves.start()
        concurrency = self.state.config.concurrent_batches
        blocks: asyncio.Queue[BlockItem | None] = asyncio.Queue(maxsize=_READ_AHEAD)
        batches: asyncio.Queue[LineBatch | None] = asyncio.Queue(maxsize=concurrency)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._saves.run())
            writers = [
                group.create_task(self._writer.write_all(batches)) for _ in range(concurrency)
            ]
            reader = group.create_task(self._reader.read_all(blocks))
            await self._batcher.convert_all(blocks, batches)
            # Stopping early leaves the reader waiting for room in the queue.
            reader.cancel()
            for _ in writers:
                await batches.put(None)
            await asyncio.wait(writers)
            self._saves.finish()

    def _land(self, batch: LineBatch, failed: list[int]) -> None:
        """A batch was written (``failed``: the lines refused) or had no lines."""
        self._windows.land(batch, failed)
        self._progress.count(len(batch.lines))

    def _recorded(self) -> None:
        """Windows were recorded in the state: save it, and say so."""
        self._saves.mark()
        self._progress.schedule()
