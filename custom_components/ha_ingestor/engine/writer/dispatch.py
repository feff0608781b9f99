"""The writer's one loop: it decides where each batch goes; deliveries run as tasks."""

import asyncio
from dataclasses import dataclass
from enum import Enum
import logging
from typing import Any

from ..retry import CircuitBreaker, CircuitState, Timer
from .batches import Batch, MemoryQueue, older
from .health import WriterHealth
from .sending import BatchDelivery
from .spooled import SpooledBatches
from .stopping import StopRequest

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pacing:
    """When batches go out and how many at once (see :class:`PointWriter`)."""

    batch_size: int
    flush_interval: float
    spool_interval: float
    concurrent_writes: int
    encode_chunk: int
    max_queue: int


class _Route(Enum):
    DELIVER = "deliver"
    DIVERT = "divert"  # to the spool
    WAIT = "wait"


class Dispatcher:
    """Moves points along: memory batches to a write slot or the spool, spooled segments back
    to a write slot, oldest first, once the server answers; sleeps on the timer in between.

    ``wake`` is set by whoever has news for it (a new item, a delivery done, a stop).
    """

    def __init__(
        self,
        memory: MemoryQueue[Any],
        spooled: SpooledBatches,
        delivery: BatchDelivery,
        health: WriterHealth,
        *,
        pacing: Pacing,
        breaker: CircuitBreaker,
        stop: StopRequest,
        timer: Timer,
    ) -> None:
        self._memory = memory
        self._spooled = spooled
        self._delivery = delivery
        self._health = health
        self._pacing = pacing
        self._breaker = breaker
        self._stop = stop
        self._timer = timer
        self.wake = asyncio.Event()
        self.inflight: dict[asyncio.Task[None], Batch] = {}
        self._spool_inflight = 0
        self._claimed: set[int] = set()  # sequences of segments being delivered

    def holds_before(self, time_ns: int) -> bool:
        """Whether a memory batch held back or being sent has a point older than ``time_ns``."""
        return any(
            batch.segment is None and batch.chunks and older(batch.oldest_ns, time_ns)
            for batch in (*self._memory.held, *self.inflight.values())
        )

    async def run(self) -> None:
        """Dispatch until stopped (with nothing left in memory) or retired (and empty)."""
        memory = self._memory
        while True:
            self.wake.clear()
            memory.check_room()
            try:
                self._replay_spool()
                await self._move_memory()
            except Exception as err:  # the writer must outlive any bug
                _LOGGER.exception("Unexpected error in the InfluxDB writer")
                self._health.last_error = f"unexpected: {err!r}"
                if self._stop.requested:
                    for batch in memory.held:
                        self._spooled.drop(batch, "unexpected error while stopping")
                    memory.held.clear()
                    self._health.points_dropped += memory.drop_unbatched()
                await self._timer.sleep(self._pacing.flush_interval)
            if self._stop.requested and not (memory.pending or memory.held or self.inflight):
                return
            if self._stop.retiring and not self._stop.requested and self._empty():
                return
            await self._sleep(self._next_deadline())

    async def cancel_deliveries(self) -> None:
        for task in self.inflight:
            task.cancel()
        await asyncio.gather(*self.inflight, return_exceptions=True)
        self.inflight.clear()

    def _empty(self) -> bool:
        memory = self._memory
        return not (memory.pending or memory.held or self.inflight or len(self._spooled.spool))

    async def _sleep(self, deadline: float | None) -> None:
        if deadline is None:
            await self.wake.wait()
        else:
            await self._timer.pause(max(0.0, deadline - self._timer.monotonic()), self.wake)

    def _next_deadline(self) -> float | None:
        memory = self._memory
        now = self._timer.monotonic()
        deadlines = []
        if memory.pending and memory.since is not None:
            deadlines.append(memory.since + self._partial_delay())
        if (retry := self._breaker.retry_after()) > 0 and (
            memory.pending or memory.held or len(self._spooled.spool)
        ):
            deadlines.append(now + retry)
        if memory.held and (retry_at := self._health.spool_retry_at()) is not None:
            deadlines.append(retry_at)
        # Deadlines already past wait for a delivery to finish instead of spinning.
        future = [deadline for deadline in deadlines if deadline > now]
        return min(future, default=None)

    def _replay_spool(self) -> None:
        spool = self._spooled.spool
        if self._stop.requested or not spool.is_open:
            return
        slots = self._pacing.concurrent_writes
        while len(self.inflight) < slots:
            segment = spool.oldest(self._claimed)
            if segment is None:
                return
            if self._breaker.state is CircuitState.CLOSED:
                # Leave one slot to new data while it is waiting.
                memory = self._memory
                waiting = bool(memory.held) or memory.pending >= self._pacing.batch_size
                if waiting and self._spool_inflight >= max(1, slots - 1):
                    return
            elif not self._breaker.allow():
                return
            self._claimed.add(segment.sequence)
            self._spool_inflight += 1
            self._launch(Batch(segment=segment, oldest_ns=None))

    async def _move_memory(self) -> None:
        memory = self._memory
        pacing = self._pacing
        # Batches the spool refused earlier come first, once each per pass.
        for _ in range(len(memory.held)):
            route = self._route()
            if route is _Route.WAIT or (route is _Route.DIVERT and not self._spooled.usable()):
                break
            await self._send_or_spool(memory.held.popleft(), route)
        while memory.pending:
            now = self._timer.monotonic()
            if memory.since is None:
                memory.since = now
            pending = memory.pending
            if (
                pending < pacing.batch_size
                and not self._stop.requested
                and now < memory.since + self._partial_delay()
            ):
                if len(memory.queue) < pacing.encode_chunk:
                    return
                await memory.encode_ahead()
                continue
            if self._route() is _Route.WAIT:
                return
            left = pending > pacing.batch_size
            batch = await memory.take_batch()
            # What arrived while the batch was being encoded starts its own flush timer.
            memory.since = now if left else None
            if batch is None:
                continue
            # The server, the spool or the memory use may have changed meanwhile.
            route = self._route()
            if route is _Route.WAIT:
                memory.held.append(batch)
                return
            await self._send_or_spool(batch, route)
        memory.since = None

    def _partial_delay(self) -> float:
        """How long a partial batch waits: it goes to the spool less often than to a server."""
        pacing = self._pacing
        return pacing.flush_interval if self._breaker.accepting else pacing.spool_interval

    def _route(self) -> _Route:
        # On the way out, one failed write is enough: the rest goes to the spool rather than
        # making shutdown wait for more timeouts.
        stop = self._stop
        sending = not stop.requested or (stop.flush and self._health.connected)
        accepting = self._breaker.accepting
        if sending and accepting and len(self.inflight) < self._pacing.concurrent_writes:
            return _Route.DELIVER
        if not sending or not accepting or self._memory.points > self._pacing.max_queue:
            return _Route.DIVERT
        return _Route.WAIT

    async def _send_or_spool(self, batch: Batch, route: _Route) -> None:
        if route is _Route.DELIVER:
            self._breaker.allow()
            self._launch(batch)
        else:
            await self._spooled.put(batch)

    def _launch(self, batch: Batch) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(batch))
        self.inflight[task] = batch
        task.add_done_callback(self._delivered)

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self.inflight.pop(task, None)
        self.wake.set()

    async def _deliver(self, batch: Batch) -> None:
        segment = batch.segment
        try:
            await self._delivery.deliver(batch)
        finally:
            if segment is not None:
                self._claimed.discard(segment.sequence)
                self._spool_inflight -= 1
            self._health.changed()
