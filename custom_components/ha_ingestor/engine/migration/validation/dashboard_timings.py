"""What dashboards ask most, timed on both layouts: information for the user, never part of
the integrity. No Home Assistant in here.
"""

from collections.abc import Awaitable, Callable, Mapping
import logging
import statistics

from ...influx import Aggregate, InfluxClient, QueryFailed
from ...retry import Clock
from ..discovery import DAY_NS, HOUR_NS
from ..model import QueryTiming
from .counts import Counts

_LOGGER = logging.getLogger(__name__)

type _Query = Callable[[], Awaitable[object]]


class DashboardTimings:
    """Representative dashboard queries against both layouts, the median of ``repeats`` runs
    each, measured on ``stopwatch`` (seconds)."""

    def __init__(
        self,
        client: InfluxClient,
        *,
        source_database: str,
        target_database: str,
        repeats: int,
        stopwatch: Clock,
    ) -> None:
        self._client = client
        self._source_db = source_database
        self._target_db = target_database
        self._repeats = max(repeats, 1)
        self._stopwatch = stopwatch

    async def time(
        self, legacy: Counts, places: Mapping[str, set[str]], start: int, end: int
    ) -> tuple[QueryTiming, ...]:
        """Time the queries over [start, end) for the busiest entity and its domain (sensors
        when there are any)."""
        if not legacy:
            return ()
        timings: list[QueryTiming] = []
        for name, on_legacy, on_optimized in self._queries(legacy, places, start, end):
            try:
                legacy_ms = await self._median_ms(on_legacy)
                optimized_ms = await self._median_ms(on_optimized)
            except QueryFailed as err:
                # The timings are information only; data the server cannot aggregate (a
                # field written with two types) must not fail the validation.
                _LOGGER.warning("Dashboard query %s could not be timed: %s", name, err)
                continue
            timings.append(QueryTiming(name=name, legacy_ms=legacy_ms, optimized_ms=optimized_ms))
        return tuple(timings)

    def _queries(
        self, legacy: Counts, places: Mapping[str, set[str]], start: int, end: int
    ) -> list[tuple[str, _Query, _Query]]:
        busiest: dict[str, int] = {}
        for (entity, _), (values, _) in legacy.items():
            busiest[entity] = busiest.get(entity, 0) + values
        entity = max(busiest, key=lambda e: (busiest[e], e))
        domain, _, object_id = entity.partition(".")
        domains = {e.partition(".")[0] for e in places}
        shown = "sensor" if "sensor" in domains else domain
        shown_measurements = sorted(
            {m for e, ms in places.items() if e.partition(".")[0] == shown for m in ms}
        )
        aggregate = self._client.aggregate
        legacy_db, optimized_db = self._source_db, self._target_db
        return [
            (
                "entity_hourly_mean",
                lambda: aggregate(
                    sorted(places[entity]),
                    "value",
                    Aggregate.MEAN,
                    start_ns=start,
                    end_ns=end,
                    every_ns=HOUR_NS,
                    where={"domain": [domain], "entity_id": [object_id]},
                    database=legacy_db,
                ),
                lambda: aggregate(
                    domain,
                    "value",
                    Aggregate.MEAN,
                    start_ns=start,
                    end_ns=end,
                    every_ns=HOUR_NS,
                    where={"entity_id": [entity]},
                    database=optimized_db,
                ),
            ),
            (
                f"{shown}_last_values",
                lambda: aggregate(
                    shown_measurements,
                    "value",
                    Aggregate.LAST,
                    start_ns=start,
                    end_ns=end,
                    group_by=("entity_id",),
                    where={"domain": [shown]},
                    database=legacy_db,
                ),
                lambda: aggregate(
                    shown,
                    "value",
                    Aggregate.LAST,
                    start_ns=start,
                    end_ns=end,
                    group_by=("entity_id",),
                    database=optimized_db,
                ),
            ),
            (
                f"{shown}_daily_count",
                lambda: aggregate(
                    shown_measurements,
                    "value",
                    Aggregate.COUNT,
                    start_ns=start,
                    end_ns=end,
                    every_ns=DAY_NS,
                    where={"domain": [shown]},
                    database=legacy_db,
                ),
                lambda: aggregate(
                    shown,
                    "value",
                    Aggregate.COUNT,
                    start_ns=start,
                    end_ns=end,
                    every_ns=DAY_NS,
                    database=optimized_db,
                ),
            ),
        ]

    async def _median_ms(self, query: _Query) -> float:
        timings = []
        for _ in range(self._repeats):
            started = self._stopwatch()
            await query()
            timings.append((self._stopwatch() - started) * 1000)
        return statistics.median(timings)
