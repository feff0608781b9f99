"""The migration model: phase plans, transition rules, persisted state and the maths on it."""

from datetime import UTC, datetime, timedelta
import json
from pathlib import Path

from hypothesis import given, settings, strategies as st
import pytest
import yaml

from custom_components.ha_ingestor.engine.line_protocol import to_time_ns
from custom_components.ha_ingestor.engine.migration.model import (
    INT_LIMITS,
    MIN_ERROR_RATE_SAMPLE,
    BackfillCheckpoint,
    ConfigError,
    EntityMismatch,
    InvalidTransition,
    MigrationConfig,
    MigrationState,
    Phase,
    QueryTiming,
    SourceSeries,
    SourceSummary,
    Strategy,
    ThroughputWindow,
    Transition,
    ValidationResult,
    allowed_transitions,
    backfill_rate_limit,
    can_start_migration,
    decide_on_error_rate,
    error_rate,
    eta,
    plan,
    progress_percent,
    start_migration,
    transition,
)

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The model needs no Home Assistant instance; skip starting one for every test."""


def _state(
    phase: Phase,
    *,
    strategy: Strategy = Strategy.DUAL_WRITE,
    before_pause: Phase | None = None,
    records_read: int = 0,
    records_migrated: int = 0,
    records_failed: int = 0,
    records_skipped: int = 0,
    estimated_total_points: int | None = None,
) -> MigrationState:
    return MigrationState(
        migration_id="m1",
        config=MigrationConfig(strategy=strategy),
        phase=phase,
        phase_before_pause=before_pause,
        records_read=records_read,
        records_migrated=records_migrated,
        records_failed=records_failed,
        records_skipped=records_skipped,
        estimated_total_points=estimated_total_points,
    )


# Phase plans ---------------------------------------------------------------------------------

_DUAL_WRITE_PLAN = (
    Phase.PREPARATION,
    Phase.DUAL_WRITE,
    Phase.BACKFILL,
    Phase.VALIDATION,
    Phase.SWITCHOVER,
    Phase.CLEANUP,
    Phase.COMPLETE,
)


@pytest.mark.parametrize(
    ("strategy", "phases"),
    [
        (
            Strategy.IMMEDIATE,
            (
                Phase.PREPARATION,
                Phase.BACKFILL,
                Phase.VALIDATION,
                Phase.SWITCHOVER,
                Phase.CLEANUP,
                Phase.COMPLETE,
            ),
        ),
        (Strategy.GRADUAL, _DUAL_WRITE_PLAN),
        (Strategy.DUAL_WRITE, _DUAL_WRITE_PLAN),
        (Strategy.BLUE_GREEN, _DUAL_WRITE_PLAN),
    ],
)
def test_each_strategy_runs_its_phases_in_order(strategy: Strategy, phases: tuple[Phase]) -> None:
    assert strategy.phases == phases


@pytest.mark.parametrize("strategy", list(Strategy))
def test_walking_the_plan_ends_complete(strategy: Strategy) -> None:
    state = MigrationState(migration_id="m1", config=MigrationConfig(strategy=strategy))
    for phase in strategy.phases:
        state = transition(state, phase, reason="next", now=NOW)
    assert state.phase is Phase.COMPLETE
    assert [t.to_phase for t in state.transitions] == list(strategy.phases)


def test_only_gradual_backfill_is_rate_limited() -> None:
    assert [s for s in Strategy if s.rate_limited] == [Strategy.GRADUAL]


def test_only_blue_green_writes_to_a_separate_target() -> None:
    assert [s for s in Strategy if s.separate_target] == [Strategy.BLUE_GREEN]


def test_cutover_is_recorded_when_dual_write_starts() -> None:
    state = transition(_state(Phase.PREPARATION), Phase.DUAL_WRITE, reason="next", now=NOW)
    assert state.cutover_ns == to_time_ns(NOW)


def test_immediate_records_the_cutover_when_the_backfill_starts() -> None:
    preparing = _state(Phase.PREPARATION, strategy=Strategy.IMMEDIATE)
    state = transition(preparing, Phase.BACKFILL, reason="next", now=NOW)
    assert state.cutover_ns == to_time_ns(NOW)


def test_resuming_into_the_cutover_phase_keeps_the_first_cutover() -> None:
    state = transition(_state(Phase.PREPARATION), Phase.DUAL_WRITE, reason="next", now=NOW)
    later = NOW + timedelta(hours=1)
    state = transition(state, Phase.PAUSED, reason="user", now=later)
    state = transition(state, Phase.DUAL_WRITE, reason="user", now=later)
    assert state.cutover_ns == to_time_ns(NOW)


def test_to_time_ns_is_exact() -> None:
    moment = datetime(2025, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert to_time_ns(moment) == 1_746_100_800_123_456_000


# Transition rules ----------------------------------------------------------------------------

DW, IM = Strategy.DUAL_WRITE, Strategy.IMMEDIATE


@pytest.mark.parametrize(
    ("strategy", "phase", "before_pause", "to", "legal"),
    [
        (DW, Phase.IDLE, None, Phase.PREPARATION, True),
        (DW, Phase.PREPARATION, None, Phase.DUAL_WRITE, True),
        (DW, Phase.DUAL_WRITE, None, Phase.BACKFILL, True),
        (DW, Phase.BACKFILL, None, Phase.VALIDATION, True),
        (DW, Phase.VALIDATION, None, Phase.SWITCHOVER, True),
        (DW, Phase.SWITCHOVER, None, Phase.CLEANUP, True),
        (DW, Phase.CLEANUP, None, Phase.COMPLETE, True),
        (IM, Phase.PREPARATION, None, Phase.BACKFILL, True),
        (DW, Phase.BACKFILL, None, Phase.PAUSED, True),
        (DW, Phase.CLEANUP, None, Phase.PAUSED, True),
        (DW, Phase.PREPARATION, None, Phase.FAILED, True),
        (DW, Phase.VALIDATION, None, Phase.ROLLED_BACK, True),
        (DW, Phase.SWITCHOVER, None, Phase.ROLLED_BACK, True),
        (DW, Phase.PAUSED, Phase.BACKFILL, Phase.BACKFILL, True),
        (DW, Phase.PAUSED, Phase.BACKFILL, Phase.ROLLED_BACK, True),
        (DW, Phase.PAUSED, Phase.BACKFILL, Phase.FAILED, True),
        (DW, Phase.FAILED, None, Phase.ROLLED_BACK, True),
        (DW, Phase.COMPLETE, None, Phase.BACKFILL, False),
        (DW, Phase.COMPLETE, None, Phase.IDLE, False),
        (DW, Phase.COMPLETE, None, Phase.ROLLED_BACK, False),
        (DW, Phase.IDLE, None, Phase.SWITCHOVER, False),
        (DW, Phase.IDLE, None, Phase.PAUSED, False),
        (DW, Phase.ROLLED_BACK, None, Phase.PREPARATION, False),
        (DW, Phase.ROLLED_BACK, None, Phase.IDLE, False),
        (DW, Phase.PREPARATION, None, Phase.BACKFILL, False),
        (IM, Phase.PREPARATION, None, Phase.DUAL_WRITE, False),
        (DW, Phase.BACKFILL, None, Phase.DUAL_WRITE, False),
        (DW, Phase.CLEANUP, None, Phase.IDLE, False),
        (DW, Phase.PAUSED, Phase.BACKFILL, Phase.VALIDATION, False),
        (DW, Phase.PAUSED, Phase.BACKFILL, Phase.PAUSED, False),
        (DW, Phase.FAILED, None, Phase.BACKFILL, False),
        (DW, Phase.FAILED, None, Phase.PAUSED, False),
    ],
)
def test_transition_rules(
    strategy: Strategy, phase: Phase, before_pause: Phase | None, to: Phase, legal: bool
) -> None:
    state = _state(phase, strategy=strategy, before_pause=before_pause)
    if legal:
        assert transition(state, to, reason="r", now=NOW).phase is to
    else:
        with pytest.raises(InvalidTransition):
            transition(state, to, reason="r", now=NOW)


def test_invalid_transition_names_the_phases_and_what_is_allowed() -> None:
    with pytest.raises(InvalidTransition, match="from complete to backfill") as caught:
        transition(_state(Phase.COMPLETE), Phase.BACKFILL, reason="r", now=NOW)
    assert caught.value.from_phase is Phase.COMPLETE
    assert caught.value.to_phase is Phase.BACKFILL
    assert caught.value.allowed == frozenset()


def test_allowed_transitions_from_a_running_phase() -> None:
    assert allowed_transitions(_state(Phase.BACKFILL)) == {
        Phase.VALIDATION,
        Phase.PAUSED,
        Phase.FAILED,
        Phase.ROLLED_BACK,
    }


def test_a_refused_transition_leaves_the_state_unchanged() -> None:
    state = _state(Phase.COMPLETE)
    with pytest.raises(InvalidTransition):
        transition(state, Phase.BACKFILL, reason="r", now=NOW)
    assert state.phase is Phase.COMPLETE
    assert state.transitions == []


def test_transition_returns_a_new_state_and_keeps_the_old_one() -> None:
    state = _state(Phase.BACKFILL)
    moved = transition(state, Phase.VALIDATION, reason="copied", now=NOW)
    assert state.phase is Phase.BACKFILL
    assert state.transitions == []
    assert moved is not state


def test_transition_is_recorded_with_time_and_reason() -> None:
    state = transition(_state(Phase.BACKFILL), Phase.VALIDATION, reason="all copied", now=NOW)
    assert state.transitions == [
        Transition(
            at=NOW, from_phase=Phase.BACKFILL, to_phase=Phase.VALIDATION, reason="all copied"
        )
    ]


def test_transition_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="reason"):
        transition(_state(Phase.BACKFILL), Phase.VALIDATION, reason="", now=NOW)


def test_transition_needs_an_aware_time() -> None:
    naive = datetime(2025, 5, 1, 12, 0)  # noqa: DTZ001
    with pytest.raises(ValueError, match="time zone"):
        transition(_state(Phase.BACKFILL), Phase.VALIDATION, reason="r", now=naive)


def test_rollback_records_its_reason() -> None:
    state = transition(_state(Phase.BACKFILL), Phase.ROLLED_BACK, reason="error rate 7%", now=NOW)
    assert state.rollback_reason == "error rate 7%"


def test_failure_records_the_error() -> None:
    state = transition(_state(Phase.PREPARATION), Phase.FAILED, reason="no permission", now=NOW)
    assert state.error == "no permission"


def test_start_migration_enters_preparation_and_records_the_start() -> None:
    state = start_migration(MigrationConfig(), migration_id="abc", now=NOW)
    assert state.migration_id == "abc"
    assert state.phase is Phase.PREPARATION
    assert state.started_at == NOW
    assert state.transitions[0].from_phase is Phase.IDLE


@pytest.mark.parametrize(
    ("previous", "allowed"),
    [
        (None, True),
        (Phase.COMPLETE, True),
        (Phase.ROLLED_BACK, True),
        (Phase.FAILED, True),
        (Phase.BACKFILL, False),
        (Phase.PAUSED, False),
    ],
)
def test_a_new_migration_starts_only_when_none_is_active(
    previous: Phase | None, allowed: bool
) -> None:
    state = None if previous is None else _state(previous)
    assert can_start_migration(state) is allowed


@pytest.mark.parametrize(
    ("phase", "running", "active"),
    [
        (Phase.IDLE, False, False),
        (Phase.PREPARATION, True, True),
        (Phase.CLEANUP, True, True),
        (Phase.PAUSED, False, True),
        (Phase.COMPLETE, False, False),
        (Phase.ROLLED_BACK, False, False),
        (Phase.FAILED, False, False),
    ],
)
def test_running_and_active(phase: Phase, running: bool, active: bool) -> None:
    state = _state(phase)
    assert (state.is_running, state.is_active) == (running, active)


# Pause and resume ----------------------------------------------------------------------------


def test_pause_remembers_the_phase_it_paused_from() -> None:
    state = transition(_state(Phase.VALIDATION), Phase.PAUSED, reason="user", now=NOW)
    assert state.phase_before_pause is Phase.VALIDATION


def test_resume_returns_to_the_phase_it_paused_from() -> None:
    state = transition(_state(Phase.VALIDATION), Phase.PAUSED, reason="user", now=NOW)
    assert allowed_transitions(state) & set(Strategy.DUAL_WRITE.phases) == {Phase.VALIDATION}
    resumed = transition(state, Phase.VALIDATION, reason="user", now=NOW)
    assert resumed.phase is Phase.VALIDATION
    assert resumed.phase_before_pause is None


# Persistence ---------------------------------------------------------------------------------

_counts = st.integers(min_value=0, max_value=2**53)
_ns = st.integers(min_value=0, max_value=2**62)
_times = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
_rates = st.floats(min_value=0, max_value=1, allow_nan=False)
_ms = st.floats(min_value=0, max_value=1e6, allow_nan=False)
_checkpoints = st.builds(
    lambda a, b, c: BackfillCheckpoint(
        start_ns=min(a, b), end_ns=max(a, b), completed_until_ns=min(max(c, min(a, b)), max(a, b))
    ),
    _ns,
    _ns,
    _ns,
)
_validation = st.builds(
    ValidationResult,
    integrity_score=_rates,
    entities_checked=_counts,
    records_sampled=_counts,
    mismatches=st.dictionaries(
        st.text(max_size=20),
        st.builds(
            EntityMismatch,
            legacy_points=_counts,
            optimized_points=_counts,
            mismatched_days=_counts,
            mismatched_records=_counts,
        ),
        max_size=3,
    ),
    query_timings=st.lists(
        st.builds(QueryTiming, name=st.text(max_size=20), legacy_ms=_ms, optimized_ms=_ms),
        max_size=3,
    ).map(tuple),
)
_configs = st.builds(
    lambda strategy, batch, keep, entities: MigrationConfig(
        strategy=strategy,
        batch_size=batch,
        keep_target_on_rollback=keep,
        entities=entities,
        start=NOW - timedelta(days=30),
        end=NOW,
    ),
    st.sampled_from(Strategy),
    st.integers(min_value=1, max_value=50_000),
    st.booleans(),
    st.lists(st.sampled_from(["sensor.*", "light.kitchen", "*.x?"]), max_size=3).map(tuple),
)
_states = st.builds(
    MigrationState,
    migration_id=st.text(max_size=30),
    config=_configs,
    phase=st.sampled_from(Phase),
    phase_before_pause=st.none() | st.sampled_from(Phase),
    started_at=st.none() | _times,
    cutover_ns=st.none() | _ns,
    checkpoints=st.dictionaries(st.text(max_size=20), _checkpoints, max_size=4),
    records_read=_counts,
    records_migrated=_counts,
    records_failed=_counts,
    records_skipped=_counts,
    estimated_total_points=st.none() | _counts,
    migrated_at_resume=_counts,
    failed_at_resume=_counts,
    validation=st.none() | _validation,
    rollback_reason=st.none() | st.text(max_size=30),
    error=st.none() | st.text(max_size=30),
    transitions=st.lists(
        st.builds(
            Transition,
            at=_times,
            from_phase=st.sampled_from(Phase),
            to_phase=st.sampled_from(Phase),
            reason=st.text(max_size=30),
        ),
        max_size=4,
    ),
)


@settings(max_examples=75, deadline=None)
@given(_states)
def test_state_round_trips_through_json(state: MigrationState) -> None:
    stored = json.loads(json.dumps(state.to_dict(), allow_nan=False))
    assert MigrationState.from_dict(stored) == state


def test_state_from_an_older_version_gets_defaults_for_missing_keys() -> None:
    state = MigrationState.from_dict({"migration_id": "old", "phase": "backfill"})
    assert state == MigrationState(migration_id="old", phase=Phase.BACKFILL)


# Configuration -------------------------------------------------------------------------------


def test_config_defaults_match_the_spec() -> None:
    config = MigrationConfig()
    assert config.as_dict() == {
        "strategy": "dual_write",
        "batch_size": 1000,
        "concurrent_batches": 4,
        "max_error_rate": 0.01,
        "rollback_threshold": 0.05,
        "validate_percentage": 0.1,
        "migration_window_hours": 24,
        "cleanup_delay_hours": 168,
        "delete_legacy_data": False,
        "keep_target_on_rollback": False,
        "start": None,
        "end": None,
        "entities": [],
        "dry_run": False,
    }


@pytest.mark.parametrize(
    ("settings_", "field", "reason"),
    [
        ({"batch_size": 0}, "batch_size", "out_of_range"),
        ({"batch_size": 50_001}, "batch_size", "out_of_range"),
        ({"batch_size": 10.5}, "batch_size", "not_an_integer"),
        ({"batch_size": True}, "batch_size", "not_an_integer"),
        ({"concurrent_batches": 0}, "concurrent_batches", "out_of_range"),
        ({"concurrent_batches": 33}, "concurrent_batches", "out_of_range"),
        ({"max_error_rate": -0.01}, "max_error_rate", "out_of_range"),
        ({"rollback_threshold": 1.5}, "rollback_threshold", "out_of_range"),
        ({"max_error_rate": "high"}, "max_error_rate", "not_a_number"),
        (
            {"max_error_rate": 0.1, "rollback_threshold": 0.05},
            "rollback_threshold",
            "rollback_threshold_below_max_error_rate",
        ),
        ({"validate_percentage": 0}, "validate_percentage", "out_of_range"),
        ({"validate_percentage": 1.01}, "validate_percentage", "out_of_range"),
        ({"migration_window_hours": 0}, "migration_window_hours", "out_of_range"),
        ({"migration_window_hours": 8761}, "migration_window_hours", "out_of_range"),
        ({"cleanup_delay_hours": -1}, "cleanup_delay_hours", "out_of_range"),
        ({"cleanup_delay_hours": 8761}, "cleanup_delay_hours", "out_of_range"),
        ({"strategy": "yolo"}, "strategy", "invalid_strategy"),
        ({"delete_legacy_data": "yes"}, "delete_legacy_data", "not_a_boolean"),
        ({"start": NOW, "end": NOW}, "end", "start_not_before_end"),
        ({"start": "2025-05-01T00:00:00"}, "start", "naive_datetime"),
        ({"end": "yesterday"}, "end", "invalid_datetime"),
        ({"entities": ["kitchen_temperature"]}, "entities", "invalid_entity_filter"),
        ({"entities": ["Sensor.Kitchen"]}, "entities", "invalid_entity_filter"),
    ],
)
def test_invalid_setting_names_its_field_and_reason(
    settings_: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        MigrationConfig.from_options(settings_)
    assert (caught.value.field, caught.value.reason) == (field, reason)


def test_config_error_carries_translation_placeholders() -> None:
    with pytest.raises(ConfigError) as caught:
        MigrationConfig(batch_size=0)
    assert caught.value.placeholders == {
        "field": "batch_size",
        "value": "0",
        "min": "1",
        "max": "50000",
    }
    assert isinstance(caught.value, ValueError)


def test_equal_pause_and_rollback_thresholds_are_allowed() -> None:
    assert MigrationConfig(max_error_rate=0.05, rollback_threshold=0.05).max_error_rate == 0.05


def test_whole_floats_from_number_selectors_become_ints() -> None:
    config = MigrationConfig.from_options({"batch_size": 500.0, "cleanup_delay_hours": 0.0})
    assert (config.batch_size, config.cleanup_delay_hours) == (500, 0)
    assert isinstance(config.batch_size, int)


def test_from_options_ignores_keys_that_are_not_migration_settings() -> None:
    config = MigrationConfig.from_options({"target_database": "green", "batch_size": 10})
    assert config == MigrationConfig(batch_size=10)


def test_config_round_trips_through_as_dict() -> None:
    config = MigrationConfig(
        strategy=Strategy.BLUE_GREEN,
        start=NOW - timedelta(days=1),
        end=NOW,
        entities=("sensor.*",),
        delete_legacy_data=True,
    )
    assert MigrationConfig.from_options(json.loads(json.dumps(config.as_dict()))) == config


def test_overrides_return_a_validated_copy() -> None:
    defaults = MigrationConfig()
    overridden = defaults.with_overrides(batch_size=250, strategy="immediate")
    assert (overridden.batch_size, overridden.strategy) == (250, Strategy.IMMEDIATE)
    assert defaults.batch_size == 1000


def test_an_invalid_override_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        MigrationConfig().with_overrides(rollback_threshold=0.001)
    assert caught.value.field == "rollback_threshold"


def test_an_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        MigrationConfig().with_overrides(bach_size=10)
    assert (caught.value.field, caught.value.reason) == ("bach_size", "unknown_option")


def test_empty_entity_filter_selects_every_entity() -> None:
    assert MigrationConfig().selects("light.anything")


def test_entity_filter_matches_ids_and_globs() -> None:
    config = MigrationConfig(entities=("sensor.*_temperature", "light.kitchen"))
    assert config.selects("sensor.attic_temperature")
    assert config.selects("light.kitchen")
    assert not config.selects("light.kitchen_2")
    assert not config.selects("sensor.attic_humidity")


# Checkpoints and counters --------------------------------------------------------------------


def test_checkpoint_advances_window_by_window_until_done() -> None:
    checkpoint = BackfillCheckpoint.starting(0, 100)
    checkpoint = checkpoint.advanced(40)
    assert (checkpoint.completed_until_ns, checkpoint.fraction, checkpoint.done) == (40, 0.4, False)
    assert checkpoint.advanced(100).done


def test_last_window_past_the_range_end_stops_at_the_end() -> None:
    assert BackfillCheckpoint.starting(0, 100).advanced(150).completed_until_ns == 100


def test_checkpoint_refuses_to_move_backwards() -> None:
    with pytest.raises(ValueError, match="before the checkpoint"):
        BackfillCheckpoint.starting(0, 100).advanced(50).advanced(40)


def test_recording_a_window_counts_points_and_moves_the_checkpoint_together() -> None:
    state = _state(Phase.BACKFILL)
    state.checkpoints["°C"] = BackfillCheckpoint.starting(0, 100)
    state.record_window("°C", 50, read=10, migrated=8, failed=1, skipped=1)
    assert state.checkpoints["°C"].completed_until_ns == 50
    counts = (state.records_read, state.records_migrated, state.records_failed)
    assert (*counts, state.records_skipped) == (10, 8, 1, 1)


def test_recording_a_window_of_an_unknown_measurement_is_refused() -> None:
    with pytest.raises(ValueError, match="no backfill checkpoint"):
        _state(Phase.BACKFILL).record_window("%", 50, read=1, migrated=1, failed=0)


# Progress ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "percent"),
    [
        (Phase.IDLE, 0.0),
        (Phase.PREPARATION, 0.0),
        (Phase.DUAL_WRITE, 0.0),
        (Phase.VALIDATION, 100.0),
        (Phase.CLEANUP, 100.0),
        (Phase.COMPLETE, 100.0),
    ],
)
def test_progress_outside_the_backfill(phase: Phase, percent: float) -> None:
    assert progress_percent(_state(phase, records_read=5, estimated_total_points=10)) == percent


def test_without_a_count_progress_is_by_checkpoint_windows_weighted_by_time_span() -> None:
    state = _state(Phase.BACKFILL)
    state.checkpoints = {
        "°C": BackfillCheckpoint(start_ns=0, end_ns=300, completed_until_ns=300),
        "%": BackfillCheckpoint(start_ns=0, end_ns=100, completed_until_ns=0),
    }
    assert progress_percent(state) == 75.0


def test_progress_counts_points_like_the_records_counters_beside_it() -> None:
    """Time covered and points copied disagree when the history is not spread evenly."""
    state = _state(Phase.BACKFILL, records_read=250, estimated_total_points=1000)
    state.checkpoints = {"°C": BackfillCheckpoint(start_ns=0, end_ns=100, completed_until_ns=90)}
    assert progress_percent(state) == 25.0
    # What the backfill read in windows not recorded yet counts too.
    assert progress_percent(state, records_read=600) == 60.0


def test_progress_never_shows_100_before_the_backfill_is_done() -> None:
    state = _state(Phase.BACKFILL, records_read=1500, estimated_total_points=1000)
    assert progress_percent(state) == 99.9
    state.checkpoints = {"°C": BackfillCheckpoint(start_ns=0, end_ns=100, completed_until_ns=100)}
    state.estimated_total_points = None
    assert progress_percent(state) == 99.9
    assert progress_percent(_state(Phase.VALIDATION, records_read=1)) == 100.0


def test_progress_is_zero_without_estimate_or_checkpoints() -> None:
    assert progress_percent(_state(Phase.BACKFILL, records_read=1500)) == 0.0


def test_progress_with_empty_time_ranges_is_100_when_all_done() -> None:
    state = _state(Phase.BACKFILL)
    state.checkpoints = {"°C": BackfillCheckpoint.starting(5, 5)}
    assert progress_percent(state) == 100.0


def test_paused_progress_is_that_of_the_phase_paused_from() -> None:
    state = _state(
        Phase.PAUSED, before_pause=Phase.BACKFILL, records_read=30, estimated_total_points=100
    )
    assert progress_percent(state) == 30.0


# Error rate ----------------------------------------------------------------------------------


def test_error_rate_is_zero_when_nothing_was_processed() -> None:
    assert error_rate(_state(Phase.BACKFILL)) == 0.0


def test_error_rate_is_failed_over_migrated_plus_failed_ignoring_skipped() -> None:
    state = _state(Phase.BACKFILL, records_migrated=90, records_failed=10, records_skipped=900)
    assert error_rate(state) == 0.1


@pytest.mark.parametrize(
    ("migrated", "failed", "decision"),
    [
        (0, 0, "continue"),
        (2, 1, "continue"),  # 1 of 3 is judged as 1 of 1000
        (990, 10, "continue"),  # exactly 1% is not above it
        (989, 11, "pause"),
        (950, 50, "pause"),  # exactly 5% pauses but does not roll back
        (949, 51, "rollback"),
        (0, 51, "rollback"),  # wholesale failure rolls back before the sample fills up
        (99_000, 1_000, "continue"),
        (98_000, 2_000, "pause"),
        (90_000, 10_000, "rollback"),
    ],
)
def test_error_rate_decision(migrated: int, failed: int, decision: str) -> None:
    state = _state(Phase.BACKFILL, records_migrated=migrated, records_failed=failed)
    assert decide_on_error_rate(MigrationConfig(), state) == decision


def test_minimum_sample_is_one_default_batch() -> None:
    assert MIN_ERROR_RATE_SAMPLE == MigrationConfig().batch_size == 1000


def test_error_rate_decision_ignores_failures_before_the_last_resume() -> None:
    state = _state(Phase.BACKFILL, records_migrated=900, records_failed=100)
    state = transition(state, Phase.PAUSED, reason="error rate", now=NOW)
    state = transition(state, Phase.BACKFILL, reason="fixed", now=NOW)
    state.records_migrated += 5000
    assert decide_on_error_rate(state.config, state) == "continue"


def test_error_rate_decision_uses_the_given_thresholds() -> None:
    config = MigrationConfig(max_error_rate=0.0, rollback_threshold=0.5)
    state = _state(Phase.BACKFILL, records_migrated=999, records_failed=1)
    assert decide_on_error_rate(config, state) == "pause"


# Throughput and ETA --------------------------------------------------------------------------


def test_throughput_is_points_per_second_across_the_samples() -> None:
    window = ThroughputWindow(window_seconds=60)
    window.add(0.0, 0)
    window.add(10.0, 1000)
    assert window.points_per_second(10.0) == 100.0


def test_throughput_is_unknown_from_a_single_sample() -> None:
    window = ThroughputWindow(window_seconds=60)
    window.add(5.0, 1000)
    assert window.points_per_second(6.0) is None


def test_throughput_forgets_samples_older_than_the_window() -> None:
    window = ThroughputWindow(window_seconds=10)
    window.add(0.0, 0)
    window.add(10.0, 10_000)  # a fast start
    window.add(20.0, 10_100)
    window.add(30.0, 10_200)
    assert window.points_per_second(30.0) == 10.0


def test_throughput_decays_to_zero_when_points_stop() -> None:
    window = ThroughputWindow(window_seconds=10)
    window.add(0.0, 0)
    window.add(10.0, 1000)
    assert window.points_per_second(15.0) == pytest.approx(1000 / 15)
    assert window.points_per_second(100.0) == 0.0


def test_a_counter_reset_starts_a_new_window() -> None:
    window = ThroughputWindow(window_seconds=60)
    window.add(0.0, 5000)
    window.add(10.0, 0)
    assert window.points_per_second(10.0) is None


def test_throughput_samples_must_not_go_back_in_time() -> None:
    window = ThroughputWindow()
    window.add(10.0, 0)
    with pytest.raises(ValueError, match="monotonic"):
        window.add(9.0, 10)


def test_eta_is_remaining_points_over_throughput() -> None:
    state = _state(Phase.BACKFILL, records_read=400, estimated_total_points=1000)
    assert eta(state, 100.0, NOW) == NOW + timedelta(seconds=6)


def test_eta_is_never_now_or_in_the_past() -> None:
    state = _state(Phase.BACKFILL, records_read=1200, estimated_total_points=1000)
    assert eta(state, 100.0, NOW) == NOW + timedelta(seconds=1)
    assert eta(state, 100.0, NOW, records_read=900) == NOW + timedelta(seconds=1)
    assert eta(state, 50.0, NOW, records_read=500) == NOW + timedelta(seconds=10)


@pytest.mark.parametrize(
    ("phase", "estimate", "throughput"),
    [
        (Phase.BACKFILL, None, 100.0),
        (Phase.BACKFILL, 0, 100.0),
        (Phase.BACKFILL, 1000, None),
        (Phase.BACKFILL, 1000, 0.0),
        (Phase.PAUSED, 1000, 100.0),
        (Phase.COMPLETE, 1000, 100.0),
    ],
)
def test_eta_is_unknown_without_a_running_backfill_estimate_and_rate(
    phase: Phase, estimate: int | None, throughput: float | None
) -> None:
    state = _state(phase, before_pause=Phase.BACKFILL if phase is Phase.PAUSED else None)
    state.estimated_total_points = estimate
    assert eta(state, throughput, NOW) is None


# Validation results --------------------------------------------------------------------------


def test_query_time_improvement_compares_total_query_time() -> None:
    result = ValidationResult(
        integrity_score=1.0,
        query_timings=(
            QueryTiming(name="last day", legacy_ms=300.0, optimized_ms=100.0),
            QueryTiming(name="last week", legacy_ms=100.0, optimized_ms=100.0),
        ),
    )
    assert result.query_time_improvement_percent == 50.0


def test_query_time_improvement_is_unknown_without_timings() -> None:
    assert ValidationResult(integrity_score=1.0).query_time_improvement_percent is None


# Dry-run plan --------------------------------------------------------------------------------

_SOURCE = SourceSummary(
    series=(
        SourceSeries(measurement="°C", entity_id="sensor.attic_temperature", point_count=6000),
        SourceSeries(measurement="%", entity_id="sensor.attic_humidity", point_count=3000),
        SourceSeries(measurement="light.kitchen", entity_id="light.kitchen", point_count=1000),
    ),
    first_time=NOW - timedelta(days=10),
    last_time=NOW,
)


def test_plan_lists_phases_selected_entities_and_their_points() -> None:
    result = plan(MigrationConfig(entities=("sensor.*",), batch_size=1000), _SOURCE)
    assert result.phases == Strategy.DUAL_WRITE.phases
    assert result.entity_ids == ("sensor.attic_humidity", "sensor.attic_temperature")
    assert result.measurements == ("%", "°C")
    assert (result.estimated_points, result.estimated_batches) == (9000, 9)
    assert (result.start, result.end) == (_SOURCE.first_time, _SOURCE.last_time)


def test_plan_scales_the_estimate_by_the_share_of_the_time_range() -> None:
    result = plan(MigrationConfig(start=NOW - timedelta(days=5)), _SOURCE)
    assert result.estimated_points == 5000
    assert result.start == NOW - timedelta(days=5)


def test_plan_for_a_range_outside_the_history_migrates_nothing() -> None:
    config = MigrationConfig(start=NOW + timedelta(days=1), end=NOW + timedelta(days=2))
    result = plan(config, _SOURCE)
    assert (result.estimated_points, result.entity_ids) == (0, ())


def test_plan_estimates_the_duration_from_a_throughput() -> None:
    result = plan(MigrationConfig(), _SOURCE, points_per_second=100.0)
    assert result.estimated_backfill_duration == timedelta(seconds=100)


def test_plan_without_a_throughput_has_no_duration() -> None:
    assert plan(MigrationConfig(), _SOURCE).estimated_backfill_duration is None


def test_gradual_plan_spreads_the_backfill_over_the_window() -> None:
    config = MigrationConfig(strategy=Strategy.GRADUAL, migration_window_hours=1)
    result = plan(config, _SOURCE, points_per_second=100.0)
    assert result.backfill_rate_limit == pytest.approx(10_000 / 3600)
    assert result.estimated_backfill_duration == timedelta(hours=1)


def test_only_gradual_limits_the_backfill_rate() -> None:
    assert backfill_rate_limit(MigrationConfig(), 10_000) is None


def test_plan_as_dict_is_json_safe() -> None:
    config = MigrationConfig(strategy=Strategy.BLUE_GREEN, delete_legacy_data=True)
    data = plan(config, _SOURCE, points_per_second=50.0).as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["separate_target"] is True
    assert data["deletes_legacy_data"] is True
    assert data["estimated_backfill_seconds"] == 200.0


def test_the_start_migration_action_offers_the_models_ranges() -> None:
    """services.yaml cannot import the model: this pins its number ranges and strategies to it."""
    services = yaml.safe_load(
        (Path(__file__).parent.parent / "custom_components/ha_ingestor/services.yaml").read_text()
    )
    fields = services["start_migration"]["fields"]
    offered = {
        name: (fields[name]["selector"]["number"]["min"], fields[name]["selector"]["number"]["max"])
        for name in INT_LIMITS
    }
    assert offered == dict(INT_LIMITS)
    assert sorted(fields["strategy"]["selector"]["select"]["options"]) == sorted(Strategy)
    for rate in ("max_error_rate", "rollback_threshold", "validate_percentage"):
        assert fields[rate]["selector"]["number"]["max"] == 1  # a share, as MigrationConfig
        lowest = fields[rate]["selector"]["number"]["min"]
        assert getattr(MigrationConfig(**{"max_error_rate": 0.0, rate: lowest}), rate) == lowest
