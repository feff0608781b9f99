"""The backfill's conversion: blocks of legacy rows into batches of optimized lines, paced
when a gradual migration asks for it. No Home Assistant in here.
"""

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from ...influx import SeriesBlock
from ...line_protocol import Point
from ...retry import Timer
from .copy_windows import BlockItem, CopyWindow, LineBatch, WindowQueue
from .server_link import StopRequest

# Rows converted between two turns of the event loop (a few milliseconds of work).
_SLICE_ROWS: Final = 256

# One row of a legacy series → its optimized line without the timestamp ("" skips the row).
type RowEncoder = Callable[[Sequence[Any]], str]
type LandBatch = Callable[[LineBatch, list[int]], None]


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


class LineBatcher:
    """Turns blocks into batches of ``batch_size`` lines and hands them to the writers.

    Rows become lines through the transform's series encoder, which converts each distinct
    record of a series once: a state that repeats (a door that opens again) or a value beside
    unchanged attributes costs a dictionary look-up, not a transform and an encode. The
    optimized layout keeps the legacy time, so a line is its record's conversion followed by
    the row's own timestamp. With a rate, batch n is handed over no earlier than n batches'
    worth of points at that rate after pacing began.
    """

    def __init__(
        self,
        transform: BulkTransform,
        *,
        batch_size: int,
        windows: WindowQueue,
        land: LandBatch,
        stop: StopRequest,
        timer: Timer,
        series_kept: int,
    ) -> None:
        """``series_kept``: encoders kept, one per series being read at once."""
        self._transform = transform
        self._batch_size = batch_size
        self._windows = windows
        self._land = land
        self._stop = stop
        self._timer = timer
        self._series_kept = series_kept
        self._batch = LineBatch()
        # Measurement → (series, its encoder), least recently used first.
        self._encoders: dict[str, tuple[tuple[Mapping[str, str], tuple[str, ...]], RowEncoder]] = {}
        self._rate: float | None = None
        self._rate_started = 0.0
        self._emitted = 0

    def pace(self, rate: float | None) -> None:
        """Hand over at most ``rate`` lines per second from now on (None: no limit)."""
        self._rate = rate
        self._rate_started = self._timer.monotonic()

    async def convert_all(
        self, blocks: asyncio.Queue[BlockItem | None], batches: asyncio.Queue[LineBatch | None]
    ) -> None:
        """Convert until the reader is done (or the run stops); the last batch goes too."""
        while (item := await blocks.get()) is not None:
            window, block = item
            if block is None:
                self._windows.close(window)
            else:
                await self._copy(block, window, batches)
            if self._stop.is_set():
                return
        await self._emit(batches)

    async def _copy(
        self, block: SeriesBlock, window: CopyWindow, queue: asyncio.Queue[LineBatch | None]
    ) -> None:
        """The hot path: one row of a series at a time into the current batch."""
        encoder = self._encoder_for(block)
        batch_size = self._batch_size
        self._batch.join(window)
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
                    self._batch.join(window)
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
        if len(encoders) > self._series_kept:
            del encoders[next(iter(encoders))]
        return found[1]

    async def _emit(self, queue: asyncio.Queue[LineBatch | None]) -> None:
        """Hand the current batch to the writers (waiting while they are all busy)."""
        batch, self._batch = self._batch, LineBatch()
        if not batch.lines:
            self._land(batch, [])
            return
        if self._rate is not None:
            due = self._rate_started + self._emitted / self._rate
            if (delay := due - self._timer.monotonic()) > 0:
                await self._stop.sleep(delay)
        self._emitted += len(batch.lines)
        await queue.put(batch)
