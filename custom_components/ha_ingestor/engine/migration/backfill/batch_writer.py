"""The backfill's writing side: batches into the target, refused points isolated and kept in
the dead-letter file. No Home Assistant in here.
"""

import asyncio

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
                failed = await self._deliver(batch.lines, 0, len(batch.lines))
            except Stopping:
                continue
            self._land(batch, failed)

    async def _deliver(self, lines: list[str], low: int, high: int) -> list[int]:
        """Write lines[low:high]; return the indexes of the lines the server refused."""
        body = "\n".join(lines[low:high]).encode()
        try:
            await self._link.retried(lambda: self._link.write(body, self._database))
        except PointsRejected as err:
            reason = str(err)
            halves = err.halves(lines[low:high])
            if halves is None:
                ledger = self._state.ledger
                for line in lines[low:high]:
                    if ledger is not None and (entity := tag_value(line, "entity_id")):
                        # Recorded before the line is: a refused point must never be cleaned.
                        ledger.dead_lettered.add(entity)
                    await self._dead_letters.append(
                        reason=reason, line=line, database=self._database
                    )
                return list(range(low, high))
            middle = low + len(halves[0])
            return await self._deliver(lines, low, middle) + await self._deliver(
                lines, middle, high
            )
        return []
