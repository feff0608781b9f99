"""Validation: both layouts counted, a sample compared point by point, the live pairs.

No Home Assistant in here.
"""

import asyncio
from collections.abc import (
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
import hashlib
import logging
import statistics
import time
from typing import Final, Protocol, runtime_checkable

from ..influx import (
    Aggregate,
    InfluxClient,
    QueryFailed,
)
from ..line_protocol import (
    FieldValue,
    Point,
    as_written,
    encode,
)
from ..rollups import (
    check_rollups,
)
from .discovery import (
    DAY_NS,
    HOUR_NS,
    STATE_FIELDS,
    is_optimized_series,
    legacy_entity_id,
    legacy_measurements,
    legacy_rows,
)
from .ledger import (
    Span,
    in_spans,
)
from .model import (
    EntityMismatch,
    MigrationState,
    MismatchExample,
    QueryTiming,
    ValidationResult,
)

_LOGGER = logging.getLogger(__name__)

type Transform = Callable[[Point], Point | None]


@runtime_checkable
class ReadsFields(Protocol):
    """A transform that says which legacy fields it reads (validation asks for only those)."""

    @property
    def fields_read(self) -> frozenset[str]: ...


# The validation sample's unit of time (weeks from the epoch), and how many are compared at once.
_SAMPLE_SPAN_NS: Final = 7 * DAY_NS
_COMPARING_SPANS: Final = 2
# Live pairs are read this much of the dual-write window at a time (memory stays bounded).
_LIVE_CHUNK_NS: Final = 6 * HOUR_NS
# Points this recent may still be on their way to one layout: live pairs stop short of them.
LIVE_SETTLE_NS: Final = 30 * 10**9
# Differences shown as examples in a validation result.
_EXAMPLES: Final = 10


type _Counts = dict[tuple[str, int], list[int]]


def in_sample(entity_id: str, span_ns: int, share: float) -> bool:
    """Whether one entity-week (the week starting at ``span_ns``) belongs to the record-level
    sample; the same on every run."""
    digest = hashlib.blake2b(f"{entity_id}|{span_ns}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) < share * 2**64


class Validator:
    """Compares what the backfill wrote with what it read.

    - Counts per entity and UTC day, of the ``value`` and of the ``state`` fields, in both
      layouts over the migrated range: legacy by measurement + ``domain`` + ``entity_id``
      (object id), optimized by measurement (the domain) + ``entity_id`` (full id).
    - Record by record for a ``validate_percentage`` sample of the entity-weeks (chosen by a
      hash of entity and week, so a re-run checks the same ones): ``transform`` of every legacy
      point against the optimized point actually stored at that time.
    - The integrity score is matching / compared, over entity-day counts and sampled records
      together; 1.0 when everything compared is identical.
    - Representative dashboard queries are timed against both layouts (median of a few runs).

    - Live pairs: from the cutover both layouts are recorded live for the same states. For
      every state recorded in both (legacy points and optimized point at the same entity and
      time, up to ``live_until_ns``), ``transform`` of the legacy points must give exactly the
      optimized point. The backfill sample can only show that the backfill wrote what the
      transform gives; the live pairs show whether the transform gives what the live writer
      writes, on the user's own data, including history another writer (core's
      ``influxdb`` integration) keeps adding to the source.

    Every legacy measurement is counted, not only the planned ones, so legacy points the
    backfill never saw show up as a difference. With the migration's ledger, entities whose
    legacy points the cleanup already deleted are left out, and on days that held optimized
    points before the migration the optimized layout only has to hold every legacy point
    (it may hold more). After :meth:`run`, ``compared_entities`` names the entities compared.
    Every difference counts against the integrity score and against its entity in
    ``mismatches`` (so it is not proven), and the first few are kept as examples.
    """

    def __init__(
        self,
        client: InfluxClient,
        state: MigrationState,
        *,
        transform: Transform,
        source_database: str | None = None,
        target_database: str | None = None,
        repeats: int = 3,
        live_until_ns: int | None = None,
        rollups: bool = False,
    ) -> None:
        """Prepare a validation of the windows ``state`` records as copied.

        Live pairs are compared up to ``live_until_ns`` (default: ``LIVE_SETTLE_NS`` before
        the run starts, so points still on their way are not read half-delivered).
        """
        self.state = state
        self._client = client
        self._transform = transform
        self._source_db = source_database or client.database
        self._target_db = target_database or self._source_db
        self._repeats = max(repeats, 1)
        self._ledger = state.ledger
        self._live_until_ns = live_until_ns
        self._rollups = rollups
        self._examples: list[MismatchExample] = []
        self.compared_entities: frozenset[str] = frozenset()

    def _protected(self, entity: str) -> tuple[Span, ...]:
        return () if self._ledger is None else self._ledger.protected_spans(entity)

    def _cleaned(self, entity: str) -> bool:
        return self._ledger is not None and bool(self._ledger.cleaned.get(entity))

    def migrated_range(self) -> tuple[int, int]:
        """[start, end) of the history the checkpoints say was copied."""
        checkpoints = self.state.checkpoints.values()
        start = min((cp.start_ns for cp in checkpoints), default=0)
        end = max((cp.completed_until_ns for cp in checkpoints), default=start)
        return start, max(start, end)

    async def run(self) -> ValidationResult:
        """Count, sample and time; the result goes into ``state.validation`` by the caller."""
        start, end = self.migrated_range()
        share = self.state.config.validate_percentage
        legacy, places = await self._legacy_counts(start, end)
        domains = sorted({entity.partition(".")[0] for entity in places})
        optimized = await self._optimized_counts(domains, start, end)
        for counts in (legacy, optimized):
            for key in [key for key in counts if self._cleaned(key[0])]:
                del counts[key]

        mismatches: dict[str, dict[str, int]] = {}

        def mismatch(entity: str) -> dict[str, int]:
            return mismatches.setdefault(
                entity, {"days": 0, "records": 0, "live_pairs": 0, "rollups": 0}
            )

        compared = matching = 0
        for key in legacy.keys() | optimized.keys():
            compared += 1
            want, have = legacy.get(key, [0, 0]), optimized.get(key, [0, 0])
            if want == have or (
                in_spans(key[1], self._protected(key[0]))
                and all(h >= w for w, h in zip(want, have, strict=True))
            ):
                matching += 1
            else:
                mismatch(key[0])["days"] += 1
        # Sampled by entity and week: one query per measurement reads a week of every
        # sampled entity in it, and the sample is still spread over the whole history.
        sample = sorted(
            {
                (span, entity)
                for entity, day in legacy.keys() | optimized.keys()
                if in_sample(entity, span := day - day % _SAMPLE_SPAN_NS, share)
            }
        )
        records = 0
        # Spans are compared a few at once: each is a few small queries per measurement.
        slots = asyncio.Semaphore(_COMPARING_SPANS)

        async def compare(span: int, group: list[str]) -> tuple[int, dict[str, int]]:
            async with slots:
                return await self._compare_records(
                    group, places, max(span, start), min(span + _SAMPLE_SPAN_NS, end)
                )

        async with asyncio.TaskGroup() as comparisons:
            tasks = [
                comparisons.create_task(compare(span, group))
                for span, group in _group_by_span(sample)
            ]
        for task in tasks:
            checked, wrong = task.result()
            records += checked
            matching += checked - sum(wrong.values())
            for entity, count in wrong.items():
                mismatch(entity)["records"] += count
        compared += records

        pairs, wrong_pairs = await self._compare_live_pairs()
        compared += pairs
        matching += pairs - sum(wrong_pairs.values())
        for entity, count in wrong_pairs.items():
            mismatch(entity)["live_pairs"] += count

        rollups_compared = 0
        if self._rollups:
            # The same entity-weeks as the records: their rollups against a recomputation.
            for span, group in _group_by_span(sample):
                check = await check_rollups(
                    self._client,
                    self._target_db,
                    group,
                    max(span, start),
                    min(span + _SAMPLE_SPAN_NS, end),
                )
                rollups_compared += check.compared
                matching += check.compared - sum(check.mismatches.values())
                for entity, count in check.mismatches.items():
                    mismatch(entity)["rollups"] += count
            compared += rollups_compared

        legacy_points, optimized_points = _points_per_entity(legacy), _points_per_entity(optimized)
        result_mismatches = {
            entity: EntityMismatch(
                legacy_points=legacy_points.get(entity, 0),
                optimized_points=optimized_points.get(entity, 0),
                mismatched_days=found["days"],
                mismatched_records=found["records"],
                mismatched_live_pairs=found["live_pairs"],
                mismatched_rollups=found["rollups"],
            )
            for entity, found in sorted(mismatches.items())
        }
        self.compared_entities = frozenset(entity for entity, _ in legacy.keys() | optimized.keys())
        return ValidationResult(
            integrity_score=matching / compared if compared else 1.0,
            entities_checked=len(self.compared_entities),
            records_sampled=records,
            mismatches=result_mismatches,
            query_timings=await self._time_queries(legacy, places, start, end),
            live_pairs_compared=pairs,
            rollups_compared=rollups_compared,
            examples=tuple(sorted(self._examples, key=lambda e: (e.time_ns, e.entity_id))),
        )

    async def _legacy_counts(self, start: int, end: int) -> tuple[_Counts, dict[str, set[str]]]:
        """Per (entity, day): [value count, state count]; and entity → legacy measurements."""
        counts: _Counts = {}
        places: dict[str, set[str]] = {}
        for measurement in sorted(await legacy_measurements(self._client, self._source_db)):
            async for index, entity, row in legacy_rows(
                self._client,
                measurement,
                Aggregate.COUNT,
                selects=self.state.config.selects,
                start_ns=start,
                end_ns=end,
                database=self._source_db,
                every_ns=DAY_NS,
            ):
                counts.setdefault((entity, row.time_ns), [0, 0])[index] += int(row.value)
                places.setdefault(entity, set()).add(measurement)
        return counts, places

    async def _optimized_counts(self, domains: Iterable[str], start: int, end: int) -> _Counts:
        counts: _Counts = {}
        selects = self.state.config.selects
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
                    counts.setdefault((entity, row.time_ns), [0, 0])[index] += int(row.value)
        return counts

    async def _compare_records(
        self,
        entities: list[str],
        places: Mapping[str, set[str]],
        start: int,
        end: int,
    ) -> tuple[int, dict[str, int]]:
        """Compare [start, end) of the sampled entities; (records compared, wrong per entity)."""
        wanted = set(entities)
        expected: dict[tuple[str, int], Point | None] = {}
        by_measurement: dict[str, set[str]] = {}
        for entity in entities:
            for measurement in places.get(entity, ()):
                by_measurement.setdefault(measurement, set()).add(entity.partition(".")[2])
        for measurement, object_ids in sorted(by_measurement.items()):
            async for block in self._client.read_series(
                measurement, start, end, self._source_db, where={"entity_id": object_ids}
            ):
                legacy_id = legacy_entity_id(block.tags)
                if legacy_id is None or legacy_id not in wanted:
                    continue
                for point in block.points():
                    expected[(legacy_id, point.time_ns)] = self._transform(point)
        actual: dict[tuple[str, int], Point] = {}
        by_domain: dict[str, set[str]] = {}
        for entity in entities:
            by_domain.setdefault(entity.partition(".")[0], set()).add(entity)
        for domain, ids in sorted(by_domain.items()):
            async for point in self._client.read_points(
                domain, start, end, self._target_db, where={"entity_id": ids}
            ):
                actual[(point.tags["entity_id"], point.time_ns)] = point
        checked = 0
        wrong: dict[str, int] = {}
        for key in expected.keys() | actual.keys():
            want, have = expected.get(key), actual.get(key)
            if want is None and have is None:
                continue  # a legacy point with nothing to copy, and nothing copied
            if key not in expected and in_spans(key[1], self._protected(key[0])):
                continue  # recorded in the optimized layout before the migration
            checked += 1
            written = None if want is None else as_written(want)
            if written != have:
                wrong[key[0]] = wrong.get(key[0], 0) + 1
                self._example(key, "backfill", [] if written is None else [written], have)
        return checked, wrong

    async def _compare_live_pairs(self) -> tuple[int, dict[str, int]]:
        """Compare the states recorded in both layouts since the cutover; (pairs compared,
        differing pairs per entity)."""
        cutover = self.state.cutover_ns
        until = self._live_until_ns
        if until is None:
            until = time.time_ns() - LIVE_SETTLE_NS
        if cutover is None or until <= cutover:
            return 0, {}
        selects = self.state.config.selects
        fields = self._transform.fields_read if isinstance(self._transform, ReadsFields) else None
        # Which stretches of the window hold legacy points, and in which measurements: the
        # window may be long (a paused migration keeps recording), most of it quiet.
        chunks: dict[int, set[str]] = {}
        for measurement in sorted(await legacy_measurements(self._client, self._source_db)):
            async for _, _, row in legacy_rows(
                self._client,
                measurement,
                Aggregate.COUNT,
                selects=selects,
                start_ns=cutover,
                end_ns=until,
                database=self._source_db,
                every_ns=_LIVE_CHUNK_NS,
            ):
                if row.value:
                    chunks.setdefault(row.time_ns, set()).add(measurement)
        checked = 0
        wrong: dict[str, int] = {}
        for bucket, measurements in sorted(chunks.items()):
            chunk, chunk_end = max(bucket, cutover), min(bucket + _LIVE_CHUNK_NS, until)
            expected: dict[tuple[str, int], list[Point]] = {}
            for measurement in sorted(measurements):
                async for block in self._client.read_series(
                    measurement, chunk, chunk_end, self._source_db, fields=fields
                ):
                    entity = legacy_entity_id(block.tags)
                    if entity is None or not selects(entity) or self._cleaned(entity):
                        continue
                    for point in block.points():
                        found = expected.setdefault((entity, point.time_ns), [])
                        if (optimized := self._transform(point)) is not None:
                            found.append(as_written(optimized))
            by_domain: dict[str, set[str]] = {}
            for entity, _ in expected:
                by_domain.setdefault(entity.partition(".")[0], set()).add(entity)
            actual: dict[tuple[str, int], list[Point]] = {}
            for domain, ids in sorted(by_domain.items()):
                async for point in self._client.read_points(
                    domain, chunk, chunk_end, self._target_db, where={"entity_id": ids}
                ):
                    key = (point.tags["entity_id"], point.time_ns)
                    actual.setdefault(key, []).append(point)
            # A state in only one layout is not a pair: it tells nothing about the transform
            # (its other point may still be on its way, or was never meant to be written).
            for key in sorted(expected.keys() & actual.keys()):
                checked += 1
                want, have = expected[key], actual[key]
                if sorted(map(_canonical, want)) != sorted(map(_canonical, have)):
                    wrong[key[0]] = wrong.get(key[0], 0) + 1
                    self._example(key, "live_pair", want, have)
        return checked, wrong

    def _example(
        self, key: tuple[str, int], source: str, want: list[Point], have: Point | list[Point] | None
    ) -> None:
        if len(self._examples) >= _EXAMPLES:
            return
        stored = [] if have is None else [have] if isinstance(have, Point) else have
        # With several points for one state (two writers of the legacy layout, say), show a
        # transformed one that matches nothing stored, against the stored one closest to it.
        unmatched = [p for p in want if _canonical(p) not in map(_canonical, stored)]
        extra = [p for p in stored if _canonical(p) not in map(_canonical, want)]
        if unmatched or extra:
            expected = unmatched[0] if unmatched else None
            candidates = extra or stored
            found = next(
                (
                    p
                    for p in candidates
                    if expected is not None and p.tags.keys() == expected.tags.keys()
                ),
                candidates[0] if candidates else None,
            )
            differences = point_differences(expected, found)
        else:
            differences = {"points": (len(want), len(stored))}
        self._examples.append(
            MismatchExample(
                entity_id=key[0], time_ns=key[1], source=source, differences=differences
            )
        )

    async def _time_queries(
        self, legacy: _Counts, places: Mapping[str, set[str]], start: int, end: int
    ) -> tuple[QueryTiming, ...]:
        """Time what dashboards ask most, on both layouts, over the migrated range."""
        if not legacy:
            return ()
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
        queries: list[tuple[str, Callable[[], Awaitable[object]], Callable[[], Awaitable[object]]]]
        queries = [
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
                    database=self._source_db,
                ),
                lambda: aggregate(
                    domain,
                    "value",
                    Aggregate.MEAN,
                    start_ns=start,
                    end_ns=end,
                    every_ns=HOUR_NS,
                    where={"entity_id": [entity]},
                    database=self._target_db,
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
                    database=self._source_db,
                ),
                lambda: aggregate(
                    shown,
                    "value",
                    Aggregate.LAST,
                    start_ns=start,
                    end_ns=end,
                    group_by=("entity_id",),
                    database=self._target_db,
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
                    database=self._source_db,
                ),
                lambda: aggregate(
                    shown,
                    "value",
                    Aggregate.COUNT,
                    start_ns=start,
                    end_ns=end,
                    every_ns=DAY_NS,
                    database=self._target_db,
                ),
            ),
        ]
        timings: list[QueryTiming] = []
        for name, on_legacy, on_optimized in queries:
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

    async def _median_ms(self, query: Callable[[], Awaitable[object]]) -> float:
        timings = []
        for _ in range(self._repeats):
            started = time.perf_counter()
            await query()
            timings.append((time.perf_counter() - started) * 1000)
        return statistics.median(timings)


def point_differences(
    expected: Point | None, stored: Point | None
) -> dict[str, tuple[FieldValue | None, FieldValue | None]]:
    """What differs between two points: "measurement", "tag <key>", "field <key>" →
    (expected, stored); "point" when one of them is missing."""
    if expected is None or stored is None:
        return {"point": (_describe(expected), _describe(stored))}
    differences: dict[str, tuple[FieldValue | None, FieldValue | None]] = {}
    if expected.measurement != stored.measurement:
        differences["measurement"] = (expected.measurement, stored.measurement)
    for kind, want, have in (
        ("tag", expected.tags, stored.tags),
        ("field", expected.fields, stored.fields),
    ):
        for key in sorted(want.keys() | have.keys()):
            if want.get(key) != have.get(key):
                differences[f"{kind} {key}"] = (want.get(key), have.get(key))
    return differences


def _canonical(point: Point) -> tuple[object, ...]:
    return (
        point.measurement,
        sorted(point.tags.items()),
        sorted((key, repr(value)) for key, value in point.fields.items()),
    )


def _describe(point: Point | None) -> str | None:
    return None if point is None else encode(point)


def _group_by_span(sample: list[tuple[int, str]]) -> list[tuple[int, list[str]]]:
    groups: dict[int, list[str]] = {}
    for span, entity in sample:
        groups.setdefault(span, []).append(entity)
    return sorted(groups.items())


def _points_per_entity(counts: _Counts) -> dict[str, int]:
    """Points per entity: each point has a value or a state field, or both."""
    totals: dict[str, int] = {}
    for (entity, _), per_field in counts.items():
        totals[entity] = totals.get(entity, 0) + max(per_field)
    return totals
