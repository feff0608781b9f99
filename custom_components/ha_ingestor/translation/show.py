"""SHOW TAG VALUES of a legacy query: the tag values of its measurements, or of a domain."""

from collections.abc import Set as AbstractSet

from ..engine.influxql import ShowTagValues, quote_identifier, quote_regex
from .layout_pair import DOMAIN, ENTITY_ID
from .measurements import LegacyMeasurements
from .patterns import literal_alternation
from .rewrite import Refusal, StatementRewrite, condition
from .where import WhereClause


def translate_show_tag_values(
    show: ShowTagValues,
    work: StatementRewrite,
    measurements: LegacyMeasurements,
    entity_variables: AbstractSet[str],
) -> bool:
    """Translate one SHOW TAG VALUES into ``work``; whether it lists entity ids (now full)."""
    layouts = measurements.layouts
    if show.key_regex is not None:
        raise Refusal("WITH KEY =~ /…/ is not translated; name the key")
    if show.key_operator not in {"=", "IN"}:
        raise Refusal(f"WITH KEY {show.key_operator} is not translated")
    full_ids = False
    for key in show.keys:
        name = key.name
        if name == ENTITY_ID:
            full_ids = True
        elif name == DOMAIN:
            raise Refusal(
                "the optimized layout has no domain tag; its domains are its measurement names"
            )
        elif not layouts.keeps_tag(name):
            raise Refusal(
                f"legacy points have no tag {name!r} (or it is not in the optimized layout)"
            )
    where = WhereClause(
        layouts,
        entity_variables,
        show.where,
        inner=False,
        tags_only=True,
        where_start=show.where_start,
    )
    if show.sources:
        scope = measurements.scope(show.sources)
        if scope.split_tag is not None:
            work.changes.append("the values of several measurements are listed together")
        domain = measurements.domain(scope, where.domain, where.entity_literals, work)
        conditions = measurements.conditions(domain, scope)
        scope.rename(domain, work)
        where.rewrite(work, domain, conditions, show.key_end)
    elif where.domain is not None:
        domain = where.domain
        conditions = measurements.conditions(domain)
        work.edits.insert(show.with_start, f"FROM {quote_identifier(domain)} ")
        where.rewrite(work, domain, conditions, show.key_end)
    elif measurements.catalog is not None:
        domains: set[str] = set()
        for contents in measurements.catalog.measurements.values():
            domains |= contents.domains
        if not domains:
            raise Refusal("the catalog lists no domains")
        pattern = literal_alternation(domains)
        work.edits.insert(show.with_start, f"FROM {quote_regex(pattern)} ")
        where.rewrite(work, None, [], show.key_end)
    elif show.keys and all(key.name == ENTITY_ID for key in show.keys):
        # Full ids have a dot; legacy object ids (in the same database) never do.
        where.rewrite(work, None, [condition(ENTITY_ID, "=~", r"\.")], show.key_end)
    else:
        raise Refusal(
            "without FROM or a domain condition the values would include the legacy "
            "measurements of the same database; add FROM or \"domain\" = '…'"
        )
    if full_ids:
        work.changes.append("the entity_id values listed are full entity ids (sensor.kitchen)")
    return full_ids
