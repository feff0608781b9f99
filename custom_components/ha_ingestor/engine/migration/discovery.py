"""Reading the legacy history: what there is (discover), its rows, its measurements.

Shared by the backfill, the validation and the removal. No Home Assistant in here.
"""

import asyncio
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Mapping,
)
from dataclasses import dataclass, field
import logging
import time
from typing import Final

from ..influx import (
    Aggregate,
    AggregateRow,
    InfluxClient,
)
from ..line_protocol import (
    from_time_ns,
    to_time_ns,
)
from .model import (
    MigrationConfig,
    SourceSeries,
    SourceSummary,
)

_LOGGER = logging.getLogger(__name__)

HOUR_NS: Final = 3_600 * 10**9
DAY_NS: Final = 24 * HOUR_NS
# The range InfluxDB can store: a query over it misses nothing.
ALL_TIME: Final = (-(2**63) + 2, 2**63 - 2)

# Every legacy point has a numeric "value" or a textual "state" field (or both); counting
# these two is how both layouts are counted without reading every attribute column.
STATE_FIELDS: Final = ("value", "state")
# The shortest window a backfill reads, and the shortest span a read-rate probe reads.
MIN_WINDOW_NS: Final = 60 * 10**9


def legacy_entity_id(tags: Mapping[str, str]) -> str | None:
    """The full entity id of a legacy-layout series, or None for any other series.

    The legacy layout tags the domain and the object id; an ``entity_id`` tag holding a dot
    is a full id, which only the optimized layout writes.
    """
    domain = tags.get("domain")
    object_id = tags.get("entity_id")
    if not domain or not object_id or "." in object_id:
        return None
    return f"{domain}.{object_id}"


def is_optimized_series(measurement: str, entity_id: str) -> bool:
    """Whether a series is the optimized layout's: measurement = domain, entity_id a full id."""
    domain, dot, _ = entity_id.partition(".")
    return bool(dot) and domain == measurement


def range_ns(config: MigrationConfig) -> tuple[int, int]:
    start = ALL_TIME[0] if config.start is None else to_time_ns(config.start)
    end = ALL_TIME[1] if config.end is None else to_time_ns(config.end)
    return start, end


async def legacy_rows(
    client: InfluxClient,
    measurement: str,
    function: Aggregate,
    *,
    selects: Callable[[str], bool],
    start_ns: int,
    end_ns: int,
    database: str,
    every_ns: int | None = None,
    fields: Collection[str] = STATE_FIELDS,
) -> AsyncIterator[tuple[int, str, AggregateRow]]:
    """``function`` of each state field of one legacy measurement, per selected legacy series.

    Yields (index of the field in STATE_FIELDS, full entity id, row); fields not in
    ``fields`` are not asked for, and series of the optimized layout never come up.
    """
    for index, name in enumerate(STATE_FIELDS):
        if name not in fields:
            continue
        rows = await client.aggregate(
            measurement,
            name,
            function,
            start_ns=start_ns,
            end_ns=end_ns,
            group_by=("domain", "entity_id"),
            every_ns=every_ns,
            database=database,
        )
        for row in rows:
            entity_id = legacy_entity_id(row.tags)
            if entity_id is not None and selects(entity_id):
                yield index, entity_id, row


@dataclass(frozen=True, kw_only=True)
class DiscoveredSource(SourceSummary):
    """What discovery found, with the details the backfill and validation reuse.

    ``point_count`` of each series is max(count of ``value``, count of ``state``), counted
    by the server: exact for an entity whose points all carry a number, or all carry a text
    state (numeric sensors, on/off entities, text states alike), and a lower bound for one
    that mixes plain numbers with states that are no number at all.
    """

    # Legacy measurement → its field keys.
    field_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Legacy measurement → (first, last) point time in ns, over the selected entities.
    extents: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def measurements(self) -> tuple[str, ...]:
        """The legacy measurements holding selected entities, by name."""
        return tuple(sorted(self.extents))

    def points_in(self, measurement: str) -> int:
        """Estimated points of one measurement."""
        return sum(s.point_count for s in self.series if s.measurement == measurement)


# Measurements discovered at the same time (each is a handful of small queries).
_DISCOVERING: Final = 4


async def discover(
    client: InfluxClient,
    database: str | None = None,
    config: MigrationConfig | None = None,
    *,
    until_ns: int | None = None,
    skip: Collection[str] = (),
) -> DiscoveredSource:
    """Find the legacy-layout history: measurements, entities, field keys, time range, counts.

    Only entities the config selects and points inside its time range (and before
    ``until_ns``, the cutover) count; measurements in ``skip`` are not looked at. Series of
    the optimized layout in the same database are not legacy data and are left out.
    """
    config = config or MigrationConfig()
    database = database or client.database
    start_ns, end_ns = range_ns(config)
    if until_ns is not None:
        end_ns = min(end_ns, until_ns)
    slots = asyncio.Semaphore(_DISCOVERING)

    async def one(measurement: str) -> tuple[str, tuple[str, ...], dict[str, int], int, int] | None:
        async with slots:
            if not await client.tag_values("domain", measurement, database):
                return None  # no legacy series at all
            keys = tuple(await client.field_keys(measurement, database))
            counts: dict[str, int] = {}
            first: int | None = None
            last: int | None = None
            for function in (Aggregate.COUNT, Aggregate.FIRST, Aggregate.LAST):
                async for _, entity_id, row in legacy_rows(
                    client,
                    measurement,
                    function,
                    selects=config.selects,
                    start_ns=start_ns,
                    end_ns=end_ns,
                    database=database,
                    fields=keys,
                ):
                    if function is Aggregate.COUNT:
                        counts[entity_id] = max(counts.get(entity_id, 0), int(row.value))
                    elif function is Aggregate.FIRST:
                        first = row.time_ns if first is None else min(first, row.time_ns)
                    else:
                        last = row.time_ns if last is None else max(last, row.time_ns)
        if not counts or first is None or last is None:
            return None
        return measurement, keys, counts, first, last

    names = [m for m in await client.measurements(database) if m not in skip]
    found = [result for result in await asyncio.gather(*map(one, names)) if result]
    series: list[SourceSeries] = []
    field_keys: dict[str, tuple[str, ...]] = {}
    extents: dict[str, tuple[int, int]] = {}
    for measurement, keys, counts, first, last in found:
        field_keys[measurement] = keys
        extents[measurement] = (first, last)
        series.extend(
            SourceSeries(measurement=measurement, entity_id=entity_id, point_count=count)
            for entity_id, count in sorted(counts.items())
        )
    first_ns = min((first for first, _ in extents.values()), default=None)
    last_ns = max((last for _, last in extents.values()), default=None)
    return DiscoveredSource(
        series=tuple(series),
        first_time=None if first_ns is None else from_time_ns(first_ns),
        last_time=None if last_ns is None else from_time_ns(last_ns),
        field_keys=field_keys,
        extents=extents,
    )


async def legacy_measurements(client: InfluxClient, database: str) -> list[str]:
    """The measurements of a database holding legacy-layout series (a ``domain`` tag)."""
    return [
        measurement
        for measurement in await client.measurements(database)
        if await client.tag_values("domain", measurement, database)
    ]


# Points a dry run reads to measure the server's read rate.
_PROBE_POINTS: Final = 20_000


async def measure_read_rate(
    client: InfluxClient, database: str, source: DiscoveredSource
) -> float | None:
    """Points per second this server streams legacy points at, from a short timed read of
    the largest measurement; None when there is too little history to measure."""
    if not source.extents:
        return None
    measurement = max(source.measurements, key=source.points_in)
    points = source.points_in(measurement)
    first, last = source.extents[measurement]
    if points < 1_000 or last <= first:
        return None
    span = max((last - first) * _PROBE_POINTS // points, MIN_WINDOW_NS)
    started = time.perf_counter()
    read = 0
    async for block in client.read_series(measurement, first, first + span, database):
        read += len(block.rows)
    elapsed = time.perf_counter() - started
    return read / elapsed if read >= 1_000 and elapsed > 0 else None
