"""The migration ledger: what rollback and cleanup may delete, as pure rules."""

from datetime import UTC, datetime
import itertools
import json
from typing import Any

from hypothesis import given, strategies as st
import pytest

from custom_components.ha_ingestor.engine.migration.ledger import (
    DAY_NS,
    END_OF_TIME,
    Deletion,
    Layout,
    MigrationLedger,
    Recording,
    cleanup_plan,
    merge_spans,
    rollback_plan,
    spans_from_days,
    subtract_spans,
)
from custom_components.ha_ingestor.engine.migration.model import (
    BackfillCheckpoint,
    MigrationState,
    Phase,
    transition,
)

D = DAY_NS
spans = st.lists(
    st.tuples(st.integers(0, 100), st.integers(0, 100)).map(lambda s: (min(s), max(s))),
    max_size=6,
)


def covered(spans: tuple[tuple[int, int], ...]) -> set[int]:
    return {t for start, end in spans for t in range(start, end)}


@given(spans, spans)
def test_subtracting_spans_leaves_exactly_the_times_outside_the_holes(
    wanted: list[tuple[int, int]], holes: list[tuple[int, int]]
) -> None:
    left = subtract_spans(wanted, holes)
    assert covered(left) == covered(tuple(wanted)) - covered(tuple(holes))
    assert merge_spans(left) == left


@given(spans)
def test_merged_spans_cover_the_same_times_without_overlapping(
    wanted: list[tuple[int, int]],
) -> None:
    merged = merge_spans(wanted)
    assert covered(merged) == covered(tuple(wanted))
    assert all(a[1] < b[0] for a, b in itertools.pairwise(merged))


def test_days_become_merged_day_spans() -> None:
    assert spans_from_days([3 * D, 4 * D, 7 * D]) == ((3 * D, 5 * D), (7 * D, 8 * D))


def ledger(**fields: Any) -> MigrationLedger:
    fields.setdefault("inventoried_ns", 50 * D)
    return MigrationLedger(source_database="home", target_database="home", **fields)


def test_rollback_deletes_copied_and_live_spans_minus_what_was_there_before() -> None:
    book = ledger(
        copied={"sensor.a": ("°C", "°F"), "light.b": ("light.b",)},
        preexisting={"sensor.a": ((12 * D, 14 * D),)},
    )
    copied = {"°C": (10 * D, 20 * D), "°F": (15 * D, 30 * D), "light.b": (5 * D, 6 * D)}

    removal = rollback_plan(
        book, copied, live_span=(30 * D, 31 * D), live_entities=["sensor.a", "switch.c"]
    )

    assert removal.drop_database is None
    assert removal.deletions == (
        Deletion(
            database="home",
            measurement="light",
            tags={"entity_id": "light.b"},
            start_ns=5 * D,
            end_ns=6 * D,
        ),
        Deletion(
            database="home",
            measurement="sensor",
            tags={"entity_id": "sensor.a"},
            start_ns=10 * D,
            end_ns=12 * D,
        ),
        Deletion(
            database="home",
            measurement="sensor",
            tags={"entity_id": "sensor.a"},
            start_ns=14 * D,
            end_ns=31 * D,
        ),
        Deletion(
            database="home",
            measurement="switch",
            tags={"entity_id": "switch.c"},
            start_ns=30 * D,
            end_ns=31 * D,
        ),
    )


def test_rollback_leaves_everything_from_the_inventory_on_when_the_target_was_recorded() -> None:
    book = ledger(
        copied={"sensor.a": ("°C",)},
        recorded_before=(Recording(Layout.OPTIMIZED, "home"),),
        inventoried_ns=50 * D + 5,
    )
    removal = rollback_plan(
        book, {"°C": (10 * D, 60 * D)}, live_span=(60 * D, 61 * D), live_entities=["sensor.a"]
    )
    assert [(d.start_ns, d.end_ns) for d in removal.deletions] == [(10 * D, 50 * D)]


def test_rollback_drops_only_a_database_the_migration_created() -> None:
    created = MigrationLedger(
        source_database="home", target_database="home_optimized", created_target=True
    )
    assert rollback_plan(created, {}, live_span=None).drop_database == "home_optimized"
    existing = MigrationLedger(
        source_database="home",
        target_database="home_optimized",
        inventoried_ns=0,
        copied={"sensor.a": ("W",)},
    )
    removal = rollback_plan(existing, {"W": (0, D)}, live_span=None)
    assert removal.drop_database is None
    assert [d.database for d in removal.deletions] == ["home_optimized"]
    # The source is never dropped, even when the ledger says it was created.
    same = MigrationLedger(source_database="home", target_database="home", created_target=True)
    assert rollback_plan(same, {}, live_span=None).drop_database is None


def test_without_an_inventory_a_rollback_deletes_nothing() -> None:
    book = ledger(copied={"sensor.a": ("°C",)}, inventoried_ns=None)
    assert book.protected_spans("sensor.a") == ((-END_OF_TIME, END_OF_TIME),)
    removal = rollback_plan(book, {"°C": (0, D)}, live_span=(D, 2 * D), live_entities=["sensor.a"])
    assert removal.deletions == ()


def test_cleanup_deletes_only_proven_entities_without_refused_points_inside_copied_spans() -> None:
    book = ledger(
        copied={
            "sensor.a": ("°C", "°F"),
            "sensor.refused": ("°C",),
            "sensor.unproven": ("°C",),
        },
        verified={"sensor.a": (12 * D, 40 * D), "sensor.refused": (0, 40 * D)},
        dead_lettered={"sensor.refused"},
        cleaned={"sensor.a": ("°F",)},
    )
    deletions = cleanup_plan(book, {"°C": (10 * D, 20 * D), "°F": (15 * D, 30 * D)})
    assert deletions == (
        Deletion(
            database="home",
            measurement="°C",
            tags={"domain": "sensor", "entity_id": "a"},
            start_ns=12 * D,
            end_ns=20 * D,
        ),
    )


def test_a_ledger_survives_a_json_round_trip() -> None:
    book = ledger(
        created_target=True,
        recorded_before=(Recording(Layout.LEGACY, "home"),),
        preexisting={"sensor.a": ((D, 2 * D),)},
        copied={"sensor.a": ("°C",)},
        dead_lettered={"sensor.b"},
        verified={"sensor.a": (0, D)},
        cleaned={"sensor.a": ("°C",)},
        removal_pending=True,
        options_applied=True,
    )
    assert MigrationLedger.from_dict(json.loads(json.dumps(book.as_dict()))) == book


@pytest.mark.parametrize(
    "damaged",
    [
        None,
        [],
        {"source_database": "home"},
        {"source_database": "home", "target_database": 5},
        {"source_database": "home", "target_database": "x", "copied": []},
        {"source_database": "home", "target_database": "x", "verified": {"a": [1]}},
        {"source_database": "home", "target_database": "x", "created_target": "yes"},
        {"source_database": "home", "target_database": "x", "recorded_before": [{"layout": 1}]},
    ],
)
def test_a_damaged_ledger_is_refused_not_half_read(damaged: Any) -> None:
    with pytest.raises((TypeError, ValueError, KeyError)):
        MigrationLedger.from_dict(damaged)


def test_the_state_knows_what_was_planned_and_what_was_copied() -> None:
    state = MigrationState(migration_id="x", phase=Phase.BACKFILL)
    state.checkpoints = {
        "°C": BackfillCheckpoint(start_ns=10, end_ns=100, completed_until_ns=40),
        "W": BackfillCheckpoint.starting(5, 5),
    }
    # A rollback removes the whole planned range (windows written but not yet recorded lie
    # in it); a cleanup deletes only what the checkpoint says was copied.
    assert state.planned_spans() == {"°C": (10, 100)}
    assert state.copied_spans() == {"°C": (10, 40)}


def test_a_failed_or_paused_migration_keeps_recording_what_its_phase_recorded() -> None:
    now = datetime.now(UTC)
    state = MigrationState(migration_id="x", phase=Phase.CLEANUP)
    paused = transition(state, Phase.PAUSED, reason="r", now=now)
    assert paused.recording_phase is Phase.CLEANUP
    failed = transition(paused, Phase.FAILED, reason="r", now=now)
    assert failed.phase_before_failure is Phase.CLEANUP
    assert failed.recording_phase is Phase.CLEANUP
    assert MigrationState.from_dict(failed.to_dict()).recording_phase is Phase.CLEANUP
