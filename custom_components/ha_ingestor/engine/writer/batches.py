"""The writer's memory: enqueued items, the lines encoded ahead, and the batches built of them.

Converting and encoding run in the loop's default executor, a chunk of items per call, so the
event loop itself only queues, routes and sends.
"""

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
import logging

from ..delivery import Chunk
from ..line_protocol import Encoder, Point
from ..spool import Segment
from .health import WriterHealth

_LOGGER = logging.getLogger(__name__)

# Turns an enqueued item into its point, or None when there is nothing to write.
type ToPoint[T] = Callable[[T], Point | None]
# The time (ns since the epoch) the point of an enqueued item will carry.
type TimeOf[T] = Callable[[T], int]


@dataclass(slots=True)
class Batch:
    """Points that travel together: built here in memory, or a segment of the spool."""

    chunks: deque[Chunk] = field(default_factory=deque)
    segment: Segment | None = None  # None: the batch lives in memory
    progressed: bool = False  # some chunks were delivered or dead-lettered
    oldest_ns: int | None = None  # the earliest point time in it; None: not known

    @property
    def points(self) -> int:
        return sum(chunk.points for chunk in self.chunks)

    def body(self) -> bytes:
        return b"\n".join(chunk.body for chunk in self.chunks)


def older(oldest_ns: int | None, time_ns: int) -> bool:
    """Whether a unit whose earliest point time is ``oldest_ns`` holds one before ``time_ns``
    (a unit without a known time may)."""
    return oldest_ns is None or oldest_ns < time_ns


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


@dataclass(frozen=True, slots=True)
class _Encoded:
    body: bytes
    lines: list[bytes]
    failures: list[tuple[str, Exception]]  # the lost item's repr, and why
    oldest_ns: int | None  # the earliest point time among the new lines


def _encode_items[T](
    items: list[T], to_point: ToPoint[T], to_line: Encoder, ahead: list[bytes] | None = None
) -> _Encoded:
    """Convert and encode items after the lines encoded ahead; with ``ahead``, also join them
    into the batch's body. Runs in a worker thread, so it touches no writer state."""
    lines: list[bytes] = ahead if ahead is not None else []
    failures: list[tuple[str, Exception]] = []
    oldest: int | None = None
    for item in items:
        try:
            point = to_point(item)
            line = None if point is None else to_line(point)
        except Exception as err:  # a value with no encoding, or a bug: lose this item only
            failures.append((repr(item), err))
            continue
        if line is not None:
            lines.append(line.encode())
            if oldest is None or point.time_ns < oldest:  # type: ignore[union-attr]
                oldest = point.time_ns  # type: ignore[union-attr]
    # Often the last references to the items (a state the state machine has since replaced):
    # freeing them here spares the event loop that work.
    items.clear()
    return _Encoded(b"\n".join(lines) if ahead is not None else b"", lines, failures, oldest)


async def off_loop[*Ts, R](function: Callable[[*Ts], R], *args: *Ts) -> R:
    """Run CPU-heavy work in the loop's default executor.

    Once the executor is shut down (Home Assistant stopping) the work runs here instead:
    slow beats lost.
    """
    try:
        future = asyncio.get_running_loop().run_in_executor(None, function, *args)
    except RuntimeError:
        return function(*args)
    return await future


class MemoryQueue[T]:
    """Items waiting to be sent, the lines encoded ahead of their batch, the batches held back,
    and how many points are in memory in all (``batched``: in batches built, being sent or
    held, and items being encoded).

    ``queue`` is the list :meth:`PointWriter.enqueue` appends to; it is swapped for a new one
    whenever items are taken, so readers look it up each time.
    """

    def __init__(
        self,
        health: WriterHealth,
        *,
        batch_size: int,
        max_points: int,
        to_point: ToPoint[T],
        to_line: Encoder,
        time_of: TimeOf[T],
    ) -> None:
        self._health = health
        self._batch_size = batch_size
        self.max_points = max_points
        self._dropping = False  # new points are being dropped (logged once until it ends)
        self._to_point = to_point
        self._to_line = to_line
        self._time_of = time_of
        self.queue: list[T] = []
        self.since: float | None = None  # when the oldest queued item came (the flush timer)
        self.ahead: list[bytes] = []  # lines of the next batch, encoded ahead
        self._ahead_oldest: int | None = None  # earliest point time encoded ahead
        self.held: deque[Batch] = deque()  # batches waiting for the spool or a write slot
        self.batched = 0

    @property
    def points(self) -> int:
        """Points held in memory: queued, encoded ahead, or in batches not delivered yet."""
        return len(self.queue) + self.batched

    @property
    def pending(self) -> int:
        """Items and lines of the next batch."""
        return len(self.queue) + len(self.ahead)

    def release(self, points: int) -> None:
        """Points of an in-memory batch left memory: delivered, dead-lettered, spooled, dropped."""
        self.batched -= points

    def drop_new(self, *, closed: bool) -> None:
        """Count a point that came when there was no room for it (or no writer running)."""
        self._health.points_dropped += 1
        if not self._dropping:
            self._dropping = True
            if closed:
                _LOGGER.warning("A point arrived after the writer stopped; it was dropped")
            else:
                _LOGGER.warning(
                    "Dropping points: %d are held in memory because neither InfluxDB nor the "
                    "spool takes them",
                    self.max_points,
                )
            self._health.changed(urgent=True)
        else:
            self._health.changed()

    def check_room(self) -> None:
        """Say so when points dropped for want of room can be taken again."""
        if self._dropping and self.points < self.max_points:
            self._dropping = False
            _LOGGER.info(
                "Memory is below the cap again; %d points dropped so far",
                self._health.points_dropped,
            )

    def holds_before(self, time_ns: int) -> bool:
        """Whether an item queued or a line encoded ahead is older than ``time_ns``."""
        if self.queue and min(map(self._time_of, self.queue)) < time_ns:
            return True
        return bool(self.ahead) and older(self._ahead_oldest, time_ns)

    def drop_unbatched(self) -> int:
        """Throw away what is queued or encoded ahead; how many points."""
        dropped = len(self.queue) + len(self.ahead)
        self.batched -= len(self.ahead)
        self.queue.clear()
        self.ahead.clear()
        return dropped

    async def encode_ahead(self) -> None:
        items, self.queue = self.queue, []
        taken = len(items)  # the worker thread empties ``items``
        # Counted as in memory while a worker thread encodes them, and after.
        self.batched += taken
        self._health.changed()
        encoded = await off_loop(_encode_items, items, self._to_point, self._to_line)
        self.batched -= taken - len(encoded.lines)
        self.ahead += encoded.lines
        self._ahead_oldest = _earliest(self._ahead_oldest, encoded.oldest_ns)
        self._health.encoding_failed(encoded.failures)

    async def take_batch(self) -> Batch | None:
        """The next batch: the lines encoded ahead, then queued items up to the batch size."""
        ahead = self.ahead[: self._batch_size]
        encoded_ahead = len(ahead)  # the worker thread appends the new lines to ``ahead``
        del self.ahead[:encoded_ahead]
        # Not known line by line: the batch counts as old as anything encoded ahead, and so
        # does what stays ahead.
        ahead_oldest = self._ahead_oldest if encoded_ahead else None
        if not self.ahead:
            self._ahead_oldest = None
        room = self._batch_size - encoded_ahead
        queue = self.queue
        if len(queue) <= room:
            items, self.queue = queue, []
        else:
            items = queue[:room]
            del queue[:room]
        taken = len(items)
        self.batched += taken
        self._health.changed()
        encoded = await off_loop(_encode_items, items, self._to_point, self._to_line, ahead)
        self.batched -= taken + encoded_ahead - len(encoded.lines)
        self._health.encoding_failed(encoded.failures)
        if not encoded.lines:
            return None
        return Batch(
            deque([Chunk(encoded.body, len(encoded.lines), encoded.lines)]),
            oldest_ns=_earliest(ahead_oldest, encoded.oldest_ns),
        )
