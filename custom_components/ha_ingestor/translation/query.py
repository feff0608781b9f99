"""Translate InfluxQL written for the legacy layout into the optimized layout, exactly or not.

A legacy query names a unit (``FROM "°C"``), an entity id measurement or a device class, and
object ids (``"entity_id" = 'kitchen'``); the optimized layout has one measurement per domain
with the full entity id and the unit, device class and friendly name as tags. The translator
rewrites only the parts of the text that change (see :mod:`.influxql`), so Grafana's macros and
everything else stay byte-identical, and it translates a statement only when the result on
the optimized copy of the history is the same as on the legacy history:

- the same points, so the same values in every column;
- the series tagged alike, except that an ``entity_id`` tag holds the full id, there is no
  ``domain`` tag (the measurement is the domain), and when several legacy measurements are
  queried at once their series are told apart by the tag that named them (e.g.
  ``unit_of_measurement``) instead of by the measurement name. Each such change is listed in
  :attr:`Translation.changes`.

Anything else is refused: the query is returned unchanged, ``exact`` is false and the warnings
say why. Where a legacy measurement could hold entities of several domains (a unit such as
``%``), the domain comes from a ``"domain" = '…'`` condition of the query or from a
:class:`LegacyCatalog` of what the legacy database holds; the translation is then exact for
that data (an entity of another domain added later would not be included).

The lossy corners of the transform itself (see :mod:`..layouts.optimized`) are assumed away: a
unit equal to the fallback measurement, a unit or name that reads as a number or is the text
"None", a unit that looks like an entity id. A regex condition on a friendly name or unit tag is
passed through, so it sees the canonical text of a number ("1984.0" became "1984").
"""

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..engine.influxql import QuerySyntaxError, Select, ShowTagValues, Statement, parse
from ..layouts.legacy import LegacyOptions
from ..layouts.optimized import OptimizedOptions
from .catalog import (
    CATALOG_DOMAINS_QUERY,
    LegacyCatalog,
    MeasurementContents,
    catalog_entities_query,
)
from .layout_pair import (
    DEVICE_CLASS,
    DOMAIN,
    ENTITY_ID,
    UNIT,
    LayoutPair,
    looks_like_entity_id,
)
from .measurements import LegacyMeasurements, MeasurementPlan
from .patterns import literal_set, prefix_object_id_regex, re2_escape
from .rewrite import Refusal, StatementRewrite, TextEdits
from .select import SelectTranslator
from .show import translate_show_tag_values


@dataclass(frozen=True, slots=True)
class Translation:
    """The outcome for one query text.

    ``query`` is the translated text when ``exact``, else the original unchanged; ``changes``
    say what was rewritten and how results are labelled differently; ``warnings`` say why a
    statement was refused. ``full_entity_ids`` is set when the query lists entity_id tag
    values (``SHOW TAG VALUES … KEY = "entity_id"``), which are now full entity ids.
    """

    original: str
    query: str
    exact: bool
    changes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    full_entity_ids: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Service response data."""
        return {
            "query": self.query,
            "exact": self.exact,
            "changed": self.query != self.original,
            "changes": list(self.changes),
            "warnings": list(self.warnings),
        }


class QueryTranslator:
    """Translates legacy-layout InfluxQL for one configuration (legacy and optimized options).

    ``catalog`` tells which domains and entities each legacy measurement holds (needed when
    a measurement such as ``°C`` is queried without a ``domain`` condition);
    ``entity_variables`` are Grafana template variables known to list full entity ids (a
    translated ``SHOW TAG VALUES … WITH KEY = "entity_id"`` variable).
    """

    def __init__(
        self,
        legacy: LegacyOptions,
        optimized: OptimizedOptions,
        catalog: LegacyCatalog | None = None,
        entity_variables: Iterable[str] = (),
    ) -> None:
        """Keep the options; everything derived from them is computed once."""
        self.legacy = legacy
        self.optimized = optimized
        self.catalog = catalog
        self.entity_variables = frozenset(entity_variables)

    def with_entity_variables(self, names: Iterable[str]) -> "QueryTranslator":
        """The same translator, also knowing these variables list full entity ids."""
        return QueryTranslator(
            self.legacy, self.optimized, self.catalog, self.entity_variables | set(names)
        )

    @cached_property
    def measurements(self) -> LegacyMeasurements:
        """The legacy measurements of these options and catalog."""
        return LegacyMeasurements(LayoutPair(self.legacy, self.optimized), self.catalog)

    def plan(self, name: str) -> MeasurementPlan:
        """What the legacy measurement ``name`` holds, as optimized tags; or a refusal."""
        return self.measurements.plan(name)

    def translate(self, text: str) -> Translation:
        """Translate a query text (one or more statements); raises QuerySyntaxError."""
        query = parse(text)
        edits = TextEdits()
        changes: list[str] = []
        warnings: list[str] = []
        full_ids = False
        for statement in query.statements:
            work = StatementRewrite(text)
            try:
                full_ids |= self._statement(statement, work)
            except Refusal as refusal:
                warnings.append(f"{_short(text[statement.start : statement.end])}: {refusal}")
                continue
            edits.items.extend(work.edits.items)
            changes.extend(work.changes)
        if warnings:
            return Translation(text, text, exact=False, warnings=tuple(warnings))
        return Translation(
            text,
            edits.apply(text),
            exact=True,
            changes=tuple(dict.fromkeys(changes)),
            full_entity_ids=full_ids,
        )

    def _statement(self, statement: Statement, work: StatementRewrite) -> bool:
        """Translate one statement into ``work``; whether it lists full entity ids."""
        if isinstance(statement, Select):
            SelectTranslator(self.measurements, self.entity_variables).translate(statement, work)
            return False
        if isinstance(statement, ShowTagValues):
            return translate_show_tag_values(
                statement, work, self.measurements, self.entity_variables
            )
        if statement.words.startswith("SHOW MEASUREMENTS"):
            raise Refusal(
                "SHOW MEASUREMENTS lists units in the legacy layout and domains in the "
                'optimized one; list units with SHOW TAG VALUES FROM "sensor" WITH KEY = '
                '"unit_of_measurement"'
            )
        raise Refusal(f"{statement.words or 'this statement'} is not translated")


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def translate_query(
    text: str,
    legacy: LegacyOptions,
    optimized: OptimizedOptions,
    catalog: LegacyCatalog | None = None,
    entity_variables: Iterable[str] = (),
) -> Translation:
    """Translate one query text; raises :class:`QuerySyntaxError` when it does not parse."""
    return QueryTranslator(legacy, optimized, catalog, entity_variables).translate(text)


__all__ = [
    "CATALOG_DOMAINS_QUERY",
    "DEVICE_CLASS",
    "DOMAIN",
    "ENTITY_ID",
    "UNIT",
    "LegacyCatalog",
    "MeasurementContents",
    "MeasurementPlan",
    "QuerySyntaxError",
    "QueryTranslator",
    "Refusal",
    "Translation",
    "catalog_entities_query",
    "literal_set",
    "looks_like_entity_id",
    "prefix_object_id_regex",
    "re2_escape",
    "translate_query",
]
