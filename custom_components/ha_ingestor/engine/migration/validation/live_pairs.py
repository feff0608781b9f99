"""Validation's third check: the states recorded live in both layouts since the cutover.
No Home Assistant in here.
"""

from typing import Final

from ...influx import Aggregate, InfluxClient
from ...line_protocol import Point, as_written
from ..discovery import HOUR_NS, legacy_measurements, legacy_rows
from ..series_reads import legacy_blocks, optimized_points
from .report import MismatchExamples, canonical
from .scope import ReadsFields, Transform, ValidationScope

# Live pairs are read this much of the dual-write window at a time (memory stays bounded).
_LIVE_CHUNK_NS: Final = 6 * HOUR_NS


class LivePairs:
    """From the cutover both layouts are recorded live for the same states. For every state
    recorded in both (legacy points and optimized point at the same entity and time),
    ``transform`` of the legacy points must give exactly the optimized point.

    The backfill sample can only show that the backfill wrote what the transform gives; the
    live pairs show whether the transform gives what the live writer writes, on the user's
    own data, including history another writer (core's ``influxdb`` integration) keeps
    adding to the source.
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
    ) -> None:
        self._client = client
        self._scope = scope
        self._transform = transform
        self._fields = transform.fields_read if isinstance(transform, ReadsFields) else None
        self._source_db = source_database
        self._target_db = target_database
        self._examples = examples

    async def compare(self, cutover: int | None, until: int) -> tuple[int, dict[str, int]]:
        """Compare the states recorded in both layouts in [cutover, until); (pairs compared,
        differing pairs per entity)."""
        if cutover is None or until <= cutover:
            return 0, {}
        checked = 0
        wrong: dict[str, int] = {}
        for bucket, measurements in sorted((await self._busy_chunks(cutover, until)).items()):
            chunk, chunk_end = max(bucket, cutover), min(bucket + _LIVE_CHUNK_NS, until)
            expected = await self._transformed(sorted(measurements), chunk, chunk_end)
            actual: dict[tuple[str, int], list[Point]] = {}
            async for point in optimized_points(
                self._client, (entity for entity, _ in expected), chunk, chunk_end, self._target_db
            ):
                actual.setdefault((point.tags["entity_id"], point.time_ns), []).append(point)
            # A state in only one layout is not a pair: it tells nothing about the transform
            # (its other point may still be on its way, or was never meant to be written).
            for key in sorted(expected.keys() & actual.keys()):
                checked += 1
                want, have = expected[key], actual[key]
                if sorted(map(canonical, want)) != sorted(map(canonical, have)):
                    wrong[key[0]] = wrong.get(key[0], 0) + 1
                    self._examples.add(key, "live_pair", want, have)
        return checked, wrong

    async def _busy_chunks(self, start: int, end: int) -> dict[int, set[str]]:
        """Which stretches of the window hold legacy points, and in which measurements: the
        window may be long (a paused migration keeps recording), most of it quiet."""
        chunks: dict[int, set[str]] = {}
        for measurement in sorted(await legacy_measurements(self._client, self._source_db)):
            async for _, _, row in legacy_rows(
                self._client,
                measurement,
                Aggregate.COUNT,
                selects=self._scope.selects,
                start_ns=start,
                end_ns=end,
                database=self._source_db,
                every_ns=_LIVE_CHUNK_NS,
            ):
                if row.value:
                    chunks.setdefault(row.time_ns, set()).add(measurement)
        return chunks

    async def _transformed(
        self, measurements: list[str], start: int, end: int
    ) -> dict[tuple[str, int], list[Point]]:
        """(entity, time) → the optimized points ``transform`` gives for its legacy points."""
        scope = self._scope
        expected: dict[tuple[str, int], list[Point]] = {}
        for measurement in measurements:
            async for entity, block in legacy_blocks(
                self._client,
                measurement,
                start,
                end,
                self._source_db,
                selects=lambda entity: scope.selects(entity) and not scope.cleaned(entity),
                fields=self._fields,
            ):
                for point in block.points():
                    found = expected.setdefault((entity, point.time_ns), [])
                    if (optimized := self._transform(point)) is not None:
                        found.append(as_written(optimized))
        return expected
