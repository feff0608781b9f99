"""The migration as data: phases, strategies, thresholds, persisted state and its arithmetic.

Pure Python (no ``hass``, no I/O) so every rule can be unit-tested in milliseconds; the HA
glue runs the phases, saves :class:`MigrationState` with ``Store`` and fires the bus events.
"""

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase
import math
import re
from typing import Any, Final, Literal, Self

from ..line_protocol import to_time_ns
from .ledger import MigrationLedger, Span


class Phase(StrEnum):
    """Where a migration is; the values are stored and shown to users."""

    IDLE = "idle"
    PREPARATION = "preparation"
    DUAL_WRITE = "dual_write"
    BACKFILL = "backfill"
    VALIDATION = "validation"
    SWITCHOVER = "switchover"
    CLEANUP = "cleanup"
    COMPLETE = "complete"
    PAUSED = "paused"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


# Phases in which migration work is under way (pausable, can fail, can be rolled back).
RUNNING_PHASES = frozenset(
    {
        Phase.PREPARATION,
        Phase.DUAL_WRITE,
        Phase.BACKFILL,
        Phase.VALIDATION,
        Phase.SWITCHOVER,
        Phase.CLEANUP,
    }
)


class Strategy(StrEnum):
    """How the history moves; each one has its own ordered phase plan."""

    IMMEDIATE = "immediate"
    GRADUAL = "gradual"
    DUAL_WRITE = "dual_write"
    BLUE_GREEN = "blue_green"

    @property
    def phases(self) -> tuple[Phase, ...]:
        """The phases this strategy runs, in order, ending with ``complete``."""
        return _PHASE_PLANS[self]

    @property
    def cutover_phase(self) -> Phase:
        """The phase whose start records the cutover and switches the optimized writer on."""
        return Phase.BACKFILL if self is Strategy.IMMEDIATE else Phase.DUAL_WRITE

    @property
    def rate_limited(self) -> bool:
        """Whether the backfill is spread over ``migration_window_hours``."""
        return self is Strategy.GRADUAL

    @property
    def separate_target(self) -> bool:
        """Whether the optimized data goes to its own ("green") database or bucket.

        Switchover then flips which database is live, and rollback drops the green one.
        """
        return self is Strategy.BLUE_GREEN


_DUAL_WRITE_PLAN = (
    Phase.PREPARATION,
    Phase.DUAL_WRITE,
    Phase.BACKFILL,
    Phase.VALIDATION,
    Phase.SWITCHOVER,
    Phase.CLEANUP,
    Phase.COMPLETE,
)
_PHASE_PLANS: Mapping[Strategy, tuple[Phase, ...]] = {
    # No dual-write *period*, yet events after the cutover must still reach the optimized
    # layout or the switchover would leave a gap: the cutover is recorded at the start of the
    # backfill and the optimized writer is switched on at that same moment. The backfill copies
    # everything before the cutover, the live writer everything from it on. The glue switches
    # the writer on first and then makes the transition (whose `now` is the cutover), so the
    # two overlap by a moment instead of leaving a hole; the overlap is harmless because a
    # point re-written with the same series and time overwrites itself.
    Strategy.IMMEDIATE: (
        Phase.PREPARATION,
        Phase.BACKFILL,
        Phase.VALIDATION,
        Phase.SWITCHOVER,
        Phase.CLEANUP,
        Phase.COMPLETE,
    ),
    # The same phases as dual_write; only the backfill's pace differs (rate-limited).
    Strategy.GRADUAL: _DUAL_WRITE_PLAN,
    Strategy.DUAL_WRITE: _DUAL_WRITE_PLAN,
    # The same phases as dual_write; the target is a separate database (see separate_target).
    Strategy.BLUE_GREEN: _DUAL_WRITE_PLAN,
}


class ConfigError(ValueError):
    """A migration setting is invalid.

    ``field`` names the setting and ``reason`` is a translation key, with ``placeholders``
    for the message, so the HA glue can raise a translated ``ServiceValidationError``.
    """

    def __init__(
        self,
        field_name: str,
        reason: str,
        message: str,
        placeholders: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.reason = reason
        self.placeholders: dict[str, str] = {"field": field_name, **(placeholders or {})}


class InvalidTransition(Exception):
    """A phase change the migration rules do not allow (the state is left unchanged)."""

    def __init__(self, from_phase: Phase, to_phase: Phase, allowed: Iterable[Phase]) -> None:
        self.from_phase = from_phase
        self.to_phase = to_phase
        self.allowed = frozenset(allowed)
        allowed_text = ", ".join(sorted(self.allowed)) or "none (start a new migration)"
        super().__init__(
            f"A migration cannot go from {from_phase} to {to_phase}; "
            f"allowed from {from_phase}: {allowed_text}"
        )


# The range of each whole-number setting; the options form and services.yaml offer the same.
INT_LIMITS: Final[Mapping[str, tuple[int, int]]] = {
    "batch_size": (1, 50_000),
    "concurrent_batches": (1, 32),
    "migration_window_hours": (1, 8760),
    "cleanup_delay_hours": (0, 8760),
}
_RATE_FIELDS = ("max_error_rate", "rollback_threshold", "validate_percentage")
_BOOL_FIELDS = ("delete_legacy_data", "keep_target_on_rollback", "dry_run")
# A full entity id or a glob over one: "sensor.kitchen", "sensor.*", "*.kitchen_?".
_ENTITY_PATTERN = re.compile(r"^[a-z0-9_*?\[\]!-]+\.[a-z0-9_*?\[\]!-]+$")


@dataclass(frozen=True, kw_only=True)
class MigrationConfig:
    """The settings of one migration: options-flow defaults, overridable per service call.

    Values are checked (and integral floats from number selectors coerced) on construction;
    an invalid one raises :class:`ConfigError`.
    """

    strategy: Strategy = Strategy.DUAL_WRITE
    batch_size: int = 1000
    concurrent_batches: int = 4
    max_error_rate: float = 0.01
    rollback_threshold: float = 0.05
    validate_percentage: float = 0.1
    migration_window_hours: int = 24
    cleanup_delay_hours: int = 168
    # Legacy history is kept after cleanup unless the user explicitly opts in.
    delete_legacy_data: bool = False
    keep_target_on_rollback: bool = False
    start: datetime | None = None
    end: datetime | None = None
    # Entity ids or globs over them; empty means every entity.
    entities: tuple[str, ...] = ()
    dry_run: bool = False

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            coerced = _coerce(spec.name, value)
            if coerced is not value:
                object.__setattr__(self, spec.name, coerced)
        if self.max_error_rate > self.rollback_threshold:
            raise ConfigError(
                "rollback_threshold",
                "rollback_threshold_below_max_error_rate",
                "must be at least max_error_rate (pausing comes before rolling back)",
                {"max_error_rate": str(self.max_error_rate)},
            )
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ConfigError(
                "end",
                "start_not_before_end",
                "the time range must start before it ends",
                {"start": self.start.isoformat(), "end": self.end.isoformat()},
            )

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        """Build from stored options; keys that are not migration settings are ignored."""
        names = {spec.name for spec in fields(cls)}
        return cls(**{key: value for key, value in options.items() if key in names})

    def with_overrides(self, **overrides: Any) -> Self:
        """A validated copy with some settings replaced (one service call's overrides)."""
        names = {spec.name for spec in fields(self)}
        for key in overrides:
            if key not in names:
                raise ConfigError(key, "unknown_option", "is not a migration setting")
        return replace(self, **overrides)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form for options and storage; :meth:`from_options` reads it back."""
        return {
            "strategy": str(self.strategy),
            "batch_size": self.batch_size,
            "concurrent_batches": self.concurrent_batches,
            "max_error_rate": self.max_error_rate,
            "rollback_threshold": self.rollback_threshold,
            "validate_percentage": self.validate_percentage,
            "migration_window_hours": self.migration_window_hours,
            "cleanup_delay_hours": self.cleanup_delay_hours,
            "delete_legacy_data": self.delete_legacy_data,
            "keep_target_on_rollback": self.keep_target_on_rollback,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "entities": list(self.entities),
            "dry_run": self.dry_run,
        }

    def selects(self, entity_id: str) -> bool:
        """Whether the entity filter includes ``entity_id`` (an empty filter includes all)."""
        return not self.entities or any(fnmatchcase(entity_id, p) for p in self.entities)


def _coerce(name: str, value: Any) -> Any:
    """Return ``value`` as the type setting ``name`` holds, or raise ConfigError."""
    if name == "strategy":
        try:
            return Strategy(value)
        except ValueError:
            raise ConfigError(
                name,
                "invalid_strategy",
                f"must be one of {', '.join(Strategy)}",
                {"value": str(value), "choices": ", ".join(Strategy)},
            ) from None
    if name in INT_LIMITS:
        low, high = INT_LIMITS[name]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(name, "not_an_integer", "must be a whole number")
        if not low <= value <= high:
            raise _out_of_range(name, value, str(low), str(high))
        return value
    if name in _RATE_FIELDS:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(name, "not_a_number", "must be a number")
        value = float(value)
        if name == "validate_percentage":
            if not 0 < value <= 1:
                raise _out_of_range(name, value, "0 (exclusive)", "1")
        elif not 0 <= value <= 1:
            raise _out_of_range(name, value, "0", "1")
        return value
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise ConfigError(name, "not_a_boolean", "must be true or false")
        return value
    if name in ("start", "end"):
        return _coerce_datetime(name, value)
    if name == "entities":
        return _coerce_entities(value)
    raise AssertionError(f"no rule for setting {name}")  # pragma: no cover


def _out_of_range(name: str, value: float, low: str, high: str) -> ConfigError:
    return ConfigError(
        name,
        "out_of_range",
        f"must be between {low} and {high}, got {value}",
        {"value": str(value), "min": low, "max": high},
    )


def _coerce_datetime(name: str, value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(
                name, "invalid_datetime", "must be an ISO 8601 date and time", {"value": value}
            ) from None
    if not isinstance(value, datetime):
        raise ConfigError(name, "invalid_datetime", "must be a date and time")
    if value.tzinfo is None:
        raise ConfigError(name, "naive_datetime", "must carry a time zone")
    if not _INFLUX_MIN_TIME <= value <= _INFLUX_MAX_TIME:
        # InfluxDB stores int64 nanoseconds; a time outside that range cannot be queried.
        raise ConfigError(
            name,
            "out_of_range",
            f"must be between {_INFLUX_MIN_TIME:%Y-%m-%d} and {_INFLUX_MAX_TIME:%Y-%m-%d}",
            {"value": value.isoformat()},
        )
    return value


_INFLUX_MIN_TIME = datetime(1677, 9, 22, tzinfo=UTC)
_INFLUX_MAX_TIME = datetime(2262, 4, 11, tzinfo=UTC)


def _coerce_entities(value: Any) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, Iterable):
        raise ConfigError("entities", "invalid_entity_filter", "must be a list of entity ids")
    result = tuple(items)
    for item in result:
        if not isinstance(item, str) or not _ENTITY_PATTERN.match(item):
            raise ConfigError(
                "entities",
                "invalid_entity_filter",
                f"{item!r} is not an entity id or a glob such as sensor.*",
                {"value": str(item)},
            )
    return result


@dataclass(frozen=True, kw_only=True)
class BackfillCheckpoint:
    """How far the backfill of one source measurement has got.

    The range ``[start_ns, end_ns)`` is copied oldest first in windows; every window ending
    at or before ``completed_until_ns`` is in the target, so a resume starts right there.
    """

    start_ns: int
    end_ns: int
    completed_until_ns: int

    @classmethod
    def starting(cls, start_ns: int, end_ns: int) -> Self:
        """The checkpoint of a measurement whose backfill has not begun."""
        return cls(start_ns=start_ns, end_ns=end_ns, completed_until_ns=start_ns)

    @property
    def done(self) -> bool:
        """Whether the whole range has been copied."""
        return self.completed_until_ns >= self.end_ns

    @property
    def fraction(self) -> float:
        """Share of the time range copied, 0..1."""
        span = self.end_ns - self.start_ns
        if span <= 0:
            return 1.0
        return min(max((self.completed_until_ns - self.start_ns) / span, 0.0), 1.0)

    def advanced(self, window_end_ns: int) -> Self:
        """The checkpoint after the window ending at ``window_end_ns`` was copied."""
        if window_end_ns < self.completed_until_ns:
            raise ValueError(
                f"window end {window_end_ns} is before the checkpoint {self.completed_until_ns}"
            )
        # A last window may reach past the range end; the range end is what was covered.
        until = max(min(window_end_ns, self.end_ns), self.completed_until_ns)
        return replace(self, completed_until_ns=until)

    def as_dict(self) -> dict[str, int]:
        """JSON-safe form."""
        return {
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "completed_until_ns": self.completed_until_ns,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read :meth:`as_dict` output back."""
        start_ns = int(data.get("start_ns", 0))
        return cls(
            start_ns=start_ns,
            end_ns=int(data.get("end_ns", start_ns)),
            completed_until_ns=int(data.get("completed_until_ns", start_ns)),
        )


@dataclass(frozen=True, kw_only=True)
class EntityMismatch:
    """How one entity's points differ between the layouts after the backfill."""

    legacy_points: int
    optimized_points: int
    # Days whose point counts differ between the layouts.
    mismatched_days: int = 0
    # Sampled records whose values differ.
    mismatched_records: int = 0
    # States recorded live in both layouts whose transformed legacy point differs from the
    # optimized point: the transform (or its options) does not fit this entity's data.
    mismatched_live_pairs: int = 0
    # Rollup windows (with the rollups option) that differ from a recomputation from raw.
    mismatched_rollups: int = 0

    def as_dict(self) -> dict[str, int]:
        """JSON-safe form."""
        found = {
            "legacy_points": self.legacy_points,
            "optimized_points": self.optimized_points,
            "mismatched_days": self.mismatched_days,
            "mismatched_records": self.mismatched_records,
            "mismatched_live_pairs": self.mismatched_live_pairs,
        }
        if self.mismatched_rollups:
            found["mismatched_rollups"] = self.mismatched_rollups
        return found

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read :meth:`as_dict` output back."""
        return cls(
            legacy_points=int(data.get("legacy_points", 0)),
            optimized_points=int(data.get("optimized_points", 0)),
            mismatched_days=int(data.get("mismatched_days", 0)),
            mismatched_records=int(data.get("mismatched_records", 0)),
            mismatched_live_pairs=int(data.get("mismatched_live_pairs", 0)),
            mismatched_rollups=int(data.get("mismatched_rollups", 0)),
        )


@dataclass(frozen=True, kw_only=True)
class MismatchExample:
    """One record the validation found different, to show the user what differs.

    ``differences`` maps "measurement", "tag <key>" or "field <key>" to (what the transform of
    the legacy point gives, what the optimized layout holds); ``None`` where one has nothing.
    """

    entity_id: str
    time_ns: int
    # "live_pair": a state recorded live in both layouts; "backfill": a sampled copied record.
    source: str
    differences: Mapping[str, tuple[Any, Any]]

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "entity_id": self.entity_id,
            "time": _ns_to_iso(self.time_ns),
            "time_ns": self.time_ns,
            "source": self.source,
            "differences": {key: list(pair) for key, pair in self.differences.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read :meth:`as_dict` output back."""
        return cls(
            entity_id=str(data.get("entity_id", "")),
            time_ns=int(data.get("time_ns", 0)),
            source=str(data.get("source", "")),
            differences={
                str(key): (pair[0], pair[1])
                for key, pair in (data.get("differences") or {}).items()
                if isinstance(pair, list | tuple) and len(pair) == 2
            },
        )


def _ns_to_iso(time_ns: int) -> str:
    seconds, nanoseconds = divmod(time_ns, 10**9)
    moment = datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=nanoseconds // 1000)
    return moment.isoformat()


@dataclass(frozen=True, kw_only=True)
class QueryTiming:
    """One representative dashboard query, timed against both layouts."""

    name: str
    legacy_ms: float
    optimized_ms: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"name": self.name, "legacy_ms": self.legacy_ms, "optimized_ms": self.optimized_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read :meth:`as_dict` output back."""
        return cls(
            name=str(data.get("name", "")),
            legacy_ms=float(data.get("legacy_ms", 0.0)),
            optimized_ms=float(data.get("optimized_ms", 0.0)),
        )


@dataclass(frozen=True, kw_only=True)
class ValidationResult:
    """What the validation phase found."""

    # 1.0 when every count and every sampled record matches.
    integrity_score: float
    entities_checked: int = 0
    records_sampled: int = 0
    # Only the entities that differ, by full entity id.
    mismatches: Mapping[str, EntityMismatch] = field(default_factory=dict)
    query_timings: tuple[QueryTiming, ...] = ()
    # States recorded in both layouts since the cutover whose points were compared.
    live_pairs_compared: int = 0
    # Rollup windows compared with a recomputation from raw (with the rollups option).
    rollups_compared: int = 0
    # A few of the differences found, for the user to see what differs.
    examples: tuple[MismatchExample, ...] = ()

    @property
    def query_time_improvement_percent(self) -> float | None:
        """Total query time saved by the optimized layout, in percent (negative if slower)."""
        legacy = sum(timing.legacy_ms for timing in self.query_timings)
        if legacy <= 0:
            return None
        optimized = sum(timing.optimized_ms for timing in self.query_timings)
        return (legacy - optimized) / legacy * 100

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "integrity_score": self.integrity_score,
            "entities_checked": self.entities_checked,
            "records_sampled": self.records_sampled,
            "mismatches": {entity: m.as_dict() for entity, m in self.mismatches.items()},
            "query_timings": [timing.as_dict() for timing in self.query_timings],
            "live_pairs_compared": self.live_pairs_compared,
            **({"rollups_compared": self.rollups_compared} if self.rollups_compared else {}),
            "examples": [example.as_dict() for example in self.examples],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read :meth:`as_dict` output back."""
        return cls(
            integrity_score=float(data.get("integrity_score", 0.0)),
            entities_checked=int(data.get("entities_checked", 0)),
            records_sampled=int(data.get("records_sampled", 0)),
            mismatches={
                entity: EntityMismatch.from_dict(m)
                for entity, m in data.get("mismatches", {}).items()
            },
            query_timings=tuple(QueryTiming.from_dict(t) for t in data.get("query_timings", [])),
            live_pairs_compared=int(data.get("live_pairs_compared", 0)),
            rollups_compared=int(data.get("rollups_compared", 0)),
            examples=tuple(MismatchExample.from_dict(e) for e in data.get("examples", [])),
        )


@dataclass(frozen=True, kw_only=True)
class Transition:
    """One audited phase change."""

    at: datetime
    from_phase: Phase
    to_phase: Phase
    reason: str

    def as_dict(self) -> dict[str, str]:
        """JSON-safe form."""
        return {
            "at": self.at.isoformat(),
            "from": str(self.from_phase),
            "to": str(self.to_phase),
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read :meth:`as_dict` output back."""
        return cls(
            at=datetime.fromisoformat(data["at"]),
            from_phase=Phase(data["from"]),
            to_phase=Phase(data["to"]),
            reason=str(data.get("reason", "")),
        )


@dataclass(kw_only=True)
class MigrationState:
    """Everything about one migration that must survive an HA restart.

    Mutable so the backfill can update counters and checkpoints in place between saves
    (use :meth:`record_window`, which changes both together so one save keeps them
    consistent); phase changes go through :func:`transition` only.
    """

    migration_id: str
    config: MigrationConfig = field(default_factory=MigrationConfig)
    phase: Phase = Phase.IDLE
    # Where a resume returns to; set only while paused.
    phase_before_pause: Phase | None = None
    # The phase a failed migration failed in (what it was recording then).
    phase_before_failure: Phase | None = None
    started_at: datetime | None = None
    # Points before this time are the backfill's job, points from it on the live writer's.
    cutover_ns: int | None = None
    checkpoints: dict[str, BackfillCheckpoint] = field(default_factory=dict)
    records_read: int = 0
    records_migrated: int = 0
    records_failed: int = 0
    records_skipped: int = 0
    # Source points to copy, from discovery; None until known.
    estimated_total_points: int | None = None
    # Counters at the last start or resume: the error-rate decision looks only at what
    # happened since, so resuming after a fixed fault is not paused again by old failures.
    migrated_at_resume: int = 0
    failed_at_resume: int = 0
    validation: ValidationResult | None = None
    rollback_reason: str | None = None
    error: str | None = None
    transitions: list[Transition] = field(default_factory=list)
    # What the migration created, copied, proved and cleaned (None until it is prepared).
    ledger: MigrationLedger | None = None
    # Whether the backfill built the rollups of the migrated range (validation checks them
    # only then: rollups switched on later cover only what was recorded since).
    rollups_filled: bool = False

    @property
    def strategy(self) -> Strategy:
        """The strategy this migration runs."""
        return self.config.strategy

    @property
    def is_running(self) -> bool:
        """Whether migration work is under way (not paused, not finished)."""
        return self.phase in RUNNING_PHASES

    @property
    def is_active(self) -> bool:
        """Whether a migration is running or paused (so a new one may not start)."""
        return self.is_running or self.phase is Phase.PAUSED

    @property
    def recording_phase(self) -> Phase:
        """The phase whose layouts are recorded: paused and failed keep their phase's."""
        if self.phase is Phase.PAUSED and self.phase_before_pause is not None:
            return self.phase_before_pause
        if self.phase is Phase.FAILED and self.phase_before_failure is not None:
            return self.phase_before_failure
        return self.phase

    @property
    def backfill_done(self) -> bool:
        """Whether the backfill has copied its whole range (validation may run)."""
        return self.recording_phase in _AFTER_BACKFILL or self.recording_phase is Phase.COMPLETE

    def planned_spans(self) -> dict[str, Span]:
        """Legacy measurement → the span [first point, cutover) the backfill copies.

        What a rollback removes: windows written but not yet recorded in the checkpoint (a
        run stopped half-way) lie inside it too.
        """
        return {
            measurement: (checkpoint.start_ns, checkpoint.end_ns)
            for measurement, checkpoint in self.checkpoints.items()
            if checkpoint.end_ns > checkpoint.start_ns
        }

    def copied_spans(self) -> dict[str, Span]:
        """Legacy measurement → the span [first point, checkpoint) the backfill copied."""
        return {
            measurement: (checkpoint.start_ns, checkpoint.completed_until_ns)
            for measurement, checkpoint in self.checkpoints.items()
            if checkpoint.completed_until_ns > checkpoint.start_ns
        }

    def record_window(
        self,
        measurement: str,
        window_end_ns: int,
        *,
        read: int,
        migrated: int,
        failed: int,
        skipped: int = 0,
    ) -> None:
        """Count one copied backfill window and move that measurement's checkpoint past it."""
        if min(read, migrated, failed, skipped) < 0:
            raise ValueError("record counts cannot be negative")
        try:
            checkpoint = self.checkpoints[measurement]
        except KeyError:
            raise ValueError(f"no backfill checkpoint for measurement {measurement!r}") from None
        self.checkpoints[measurement] = checkpoint.advanced(window_end_ns)
        self.records_read += read
        self.records_migrated += migrated
        self.records_failed += failed
        self.records_skipped += skipped

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for HA's ``Store``."""
        return {
            "migration_id": self.migration_id,
            "config": self.config.as_dict(),
            "phase": str(self.phase),
            "phase_before_pause": _str_or_none(self.phase_before_pause),
            "phase_before_failure": _str_or_none(self.phase_before_failure),
            "started_at": _iso(self.started_at),
            "cutover_ns": self.cutover_ns,
            "checkpoints": {m: cp.as_dict() for m, cp in self.checkpoints.items()},
            "records_read": self.records_read,
            "records_migrated": self.records_migrated,
            "records_failed": self.records_failed,
            "records_skipped": self.records_skipped,
            "estimated_total_points": self.estimated_total_points,
            "migrated_at_resume": self.migrated_at_resume,
            "failed_at_resume": self.failed_at_resume,
            "validation": None if self.validation is None else self.validation.as_dict(),
            "rollback_reason": self.rollback_reason,
            "error": self.error,
            "transitions": [t.as_dict() for t in self.transitions],
            "ledger": None if self.ledger is None else self.ledger.as_dict(),
            "rollups_filled": self.rollups_filled,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read :meth:`to_dict` output back; keys an older version did not write get defaults.

        Raises ValueError, TypeError, KeyError or AttributeError for a damaged record.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a migration state is a mapping, not {type(data).__name__}")
        phase_before_pause = data.get("phase_before_pause")
        phase_before_failure = data.get("phase_before_failure")
        ledger = data.get("ledger")
        started_at = data.get("started_at")
        cutover_ns = data.get("cutover_ns")
        estimate = data.get("estimated_total_points")
        validation = data.get("validation")
        return cls(
            migration_id=str(data.get("migration_id", "")),
            config=MigrationConfig.from_options(data.get("config", {})),
            phase=Phase(data.get("phase", Phase.IDLE)),
            phase_before_pause=None if phase_before_pause is None else Phase(phase_before_pause),
            phase_before_failure=(
                None if phase_before_failure is None else Phase(phase_before_failure)
            ),
            started_at=None if started_at is None else datetime.fromisoformat(started_at),
            cutover_ns=None if cutover_ns is None else int(cutover_ns),
            checkpoints={
                m: BackfillCheckpoint.from_dict(cp) for m, cp in data.get("checkpoints", {}).items()
            },
            records_read=int(data.get("records_read", 0)),
            records_migrated=int(data.get("records_migrated", 0)),
            records_failed=int(data.get("records_failed", 0)),
            records_skipped=int(data.get("records_skipped", 0)),
            estimated_total_points=None if estimate is None else int(estimate),
            migrated_at_resume=int(data.get("migrated_at_resume", 0)),
            failed_at_resume=int(data.get("failed_at_resume", 0)),
            validation=None if validation is None else ValidationResult.from_dict(validation),
            rollback_reason=data.get("rollback_reason"),
            error=data.get("error"),
            transitions=[Transition.from_dict(t) for t in data.get("transitions", [])],
            ledger=None if ledger is None else MigrationLedger.from_dict(ledger),
            rollups_filled=bool(data.get("rollups_filled", False)),
        )


def start_migration(
    config: MigrationConfig, *, migration_id: str, now: datetime, reason: str = "started"
) -> MigrationState:
    """A new migration, already moved from idle into its first phase."""
    return transition(
        MigrationState(migration_id=migration_id, config=config),
        config.strategy.phases[0],
        reason=reason,
        now=now,
    )


def can_start_migration(previous: MigrationState | None) -> bool:
    """Whether a new migration may start: none is running or paused.

    A complete, rolled-back or failed migration stays as it is (its audit trail intact);
    the new one gets a new state.
    """
    return previous is None or not previous.is_active


def allowed_transitions(state: MigrationState) -> frozenset[Phase]:
    """The phases ``state`` may move to next."""
    phase = state.phase
    if phase is Phase.IDLE:
        return frozenset({state.strategy.phases[0]})
    if phase in RUNNING_PHASES:
        allowed = {Phase.PAUSED, Phase.FAILED, Phase.ROLLED_BACK}
        plan = state.strategy.phases
        if phase in plan:
            allowed.add(plan[plan.index(phase) + 1])
        return frozenset(allowed)
    if phase is Phase.PAUSED:
        allowed = {Phase.FAILED, Phase.ROLLED_BACK}
        if state.phase_before_pause is not None:
            allowed.add(state.phase_before_pause)
        return frozenset(allowed)
    if phase is Phase.FAILED:
        return frozenset({Phase.ROLLED_BACK})
    # complete and rolled_back are final: a new migration gets a new state.
    return frozenset()


def transition(state: MigrationState, to: Phase, *, reason: str, now: datetime) -> MigrationState:
    """The state after moving to ``to``, with the move recorded; ``state`` is not changed.

    Raises :class:`InvalidTransition` for a move the rules do not allow.
    """
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    if not reason:
        raise ValueError("every transition needs a reason")
    allowed = allowed_transitions(state)
    if to not in allowed:
        raise InvalidTransition(state.phase, to, allowed)
    new = replace(
        state,
        phase=to,
        checkpoints=dict(state.checkpoints),
        transitions=[
            *state.transitions,
            Transition(at=now, from_phase=state.phase, to_phase=to, reason=reason),
        ],
    )
    if to is Phase.PAUSED:
        new.phase_before_pause = state.phase
    elif state.phase is Phase.PAUSED:
        new.phase_before_pause = None
    if to is Phase.FAILED:
        new.phase_before_failure = state.recording_phase
    if state.phase in (Phase.IDLE, Phase.PAUSED) and to in RUNNING_PHASES:
        new.migrated_at_resume = state.records_migrated
        new.failed_at_resume = state.records_failed
    if new.started_at is None:
        new.started_at = now
    # Kept from the first time: a resume into the cutover phase must not move it.
    if to is state.strategy.cutover_phase and new.cutover_ns is None:
        new.cutover_ns = to_time_ns(now)
    if to is Phase.ROLLED_BACK:
        new.rollback_reason = reason
    elif to is Phase.FAILED:
        new.error = reason
    return new


# Error rate ---------------------------------------------------------------------------------

type ErrorRateDecision = Literal["continue", "pause", "rollback"]

# The error rate is judged as failed / max(processed, MIN_ERROR_RATE_SAMPLE). Below one
# default batch of points a few failures cannot trip a threshold (1 bad point out of 3 counts
# as 0.1%, not 33%), while a source that fails wholesale still rolls back early: with the
# default 5% threshold, after 51 failures. At 1000 points the rate's standard error near the
# 5% threshold is about 0.7 points, so a decision is no longer noise.
MIN_ERROR_RATE_SAMPLE = 1000


def error_rate(state: MigrationState) -> float:
    """Share of processed points that failed: failed / (migrated + failed); 0 when none."""
    processed = state.records_migrated + state.records_failed
    return state.records_failed / processed if processed else 0.0


def decide_on_error_rate(config: MigrationConfig, state: MigrationState) -> ErrorRateDecision:
    """Continue, pause (above ``max_error_rate``) or roll back (above ``rollback_threshold``).

    Only points processed since the migration started or was last resumed count.
    """
    failed = state.records_failed - state.failed_at_resume
    processed = state.records_migrated - state.migrated_at_resume + failed
    rate = failed / max(processed, MIN_ERROR_RATE_SAMPLE)
    if rate > config.rollback_threshold:
        return "rollback"
    if rate > config.max_error_rate:
        return "pause"
    return "continue"


# Progress, throughput, ETA -------------------------------------------------------------------

_BEFORE_BACKFILL = frozenset({Phase.IDLE, Phase.PREPARATION, Phase.DUAL_WRITE})
_AFTER_BACKFILL = frozenset({Phase.VALIDATION, Phase.SWITCHOVER, Phase.CLEANUP})


def progress_percent(state: MigrationState, records_read: int | None = None) -> float:
    """How much of the history has been copied, 0..100; exactly 100 once the backfill is done.

    Measured in points, like the records counters beside it: points read (``records_read``,
    default the state's) against the points the backfill counted before it started. Never
    100 before the backfill has really finished; by the checkpoints' time covered when no
    count is known.
    """
    phase = state.phase_before_pause if state.phase is Phase.PAUSED else state.phase
    if phase is Phase.COMPLETE or phase in _AFTER_BACKFILL:
        return 100.0
    if phase is None or phase in _BEFORE_BACKFILL:
        return 0.0
    read = state.records_read if records_read is None else records_read
    if state.estimated_total_points:
        return min(_clamp_percent(read / state.estimated_total_points * 100), _ALMOST_DONE)
    if state.checkpoints:
        total = sum(max(cp.end_ns - cp.start_ns, 0) for cp in state.checkpoints.values())
        if total == 0:
            return 100.0 if all(cp.done for cp in state.checkpoints.values()) else 0.0
        covered = sum(
            cp.fraction * max(cp.end_ns - cp.start_ns, 0) for cp in state.checkpoints.values()
        )
        return min(_clamp_percent(covered / total * 100), _ALMOST_DONE)
    return 0.0


# What progress shows at most while the backfill still runs.
_ALMOST_DONE = 99.9


def _clamp_percent(value: float) -> float:
    return min(max(value, 0.0), 100.0)


class ThroughputWindow:
    """Points per second over (at least) the last ``window_seconds``.

    Fed with samples of monotonic time (``time.monotonic()``) and a cumulative point count;
    runtime only, never persisted. The oldest sample just outside the window is kept as the
    baseline, so sparse samples still measure a full window.
    """

    def __init__(self, window_seconds: float = 60.0) -> None:
        """Measure over ``window_seconds``."""
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.window_seconds = window_seconds
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, at: float, count: int) -> None:
        """Record that ``count`` points had been processed in total at monotonic time ``at``.

        A count lower than the last one (the counter was reset) starts a new window.
        """
        if self._samples:
            last_at, last_count = self._samples[-1]
            if at < last_at:
                raise ValueError("samples must be added in monotonic time order")
            if count < last_count:
                self._samples.clear()
        self._samples.append((at, count))
        self._prune(at)

    def points_per_second(self, now: float) -> float | None:
        """The rate up to ``now``; it decays towards 0 while no points arrive.

        None until two samples have been seen in the window.
        """
        self._prune(now)
        if not self._samples:
            return None
        base_at, base_count = self._samples[0]
        last_at, last_count = self._samples[-1]
        if len(self._samples) == 1 and base_at > now - self.window_seconds:
            return None  # a single recent sample: nothing measured yet
        # A single sample older than the window still measures a stall since it was taken.
        elapsed = max(now, last_at) - base_at
        if elapsed <= 0:
            return None
        return (last_count - base_count) / elapsed

    def _prune(self, now: float) -> None:
        cutoff = now - self.window_seconds
        while len(self._samples) >= 2 and self._samples[1][0] <= cutoff:
            self._samples.popleft()


def eta(
    state: MigrationState,
    points_per_second: float | None,
    now: datetime,
    records_read: int | None = None,
) -> datetime | None:
    """When the backfill should finish at the given rate; None when that cannot be known.

    Known only while the backfill runs, with a count of its points and a positive rate; it
    is always after ``now`` (a stalled backfill has no ETA, not one in the past).
    """
    if state.phase is not Phase.BACKFILL or not state.estimated_total_points:
        return None
    if points_per_second is None or points_per_second <= 0 or math.isnan(points_per_second):
        return None
    read = state.records_read if records_read is None else records_read
    remaining = max(state.estimated_total_points - read, 0)
    return now + timedelta(seconds=max(remaining / points_per_second, 1.0))


def backfill_rate_limit(config: MigrationConfig, estimated_points: int) -> float | None:
    """Points per second that spread the backfill over the window (gradual); None: no limit."""
    if not config.strategy.rate_limited:
        return None
    return estimated_points / (config.migration_window_hours * 3600)


# Dry-run plan --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SourceSeries:
    """Points one entity has in one legacy measurement (from discovery)."""

    measurement: str
    # Full entity id (domain tag + entity_id tag of the legacy layout).
    entity_id: str
    point_count: int


@dataclass(frozen=True, kw_only=True)
class SourceSummary:
    """What preparation discovered about the legacy data."""

    series: tuple[SourceSeries, ...]
    first_time: datetime | None = None
    last_time: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class MigrationPlan:
    """What a migration with a given config would do (the dry-run answer)."""

    strategy: Strategy
    phases: tuple[Phase, ...]
    measurements: tuple[str, ...]
    entity_ids: tuple[str, ...]
    start: datetime | None
    end: datetime | None
    estimated_points: int
    estimated_batches: int
    # Points per second for a gradual backfill; None when unlimited.
    backfill_rate_limit: float | None
    # None without a throughput figure.
    estimated_backfill_duration: timedelta | None
    separate_target: bool
    deletes_legacy_data: bool
    cleanup_delay: timedelta

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form, for service response data."""
        duration = self.estimated_backfill_duration
        return {
            "strategy": str(self.strategy),
            "phases": [str(phase) for phase in self.phases],
            "measurements": list(self.measurements),
            "entity_ids": list(self.entity_ids),
            "start": _iso(self.start),
            "end": _iso(self.end),
            "estimated_points": self.estimated_points,
            "estimated_batches": self.estimated_batches,
            "backfill_rate_limit": (
                None if self.backfill_rate_limit is None else round(self.backfill_rate_limit, 1)
            ),
            "estimated_backfill_seconds": None if duration is None else duration.total_seconds(),
            "separate_target": self.separate_target,
            "deletes_legacy_data": self.deletes_legacy_data,
            "cleanup_delay_hours": self.cleanup_delay.total_seconds() / 3600,
        }


def plan(
    config: MigrationConfig, source: SourceSummary, *, points_per_second: float | None = None
) -> MigrationPlan:
    """What ``config`` would migrate from ``source`` and roughly how long the backfill takes.

    The point estimate assumes the points are spread evenly over the source's time range when
    the config narrows it; ``points_per_second`` is a measured (or benchmarked) write rate.
    """
    selected = [s for s in source.series if config.selects(s.entity_id)]
    start = _latest(config.start, source.first_time)
    end = _earliest(config.end, source.last_time)
    if start is not None and end is not None and start > end:
        selected = []  # the configured range misses the source's history
    points = round(sum(s.point_count for s in selected) * _time_share(config, source))
    rate_limit = backfill_rate_limit(config, points)
    duration: timedelta | None = None
    if points_per_second is not None and points_per_second > 0:
        duration = timedelta(seconds=points / points_per_second)
        if rate_limit is not None and points:
            duration = max(duration, timedelta(hours=config.migration_window_hours))
    return MigrationPlan(
        strategy=config.strategy,
        phases=config.strategy.phases,
        measurements=tuple(sorted({s.measurement for s in selected})),
        entity_ids=tuple(sorted({s.entity_id for s in selected})),
        start=start,
        end=end,
        estimated_points=points,
        estimated_batches=math.ceil(points / config.batch_size),
        backfill_rate_limit=rate_limit,
        estimated_backfill_duration=duration,
        separate_target=config.strategy.separate_target,
        deletes_legacy_data=config.delete_legacy_data,
        cleanup_delay=timedelta(hours=config.cleanup_delay_hours),
    )


def _time_share(config: MigrationConfig, source: SourceSummary) -> float:
    """Share of the source's time range that the config's range covers."""
    first, last = source.first_time, source.last_time
    if first is None or last is None or (config.start is None and config.end is None):
        return 1.0
    start = max(config.start or first, first)
    end = min(config.end or last, last)
    if last == first:
        return 1.0 if start <= end else 0.0
    return max((end - start) / (last - first), 0.0)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _str_or_none(phase: Phase | None) -> str | None:
    return None if phase is None else str(phase)
