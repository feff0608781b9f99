"""Rollback and cleanup: deleting exactly what the ledger allows, and counting what is left.

No Home Assistant in here.
"""

from collections.abc import (
    AsyncIterator,
    Collection,
    Iterable,
    Sequence,
)
from dataclasses import dataclass
import logging
from typing import Final

from ..influx import (
    Aggregate,
    AggregateRow,
    InfluxClient,
)
from ..retry import Backoff, CircuitBreaker, RetryPolicy, call_with_retry
from ..rollups import (
    HOUR_NS as _ROLLUP_ALIGN_NS,
    RESOLUTIONS,
    build_rollups,
    rollup_measurement,
    window_start,
)
from .backfill import SaveState
from .discovery import ALL_TIME, DAY_NS, STATE_FIELDS, is_optimized_series
from .ledger import (
    Deletion,
    Span,
    cleanup_plan,
    rollback_plan,
    spans_from_days,
)
from .model import (
    MigrationState,
)

_LOGGER = logging.getLogger(__name__)


async def _optimized_rows(
    client: InfluxClient,
    database: str,
    function: Aggregate,
    *,
    start_ns: int,
    end_ns: int,
    every_ns: int | None = None,
) -> AsyncIterator[tuple[str, AggregateRow]]:
    """``function`` of each state field per optimized-layout series: (entity id, row)."""
    for measurement in await client.measurements(database):
        for name in STATE_FIELDS:
            rows = await client.aggregate(
                measurement,
                name,
                function,
                start_ns=start_ns,
                end_ns=end_ns,
                group_by=("entity_id",),
                every_ns=every_ns,
                database=database,
            )
            for row in rows:
                entity_id = row.tags.get("entity_id", "")
                if is_optimized_series(measurement, entity_id):
                    yield entity_id, row


async def inventory_optimized(
    client: InfluxClient, database: str, *, before_ns: int
) -> dict[str, tuple[Span, ...]]:
    """Entity → the UTC days before ``before_ns`` on which the database holds its optimized
    points: what a rollback must leave alone because it was there before the migration.

    Found from the data (counts per day), not from the tag index, which keeps listing a
    deleted series.
    """
    if not await client.database_exists(database):
        return {}
    first: int | None = None
    async for _, row in _optimized_rows(
        client, database, Aggregate.FIRST, start_ns=ALL_TIME[0], end_ns=before_ns
    ):
        first = row.time_ns if first is None else min(first, row.time_ns)
    if first is None:
        return {}
    days: dict[str, set[int]] = {}
    async for entity_id, row in _optimized_rows(
        client,
        database,
        Aggregate.COUNT,
        start_ns=first - first % DAY_NS,
        end_ns=before_ns,
        every_ns=DAY_NS,
    ):
        days.setdefault(entity_id, set()).add(row.time_ns - row.time_ns % DAY_NS)
    return {entity_id: spans_from_days(found) for entity_id, found in sorted(days.items())}


async def recorded_entities(client: InfluxClient, database: str, span: Span) -> set[str]:
    """Entities with optimized points in the database inside ``span``."""
    return {
        entity_id
        async for entity_id, _ in _optimized_rows(
            client, database, Aggregate.COUNT, start_ns=span[0], end_ns=span[1]
        )
    }


async def count_points(
    client: InfluxClient, deletion: Deletion, fields: Sequence[str] = STATE_FIELDS
) -> int:
    """Points a deletion would remove (each carries one of ``fields``: a value or a state
    field, or both, in the optimized and legacy layouts)."""
    most = 0
    for name in fields:
        rows = await client.aggregate(
            deletion.measurement,
            name,
            Aggregate.COUNT,
            start_ns=deletion.start_ns,
            end_ns=deletion.end_ns,
            where={key: [value] for key, value in deletion.tags.items()},
            database=deletion.database,
        )
        most = max(most, sum(int(row.value) for row in rows))
    return most


async def count_database(client: InfluxClient, database: str) -> int:
    """Points in a whole database, counted by their state fields."""
    total = 0
    for measurement in await client.measurements(database):
        counts = []
        for name in STATE_FIELDS:
            rows = await client.aggregate(
                measurement,
                name,
                Aggregate.COUNT,
                start_ns=ALL_TIME[0],
                end_ns=ALL_TIME[1],
                database=database,
            )
            counts.append(sum(int(row.value) for row in rows))
        total += max(counts)
    return total


# A delete that keeps failing is retried this often (with backoff) before the step gives up
# and says so; the step can be run again, and every delete is idempotent.
DELETE_ATTEMPTS: Final = 6
DELETE_BACKOFF: Final = Backoff(base=1.0, maximum=30.0)


async def delete(
    client: InfluxClient,
    deletion: Deletion,
    *,
    attempts: int | None = None,
    backoff: Backoff | None = None,
    breaker: CircuitBreaker | None = None,
    fields: Sequence[str] = STATE_FIELDS,
) -> int:
    """Count and make one time-bounded deletion, retrying transient failures; the count."""

    async def count_and_delete() -> int:
        removed = await count_points(client, deletion, fields)
        if removed:
            await client.delete_range(
                deletion.measurement,
                deletion.tags,
                start_ns=deletion.start_ns,
                end_ns=deletion.end_ns,
                database=deletion.database,
            )
        return removed

    return await call_with_retry(
        count_and_delete,
        backoff=backoff or DELETE_BACKOFF,
        breaker=breaker or RetryPolicy().new_breaker(),
        max_attempts=attempts or DELETE_ATTEMPTS,
    )


@dataclass(frozen=True, kw_only=True)
class Removal:
    """What a rollback removed from the target."""

    points: int
    dropped_database: str | None
    deletions: int
    # Rollup points removed with the raw points they summarized.
    rollup_points: int = 0


async def remove_migrated(
    client: InfluxClient,
    state: MigrationState,
    *,
    until_ns: int,
    known_entities: Collection[str] = (),
    attempts: int | None = None,
) -> Removal:
    """Remove what the ledger says the migration wrote to the target, nothing else.

    The live writer's points from the cutover to ``until_ns`` count as the migration's for
    the entities in ``known_entities`` that have points there (those this Home Assistant
    records), unless the target was recorded anyway before the migration.
    """
    ledger = state.ledger
    if ledger is None:
        raise ValueError("the migration has no ledger: nothing may be removed")
    target = ledger.target_database
    live_span = (state.cutover_ns, until_ns) if state.cutover_ns is not None else None
    live: set[str] = set()
    if (
        live_span is not None
        and not ledger.target_recorded_before
        and await client.database_exists(target)
    ):
        live = await recorded_entities(client, target, live_span) & set(known_entities)
    removal = rollback_plan(ledger, state.planned_spans(), live_span=live_span, live_entities=live)
    removed = 0
    if removal.drop_database is not None and await client.database_exists(removal.drop_database):
        removed = await count_database(client, removal.drop_database)
        await client.drop_database(removal.drop_database)
    for deletion in removal.deletions:
        removed += await delete(client, deletion, attempts=attempts)
    return Removal(
        points=removed,
        dropped_database=removal.drop_database,
        deletions=len(removal.deletions),
        rollup_points=await remove_rollups(client, removal.deletions, attempts=attempts),
    )


async def remove_rollups(
    client: InfluxClient, deletions: Iterable[Deletion], *, attempts: int | None = None
) -> int:
    """Remove the rollups of raw points that ``deletions`` removed; rollup points removed.

    Per deletion (an entity's time span), the rollup windows overlapping the span are deleted
    (the span widened to whole hours), and the hours at both of its ends, which may also hold
    raw points from outside it, are recomputed from the raw points that remain: afterwards
    every touched window is what the remaining raw points give, and no other is touched.
    """
    present: dict[str, set[str]] = {}
    removed = 0
    for deletion in deletions:
        database = deletion.database
        if database not in present:
            present[database] = set(await client.measurements(database))
        names = [
            name
            for resolution in RESOLUTIONS
            if (name := rollup_measurement(deletion.measurement, resolution)) in present[database]
        ]
        if not names:
            continue
        first = window_start(deletion.start_ns, _ROLLUP_ALIGN_NS)
        last = window_start(deletion.end_ns - 1, _ROLLUP_ALIGN_NS)
        for name in names:
            removed += await delete(
                client,
                Deletion(
                    database=database,
                    measurement=name,
                    tags=deletion.tags,
                    start_ns=first,
                    end_ns=last + _ROLLUP_ALIGN_NS,
                ),
                attempts=attempts,
                fields=("count",),
            )
        for edge in sorted({first, last}):

            async def recompute(
                edge: int = edge, deletion: Deletion = deletion, database: str = database
            ) -> int:
                return await build_rollups(
                    client,
                    database,
                    edge,
                    edge + _ROLLUP_ALIGN_NS,
                    domains=(deletion.measurement,),
                    where={key: [value] for key, value in deletion.tags.items()},
                )

            await call_with_retry(
                recompute,
                backoff=DELETE_BACKOFF,
                breaker=RetryPolicy().new_breaker(),
                max_attempts=attempts or DELETE_ATTEMPTS,
            )
    return removed


async def clean_legacy(
    client: InfluxClient,
    state: MigrationState,
    *,
    save: SaveState,
    attempts: int | None = None,
) -> tuple[int, int]:
    """Delete the legacy points the ledger proves copied; (points deleted, deletions made).

    Each deletion is recorded in the ledger and saved before the next one, so a cleanup that
    stops (an error, a restart) continues where it was and never repeats one.
    """
    ledger = state.ledger
    if ledger is None:
        raise ValueError("the migration has no ledger: nothing may be deleted")
    deleted = 0
    deletions = cleanup_plan(ledger, state.copied_spans())
    for deletion in deletions:
        deleted += await delete(client, deletion, attempts=attempts)
        ledger.record_cleaned(
            f"{deletion.tags['domain']}.{deletion.tags['entity_id']}", deletion.measurement
        )
        await save(state)
    return deleted, len(deletions)
