"""How a validation's findings add up: the integrity score, the differences per entity, a
few examples of them. No Home Assistant in here.
"""

from collections.abc import Mapping
from typing import Final

from ...line_protocol import FieldValue, Point, encode
from ..model import EntityMismatch, MismatchExample

# Differences shown as examples in a validation result.
_EXAMPLES: Final = 10
# The kinds of comparison, as EntityMismatch counts them.
_KINDS: Final = ("days", "records", "live_pairs", "rollups")


class IntegrityTally:
    """Matching / compared over every comparison, and the differences per entity and kind."""

    def __init__(self) -> None:
        self.compared = 0
        self.matching = 0
        self._wrong: dict[str, dict[str, int]] = {}

    def add(self, kind: str, compared: int, wrong: Mapping[str, int]) -> None:
        """``compared`` comparisons of ``kind``, ``wrong`` of them differing (per entity)."""
        self.compared += compared
        self.matching += compared - sum(wrong.values())
        for entity, count in wrong.items():
            self._wrong.setdefault(entity, dict.fromkeys(_KINDS, 0))[kind] += count

    @property
    def score(self) -> float:
        """1.0 when everything compared is identical (or nothing was compared)."""
        return self.matching / self.compared if self.compared else 1.0

    def mismatches(
        self, legacy_points: Mapping[str, int], optimized_points: Mapping[str, int]
    ) -> dict[str, EntityMismatch]:
        """Every entity with a difference, by entity id."""
        return {
            entity: EntityMismatch(
                legacy_points=legacy_points.get(entity, 0),
                optimized_points=optimized_points.get(entity, 0),
                mismatched_days=found["days"],
                mismatched_records=found["records"],
                mismatched_live_pairs=found["live_pairs"],
                mismatched_rollups=found["rollups"],
            )
            for entity, found in sorted(self._wrong.items())
        }


class MismatchExamples:
    """The first few differences found, each with what differs."""

    def __init__(self) -> None:
        self._found: list[MismatchExample] = []

    def add(
        self, key: tuple[str, int], source: str, want: list[Point], have: Point | list[Point] | None
    ) -> None:
        """Keep the difference at (entity, time) between ``want`` and what is stored."""
        if len(self._found) >= _EXAMPLES:
            return
        stored = [] if have is None else [have] if isinstance(have, Point) else have
        # With several points for one state (two writers of the legacy layout, say), show a
        # transformed one that matches nothing stored, against the stored one closest to it.
        unmatched = [p for p in want if canonical(p) not in map(canonical, stored)]
        extra = [p for p in stored if canonical(p) not in map(canonical, want)]
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
        self._found.append(
            MismatchExample(
                entity_id=key[0], time_ns=key[1], source=source, differences=differences
            )
        )

    def in_order(self) -> tuple[MismatchExample, ...]:
        """The examples by time and entity."""
        return tuple(sorted(self._found, key=lambda e: (e.time_ns, e.entity_id)))


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


def canonical(point: Point) -> tuple[object, ...]:
    """A point as a comparable value (field types count: 1 is not 1.0)."""
    return (
        point.measurement,
        sorted(point.tags.items()),
        sorted((key, repr(value)) for key, value in point.fields.items()),
    )


def _describe(point: Point | None) -> str | None:
    return None if point is None else encode(point)
