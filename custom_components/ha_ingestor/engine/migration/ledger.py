"""What a migration wrote and proved: the ledger that bounds every destructive step.

Pure Python (no ``hass``, no I/O). The ledger is saved with the migration state; rollback and
cleanup turn it into a list of time-bounded deletions (:func:`rollback_plan`,
:func:`cleanup_plan`) and never act on anything it does not name:

- a rollback removes, per entity, only the time spans the backfill copied and the spans the
  live writer filled for the migration, minus every span that held optimized points before
  the migration started; it drops a database only when this migration created it;
- a cleanup deletes legacy points only of entities that a validation proved equal in both
  layouts, with no refused points, and only inside the span the backfill copied.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Self

# [start_ns, end_ns): half-open, like every time range the integration queries.
type Span = tuple[int, int]

DAY_NS = 24 * 3_600 * 10**9
# The largest time InfluxDB stores, as the open end of a span.
END_OF_TIME = 2**63 - 2


class Layout(StrEnum):
    """The two ways a state change is written."""

    LEGACY = "legacy"
    OPTIMIZED = "optimized"


@dataclass(frozen=True, order=True, slots=True)
class Recording:
    """One live writer's target: a layout written into a database."""

    layout: Layout
    database: str

    def as_dict(self) -> dict[str, str]:
        """JSON-safe form."""
        return {"layout": str(self.layout), "database": self.database}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read :meth:`as_dict` output back."""
        return cls(Layout(data["layout"]), _text(data["database"]))


def merge_spans(spans: Iterable[Span]) -> tuple[Span, ...]:
    """The union of spans, as sorted spans that neither overlap nor touch."""
    merged: list[Span] = []
    for start, end in sorted(span for span in spans if span[0] < span[1]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def subtract_spans(spans: Iterable[Span], holes: Iterable[Span]) -> tuple[Span, ...]:
    """What of ``spans`` lies outside every one of ``holes``."""
    result: list[Span] = []
    cut = merge_spans(holes)
    for start, end in merge_spans(spans):
        position = start
        for hole_start, hole_end in cut:
            if hole_end <= position or hole_start >= end:
                continue
            if hole_start > position:
                result.append((position, hole_start))
            position = max(position, hole_end)
            if position >= end:
                break
        if position < end:
            result.append((position, end))
    return tuple(result)


def day_start(time_ns: int) -> int:
    """The start of the UTC day holding ``time_ns``."""
    return time_ns - time_ns % DAY_NS


@dataclass(frozen=True, slots=True, kw_only=True)
class Deletion:
    """One time-bounded delete: the points of the series carrying ``tags`` in [start, end)."""

    database: str
    measurement: str
    tags: Mapping[str, str]
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RollbackPlan:
    """What a rollback removes: a database this migration created, or deletions."""

    drop_database: str | None = None
    deletions: tuple[Deletion, ...] = ()


@dataclass(kw_only=True)
class MigrationLedger:
    """What one migration created, copied, proved and cleaned; saved with its state.

    Mutable so the backfill, the validation and the cleanup can record as they go; each
    record is saved with the state before the step it allows is taken.
    """

    source_database: str
    target_database: str
    # Only a database this migration created may be dropped by its rollback.
    created_target: bool = False
    # What was recorded live when the migration started: a rollback records that again.
    recorded_before: tuple[Recording, ...] = ()
    # When the optimized points already in the target were inventoried (None: not yet).
    inventoried_ns: int | None = None
    # Entity → UTC day spans of the target that held its optimized points before the
    # migration; no rollback deletes inside them.
    preexisting: dict[str, tuple[Span, ...]] = field(default_factory=dict)
    # Entity → the legacy measurements the backfill copies it from.
    copied: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Entities with points the target refused (dead letters): never proven equal.
    dead_lettered: set[str] = field(default_factory=set)
    # Entity → the span over which the last validation proved both layouts equal.
    verified: dict[str, Span] = field(default_factory=dict)
    # Entity → the legacy measurements whose copied span the cleanup deleted.
    cleaned: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # A rollback is recorded but what the migration wrote is not removed yet (retried).
    removal_pending: bool = False
    # Completion wrote the recording it leaves behind into the entry's options.
    options_applied: bool = False

    @property
    def separate_target(self) -> bool:
        """Whether the optimized points go to a database of their own."""
        return self.target_database != self.source_database

    @property
    def target_recorded_before(self) -> bool:
        """Whether the optimized layout was already recorded live into the target."""
        return Recording(Layout.OPTIMIZED, self.target_database) in self.recorded_before

    @property
    def cleaned_entities(self) -> int:
        """How many entities lost legacy points to the cleanup."""
        return sum(1 for measurements in self.cleaned.values() if measurements)

    def protected_spans(self, entity_id: str) -> tuple[Span, ...]:
        """Spans of the target a rollback must not delete in for ``entity_id``.

        The days that held its optimized points before the migration, and, when the optimized
        layout was being recorded into the target anyway, everything from the inventory on.
        """
        spans = list(self.preexisting.get(entity_id, ()))
        if self.inventoried_ns is None:
            # Nothing is known about what the target held: all of it is protected.
            return ((-END_OF_TIME, END_OF_TIME),)
        if self.target_recorded_before:
            spans.append((day_start(self.inventoried_ns), END_OF_TIME))
        return merge_spans(spans)

    def record_copied(self, measurement: str, entity_ids: Iterable[str]) -> None:
        """Note that the backfill copies these entities from a legacy measurement."""
        for entity_id in entity_ids:
            known = self.copied.get(entity_id, ())
            if measurement not in known:
                self.copied[entity_id] = (*known, measurement)

    def record_cleaned(self, entity_id: str, measurement: str) -> None:
        """Note that the copied span of one legacy series was deleted."""
        known = self.cleaned.get(entity_id, ())
        if measurement not in known:
            self.cleaned[entity_id] = (*known, measurement)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form for HA's ``Store``."""
        return {
            "source_database": self.source_database,
            "target_database": self.target_database,
            "created_target": self.created_target,
            "recorded_before": [recording.as_dict() for recording in self.recorded_before],
            "inventoried_ns": self.inventoried_ns,
            "preexisting": {e: [list(s) for s in spans] for e, spans in self.preexisting.items()},
            "copied": {e: list(ms) for e, ms in self.copied.items()},
            "dead_lettered": sorted(self.dead_lettered),
            "verified": {e: list(span) for e, span in self.verified.items()},
            "cleaned": {e: list(ms) for e, ms in self.cleaned.items()},
            "removal_pending": self.removal_pending,
            "options_applied": self.options_applied,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read :meth:`as_dict` output back; raises ValueError/TypeError when it is damaged."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a migration ledger is a mapping, not {type(data).__name__}")
        inventoried = data.get("inventoried_ns")
        return cls(
            source_database=_text(data["source_database"]),
            target_database=_text(data["target_database"]),
            created_target=_flag(data.get("created_target", False)),
            recorded_before=tuple(
                Recording.from_dict(item) for item in _items(data.get("recorded_before", []))
            ),
            inventoried_ns=None if inventoried is None else int(inventoried),
            preexisting={
                _text(entity): tuple(_span(span) for span in _items(spans))
                for entity, spans in _mapping(data.get("preexisting", {})).items()
            },
            copied={
                _text(entity): tuple(_text(m) for m in _items(measurements))
                for entity, measurements in _mapping(data.get("copied", {})).items()
            },
            dead_lettered={_text(entity) for entity in _items(data.get("dead_lettered", []))},
            verified={
                _text(entity): _span(span)
                for entity, span in _mapping(data.get("verified", {})).items()
            },
            cleaned={
                _text(entity): tuple(_text(m) for m in _items(measurements))
                for entity, measurements in _mapping(data.get("cleaned", {})).items()
            },
            removal_pending=_flag(data.get("removal_pending", False)),
            options_applied=_flag(data.get("options_applied", False)),
        )


def copied_spans_of(
    ledger: MigrationLedger, entity_id: str, copied: Mapping[str, Span]
) -> tuple[Span, ...]:
    """The spans the backfill copied for one entity, over all its legacy measurements."""
    return merge_spans(
        copied[measurement]
        for measurement in ledger.copied.get(entity_id, ())
        if measurement in copied
    )


def rollback_plan(
    ledger: MigrationLedger,
    copied: Mapping[str, Span],
    *,
    live_span: Span | None,
    live_entities: Iterable[str] = (),
) -> RollbackPlan:
    """What a rollback removes from the target, and nothing more.

    ``copied`` gives each legacy measurement's span the backfill copies [first point, cutover);
    ``live_span`` is the time the live writer recorded the target for the migration (from
    the cutover to now), and ``live_entities`` the entities it recorded then. A target this
    migration created is dropped whole; otherwise each entity's copied and live spans are
    deleted, minus the spans protected for it (:meth:`MigrationLedger.protected_spans`).
    """
    if ledger.created_target and ledger.separate_target:
        return RollbackPlan(drop_database=ledger.target_database)
    live: set[str] = set()
    if live_span is not None and not ledger.target_recorded_before:
        live = set(live_entities)
    deletions: list[Deletion] = []
    for entity_id in sorted(set(ledger.copied) | live):
        domain, dot, _ = entity_id.partition(".")
        if not dot:
            continue
        spans = list(copied_spans_of(ledger, entity_id, copied))
        if entity_id in live and live_span is not None:
            spans.append(live_span)
        for start, end in subtract_spans(spans, ledger.protected_spans(entity_id)):
            deletions.append(
                Deletion(
                    database=ledger.target_database,
                    measurement=domain,
                    tags={"entity_id": entity_id},
                    start_ns=start,
                    end_ns=end,
                )
            )
    return RollbackPlan(deletions=tuple(deletions))


def cleanup_plan(ledger: MigrationLedger, copied: Mapping[str, Span]) -> tuple[Deletion, ...]:
    """The legacy deletions a cleanup may make: proven entities, inside their copied spans.

    An entity qualifies when the last validation proved it equal in both layouts and none of
    its points was refused; each of its legacy measurements is deleted only inside the span
    the backfill copied and the validation covered. Measurements already cleaned are skipped,
    so running the plan again after a failure continues where it stopped.
    """
    deletions: list[Deletion] = []
    for entity_id, (proven_start, proven_end) in sorted(ledger.verified.items()):
        if entity_id in ledger.dead_lettered:
            continue
        domain, dot, object_id = entity_id.partition(".")
        if not dot:
            continue
        done = ledger.cleaned.get(entity_id, ())
        for measurement in ledger.copied.get(entity_id, ()):
            if measurement in done or measurement not in copied:
                continue
            start, end = copied[measurement]
            start, end = max(start, proven_start), min(end, proven_end)
            if start < end:
                deletions.append(
                    Deletion(
                        database=ledger.source_database,
                        measurement=measurement,
                        tags={"domain": domain, "entity_id": object_id},
                        start_ns=start,
                        end_ns=end,
                    )
                )
    return tuple(deletions)


def spans_from_days(days: Iterable[int]) -> tuple[Span, ...]:
    """Day starts (ns) → merged day spans."""
    return merge_spans((day, day + DAY_NS) for day in days)


def in_spans(time_ns: int, spans: Iterable[Span]) -> bool:
    """Whether a time lies in one of the spans."""
    return any(start <= time_ns < end for start, end in spans)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


def _items(value: Any) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return list(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping, got {type(value).__name__}")
    return value


def _span(value: Any) -> Span:
    start, end = _items(value)
    return int(start), int(end)
