"""The backfill's writing side: batches into the target, refused points isolated and kept in
the dead-letter file. No Home Assistant in here.
"""

import asyncio
from collections import deque

from ...delivery import Chunk, write_halving
from ...influx import PointsRejected
from ...line_protocol import tag_value
from ...spool import DeadLetterFile
from ..model import MigrationState
from .copy_windows import LineBatch
from .line_batcher import LandBatch
from .server_link import ServerLink, Stopping, StopRequest


class BatchWriter:
    """Writes batches with the shared retry policy, one at a time per writer task.

    Points the server refuses are isolated by bisection (the valid points of a refused write
    are stored anyway, so halves can be re-sent until every refused line is found), appended
    to the dead-letter file and counted as failed. A batch that meets a stopping run is
    dropped: its windows stay unrecorded and are copied again on resume.
    """

    def __init__(
        self,
        state: MigrationState,
        *,
        database: str,
        link: ServerLink,
        dead_letters: DeadLetterFile,
        land: LandBatch,
        stop: StopRequest,
    ) -> None:
        self._state = state
        self._database = database
        self._link = link
        self._dead_letters = dead_letters
        self._land = land
        self._stop = stop

    async def write_all(self, queue: asyncio.Queue[LineBatch | None]) -> None:
        """Write the batches of ``queue`` until it hands over None."""
        while (batch := await queue.get()) is not None:
            if self._stop.is_set():
                continue  # its windows stay unrecorded and are copied again on resume
            try:
                failed = await self._deliver(batch.lines)
            except Stopping:
                continue
            self._land(batch, failed)

    async def _deliver(self, lines: list[str]) -> list[int]:
        """Write the lines; return the indexes of the lines the server refused."""
        failed: list[int] = []

        async def write(body: bytes) -> None:
            await self._link.retried(lambda: self._link.write(body, self._database))

        async def refused(chunk: Chunk, err: PointsRejected) -> None:
            ledger = self._state.ledger
            for offset, encoded in enumerate(chunk.lines or ()):
                line = encoded.decode()
                if ledger is not None and (entity := tag_value(line, "entity_id")):
                    # Recorded before the line is: a refused point must never be cleaned.
                    ledger.dead_lettered.add(entity)
                await self._dead_letters.append(reason=str(err), line=line, database=self._database)
                failed.append(chunk.start + offset)

        chunks = deque([Chunk.of([line.encode() for line in lines])])
        await write_halving(chunks, write, written=lambda _chunk: None, refused=refused)
        return failed
