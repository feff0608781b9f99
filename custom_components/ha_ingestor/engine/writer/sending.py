"""How the writer sends a batch: retries with backoff, the circuit breaker, dead letters."""

import asyncio
from functools import partial
import logging
from typing import Any

from ..delivery import Chunk, Write, write_halving
from ..influx.errors import CannotConnect, DatabaseNotFound, InvalidAuth, PointsRejected
from ..line_protocol import split_lines
from ..retry import CircuitBreaker, CircuitState, RetryPolicy
from ..spool import DeadLetterFile
from .batches import Batch, MemoryQueue, off_loop
from .health import ServerProblem, WriterHealth
from .spooled import SpooledBatches
from .stopping import StopRequest

_LOGGER = logging.getLogger(__name__)


class BatchDelivery:
    """Delivers batches, each once it was given a write slot, and never loses one.

    - CannotConnect is retried with the policy's backoff until the circuit breaker opens;
      then, and while stopping, the batch is parked: a memory batch goes to the spool, a
      spooled one is cut down to what is left of it.
    - InvalidAuth and DatabaseNotFound open the circuit at once and park the batch.
    - Refused lines are isolated by halving (:func:`engine.delivery.write_halving`) and each
      goes to the dead-letter file; everything else is written.
    - A spooled segment is deleted only once every line of it is written or dead-lettered.
    """

    def __init__(
        self,
        write: Write,
        dead_letters: DeadLetterFile,
        spooled: SpooledBatches,
        memory: MemoryQueue[Any],
        health: WriterHealth,
        *,
        database: str,
        retry: RetryPolicy,
        breaker: CircuitBreaker,
        stop: StopRequest,
    ) -> None:
        self._write = write
        self._dead_letters = dead_letters
        self._spooled = spooled
        self._memory = memory
        self._health = health
        self._database = database
        self._retry = retry
        self._breaker = breaker
        self._stop = stop
        self._rejection_logged = False

    async def deliver(self, batch: Batch) -> None:
        segment = batch.segment
        try:
            if segment is not None and not await self._spooled.load(batch, segment):
                return
            await self._deliver_with_retry(batch)
        except asyncio.CancelledError:
            self._breaker.abandon()
            raise
        except Exception as err:  # a delivery must never take the writer down
            _LOGGER.exception("Unexpected error writing to InfluxDB")
            self._health.last_error = f"unexpected: {err!r}"
            self._breaker.record_failure()
            await self._park(batch)

    async def _deliver_with_retry(self, batch: Batch) -> None:
        attempt = 0
        while True:
            try:
                await self._send(batch)
            except CannotConnect as err:
                self._server_failed(ServerProblem.CANNOT_CONNECT, err)
                if not self._stop.requested and self._breaker.state is CircuitState.CLOSED:
                    await self._stop.pause(self._retry.backoff.delay(attempt))
                    attempt += 1
                if self._stop.requested or not self._breaker.allow():
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
                self._breaker.record_success()
                self._health.server_ok()
                if batch.segment is not None:
                    await self._spooled.remove(batch.segment)
                return

    async def _send(self, batch: Batch) -> None:
        """Write the batch chunk by chunk, halving chunks the server refuses."""
        chunks = batch.chunks
        first = chunks[0] if chunks else None
        try:
            await write_halving(
                chunks,
                self._write,
                written=partial(self._written, batch),
                refused=partial(self._refused, batch),
                lines_of=self._split,
            )
        finally:
            if not chunks or chunks[0] is not first:
                batch.progressed = True

    @staticmethod
    async def _split(body: bytes) -> list[bytes]:
        return await off_loop(split_lines, body)  # a spooled segment can be big

    def _written(self, batch: Batch, chunk: Chunk) -> None:
        self._health.points_written += chunk.points
        if batch.segment is None:
            self._memory.release(chunk.points)
        self._health.changed()

    async def _refused(self, batch: Batch, chunk: Chunk, err: PointsRejected) -> None:
        assert chunk.lines is not None
        for line in chunk.lines:  # each refused line is its own record
            await self._dead_letter(line, str(err))
        if batch.segment is None:
            self._memory.release(chunk.points)
        self._health.changed()

    async def _dead_letter(self, body: bytes, reason: str) -> None:
        """Save one refused line in the dead-letter file (counted as dropped if it can't be)."""
        line = body.decode(errors="replace")
        path = self._dead_letters.path
        try:
            await self._dead_letters.append(reason=reason, line=line, database=self._database)
        except OSError as err:
            self._health.points_dropped += 1
            self._health.last_error = f"dead-letter file {path}: {err}"
            _LOGGER.error(
                "InfluxDB refused a point (%s) and it could not be saved to %s (%s): %s",
                reason,
                path,
                err,
                line,
            )
            return
        if not self._rejection_logged:
            self._rejection_logged = True
            _LOGGER.warning(
                "InfluxDB refused a point (%s); it is saved in %s, and further refusals "
                "are logged at debug level",
                reason,
                path,
            )
        else:
            _LOGGER.debug("InfluxDB refused a point (%s): %s", reason, line)

    async def _park(self, batch: Batch) -> None:
        """Put a batch that can't be sent now where it waits for the server."""
        if not batch.chunks:
            return
        if batch.segment is None:
            await self._spooled.put(batch)
        elif batch.progressed:
            await self._spooled.shrink(batch)

    def _server_failed(self, problem: ServerProblem, err: Exception, *, trip: bool = False) -> None:
        if trip:
            self._breaker.trip()
        else:
            self._breaker.record_failure()
        self._health.server_failed(problem, err)
