"""Validation's second check: a sample of entity-weeks compared point by point (and their
rollups, when the migration built them). No Home Assistant in here.
"""

import asyncio
from collections.abc import Iterable, Mapping
import hashlib
from typing import Final

from ...influx import InfluxClient
from ...line_protocol import Point, as_written
from ...rollups import check_rollups
from ..discovery import DAY_NS
from ..ledger import in_spans
from ..series_reads import legacy_blocks, optimized_points
from .report import MismatchExamples
from .scope import Transform, ValidationScope

# The validation sample's unit of time (weeks from the epoch), and how many are compared at once.
SAMPLE_SPAN_NS: Final = 7 * DAY_NS
_COMPARING_SPANS: Final = 2


def in_sample(entity_id: str, span_ns: int, share: float) -> bool:
    """Whether one entity-week (the week starting at ``span_ns``) belongs to the record-level
    sample; the same on every run."""
    digest = hashlib.blake2b(f"{entity_id}|{span_ns}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) < share * 2**64


class RecordSample:
    """A ``share`` of the entity-weeks of [start, end), chosen by a hash of entity and week (so
    a re-run checks the same ones): ``transform`` of every legacy point against the
    optimized point actually stored at that time.

    Sampled by entity and week, one query per measurement reads a week of every sampled
    entity in it, and the sample is still spread over the whole history.
    """

    def __init__(
        self,
        client: InfluxClient,
        scope: ValidationScope,
        *,
        transform: Transform,
        source_database: str,
        target_database: str,
        examples: MismatchExamples,
        entity_days: Iterable[tuple[str, int]],
        share: float,
        start: int,
        end: int,
    ) -> None:
        self._client = client
        self._scope = scope
        self._transform = transform
        self._source_db = source_database
        self._target_db = target_database
        self._examples = examples
        self._start = start
        self._end = end
        groups: dict[int, list[str]] = {}
        for span, entity in sorted(
            {
                (span, entity)
                for entity, day in entity_days
                if in_sample(entity, span := day - day % SAMPLE_SPAN_NS, share)
            }
        ):
            groups.setdefault(span, []).append(entity)
        # Week → its sampled entities, by week and entity.
        self._spans = sorted(groups.items())

    def _bounds(self, span: int) -> tuple[int, int]:
        return max(span, self._start), min(span + SAMPLE_SPAN_NS, self._end)

    async def compare_records(self, places: Mapping[str, set[str]]) -> tuple[int, dict[str, int]]:
        """(records compared, differing records per entity); ``places``: the legacy
        measurements of each entity."""
        # Spans are compared a few at once: each is a few small queries per measurement.
        slots = asyncio.Semaphore(_COMPARING_SPANS)

        async def compare(span: int, group: list[str]) -> tuple[int, dict[str, int]]:
            async with slots:
                return await self._compare_span(group, places, *self._bounds(span))

        async with asyncio.TaskGroup() as comparisons:
            tasks = [comparisons.create_task(compare(span, group)) for span, group in self._spans]
        checked = 0
        wrong: dict[str, int] = {}
        for task in tasks:
            span_checked, span_wrong = task.result()
            checked += span_checked
            for entity, count in span_wrong.items():
                wrong[entity] = wrong.get(entity, 0) + count
        return checked, wrong

    async def compare_rollups(self) -> tuple[int, dict[str, int]]:
        """The same entity-weeks' rollups against a recomputation from the raw points:
        (rollup points compared, differing ones per entity)."""
        compared = 0
        wrong: dict[str, int] = {}
        for span, group in self._spans:
            check = await check_rollups(self._client, self._target_db, group, *self._bounds(span))
            compared += check.compared
            for entity, count in check.mismatches.items():
                wrong[entity] = wrong.get(entity, 0) + count
        return compared, wrong

    async def _compare_span(
        self, entities: list[str], places: Mapping[str, set[str]], start: int, end: int
    ) -> tuple[int, dict[str, int]]:
        """Compare [start, end) of the sampled entities; (records compared, wrong per entity)."""
        wanted = set(entities)
        expected: dict[tuple[str, int], Point | None] = {}
        by_measurement: dict[str, set[str]] = {}
        for entity in entities:
            for measurement in places.get(entity, ()):
                by_measurement.setdefault(measurement, set()).add(entity.partition(".")[2])
        for measurement, object_ids in sorted(by_measurement.items()):
            async for legacy_id, block in legacy_blocks(
                self._client,
                measurement,
                start,
                end,
                self._source_db,
                selects=wanted.__contains__,
                where={"entity_id": object_ids},
            ):
                for point in block.points():
                    expected[(legacy_id, point.time_ns)] = self._transform(point)
        actual: dict[tuple[str, int], Point] = {}
        async for point in optimized_points(self._client, entities, start, end, self._target_db):
            actual[(point.tags["entity_id"], point.time_ns)] = point
        checked = 0
        wrong: dict[str, int] = {}
        for key in expected.keys() | actual.keys():
            want, have = expected.get(key), actual.get(key)
            if want is None and have is None:
                continue  # a legacy point with nothing to copy, and nothing copied
            if key not in expected and in_spans(key[1], self._scope.protected(key[0])):
                continue  # recorded in the optimized layout before the migration
            checked += 1
            written = None if want is None else as_written(want)
            if written != have:
                wrong[key[0]] = wrong.get(key[0], 0) + 1
                self._examples.add(key, "backfill", [] if written is None else [written], have)
        return checked, wrong
