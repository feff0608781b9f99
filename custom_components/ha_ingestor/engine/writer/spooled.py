"""The writer's disk: batches spooled while the server is away, and read back to replay."""

import contextlib
import logging
from typing import Any

from ..delivery import Chunk
from ..retry import CircuitBreaker
from ..spool import DeadLetterFile, Segment, SegmentDamaged, Spool, SpoolError
from .batches import Batch, MemoryQueue, older
from .health import WriterHealth
from .stopping import StopRequest

_LOGGER = logging.getLogger(__name__)

# Older than anything: what a unit whose point times are not known counts as.
_UNKNOWN_TIME = -(2**63)


class SpooledBatches:
    """Puts memory batches into the spool and reads segments back for their replay.

    A batch the spool can't take (it failed a moment ago, is full or unwritable) waits in
    ``memory.held``; while stopping, the spool is always tried, and what it refuses then is
    dropped and counted. Each segment spooled here remembers its earliest point time, so the
    writer can tell whether it holds points older than a cutover.
    """

    def __init__(
        self,
        spool: Spool,
        dead_letters: DeadLetterFile,
        memory: MemoryQueue[Any],
        health: WriterHealth,
        *,
        breaker: CircuitBreaker,
        stop: StopRequest,
    ) -> None:
        self.spool = spool
        self._dead_letters = dead_letters
        self._memory = memory
        self._health = health
        self._breaker = breaker
        self._stop = stop
        # Sequence → earliest point time of the segments this writer spooled (segments found
        # on disk at start are older than anything).
        self._segment_oldest: dict[int, int | None] = {}

    async def open(self) -> None:
        """Open the spool and the dead-letter file; what fails is reported, not raised."""
        try:
            await self.spool.open()
        except SpoolError as err:
            self._health.spool_failed(err)
        try:
            await self._dead_letters.open()
        except OSError as err:
            self._health.last_error = f"dead-letter file {self._dead_letters.path}: {err}"
            _LOGGER.error("Cannot read dead-letter file %s: %s", self._dead_letters.path, err)
        if self.spool.points:
            self._health.changed(urgent=True)  # what an earlier run left is shown at once

    def usable(self) -> bool:
        return self._stop.requested or self._health.spool_worth_trying()

    def holds_before(self, time_ns: int) -> bool:
        return any(
            older(self._segment_oldest.get(segment.sequence, _UNKNOWN_TIME), time_ns)
            for segment in self.spool.segments()
        )

    async def put(self, batch: Batch) -> None:
        """Spool a memory batch, or hold it in memory when the spool can't take it now."""
        if not self.usable():
            self._memory.held.append(batch)
            return
        points = batch.points
        try:
            segment = await self.spool.append(batch.body(), points)
        except SpoolError as err:
            self._health.spool_failed(err)
            if self._stop.requested:
                self.drop(batch, str(err))
            else:
                self._memory.held.append(batch)
            return
        self._segment_oldest[segment.sequence] = batch.oldest_ns
        self._memory.release(points)
        self._health.spool_ok()
        self._health.changed()

    def drop(self, batch: Batch, reason: str) -> None:
        points = batch.points
        batch.chunks.clear()
        self._memory.release(points)
        self._health.points_dropped += points
        _LOGGER.error(
            "Dropped %d points that neither InfluxDB nor the spool took: %s", points, reason
        )
        self._health.changed()

    async def shrink(self, batch: Batch) -> None:
        """Cut a partly sent segment down to what is left of it, so delivered or dead-lettered
        lines are not replayed (dead letters would be recorded twice)."""
        assert batch.segment is not None
        try:
            await self.spool.replace(batch.segment, batch.body(), batch.points)
        except SpoolError as err:
            self._health.spool_failed(err)

    async def remove(self, segment: Segment) -> None:
        """Delete a segment whose every line was delivered or dead-lettered."""
        try:
            await self.spool.remove(segment)
        except SpoolError as err:
            self._health.last_error = str(err)
            _LOGGER.warning("%s", err)

    async def load(self, batch: Batch, segment: Segment) -> bool:
        """Read a segment into its batch; False when there is nothing to send of it."""
        health = self._health
        try:
            body = await self.spool.read(segment)
        except SegmentDamaged as err:
            # Replaying it could store a torn line as a point (in 1970, or a wrong value).
            self._breaker.abandon()
            health.damaged_points += segment.points
            health.last_error = str(err)
            try:
                where = await self.spool.set_aside(segment)
            except SpoolError as move_err:
                self.spool.forget(segment)
                _LOGGER.error("%s; it could not be moved aside either: %s", err, move_err)
            else:
                _LOGGER.error(
                    "%s; it was moved to %s and is not replayed (%d points)",
                    err,
                    where,
                    segment.points,
                )
            health.changed(urgent=True)
            return False
        except SpoolError as err:
            # A segment that can't be read would block the replay forever.
            self.spool.forget(segment)
            health.points_dropped += segment.points
            health.last_error = str(err)
            _LOGGER.error("Dropping %d spooled points: %s", segment.points, err)
            self._breaker.abandon()
            return False
        if not body:
            # Nothing to send, so nothing learnt about the server either.
            self._breaker.abandon()
            with contextlib.suppress(SpoolError):
                await self.spool.remove(segment)
            return False
        batch.chunks.append(Chunk(body, segment.points))
        return True

    async def discard(self) -> int:
        """Delete every segment (the database is gone); how many points they held."""
        held = self.spool.points
        try:
            await self.spool.clear()
        except SpoolError as err:
            _LOGGER.error("Cannot clear spool %s: %s", self.spool.directory, err)
        return held
