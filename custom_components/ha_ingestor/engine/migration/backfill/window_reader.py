"""The backfill's reading side: every window of every unfinished measurement, streamed as
blocks of legacy rows. No Home Assistant in here.
"""

import asyncio
from collections import deque
import logging
from typing import Final

from ...influx import Aggregate, CannotConnect, InfluxClient
from ..discovery import legacy_rows
from ..model import MigrationState
from ..series_reads import legacy_blocks
from .copy_windows import BlockItem, CopyWindow, WindowQueue
from .plan import BackfillPlan
from .server_link import ServerLink, StopRequest

_LOGGER = logging.getLogger(__name__)

# Measurements read at the same time.
READERS: Final = 2


class WindowReader:
    """Reads the legacy history window by window, with time bounds (never LIMIT/OFFSET).

    A few measurements are read at once, each oldest window first, so that one query's round
    trips overlap another's data: histories hold many small measurements. A read that fails
    on an unreachable server abandons its window, waits for the server and reads the window
    again, smaller.
    """

    def __init__(
        self,
        client: InfluxClient,
        state: MigrationState,
        *,
        database: str,
        fields: frozenset[str],
        plan: BackfillPlan,
        windows: WindowQueue,
        link: ServerLink,
        stop: StopRequest,
    ) -> None:
        self._client = client
        self._state = state
        self._database = database
        self._fields = fields
        self._plan = plan
        self._windows = windows
        self._link = link
        self._stop = stop

    async def read_all(self, blocks: asyncio.Queue[BlockItem | None]) -> None:
        """Stream every window of every unfinished measurement into ``blocks``, then None."""
        checkpoints = self._state.checkpoints
        todo = deque(
            sorted(
                (name for name, checkpoint in checkpoints.items() if not checkpoint.done),
                key=lambda name: (checkpoints[name].completed_until_ns, name),
            )
        )

        async def reader() -> None:
            while todo and not self._stop.is_set():
                await self._read_measurement(todo.popleft(), blocks)

        async with asyncio.TaskGroup() as readers:
            for _ in range(READERS):
                readers.create_task(reader())
        await blocks.put(None)

    async def _read_measurement(
        self, measurement: str, blocks: asyncio.Queue[BlockItem | None]
    ) -> None:
        checkpoint = self._state.checkpoints[measurement]
        position = checkpoint.completed_until_ns
        while position < checkpoint.end_ns and not self._stop.is_set():
            end = min(position + self._plan.window(measurement), checkpoint.end_ns)
            window = self._windows.open(measurement, end)
            try:
                read = await self._read_window(blocks, window, position, end)
                if read == 0:
                    # Skip the whole gap up to the next point in one go.
                    window.end_ns = await self._next_point(measurement, end, checkpoint.end_ns)
            except CannotConnect as err:
                self._link.reached(False)
                window.abandoned = True
                await blocks.put((window, None))
                # Debug only: the integration logs the outage once for the config entry.
                _LOGGER.debug(
                    "Reading %s failed (%s); waiting for InfluxDB, then reading it again",
                    measurement,
                    err,
                )
                self._link.breaker.record_failure()
                self._plan.shrink(measurement, end - position)
                await self._link.wait_for_server()
                continue
            self._link.reached(True)
            await blocks.put((window, None))
            if read:
                self._plan.adapt(measurement, end - position, read)
            position = window.end_ns

    async def _read_window(
        self, blocks: asyncio.Queue[BlockItem | None], window: CopyWindow, start: int, end: int
    ) -> int:
        """Queue the blocks of one window; return how many points they hold."""
        config = self._state.config
        read = 0
        async for _, block in legacy_blocks(
            self._client,
            window.measurement,
            start,
            end,
            self._database,
            # Without an entity filter every legacy series is selected: no need to ask.
            selects=config.selects if config.entities else None,
            fields=self._fields,
        ):
            read += len(block.rows)
            await blocks.put((window, block))
        return read

    async def _next_point(self, measurement: str, start: int, end: int) -> int:
        """Time of the first point to copy in [start, end), or ``end`` when there is none."""
        found = end
        async for _, _, row in legacy_rows(
            self._client,
            measurement,
            Aggregate.FIRST,
            selects=self._state.config.selects,
            start_ns=start,
            end_ns=end,
            database=self._database,
        ):
            found = min(found, row.time_ns)
        return found
