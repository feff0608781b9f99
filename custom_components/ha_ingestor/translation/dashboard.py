"""Translate an exported Grafana dashboard's InfluxQL to the optimized layout, target by target.

Walks panels (nested rows and collapsed rows' panels, old ``rows`` dashboards too), their
targets, annotation queries and templating variables. Raw queries (``rawQuery: true``) are
translated in place; a query built with Grafana's visual editor (``measurement``/``select``/
``tags``/``groupBy``) is rendered to the InfluxQL Grafana itself sends, translated, and stored
as a raw query when the translation is exact. Variables are translated first: a variable that
lists ``entity_id`` values then lists full entity ids, and the panels using it are translated
knowing so. What is not translated exactly is left exactly as it was, and reported.
"""

from collections.abc import Iterator, Mapping, MutableMapping
import copy
from dataclasses import dataclass, field
from enum import StrEnum
import re
from typing import Any, Final

from ..engine.influxql import QuerySyntaxError
from .query import QueryTranslator, Translation

# Query part types Grafana renders as functions: name(inner, params…).
_FUNCTION_PARTS: Final = frozenset(
    {
        "count",
        "distinct",
        "integral",
        "mean",
        "median",
        "mode",
        "sum",
        "derivative",
        "spread",
        "non_negative_derivative",
        "difference",
        "non_negative_difference",
        "moving_average",
        "cumulative_sum",
        "stddev",
        "elapsed",
        "holt_winters",
        "holt_winters_with_fit",
        "bottom",
        "first",
        "last",
        "max",
        "min",
        "percentile",
        "top",
    }
)
# Alias patterns whose meaning changes: the measurement is the domain, there is no domain tag.
_ALIAS_MEASUREMENT: Final = re.compile(r"\$(?:measurement|m)\b|\[\[(?:measurement|m)\]\]")
_ALIAS_DOMAIN: Final = re.compile(r"\$tag_domain\b|\[\[tag_domain\]\]")


class Outcome(StrEnum):
    """What happened to one query of the dashboard."""

    TRANSLATED = "translated"
    UNCHANGED = "unchanged"  # exact, and nothing needed rewriting
    REFUSED = "refused"
    SKIPPED = "skipped"  # not an InfluxQL query


@dataclass(frozen=True, slots=True)
class QueryReport:
    """One query of the dashboard: where it is, what it was, what it became and why."""

    location: str
    outcome: Outcome
    before: str
    after: str
    changes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "location": self.location,
            "outcome": self.outcome.value,
            "before": self.before,
            "after": self.after,
            "changes": list(self.changes),
            "warnings": list(self.warnings),
        }


@dataclass(slots=True)
class DashboardTranslation:
    """The translated dashboard (a copy) and a report per query."""

    dashboard: dict[str, Any]
    reports: list[QueryReport] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        """How many queries had this outcome."""
        return sum(report.outcome is outcome for report in self.reports)

    @property
    def complete(self) -> bool:
        """Whether every InfluxQL query of the dashboard was translated exactly."""
        return self.count(Outcome.REFUSED) == 0


# --- Grafana's visual editor -------------------------------------------------------------------


def _quote(value: Any) -> str:
    return '"' + str(value) + '"'


def _render_select(parts: list[Mapping[str, Any]]) -> str:
    text = ""
    for part in parts:
        kind = str(part.get("type", ""))
        params = [str(param) for param in part.get("params") or ()]
        if kind == "field":
            name = params[0] if params else "value"
            text = "*" if name == "*" else _quote(name)
        elif kind in _FUNCTION_PARTS:
            arguments = [text, *params] if text else params
            text = f"{kind}({', '.join(arguments)})"
        elif kind == "math":
            text = f"{text} {params[0] if params else ' / 100'}"
        elif kind == "alias":
            text = f"{text} AS {_quote(params[0] if params else 'alias')}"
        else:
            raise ValueError(f"unknown select part {kind!r}")
    return text


def _render_tag(tag: Mapping[str, Any], index: int) -> str:
    key = str(tag.get("key", ""))
    value = str(tag.get("value", ""))
    operator = tag.get("operator") or ("=~" if re.fullmatch(r"/.*/", value) else "=")
    prefix = f"{tag.get('condition') or 'AND'} " if index > 0 else ""
    if operator not in ("=~", "!~") and operator not in (">", "<"):
        value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if key.endswith("::tag"):
        rendered_key = f'"{key[:-5]}"::tag'
    elif key.endswith("::field"):
        rendered_key = f'"{key[:-7]}"::field'
    else:
        rendered_key = f'"{key}"'
    return f"{prefix}{rendered_key} {operator} {value}"


def render_builder_query(target: Mapping[str, Any]) -> str:
    """The InfluxQL Grafana's visual editor sends for ``target`` (variables not replaced).

    Mirrors Grafana's ``InfluxQueryModel.render`` with its defaults: ``mean("value")``,
    ``GROUP BY time($__interval) fill(null)`` and the ``default`` retention policy.
    """
    select = target.get("select") or [[{"type": "field", "params": ["value"]}, {"type": "mean"}]]
    group_by = target.get("groupBy")
    if group_by is None:
        group_by = [
            {"type": "time", "params": ["$__interval"]},
            {"type": "fill", "params": ["null"]},
        ]
    measurement = str(target.get("measurement") or "measurement")
    if not re.fullmatch(r"/.*/", measurement):
        measurement = _quote(measurement)
    policy = target.get("policy") or "default"
    source = measurement if policy == "default" else f"{_quote(policy)}.{measurement}"

    query = "SELECT " + ", ".join(_render_select(list(parts)) for parts in select)
    query += f" FROM {source} WHERE "
    tags = target.get("tags") or []
    if tags:
        query += (
            "(" + " ".join(_render_tag(tag, index) for index, tag in enumerate(tags)) + ") AND "
        )
    query += "$timeFilter"
    rendered: list[str] = []
    for index, part in enumerate(group_by):
        kind = part.get("type")
        params = [str(param) for param in part.get("params") or ()]
        if kind == "time":
            interval = params[0] if params else "$__interval"
            text = f"time({'$__interval' if interval == 'auto' else interval})"
        elif kind == "fill":
            text = f"fill({params[0] if params else 'null'})"
        elif kind == "tag":
            text = _quote(params[0] if params else "tag")
        else:
            raise ValueError(f"unknown group by part {kind!r}")
        if index > 0:
            text = (" " if kind == "fill" else ", ") + text
        rendered.append(text)
    if rendered:
        query += " GROUP BY " + "".join(rendered)
    if target.get("fill"):
        query += f" fill({target['fill']})"
    if target.get("orderByTime") == "DESC":
        query += " ORDER BY time DESC"
    for key, word in (("limit", "LIMIT"), ("slimit", "SLIMIT")):
        if target.get(key):
            query += f" {word} {target[key]}"
    if target.get("tz"):
        query += f" tz('{target['tz']}')"
    return query


# --- Walking the dashboard -----------------------------------------------------------------------


def _datasource_type(datasource: Any, inputs: Mapping[str, str]) -> str | None:
    if isinstance(datasource, Mapping):
        kind = datasource.get("type")
        if isinstance(kind, str):
            return kind
        uid = datasource.get("uid")
        return inputs.get(str(uid)) if uid is not None else None
    if isinstance(datasource, str):
        return inputs.get(datasource)
    return None


def _panels(container: Mapping[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for index, panel in enumerate(container.get("panels") or ()):
        if not isinstance(panel, dict):
            continue
        title = panel.get("title") or panel.get("type") or "panel"
        location = f"{path}panel {panel.get('id', index)} {title!r}"
        yield location, panel
        # A collapsed row keeps its panels inside it.
        yield from _panels(panel, f"{location} > ")
    for index, row in enumerate(container.get("rows") or ()):
        if isinstance(row, dict):
            yield from _panels(row, f"{path}row {index} {row.get('title', '')!r} > ")


class DashboardTranslator:
    """Applies a :class:`QueryTranslator` to every InfluxQL query of a dashboard."""

    def __init__(self, translator: QueryTranslator) -> None:
        """Translate with ``translator`` (its options, catalog and entity variables)."""
        self.translator = translator

    def translate(self, exported: Mapping[str, Any]) -> DashboardTranslation:
        """A translated copy of ``exported`` (a dashboard, or ``{"dashboard": …}``)."""
        document = copy.deepcopy(dict(exported))
        dashboard = (
            document.get("dashboard") if isinstance(document.get("dashboard"), dict) else None
        )
        board: dict[str, Any] = dashboard if dashboard is not None else document
        # Exports for sharing name data sources through inputs: ${DS_INFLUXDB} → influxdb.
        inputs = {
            f"${{{item.get('name')}}}": str(item.get("pluginId", ""))
            for item in document.get("__inputs") or ()
            if isinstance(item, Mapping)
        }
        result = DashboardTranslation(document)
        translator = self._variables(board, inputs, result)
        default_type = _datasource_type(board.get("datasource"), inputs)
        for location, panel in _panels(board, ""):
            panel_type = _datasource_type(panel.get("datasource"), inputs) or default_type
            for index, target in enumerate(panel.get("targets") or ()):
                if not isinstance(target, dict):
                    continue
                kind = _datasource_type(target.get("datasource"), inputs) or panel_type
                where = f"{location} target {target.get('refId', index)}"
                result.reports.append(self._target(translator, target, kind, where))
        annotations = (board.get("annotations") or {}).get("list") or ()
        for index, annotation in enumerate(annotations):
            if isinstance(annotation, dict) and isinstance(annotation.get("query"), str):
                kind = _datasource_type(annotation.get("datasource"), inputs) or default_type
                where = f"annotation {annotation.get('name', index)!r}"
                result.reports.append(
                    self._text(translator, annotation, "query", kind, where, builder=False)
                )
        return result

    def _variables(
        self,
        board: Mapping[str, Any],
        inputs: Mapping[str, str],
        result: DashboardTranslation,
    ) -> QueryTranslator:
        translator = self.translator
        variables = (board.get("templating") or {}).get("list") or ()
        for variable in variables:
            if not isinstance(variable, dict) or variable.get("type") != "query":
                continue
            kind = _datasource_type(variable.get("datasource"), inputs)
            where = f"variable ${variable.get('name')}"
            holder: MutableMapping[str, Any] = variable
            key = "query"
            if isinstance(variable.get("query"), dict):
                holder, key = variable["query"], "query"
            if not isinstance(holder.get(key), str):
                continue
            report, translation = self._translate_text(translator, holder[key], kind, where)
            if report.outcome is Outcome.TRANSLATED:
                holder[key] = report.after
                if isinstance(variable.get("definition"), str):
                    variable["definition"] = report.after
            if translation is not None and translation.exact and translation.full_entity_ids:
                translator = translator.with_entity_variables([str(variable.get("name"))])
                changes = list(report.changes)
                current = variable.get("current") or {}
                if current and current.get("value") not in ("$__all", ["$__all"]):
                    variable["current"] = {}
                    variable["options"] = []
                    changes.append("its current selection was cleared (values are full ids now)")
                report = QueryReport(
                    report.location, report.outcome, report.before, report.after, tuple(changes)
                )
            result.reports.append(report)
        return translator

    def _target(
        self, translator: QueryTranslator, target: dict[str, Any], kind: str | None, where: str
    ) -> QueryReport:
        builder = not target.get("rawQuery") and (
            "measurement" in target or "select" in target or "tags" in target
        )
        if not builder and not isinstance(target.get("query"), str):
            return QueryReport(where, Outcome.SKIPPED, "", "", warnings=("no InfluxQL query",))
        report = self._text(translator, target, "query", kind, where, builder=builder)
        if report.outcome is Outcome.TRANSLATED:
            alias = str(target.get("alias") or "")
            notes = list(report.changes)
            if _ALIAS_MEASUREMENT.search(alias):
                notes.append(f"the alias {alias!r} shows the domain where it showed the unit")
            if _ALIAS_DOMAIN.search(alias):
                notes.append(f"the alias {alias!r} uses $tag_domain, which is now empty")
            report = QueryReport(
                report.location, report.outcome, report.before, report.after, tuple(notes)
            )
        return report

    def _text(
        self,
        translator: QueryTranslator,
        holder: dict[str, Any],
        key: str,
        kind: str | None,
        where: str,
        *,
        builder: bool,
    ) -> QueryReport:
        if builder:
            try:
                text = render_builder_query(holder)
            except ValueError as err:
                return QueryReport(where, Outcome.REFUSED, "", "", warnings=(str(err),))
        else:
            text = str(holder.get(key, ""))
        report, _ = self._translate_text(translator, text, kind, where)
        if report.outcome is Outcome.TRANSLATED:
            holder[key] = report.after
            if builder:
                holder["rawQuery"] = True
                report = QueryReport(
                    where,
                    report.outcome,
                    text,
                    report.after,
                    ("visual editor query converted to a raw query", *report.changes),
                )
        return report

    def _translate_text(
        self, translator: QueryTranslator, text: str, kind: str | None, where: str
    ) -> tuple[QueryReport, Translation | None]:
        if kind is not None and kind != "influxdb":
            return QueryReport(
                where, Outcome.SKIPPED, text, text, warnings=(f"data source {kind}",)
            ), None
        if not text.strip():
            return QueryReport(where, Outcome.SKIPPED, text, text, warnings=("empty",)), None
        try:
            translation = translator.translate(text)
        except QuerySyntaxError as err:
            if "|>" in text:
                return QueryReport(where, Outcome.SKIPPED, text, text, warnings=("Flux",)), None
            return QueryReport(
                where,
                Outcome.REFUSED,
                text,
                text,
                warnings=(f"not InfluxQL this tool reads: {err}",),
            ), None
        if not translation.exact:
            return QueryReport(
                where, Outcome.REFUSED, text, text, warnings=translation.warnings
            ), translation
        outcome = Outcome.TRANSLATED if translation.query != text else Outcome.UNCHANGED
        return QueryReport(
            where, outcome, text, translation.query, translation.changes
        ), translation
