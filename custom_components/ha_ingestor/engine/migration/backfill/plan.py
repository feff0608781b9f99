"""What the backfill copies: a checkpoint per legacy measurement, window sizes that follow
each measurement's density, the rate a gradual migration keeps. No Home Assistant in here.
"""

from collections.abc import Awaitable, Callable
import logging
from typing import Final

from ...influx import InfluxClient
from ..discovery import MIN_WINDOW_NS, DiscoveredSource, discover, range_ns
from ..model import BackfillCheckpoint, MigrationState, backfill_rate_limit

_LOGGER = logging.getLogger(__name__)

type SaveState = Callable[[MigrationState], Awaitable[None]]

# A window grows or shrinks at most this much from one to the next.
_WINDOW_STEP: Final = 4


class BackfillPlan:
    """The checkpoints of a run and the size of each measurement's next window.

    Windows aim at a fixed number of points (enough that per-window queries are noise, few
    enough that a resume repeats little); the first one of a measurement is sized from what
    discovery counted, the next ones from the density of the last.
    """

    def __init__(
        self,
        client: InfluxClient,
        state: MigrationState,
        *,
        database: str,
        save: SaveState,
        source: DiscoveredSource | None,
        default_window_ns: int,
    ) -> None:
        self._client = client
        self._state = state
        self._database = database
        self._save = save
        self.source = source
        self._default_window = max(default_window_ns, MIN_WINDOW_NS)
        config = state.config
        self._window_points = min(
            max(config.batch_size * config.concurrent_batches * 10, 20_000), 200_000
        )
        self._windows: dict[str, int] = {}
        self._rediscovered = False

    async def discover_and_plan(self, cutover_ns: int) -> None:
        """Plan from what discovery found (or was given)."""
        source = self.source or await discover(
            self._client, self._database, self._state.config, until_ns=cutover_ns
        )
        await self._plan(cutover_ns, source)

    async def _plan(self, cutover_ns: int, source: DiscoveredSource) -> None:
        """Give every legacy measurement a checkpoint from its first point to the cutover."""
        self.source = source
        state = self._state
        _, config_end = range_ns(state.config)
        end_ns = min(cutover_ns, config_end)
        # What progress and the ETA are measured against: the points to copy, counted now.
        added = sum(source.points_in(m) for m in source.measurements if m not in state.checkpoints)
        state.estimated_total_points = (
            (state.estimated_total_points or 0) + added if state.checkpoints else added
        )
        for measurement in source.measurements:
            if measurement in state.checkpoints:
                continue
            first, _ = source.extents[measurement]
            # Not the last point seen by discovery: legacy points keep arriving until the
            # cutover, and all of them are the backfill's.
            state.checkpoints[measurement] = BackfillCheckpoint.starting(first, max(first, end_ns))
        ledger = state.ledger
        if ledger is not None:
            for series in source.series:
                ledger.record_copied(series.measurement, (series.entity_id,))
        await self._save(state)

    async def plan_late_arrivals(self, cutover_ns: int) -> bool:
        """Discover again, once per run; plan measurements that turned up since; whether
        there were any."""
        if self._rediscovered:
            return False
        self._rediscovered = True
        again = await discover(
            self._client,
            self._database,
            self._state.config,
            until_ns=cutover_ns,
            skip=self._state.checkpoints,
        )
        new = list(again.measurements)
        await self._plan(cutover_ns, again)
        if new:
            _LOGGER.info("Legacy measurements appeared during the backfill: %s", ", ".join(new))
        return bool(new)

    def rate_limit(self) -> float | None:
        """Points per second a gradual migration keeps to; None: as fast as it goes."""
        state = self._state
        estimate = state.estimated_total_points
        if estimate is None and self.source is not None:
            estimate = sum(s.point_count for s in self.source.series)
        limit = backfill_rate_limit(state.config, estimate or 0)
        if limit is not None and limit <= 0:
            _LOGGER.warning("No point estimate to spread the backfill over; not rate limiting")
            return None
        return limit

    def window(self, measurement: str) -> int:
        """The span of the next window of ``measurement``."""
        if measurement not in self._windows:
            self._windows[measurement] = self._first_window(measurement)
        return self._windows[measurement]

    def _first_window(self, measurement: str) -> int:
        source = self.source
        if source is not None and measurement in source.extents:
            first, last = source.extents[measurement]
            points = source.points_in(measurement)
            if points > 0 and last > first:
                return max(MIN_WINDOW_NS, (last - first) * self._window_points // points)
        return self._default_window

    def adapt(self, measurement: str, span: int, points: int) -> None:
        """Size the next window from the density of the last one."""
        if points == 0:
            size = span * _WINDOW_STEP
        else:
            size = span * self._window_points // points
            size = min(max(size, span // _WINDOW_STEP), span * _WINDOW_STEP)
        self._windows[measurement] = max(size, MIN_WINDOW_NS)

    def shrink(self, measurement: str, span: int) -> None:
        """Halve the next window after a failed read, in case the server gave up on a large
        one."""
        self._windows[measurement] = max(span // 2, MIN_WINDOW_NS)
