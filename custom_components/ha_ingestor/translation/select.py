"""SELECT statements of a legacy query: their fields, FROM, WHERE and GROUP BY translated."""

from collections.abc import Set as AbstractSet

from ..engine.influxql import (
    Call,
    Expression,
    Identifier,
    Measurement,
    RegexLiteral,
    Select,
    Subquery,
    Variable,
    Wildcard,
    quote_identifier,
    variables_in,
)
from .expressions import children
from .fields import check_selected_field
from .layout_pair import DOMAIN, ENTITY_ID, LayoutPair
from .measurements import LegacyMeasurements
from .rewrite import Refusal, StatementRewrite
from .where import WhereClause

# Grafana's interval macros: the same in both layouts.
_INTERVALS = ("$interval", "[[interval]]", "${__interval}")


class SelectTranslator:
    """Translates SELECT statements (with their subqueries) for one set of measurements."""

    def __init__(
        self, measurements: LegacyMeasurements, entity_variables: AbstractSet[str]
    ) -> None:
        """Keep what the FROM is resolved with and the variables that list full entity ids."""
        self.measurements = measurements
        self.layouts: LayoutPair = measurements.layouts
        self.entity_variables = entity_variables

    def translate(self, select: Select, work: StatementRewrite) -> str:
        """Translate one SELECT into ``work``; the domain its series belong to."""
        if select.into is not None:
            raise Refusal("SELECT … INTO writes data; it is not translated")
        if any(isinstance(source, Subquery) for source in select.sources):
            return self._around_subquery(select, work)
        measurements = tuple(source for source in select.sources if isinstance(source, Measurement))
        scope = self.measurements.scope(measurements)
        if scope.split_tag is not None:
            work.changes.append(
                f"the series of {', '.join(scope.names)} are told apart by the tag "
                f"{scope.split_tag} instead of by the measurement name"
            )
        where = self._where(select, inner=False)
        domain = self.measurements.domain(scope, where.domain, where.entity_literals, work)
        self._fields(select, work, inner=False)
        conditions = self.measurements.conditions(domain, scope)
        if scope.split_tag is not None and (select.slimit or select.soffset):
            raise Refusal("SLIMIT/SOFFSET over several measurements is not translated")
        scope.rename(domain, work)
        where.rewrite(work, domain, conditions, select.sources_end)
        rewrite_group_by(
            self.layouts,
            select,
            work,
            scope.split_tag,
            inner=False,
            after=select.where.end if select.where is not None else select.sources_end,
        )
        work.changes.append(
            f"FROM {scope.listed} → FROM {quote_identifier(domain)}"
            + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
        )
        return domain

    def _around_subquery(self, select: Select, work: StatementRewrite) -> str:
        if len(select.sources) != 1:
            raise Refusal("a FROM mixing a subquery with other sources is not translated")
        (subquery,) = select.sources
        assert isinstance(subquery, Subquery)
        domain = self.translate(subquery.select, work)
        where = self._where(select, inner=True)
        self._fields(select, work, inner=True)
        where.rewrite(work, domain)
        rewrite_group_by(self.layouts, select, work, None, inner=True)
        return domain

    def _where(self, select: Select, *, inner: bool) -> WhereClause:
        return WhereClause(
            self.layouts,
            self.entity_variables,
            select.where,
            inner=inner,
            where_start=select.where_start,
        )

    def _fields(self, select: Select, work: StatementRewrite, *, inner: bool) -> None:
        for item in select.fields:
            if isinstance(item.expression, Wildcard):
                raise Refusal(
                    "SELECT * returns every legacy attribute field and tag; name the fields"
                )
            self._expression(item.expression, work, inner=inner)

    def _expression(self, expression: Expression, work: StatementRewrite, *, inner: bool) -> None:
        if isinstance(expression, Call):
            name = expression.name.lower()
            if name in ("top", "bottom") and len(expression.args) > 2:
                self._expression(expression.args[0], work, inner=inner)
                for tag in expression.args[1:-1]:
                    if not isinstance(tag, Identifier):
                        raise Refusal(f"{name}() takes tag names")
                    self._tag(tag.name, work)
                return
        elif isinstance(expression, Identifier):
            self._identifier(expression, work, inner=inner)
            return
        elif isinstance(expression, Wildcard):
            raise Refusal("* inside a function selects every legacy field; name the field")
        elif isinstance(expression, RegexLiteral):
            raise Refusal(f"the field regex /{expression.pattern}/ selects legacy attribute fields")
        elif isinstance(expression, Variable):
            if expression.text.startswith("$__interval") or expression.text in _INTERVALS:
                return
            raise Refusal(f"the field comes from the template variable {expression.text}")
        for inner_expression in children(expression):
            self._expression(inner_expression, work, inner=inner)

    def _identifier(self, identifier: Identifier, work: StatementRewrite, *, inner: bool) -> None:
        name, cast = identifier.name, identifier.cast
        if inner:
            # Around a subquery the names are the subquery's columns, tags only by name.
            if name in (ENTITY_ID, DOMAIN) or cast == "tag":
                self._tag(name, work)
        elif cast != "field" and name in self.layouts.legacy_tags:
            self._tag(name, work)
        elif cast == "tag":
            raise Refusal(f"legacy points have no tag {name!r}")
        else:
            check_selected_field(self.layouts, name)

    def _tag(self, name: str, work: StatementRewrite) -> None:
        if name == ENTITY_ID:
            work.changes.append("entity_id values are full entity ids (sensor.kitchen)")
        elif not self.layouts.keeps_tag(name):
            if name == DOMAIN:
                raise Refusal(
                    "the optimized layout has no domain tag (the measurement is the domain)"
                )
            raise Refusal(f"the tag {name!r} is not in the optimized layout")


def rewrite_group_by(
    layouts: LayoutPair,
    select: Select,
    work: StatementRewrite,
    split_tag: str | None,
    *,
    inner: bool,
    after: int | None = None,
) -> None:
    """Translate the GROUP BY of ``select``; group by ``split_tag`` too (at ``after`` if none)."""
    dimensions = select.dimensions
    remove: list[int] = []
    for index, dimension in enumerate(dimensions):
        if isinstance(dimension, Call) and dimension.name.lower() == "time":
            continue
        if isinstance(dimension, Wildcard):
            if inner:
                continue
            tags = layouts.group_by_star_tags()
            if split_tag is not None and split_tag not in tags:
                tags.append(split_tag)
                split_tag = None
            work.edits.replace(
                dimension.start, dimension.end, ", ".join(quote_identifier(tag) for tag in tags)
            )
            work.changes.append(
                f"GROUP BY * → GROUP BY {', '.join(tags)}: series carry no domain tag"
            )
            continue
        if not isinstance(dimension, Identifier):
            raise Refusal("GROUP BY a regex or template variable is not translated")
        name = dimension.name
        if variables_in(name):
            raise Refusal(f"GROUP BY {name!r} comes from a template variable")
        if name == DOMAIN:
            remove.append(index)
        elif name == ENTITY_ID:
            work.changes.append("GROUP BY entity_id: series are tagged with full entity ids")
        elif not layouts.keeps_tag(name):
            if name != split_tag:
                raise Refusal(
                    f"legacy points have no tag {name!r} to group by (or it is not in the "
                    "optimized layout)"
                )
            split_tag = None
    if remove:
        if len(remove) == len(dimensions):
            raise Refusal("GROUP BY domain alone is not translated; drop it")
        for index in sorted(remove, reverse=True):
            dimension = dimensions[index]
            if index + 1 < len(dimensions) and index + 1 not in remove:
                work.edits.replace(dimension.start, dimensions[index + 1].start, "")
            else:
                work.edits.replace(dimensions[index - 1].end, dimension.end, "")
        work.changes.append(
            "GROUP BY domain dropped: the measurement name is the domain ($measurement)"
        )
    if split_tag is not None:
        if dimensions:
            work.edits.insert(dimensions[-1].end, ", " + quote_identifier(split_tag))
        else:
            assert after is not None
            work.edits.insert(after, " GROUP BY " + quote_identifier(split_tag))
