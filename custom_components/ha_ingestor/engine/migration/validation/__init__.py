"""Validation: both layouts counted, a sample compared point by point, the live pairs.

No Home Assistant in here. The checks, in this package: ``counts`` (per entity and day),
``sample`` (point by point, rollups), ``live_pairs``; ``report`` adds them up, ``scope`` says
what the ledger leaves out, ``dashboard_timings`` times dashboard queries.
"""

from collections.abc import Callable
import time
from typing import Final

from ...influx import InfluxClient
from ...retry import Clock
from ..model import MigrationState, ValidationResult
from .counts import DailyCounts, points_per_entity
from .dashboard_timings import DashboardTimings
from .live_pairs import LivePairs
from .report import IntegrityTally, MismatchExamples, point_differences
from .sample import RecordSample, in_sample
from .scope import ReadsFields, Transform, ValidationScope

__all__ = [
    "LIVE_SETTLE_NS",
    "ReadsFields",
    "Transform",
    "Validator",
    "in_sample",
    "point_differences",
]

# Points this recent may still be on their way to one layout: live pairs stop short of them.
LIVE_SETTLE_NS: Final = 30 * 10**9


class Validator:
    """Compares what the backfill wrote with what it read.

    - Counts per entity and UTC day, of the ``value`` and of the ``state`` fields, in both
      layouts over the migrated range (:class:`DailyCounts`).
    - Record by record for a ``validate_percentage`` sample of the entity-weeks
      (:class:`RecordSample`), and their rollups when the migration built them.
    - Live pairs: every state recorded live in both layouts since the cutover, up to
      ``live_until_ns`` (:class:`LivePairs`).
    - The integrity score is matching / compared, over all of these together; 1.0 when
      everything compared is identical.
    - Representative dashboard queries are timed against both layouts (median of a few runs).

    With the migration's ledger, entities whose legacy points the cleanup already deleted are
    left out, and on days that held optimized points before the migration the optimized
    layout only has to hold every legacy point (it may hold more). After :meth:`run`,
    ``compared_entities`` names the entities compared. Every difference counts against the
    integrity score and against its entity in ``mismatches`` (so it is not proven), and the
    first few are kept as examples.
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
        clock: Callable[[], int] = time.time_ns,
        stopwatch: Clock = time.perf_counter,
    ) -> None:
        """Prepare a validation of the windows ``state`` records as copied.

        Live pairs are compared up to ``live_until_ns`` (default: ``LIVE_SETTLE_NS`` before
        the run starts on ``clock``, ns since the epoch, so points still on their way are not
        read half-delivered). Dashboard queries are timed on ``stopwatch`` (seconds).
        """
        self.state = state
        self._client = client
        self._transform = transform
        self._source_db = source_database or client.database
        self._target_db = target_database or self._source_db
        self._live_until_ns = live_until_ns
        self._rollups = rollups
        self._clock = clock
        self._scope = ValidationScope(state.config, state.ledger)
        self._examples = MismatchExamples()
        self._timings = DashboardTimings(
            client,
            source_database=self._source_db,
            target_database=self._target_db,
            repeats=repeats,
            stopwatch=stopwatch,
        )
        self.compared_entities: frozenset[str] = frozenset()

    def migrated_range(self) -> tuple[int, int]:
        """[start, end) of the history the checkpoints say was copied."""
        checkpoints = self.state.checkpoints.values()
        start = min((cp.start_ns for cp in checkpoints), default=0)
        end = max((cp.completed_until_ns for cp in checkpoints), default=start)
        return start, max(start, end)

    async def run(self) -> ValidationResult:
        """Count, sample and time; the result goes into ``state.validation`` by the caller."""
        start, end = self.migrated_range()
        databases = {"source_database": self._source_db, "target_database": self._target_db}
        counts = DailyCounts(self._client, self._scope, **databases)
        await counts.count(start, end)
        tally = IntegrityTally()
        tally.add("days", *counts.compare())
        sample = RecordSample(
            self._client,
            self._scope,
            transform=self._transform,
            examples=self._examples,
            entity_days=counts.keys,
            share=self.state.config.validate_percentage,
            start=start,
            end=end,
            **databases,
        )
        records, wrong_records = await sample.compare_records(counts.places)
        tally.add("records", records, wrong_records)
        live_pairs = LivePairs(
            self._client,
            self._scope,
            transform=self._transform,
            examples=self._examples,
            **databases,
        )
        pairs, wrong_pairs = await live_pairs.compare(self.state.cutover_ns, self._live_until())
        tally.add("live_pairs", pairs, wrong_pairs)
        rollups_compared = 0
        if self._rollups:
            rollups_compared, wrong_rollups = await sample.compare_rollups()
            tally.add("rollups", rollups_compared, wrong_rollups)

        self.compared_entities = frozenset(entity for entity, _ in counts.keys)
        return ValidationResult(
            integrity_score=tally.score,
            entities_checked=len(self.compared_entities),
            records_sampled=records,
            mismatches=tally.mismatches(
                points_per_entity(counts.legacy), points_per_entity(counts.optimized)
            ),
            query_timings=await self._timings.time(counts.legacy, counts.places, start, end),
            live_pairs_compared=pairs,
            rollups_compared=rollups_compared,
            examples=self._examples.in_order(),
        )

    def _live_until(self) -> int:
        if self._live_until_ns is not None:
            return self._live_until_ns
        # Read at run time: a test may shorten the settling time.
        return self._clock() - LIVE_SETTLE_NS
