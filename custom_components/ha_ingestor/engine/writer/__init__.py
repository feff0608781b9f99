"""Gets points into InfluxDB without losing them: batches, retries, spools and dead-letters.

There is no Home Assistant here. The integration calls :meth:`PointWriter.enqueue` from its
event-bus listener and shows :class:`WriterStats` as entities; one writer serves one target
database (dual-write means two writers, each with its own spool directory). Its parts: the
memory (``batches``), the dispatching loop (``dispatch``), the sending of a batch
(``sending``), the spool side (``spooled``) and what it reports (``health``).
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

from ..line_protocol import Encoder, Point, encode, split_lines
from ..retry import SYSTEM_TIMER, RetryPolicy, Timer
from ..spool import DeadLetterFile, Spool
from .batches import MemoryQueue, TimeOf, ToPoint
from .dispatch import Dispatcher, Pacing
from .health import SPOOL_RETRY_SECONDS, ServerProblem, StatsListener, WriterHealth, WriterStats
from .sending import BatchDelivery
from .spooled import SpooledBatches
from .stopping import StopRequest

__all__ = [
    "SPOOL_RETRY_SECONDS",
    "PointWriter",
    "ServerProblem",
    "StatsListener",
    "TimeOf",
    "ToPoint",
    "WriteFunction",
    "WriterStats",
    "split_lines",
]

type WriteFunction = Callable[[bytes], Awaitable[None]]


def _itself(point: Point) -> Point:
    return point


def _time_ns(point: Point) -> int:
    return point.time_ns


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
    seconds, and at once when the connection or spool state changes. Every wait and every
    reading of the time (flush and spool intervals, backoff, circuit breaker, stats) is on
    ``timer``, so a test can run the writer on a clock of its own.

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
        timer: Timer = SYSTEM_TIMER,
    ) -> None:
        if batch_size < 1 or concurrent_writes < 1 or max_queue < batch_size:
            raise ValueError(
                "need batch_size >= 1, concurrent_writes >= 1, max_queue >= batch_size"
            )
        self.database = database
        self._spool = spool
        retry = retry or RetryPolicy()
        breaker = retry.new_breaker(timer.monotonic)
        self._stop = StopRequest(timer)
        self._health = WriterHealth(
            spool,
            dead_letters,
            lambda: self._memory.points,
            database=database,
            reachable=reachable,
            timer=timer,
            stats_interval=stats_interval,
            on_change=on_change,
        )
        self._memory: MemoryQueue[T] = MemoryQueue(
            self._health,
            batch_size=batch_size,
            max_points=max_memory_points or 10 * max_queue,
            to_point=to_point if to_point is not None else cast(ToPoint[T], _itself),
            to_line=to_line,
            time_of=time_of if time_of is not None else cast(TimeOf[T], _time_ns),
        )
        memory = cast(MemoryQueue[Any], self._memory)
        self._spooled = SpooledBatches(
            spool, dead_letters, memory, self._health, breaker=breaker, stop=self._stop
        )
        delivery = BatchDelivery(
            write,
            dead_letters,
            self._spooled,
            memory,
            self._health,
            database=database,
            retry=retry,
            breaker=breaker,
            stop=self._stop,
        )
        self._encode_chunk = max(1, min(encode_chunk, batch_size))
        pacing = Pacing(
            batch_size=batch_size,
            flush_interval=flush_interval,
            spool_interval=max(spool_interval, flush_interval),
            concurrent_writes=concurrent_writes,
            encode_chunk=self._encode_chunk,
            max_queue=max_queue,
        )
        self._dispatcher = Dispatcher(
            memory,
            self._spooled,
            delivery,
            self._health,
            pacing=pacing,
            breaker=breaker,
            stop=self._stop,
            timer=timer,
        )
        self._wake = self._dispatcher.wake
        self._timer = timer
        self._finished = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._closed = False

    @property
    def stats(self) -> WriterStats:
        return self._health.stats

    @property
    def finished(self) -> bool:
        """Whether the writer has stopped (after :meth:`stop`, or a retirement that drained)."""
        return self._finished.is_set()

    @property
    def empty(self) -> bool:
        """Whether the writer holds no point, in memory or in its spool."""
        memory = self._memory
        return not (memory.pending or memory.held or self._dispatcher.inflight or len(self._spool))

    @property
    def _queue(self) -> list[T]:
        """The items not taken into a batch yet (tests/test_disk_faults.py looks at them)."""
        return self._memory.queue

    def holds_before(self, time_ns: int) -> bool:
        """Whether any point it holds (memory or spool) is older than ``time_ns``.

        Segments found on disk at start count as older than anything.
        """
        return (
            self._memory.holds_before(time_ns)
            or self._dispatcher.holds_before(time_ns)
            or self._spooled.holds_before(time_ns)
        )

    async def flushed(self, before_ns: int, *, poll: float = 0.2) -> None:
        """Return once the writer holds no point older than ``before_ns``.

        Points are delivered, dead-lettered or dropped (never merely spooled) by then; a
        writer that has stopped with points in its spool never returns.
        """
        # Polled: what the writer holds changes in many places, and this waits rarely.
        while self.holds_before(before_ns):
            await self._timer.sleep(poll)

    def retire(self) -> None:
        """Take no new points; deliver what is held, spool included, then stop by itself."""
        self._stop.retiring = True
        self._wake.set()

    def reactivate(self) -> bool:
        """Take points again after :meth:`retire`; False when it has already stopped."""
        if self._finished.is_set() or self._stop.requested:
            return False
        self._stop.retiring = False
        self._wake.set()
        return True

    async def wait_finished(self) -> None:
        """Return once the writer has stopped."""
        await self._finished.wait()

    async def discard(self) -> int:
        """Stop and throw away everything held (its database is gone); how many points."""
        await self.stop(flush=False)
        held = await self._spooled.discard()
        self._health.changed(urgent=True)
        return held

    def enqueue(self, item: T) -> None:
        """Queue one point (or item to convert) for writing; never blocks and never does I/O."""
        # Runs for every state change in Home Assistant: keep it to a few attribute loads.
        memory = self._memory
        queue = memory.queue
        queued = len(queue)
        if self._closed or self._stop.retiring or queued + memory.batched >= memory.max_points:
            memory.drop_new(closed=self._closed)
            return
        queue.append(item)
        # Wake the dispatcher for the first item (to start the flush timer) and when a chunk
        # is there to encode; in between it sleeps. The stats follow when it takes them.
        if (queued == 0 and memory.since is None) or queued + 1 == self._encode_chunk:
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
        self._health.attach(asyncio.get_running_loop())
        try:
            await self._spooled.open()
            await self._dispatcher.run()
        finally:
            await self._dispatcher.cancel_deliveries()
            self._closed = True
            self._health.close()
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
        self._stop.set(flush=flush)
        self._wake.set()
        if not self._running:
            await self.run()
        else:
            await self._finished.wait()
