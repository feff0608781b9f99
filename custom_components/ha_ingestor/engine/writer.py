"""Gets points into InfluxDB without losing them: batches, retries, spools and dead-letters.

There is no Home Assistant here. The integration calls :meth:`PointWriter.enqueue` from its
event-bus listener and shows :class:`WriterStats` as entities; one writer serves one target
database (dual-write means two writers, each with its own spool directory). What is enqueued
may be raw items that a converter turns into points: converting and encoding run in the loop's
default executor, a chunk of items per call, so the event loop itself only queues, routes and
sends.
"""

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
import contextlib
from dataclasses import dataclass, field
from enum import Enum, StrEnum
import logging
from typing import cast

from .influx.errors import CannotConnect, DatabaseNotFound, InvalidAuth, PointsRejected
from .line_protocol import Encoder, Point, encode, split_lines
from .retry import CircuitState, RetryPolicy
from .spool import DeadLetterFile, Segment, SegmentDamaged, Spool, SpoolError

_LOGGER = logging.getLogger(__name__)

type WriteFunction = Callable[[bytes], Awaitable[None]]
type StatsListener = Callable[[WriterStats], None]
# Turns an enqueued item into its point, or None when there is nothing to write.
type ToPoint[T] = Callable[[T], Point | None]
# The time (ns since the epoch) the point of an enqueued item will carry.
type TimeOf[T] = Callable[[T], int]

# How long to leave the spool alone after it failed, before trying it again.
SPOOL_RETRY_SECONDS = 10.0


class ServerProblem(StrEnum):
    """Why the writer cannot deliver right now; the integration maps these to repair flows."""

    CANNOT_CONNECT = "cannot_connect"
    INVALID_AUTH = "invalid_auth"
    DATABASE_NOT_FOUND = "database_not_found"


# Older than anything: what a unit whose point times are not known counts as.
_UNKNOWN_TIME = -(2**63)


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterStats:
    """What the writer has done and what state it is in.

    ``queue_depth`` counts points held in memory (queued, being sent, or waiting because the
    spool can't take them). ``connected`` is False from the first failed write until the next
    successful one, and ``problem`` then says why. ``spool_error`` is set while the spool can't
    be written (points then stay in memory up to the writer's hard cap). ``last_error`` is the
    most recent error of any kind, kept after recovery. ``dead_letter_count`` is the number of
    records in the dead-letter file, which writers may share.
    """

    queue_depth: int = 0
    spooled_points: int = 0
    dead_letter_count: int = 0
    points_written: int = 0
    points_dropped: int = 0
    connected: bool = True
    problem: ServerProblem | None = None
    spool_error: str | None = None
    last_error: str | None = None
    # Points of spool segments whose body did not match their name, moved aside unreplayed.
    damaged_points: int = 0


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


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _itself(point: Point) -> Point:
    return point


def _time_ns(point: Point) -> int:
    return point.time_ns


def _older(oldest_ns: int | None, time_ns: int) -> bool:
    """Whether a unit whose earliest point time is ``oldest_ns`` holds one before ``time_ns``
    (a unit without a known time may)."""
    return oldest_ns is None or oldest_ns < time_ns


@dataclass(slots=True)
class _Chunk:
    """Part of a batch that goes to the server in one write."""

    body: bytes
    points: int
    lines: list[bytes] | None = None  # known for batches built here, parsed for spooled ones


@dataclass(slots=True)
class _Batch:
    chunks: deque[_Chunk] = field(default_factory=deque)
    segment: Segment | None = None  # None: the batch lives in memory
    progressed: bool = False  # some chunks were delivered or dead-lettered
    oldest_ns: int | None = None  # the earliest point time in it; None: not known

    @property
    def points(self) -> int:
        return sum(chunk.points for chunk in self.chunks)

    def body(self) -> bytes:
        return b"\n".join(chunk.body for chunk in self.chunks)


class _Route(Enum):
    DELIVER = "deliver"
    DIVERT = "divert"  # to the spool
    WAIT = "wait"


class PointWriter[T = Point]:
    """Batches points and writes them, never blocking the caller and never silently losing any.

    - ``enqueue`` is synchronous and O(1): safe to call from an event-bus callback. It takes
      points, or items of any kind when a ``to_point`` converter is given; the converter runs
      in the loop's default executor, a chunk at a time, so it must be thread-safe. Points
      become lines through ``to_line`` (ours unless told: the legacy layout sends core's).
    - A batch goes out when ``batch_size`` points are queued or ``flush_interval`` seconds after
      the first of them, with up to ``concurrent_writes`` writes in flight. Meanwhile every
      ``encode_chunk`` items are converted ahead, so the items (Home Assistant states) are
      freed within a fraction of the interval: held longer, they outlive Python's young
      garbage-collector generations and make its full collections, which pause the event
      loop, come sooner.
    - CannotConnect is retried with the policy's backoff; once its circuit breaker opens, and
      whenever more than ``max_queue`` points are in memory, batches go to the disk spool.
      When a probe write succeeds again, the spool is replayed oldest first, alongside new
      data; a segment is deleted only after its write succeeded.
    - PointsRejected splits the batch in halves until the refused lines are isolated; each goes
      to the dead-letter file and everything else is written (re-sends are idempotent).
    - InvalidAuth and DatabaseNotFound open the circuit at once and spool; ``stats.problem``
      tells the integration to start a reauth or raise a repair issue.
    - While the server is down, a partial batch is spooled after ``spool_interval`` seconds
      (full batches at once), so a long outage does not leave thousands of tiny segments.
    - When the spool can't be written (or is full), points stay in memory up to
      ``max_memory_points`` (default ten times ``max_queue``); beyond that new points are
      dropped and counted.
    - ``reachable=False`` says the server was found down before the writer started: it starts
      disconnected (``cannot_connect``) rather than claim a connection it never had.

    ``on_change`` gets the new stats when they changed, at most every ``stats_interval``
    seconds, and at once when the connection or spool state changes.

    The event loop pays per wake-up, not per point: ``enqueue`` wakes the dispatcher only for
    the first item of a batch and every ``encode_chunk`` items, the executor gets whole chunks
    and builds the body, and each batch is one request.
    """

    def __init__(
        self,
        write: WriteFunction,
        spool: Spool,
        dead_letters: DeadLetterFile,
        *,
        database: str,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        max_queue: int = 10_000,
        max_memory_points: int | None = None,
        concurrent_writes: int = 2,
        encode_chunk: int = 500,
        retry: RetryPolicy | None = None,
        spool_interval: float = 30.0,
        stats_interval: float = 5.0,
        on_change: StatsListener | None = None,
        to_point: ToPoint[T] | None = None,
        time_of: TimeOf[T] | None = None,
        to_line: Encoder = encode,
        reachable: bool = True,
    ) -> None:
        if batch_size < 1 or concurrent_writes < 1 or max_queue < batch_size:
            raise ValueError(
                "need batch_size >= 1, concurrent_writes >= 1, max_queue >= batch_size"
            )
        self._write = write
        self._spool = spool
        self._dead_letters = dead_letters
        self.database = database
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._max_memory_points = max_memory_points or 10 * max_queue
        self._concurrent_writes = concurrent_writes
        self._encode_chunk = max(1, min(encode_chunk, batch_size))
        self._retry = retry or RetryPolicy()
        self._breaker = self._retry.new_breaker()
        self._spool_interval = max(spool_interval, flush_interval)
        self._stats_interval = stats_interval
        self._on_change = on_change
        self._to_point = to_point if to_point is not None else cast(ToPoint[T], _itself)
        self._to_line = to_line
        self._time_of = time_of if time_of is not None else cast(TimeOf[T], _time_ns)

        self._queue: list[T] = []
        self._queue_since: float | None = None
        self._ahead: list[bytes] = []  # lines of the next batch, encoded ahead
        self._ahead_oldest: int | None = None  # earliest point time encoded ahead
        self._batched_points = 0  # in memory batches: in flight or held
        self._held: deque[_Batch] = deque()  # memory batches waiting for the spool or a slot
        self._inflight: dict[asyncio.Task[None], _Batch] = {}
        self._spool_inflight = 0
        self._claimed: set[int] = set()  # sequences of segments being delivered
        # Sequence → earliest point time of the segments this writer spooled (segments found
        # on disk at start are older than anything).
        self._segment_oldest: dict[int, int | None] = {}
        self._damaged_points = 0

        self._points_written = 0
        self._points_dropped = 0
        self._connected = reachable
        self._problem: ServerProblem | None = None if reachable else ServerProblem.CANNOT_CONNECT
        self._spool_error: str | None = None
        self._spool_retry_at = 0.0
        self._last_error: str | None = None
        self._dropping = False
        self._rejection_logged = False

        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._finished = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._stopping = False
        self._closed = False
        # Retired: takes no new points, delivers what it holds (spool included), then ends.
        self._retiring = False
        self._flush_on_stop = True
        self._notify_handle: asyncio.TimerHandle | None = None
        self._last_notified: WriterStats | None = None

    @property
    def stats(self) -> WriterStats:
        return WriterStats(
            queue_depth=self._memory_points(),
            spooled_points=self._spool.points,
            dead_letter_count=self._dead_letters.count,
            points_written=self._points_written,
            points_dropped=self._points_dropped,
            connected=self._connected,
            problem=self._problem,
            spool_error=self._spool_error,
            last_error=self._last_error,
            damaged_points=self._damaged_points,
        )

    @property
    def finished(self) -> bool:
        """Whether the writer has stopped (after :meth:`stop`, or a retirement that drained)."""
        return self._finished.is_set()

    @property
    def empty(self) -> bool:
        """Whether the writer holds no point, in memory or in its spool."""
        return not (self._queue or self._ahead or self._held or self._inflight or len(self._spool))

    def holds_before(self, time_ns: int) -> bool:
        """Whether any point it holds (memory or spool) is older than ``time_ns``.

        Segments found on disk at start count as older than anything.
        """
        if self._queue and min(map(self._time_of, self._queue)) < time_ns:
            return True
        if self._ahead and (self._ahead_oldest is None or self._ahead_oldest < time_ns):
            return True
        batches = [*self._held, *self._inflight.values()]
        for batch in batches:
            if batch.segment is None and batch.chunks and _older(batch.oldest_ns, time_ns):
                return True
        for segment in self._spool.segments():
            if _older(self._segment_oldest.get(segment.sequence, _UNKNOWN_TIME), time_ns):
                return True
        return False

    async def flushed(self, before_ns: int, *, poll: float = 0.2) -> None:
        """Return once the writer holds no point older than ``before_ns``.

        Points are delivered, dead-lettered or dropped (never merely spooled) by then; a
        writer that has stopped with points in its spool never returns.
        """
        # Polled: what the writer holds changes in many places, and this waits rarely.
        while self.holds_before(before_ns):  # noqa: ASYNC110
            await asyncio.sleep(poll)

    def retire(self) -> None:
        """Take no new points; deliver what is held, spool included, then stop by itself."""
        self._retiring = True
        self._wake.set()

    def reactivate(self) -> bool:
        """Take points again after :meth:`retire`; False when it has already stopped."""
        if self._finished.is_set() or self._stopping:
            return False
        self._retiring = False
        self._wake.set()
        return True

    async def wait_finished(self) -> None:
        """Return once the writer has stopped."""
        await self._finished.wait()

    async def discard(self) -> int:
        """Stop and throw away everything held (its database is gone); how many points."""
        await self.stop(flush=False)
        held = self._spool.points
        try:
            await self._spool.clear()
        except SpoolError as err:
            _LOGGER.error("Cannot clear spool %s: %s", self._spool.directory, err)
        self._changed(urgent=True)
        return held

    def enqueue(self, item: T) -> None:
        """Queue one point (or item to convert) for writing; never blocks and never does I/O."""
        # Runs for every state change in Home Assistant: keep it to a few attribute loads.
        queue = self._queue
        queued = len(queue)
        if (
            self._closed
            or self._retiring
            or queued + self._batched_points >= self._max_memory_points
        ):
            self._drop_new_point()
            return
        queue.append(item)
        # Wake the dispatcher for the first item (to start the flush timer) and when a chunk
        # is there to encode; in between it sleeps. The stats follow when it takes them.
        if (queued == 0 and self._queue_since is None) or queued + 1 == self._encode_chunk:
            self._wake.set()

    def start(self) -> None:
        """Run the writer as a task of the running loop (or await :meth:`run` yourself)."""
        self._claim_run()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"ha_ingestor writer {self.database}"
        )

    async def run(self) -> None:
        """Write until :meth:`stop`; opens the spool first and replays what it holds."""
        self._claim_run()
        await self._run()

    def _claim_run(self) -> None:
        if self._running:
            raise RuntimeError("PointWriter is already running")
        self._running = True

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await self._open_storage()
            await self._dispatch()
        finally:
            for task in self._inflight:
                task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)
            self._inflight.clear()
            self._closed = True
            if self._notify_handle is not None:
                self._notify_handle.cancel()
                self._notify_handle = None
            self._notify()
            self._finished.set()

    async def stop(self, *, flush: bool = True) -> None:
        """Stop writing; afterwards nothing is left in memory.

        ``flush=True`` sends what is pending (what can't be sent goes to the spool);
        ``flush=False`` puts it all in the spool without sending. The spool is kept for the
        next writer on the same directory. Points that neither the server nor the spool take
        are counted in ``points_dropped``.
        """
        if self._finished.is_set():
            return
        self._flush_on_stop = flush
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()
        if not self._running:
            await self.run()
        else:
            await self._finished.wait()

    # The dispatcher: one loop decides where each batch goes; deliveries run as tasks.

    async def _open_storage(self) -> None:
        try:
            await self._spool.open()
        except SpoolError as err:
            self._spool_failed(err)
        try:
            await self._dead_letters.open()
        except OSError as err:
            self._set_error(f"dead-letter file {self._dead_letters.path}: {err}")
            _LOGGER.error("Cannot read dead-letter file %s: %s", self._dead_letters.path, err)
        if self._spool.points:
            self._changed(urgent=True)  # what an earlier run left is shown at once

    async def _dispatch(self) -> None:
        while True:
            self._wake.clear()
            if self._dropping and self._memory_points() < self._max_memory_points:
                self._dropping = False
                _LOGGER.info(
                    "Memory is below the cap again; %d points dropped so far", self._points_dropped
                )
            try:
                self._replay_spool()
                await self._move_memory()
            except Exception as err:  # the writer must outlive any bug
                _LOGGER.exception("Unexpected error in the InfluxDB writer")
                self._set_error(f"unexpected: {err!r}")
                if self._stopping:
                    for batch in self._held:
                        self._drop_batch(batch, "unexpected error while stopping")
                    self._held.clear()
                    self._points_dropped += len(self._queue) + len(self._ahead)
                    self._batched_points -= len(self._ahead)
                    self._queue.clear()
                    self._ahead.clear()
                await asyncio.sleep(self._flush_interval)
            if self._stopping and not (self._queue or self._ahead or self._held or self._inflight):
                return
            if self._retiring and not self._stopping and self.empty:
                return
            await self._sleep(self._next_deadline())

    async def _sleep(self, deadline: float | None) -> None:
        timeout = None if deadline is None else max(0.0, deadline - self._now())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    def _next_deadline(self) -> float | None:
        now = self._now()
        deadlines = []
        if (self._queue or self._ahead) and self._queue_since is not None:
            deadlines.append(self._queue_since + self._partial_delay())
        if (retry := self._breaker.retry_after()) > 0 and (
            self._queue or self._ahead or self._held or len(self._spool)
        ):
            deadlines.append(now + retry)
        if self._held and self._spool_error is not None:
            deadlines.append(self._spool_retry_at)
        # Deadlines already past wait for a delivery to finish instead of spinning.
        future = [deadline for deadline in deadlines if deadline > now]
        return min(future, default=None)

    def _replay_spool(self) -> None:
        if self._stopping or not self._spool.is_open:
            return
        while len(self._inflight) < self._concurrent_writes:
            segment = self._spool.oldest(self._claimed)
            if segment is None:
                return
            if self._breaker.state is CircuitState.CLOSED:
                # Leave one slot to new data while it is waiting.
                memory_waiting = bool(self._held) or self._pending() >= self._batch_size
                if memory_waiting and self._spool_inflight >= max(1, self._concurrent_writes - 1):
                    return
            elif not self._breaker.allow():
                return
            self._claimed.add(segment.sequence)
            self._spool_inflight += 1
            self._launch(_Batch(segment=segment, oldest_ns=None))

    async def _move_memory(self) -> None:
        # Batches the spool refused earlier come first, once each per pass.
        for _ in range(len(self._held)):
            route = self._route()
            if route is _Route.WAIT or (route is _Route.DIVERT and not self._spool_usable()):
                break
            await self._send_or_spool(self._held.popleft(), route)
        while self._queue or self._ahead:
            now = self._now()
            if self._queue_since is None:
                self._queue_since = now
            pending = self._pending()
            if (
                pending < self._batch_size
                and not self._stopping
                and now < self._queue_since + self._partial_delay()
            ):
                if len(self._queue) < self._encode_chunk:
                    return
                await self._encode_ahead()
                continue
            if self._route() is _Route.WAIT:
                return
            left = pending > self._batch_size
            batch = await self._take_batch()
            # What arrived while the batch was being encoded starts its own flush timer.
            self._queue_since = now if left else None
            if batch is None:
                continue
            # The server, the spool or the memory use may have changed meanwhile.
            route = self._route()
            if route is _Route.WAIT:
                self._held.append(batch)
                return
            await self._send_or_spool(batch, route)
        self._queue_since = None

    def _partial_delay(self) -> float:
        return self._flush_interval if self._breaker.accepting else self._spool_interval

    def _route(self) -> _Route:
        # On the way out, one failed write is enough: the rest goes to the spool rather than
        # making shutdown wait for more timeouts.
        sending = not self._stopping or (self._flush_on_stop and self._connected)
        if sending and self._breaker.accepting and len(self._inflight) < self._concurrent_writes:
            return _Route.DELIVER
        if not sending or not self._breaker.accepting or self._memory_points() > self._max_queue:
            return _Route.DIVERT
        return _Route.WAIT

    def _pending(self) -> int:
        """Items and lines of the next batch."""
        return len(self._queue) + len(self._ahead)

    async def _encode_ahead(self) -> None:
        items, self._queue = self._queue, []
        taken = len(items)  # the worker thread empties ``items``
        # Counted as in memory while a worker thread encodes them, and after.
        self._batched_points += taken
        self._changed()
        encoded = await self._off_loop(_encode_items, items, self._to_point, self._to_line)
        self._batched_points -= taken - len(encoded.lines)
        self._ahead += encoded.lines
        self._ahead_oldest = _earliest(self._ahead_oldest, encoded.oldest_ns)
        self._report(encoded.failures)

    async def _take_batch(self) -> _Batch | None:
        ahead = self._ahead[: self._batch_size]
        encoded_ahead = len(ahead)  # the worker thread appends the new lines to ``ahead``
        del self._ahead[:encoded_ahead]
        # Not known line by line: the batch counts as old as anything encoded ahead, and so
        # does what stays ahead.
        ahead_oldest = self._ahead_oldest if encoded_ahead else None
        if not self._ahead:
            self._ahead_oldest = None
        room = self._batch_size - encoded_ahead
        queue = self._queue
        if len(queue) <= room:
            items, self._queue = queue, []
        else:
            items = queue[:room]
            del queue[:room]
        taken = len(items)
        self._batched_points += taken
        self._changed()
        encoded = await self._off_loop(_encode_items, items, self._to_point, self._to_line, ahead)
        self._batched_points -= taken + encoded_ahead - len(encoded.lines)
        self._report(encoded.failures)
        if not encoded.lines:
            return None
        return _Batch(
            deque([_Chunk(encoded.body, len(encoded.lines), encoded.lines)]),
            oldest_ns=_earliest(ahead_oldest, encoded.oldest_ns),
        )

    def _report(self, failures: list[tuple[str, Exception]]) -> None:
        for item, err in failures:
            self._points_dropped += 1
            self._set_error(f"cannot encode {item}: {err}")
            # A value line protocol has no encoding for is expected; anything else is a bug.
            expected = isinstance(err, (AttributeError, TypeError, ValueError))
            _LOGGER.error(
                "Dropping a point that cannot be encoded (%s): %s",
                err,
                item,
                exc_info=None if expected else err,
            )

    async def _off_loop[*Ts, R](self, function: Callable[[*Ts], R], *args: *Ts) -> R:
        """Run CPU-heavy work in the loop's default executor.

        Once the executor is shut down (Home Assistant stopping) the work runs here instead:
        slow beats lost.
        """
        assert self._loop is not None
        try:
            future = self._loop.run_in_executor(None, function, *args)
        except RuntimeError:
            return function(*args)
        return await future

    async def _send_or_spool(self, batch: _Batch, route: _Route) -> None:
        if route is _Route.DELIVER:
            self._breaker.allow()
            self._launch(batch)
        else:
            await self._spool_batch(batch)

    def _launch(self, batch: _Batch) -> None:
        assert self._loop is not None
        task = self._loop.create_task(self._deliver(batch))
        self._inflight[task] = batch
        task.add_done_callback(self._delivered)

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()

    # Delivering one batch.

    async def _deliver(self, batch: _Batch) -> None:
        segment = batch.segment
        try:
            if segment is not None and not await self._load(batch, segment):
                return
            await self._deliver_with_retry(batch)
        except asyncio.CancelledError:
            self._breaker.abandon()
            raise
        except Exception as err:  # a delivery must never take the writer down
            _LOGGER.exception("Unexpected error writing to InfluxDB")
            self._set_error(f"unexpected: {err!r}")
            self._breaker.record_failure()
            await self._park(batch)
        finally:
            if segment is not None:
                self._claimed.discard(segment.sequence)
                self._spool_inflight -= 1
            self._changed()

    async def _load(self, batch: _Batch, segment: Segment) -> bool:
        try:
            body = await self._spool.read(segment)
        except SegmentDamaged as err:
            # Replaying it could store a torn line as a point (in 1970, or a wrong value).
            self._breaker.abandon()
            self._damaged_points += segment.points
            self._set_error(str(err))
            try:
                where = await self._spool.set_aside(segment)
            except SpoolError as move_err:
                self._spool.forget(segment)
                _LOGGER.error("%s; it could not be moved aside either: %s", err, move_err)
            else:
                _LOGGER.error(
                    "%s; it was moved to %s and is not replayed (%d points)",
                    err,
                    where,
                    segment.points,
                )
            self._changed(urgent=True)
            return False
        except SpoolError as err:
            # A segment that can't be read would block the replay forever.
            self._spool.forget(segment)
            self._points_dropped += segment.points
            self._set_error(str(err))
            _LOGGER.error("Dropping %d spooled points: %s", segment.points, err)
            self._breaker.abandon()
            return False
        if not body:
            # Nothing to send, so nothing learnt about the server either.
            self._breaker.abandon()
            with contextlib.suppress(SpoolError):
                await self._spool.remove(segment)
            return False
        batch.chunks.append(_Chunk(body, segment.points))
        return True

    async def _deliver_with_retry(self, batch: _Batch) -> None:
        attempt = 0
        while True:
            try:
                await self._send(batch)
            except CannotConnect as err:
                self._server_failed(ServerProblem.CANNOT_CONNECT, err)
                if not self._stopping and self._breaker.state is CircuitState.CLOSED:
                    await self._pause(self._retry.backoff.delay(attempt))
                    attempt += 1
                if self._stopping or not self._breaker.allow():
                    await self._park(batch)
                    return
            except InvalidAuth as err:
                self._server_failed(ServerProblem.INVALID_AUTH, err, trip=True)
                await self._park(batch)
                return
            except DatabaseNotFound as err:
                self._server_failed(ServerProblem.DATABASE_NOT_FOUND, err, trip=True)
                await self._park(batch)
                return
            else:
                self._server_ok()
                if batch.segment is not None:
                    try:
                        await self._spool.remove(batch.segment)
                    except SpoolError as err:
                        self._set_error(str(err))
                        _LOGGER.warning("%s", err)
                return

    async def _send(self, batch: _Batch) -> None:
        """Write the batch chunk by chunk, bisecting chunks the server refuses."""
        chunks = batch.chunks
        while chunks:
            chunk = chunks[0]
            try:
                await self._write(chunk.body)
            except PointsRejected as err:
                lines = chunk.lines
                if lines is None:  # a spooled segment: parse it off the loop, it can be big
                    lines = await self._off_loop(split_lines, chunk.body)
                chunks.popleft()
                batch.progressed = True
                if (halves := err.halves(lines)) is None:
                    for line in lines:  # each refused line is its own record
                        await self._dead_letter(line, str(err))
                    if batch.segment is None:
                        self._batched_points -= chunk.points
                    self._changed()
                    continue
                for half in reversed(halves):
                    chunks.appendleft(_Chunk(b"\n".join(half), len(half), list(half)))
                continue
            chunks.popleft()
            batch.progressed = True
            self._points_written += chunk.points
            if batch.segment is None:
                self._batched_points -= chunk.points
            self._changed()

    async def _dead_letter(self, body: bytes, reason: str) -> None:
        """Save one refused line in the dead-letter file (counted as dropped if it can't be)."""
        line = body.decode(errors="replace")
        try:
            await self._dead_letters.append(reason=reason, line=line, database=self.database)
        except OSError as err:
            self._points_dropped += 1
            self._set_error(f"dead-letter file {self._dead_letters.path}: {err}")
            _LOGGER.error(
                "InfluxDB refused a point (%s) and it could not be saved to %s (%s): %s",
                reason,
                self._dead_letters.path,
                err,
                line,
            )
        else:
            if not self._rejection_logged:
                self._rejection_logged = True
                _LOGGER.warning(
                    "InfluxDB refused a point (%s); it is saved in %s, and further refusals "
                    "are logged at debug level",
                    reason,
                    self._dead_letters.path,
                )
            else:
                _LOGGER.debug("InfluxDB refused a point (%s): %s", reason, line)

    async def _pause(self, delay: float) -> None:
        """Sleep between retries; a stop request cuts it short."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stop_requested.wait()

    async def _park(self, batch: _Batch) -> None:
        """Put a batch that can't be sent now where it waits for the server."""
        if not batch.chunks:
            return
        if batch.segment is None:
            await self._spool_batch(batch)
        elif batch.progressed:
            # Shrink the segment to what is left, so delivered or dead-lettered lines are not
            # replayed (dead letters would be recorded twice).
            try:
                await self._spool.replace(batch.segment, batch.body(), batch.points)
            except SpoolError as err:
                self._spool_failed(err)

    async def _spool_batch(self, batch: _Batch) -> None:
        if not self._spool_usable():
            self._held.append(batch)
            return
        points = batch.points
        try:
            segment = await self._spool.append(batch.body(), points)
        except SpoolError as err:
            self._spool_failed(err)
            if self._stopping:
                self._drop_batch(batch, str(err))
            else:
                self._held.append(batch)
            return
        self._segment_oldest[segment.sequence] = batch.oldest_ns
        self._batched_points -= points
        self._spool_ok()
        self._changed()

    def _spool_usable(self) -> bool:
        return self._stopping or self._spool_error is None or self._now() >= self._spool_retry_at

    def _drop_batch(self, batch: _Batch, reason: str) -> None:
        points = batch.points
        batch.chunks.clear()
        self._batched_points -= points
        self._points_dropped += points
        _LOGGER.error(
            "Dropped %d points that neither InfluxDB nor the spool took: %s", points, reason
        )
        self._changed()

    def _drop_new_point(self) -> None:
        self._points_dropped += 1
        if not self._dropping:
            self._dropping = True
            if self._closed:
                _LOGGER.warning("A point arrived after the writer stopped; it was dropped")
            else:
                _LOGGER.warning(
                    "Dropping points: %d are held in memory because neither InfluxDB nor the "
                    "spool takes them",
                    self._max_memory_points,
                )
            self._changed(urgent=True)
        else:
            self._changed()

    # State changes and notifications.

    def _server_failed(self, problem: ServerProblem, err: Exception, *, trip: bool = False) -> None:
        if trip:
            self._breaker.trip()
        else:
            self._breaker.record_failure()
        self._set_error(f"{problem}: {err}")
        if self._connected or self._problem is not problem:
            # Debug only: the integration logs an outage once per config entry, however many
            # writers it has (quality scale: log-when-unavailable).
            _LOGGER.debug(
                "InfluxDB database %s is unavailable (%s: %s); buffering points until it is back",
                self.database,
                problem,
                err,
            )
            self._connected = False
            self._problem = problem
            self._changed(urgent=True)

    def _server_ok(self) -> None:
        self._breaker.record_success()
        if not self._connected:
            self._connected = True
            self._problem = None
            _LOGGER.debug(
                "InfluxDB database %s is available again; replaying %d spooled points",
                self.database,
                self._spool.points,
            )
            self._changed(urgent=True)

    def _spool_failed(self, err: SpoolError) -> None:
        self._spool_retry_at = self._now() + SPOOL_RETRY_SECONDS
        message = str(err)
        self._set_error(message)
        if self._spool_error is None:
            _LOGGER.warning("%s; keeping points in memory until it works again", message)
        self._spool_error = message
        self._changed(urgent=True)

    def _spool_ok(self) -> None:
        if self._spool_error is not None:
            _LOGGER.info("Spool %s works again", self._spool.directory)
            self._spool_error = None
            self._changed(urgent=True)

    def _memory_points(self) -> int:
        return len(self._queue) + self._batched_points

    def _set_error(self, message: str) -> None:
        self._last_error = message

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def _changed(self, *, urgent: bool = False) -> None:
        if self._on_change is None or self._loop is None:
            return
        if urgent:
            self._notify()
        elif self._notify_handle is None:
            self._notify_handle = self._loop.call_later(self._stats_interval, self._notify)

    def _notify(self) -> None:
        if self._notify_handle is not None:
            self._notify_handle.cancel()
            self._notify_handle = None
        if self._on_change is None:
            return
        stats = self.stats
        if stats == self._last_notified:
            return
        self._last_notified = stats
        try:
            self._on_change(stats)
        except Exception:
            _LOGGER.exception("Error in the writer's stats listener")
