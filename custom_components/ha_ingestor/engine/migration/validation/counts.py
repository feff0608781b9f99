"""Validation's first check: both layouts counted per entity and UTC day. No Home Assistant
in here.
"""

from collections.abc import Iterable

from ...influx import Aggregate, InfluxClient
from ..discovery import (
    DAY_NS,
    STATE_FIELDS,
    is_optimized_series,
    legacy_measurements,
    legacy_rows,
)
from ..ledger import in_spans
from .scope import ValidationScope

# (entity, day) → [count of value, count of state].
type Counts = dict[tuple[str, int], list[int]]


class DailyCounts:
    """Counts of the ``value`` and the ``state`` fields per entity and UTC day, in both layouts
    over [start, end): legacy by measurement + ``domain`` + ``entity_id`` (object id),
    optimized by measurement (the domain) + ``entity_id`` (full id).

    Every legacy measurement is counted, not only the planned ones, so legacy points the
    backfill never saw show up as a difference. After :meth:`count`, ``legacy`` and
    ``optimized`` hold the counts (cleaned entities left out) and ``places`` the legacy
    measurements of each entity.
    """

    def __init__(
        self,
        client: InfluxClient,
        scope: ValidationScope,
        *,
        source_database: str,
        target_database: str,
    ) -> None:
        self._client = client
        self._scope = scope
        self._source_db = source_database
        self._target_db = target_database
        self.legacy: Counts = {}
        self.optimized: Counts = {}
        self.places: dict[str, set[str]] = {}

    async def count(self, start: int, end: int) -> None:
        """Count both layouts over [start, end)."""
        await self._count_legacy(start, end)
        domains = sorted({entity.partition(".")[0] for entity in self.places})
        await self._count_optimized(domains, start, end)
        for counts in (self.legacy, self.optimized):
            for key in [key for key in counts if self._scope.cleaned(key[0])]:
                del counts[key]

    @property
    def keys(self) -> set[tuple[str, int]]:
        """Every (entity, day) counted in either layout."""
        return self.legacy.keys() | self.optimized.keys()

    def compare(self) -> tuple[int, dict[str, int]]:
        """(entity-days compared, differing days per entity). On a protected day the optimized
        layout only has to hold every legacy point."""
        wrong: dict[str, int] = {}
        keys = self.keys
        for key in keys:
            want, have = self.legacy.get(key, [0, 0]), self.optimized.get(key, [0, 0])
            if want == have or (
                in_spans(key[1], self._scope.protected(key[0]))
                and all(h >= w for w, h in zip(want, have, strict=True))
            ):
                continue
            wrong[key[0]] = wrong.get(key[0], 0) + 1
        return len(keys), wrong

    async def _count_legacy(self, start: int, end: int) -> None:
        for measurement in sorted(await legacy_measurements(self._client, self._source_db)):
            async for index, entity, row in legacy_rows(
                self._client,
                measurement,
                Aggregate.COUNT,
                selects=self._scope.selects,
                start_ns=start,
                end_ns=end,
                database=self._source_db,
                every_ns=DAY_NS,
            ):
                self.legacy.setdefault((entity, row.time_ns), [0, 0])[index] += int(row.value)
                self.places.setdefault(entity, set()).add(measurement)

    async def _count_optimized(self, domains: Iterable[str], start: int, end: int) -> None:
        selects = self._scope.selects
        for domain in domains:
            for index, name in enumerate(STATE_FIELDS):
                rows = await self._client.aggregate(
                    domain,
                    name,
                    Aggregate.COUNT,
                    start_ns=start,
                    end_ns=end,
                    group_by=("entity_id",),
                    every_ns=DAY_NS,
                    database=self._target_db,
                )
                for row in rows:
                    entity = row.tags.get("entity_id", "")
                    if not is_optimized_series(domain, entity) or not selects(entity):
                        continue
                    self.optimized.setdefault((entity, row.time_ns), [0, 0])[index] += int(
                        row.value
                    )


def points_per_entity(counts: Counts) -> dict[str, int]:
    """Points per entity: each point has a value or a state field, or both."""
    totals: dict[str, int] = {}
    for (entity, _), per_field in counts.items():
        totals[entity] = totals.get(entity, 0) + max(per_field)
    return totals
