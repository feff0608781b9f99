"""The FROM of a legacy query: what each legacy measurement holds, as optimized domain and tags."""

from collections.abc import Sequence
from dataclasses import dataclass, field
import re

from ..const import MEASUREMENT_ATTR_DOMAIN_DEVICE_CLASS, MEASUREMENT_ATTR_ENTITY_ID
from ..engine.influxql import Measurement, quote_identifier, variables_in
from ..layouts.optimized import IDENTITY_ATTRIBUTES, identity_tag
from .catalog import LegacyCatalog
from .layout_pair import (
    DEVICE_CLASS,
    ENTITY_ID,
    LayoutPair,
    looks_like_domain,
    looks_like_entity_id,
)
from .patterns import glob_regex, literal_alternation, literal_set, re2_escape
from .rewrite import Refusal, StatementRewrite, condition


@dataclass(frozen=True, slots=True)
class MeasurementPlan:
    """The optimized form of one legacy measurement: its domain and the tags that select it."""

    label: str
    domain: str | None
    tags: tuple[tuple[str, str], ...] = ()
    # Set when the measurement is one entity's (an entity id measurement).
    entity: str | None = None


@dataclass(slots=True)
class Scope:
    """The measurements of a FROM once resolved: the domain and conditions that replace them."""

    sources: Sequence[Measurement]
    plans: list[MeasurementPlan]
    names: list[str]
    domain: str | None = None
    conditions: list[str] = field(default_factory=list)
    # The tag that tells apart the series of several measurements.
    split_tag: str | None = None

    def rename(self, domain: str, work: StatementRewrite) -> None:
        """Replace the measurements' text with the domain measurement."""
        work.edits.replace(
            self.sources[0].name_start, self.sources[-1].end, quote_identifier(domain)
        )

    @property
    def listed(self) -> str:
        """The measurement names as the query writes them."""
        return ", ".join(quote_identifier(name) for name in self.names)


class LegacyMeasurements:
    """The legacy measurements of one configuration and, with a catalog, of one database."""

    def __init__(self, layouts: LayoutPair, catalog: LegacyCatalog | None) -> None:
        """Keep the layouts and what the legacy database holds (``None``: unknown)."""
        self.layouts = layouts
        self.catalog = catalog

    def plan(self, name: str) -> MeasurementPlan:
        """What the legacy measurement ``name`` holds, as optimized tags; or a refusal."""
        layouts = self.layouts
        layouts.check_overrides()
        legacy = layouts.legacy
        if variables_in(name):
            raise Refusal(f"the measurement {name!r} comes from a template variable")
        if name in layouts.override_targets:
            raise Refusal(
                f"{name!r} is a per-entity override_measurement: which entities it holds "
                "depends on entity settings no tag records; query the entities by entity_id"
            )
        if legacy.override_measurement:
            if name != legacy.override_measurement:
                raise Refusal(
                    f"with override_measurement {legacy.override_measurement!r} the legacy "
                    f"layout writes no measurement {name!r}"
                )
            return MeasurementPlan(name, None)
        attribute = legacy.measurement_attr
        if attribute == MEASUREMENT_ATTR_ENTITY_ID:
            if not looks_like_entity_id(name):
                raise Refusal(
                    f"with measurement_attr entity_id every measurement is an entity id; "
                    f"{name!r} is not one"
                )
            return MeasurementPlan(name, name.partition(".")[0], ((ENTITY_ID, name),), entity=name)
        if attribute == MEASUREMENT_ATTR_DOMAIN_DEVICE_CLASS:
            domain, separator, device_class = name.partition("__")
            if not looks_like_domain(domain):
                raise Refusal(f"{name!r} is not a domain__device_class measurement")
            layouts.check_attribute_usable(DEVICE_CLASS)
            if not separator:
                return MeasurementPlan(name, domain, ((DEVICE_CLASS, ""),))
            tag = identity_tag(device_class)
            if tag is None or tag != device_class:
                raise Refusal(f"the device class {device_class!r} is not kept as a tag as is")
            return MeasurementPlan(name, domain, ((DEVICE_CLASS, tag),))
        if attribute not in IDENTITY_ATTRIBUTES:
            raise Refusal(
                f"measurement_attr {attribute!r} is not kept as a tag in the optimized layout"
            )
        layouts.check_attribute_usable(attribute)
        if legacy.default_measurement:
            if name == legacy.default_measurement:
                return MeasurementPlan(name, None, ((attribute, ""),))
        elif looks_like_entity_id(name):
            return MeasurementPlan(
                name, name.partition(".")[0], ((ENTITY_ID, name), (attribute, "")), entity=name
            )
        tag = identity_tag(name)
        if tag is None or tag != name:
            raise Refusal(
                f"the measurement {name!r} is not kept as a {attribute} tag as is "
                "(numbers and the text 'None' are rewritten)"
            )
        return MeasurementPlan(name, None, ((attribute, tag),))

    def _names(self, source: Measurement) -> list[str]:
        if source.variable is not None:
            raise Refusal(
                f"the measurement comes from the template variable {source.variable.text}"
            )
        if source.name is not None:
            return [source.name]
        assert source.regex is not None
        pattern = source.regex.pattern
        if variables_in(pattern):
            raise Refusal(f"the measurement regex /{pattern}/ uses a template variable")
        names = literal_set(pattern)
        if names is not None:
            return sorted(names)
        if self.catalog is None:
            raise Refusal(
                f"the measurement regex /{pattern}/ may match measurements of any kind; "
                "list them as ^(?:a|b)$ or translate with a catalog of the legacy database"
            )
        try:
            # ASCII classes, as RE2's \d, \w and \s are.
            compiled = re.compile(pattern, re.ASCII)
        except (re.error, OverflowError, RecursionError) as err:
            raise Refusal(f"the measurement regex /{pattern}/ could not be read: {err}") from None
        return sorted(name for name in self.catalog.measurements if compiled.search(name))

    def scope(self, sources: Sequence[Measurement]) -> Scope:
        """The domain and conditions that select what ``sources`` hold, as far as they tell."""
        if len({(source.database, source.policy) for source in sources}) > 1:
            raise Refusal("the measurements are in different retention policies")
        names = sorted({name for source in sources for name in self._names(source)})
        if not names:
            raise Refusal("the FROM clause matches no legacy measurement")
        plans = [self.plan(name) for name in names]
        scope = Scope(sources, plans, names)
        if len(plans) == 1:
            plan = plans[0]
            scope.domain = plan.domain
            scope.conditions = [condition(key, "=", value) for key, value in plan.tags]
            return scope
        # Several measurements: their plans may differ in one tag only, which then splits
        # the series as the measurement names did.
        keys = {tuple(key for key, _ in plan.tags) for plan in plans}
        domains = {plan.domain for plan in plans}
        if len(keys) != 1 or len(domains) != 1:
            raise Refusal(
                f"the measurements {', '.join(names)} are of different kinds; query them "
                "one at a time"
            )
        (key_names,) = keys
        values = [{plan.tags[index][1] for plan in plans} for index in range(len(key_names))]
        differing = [index for index, found in enumerate(values) if len(found) > 1]
        if len(differing) != 1:
            raise Refusal(f"the measurements {', '.join(names)} cannot be told apart by a tag")
        (split_index,) = differing
        split_key = key_names[split_index]
        if split_key == ENTITY_ID and plans[0].domain is None:
            raise Refusal("the entities' domain is unknown")
        scope.domain = plans[0].domain
        for index, key in enumerate(key_names):
            if index == split_index:
                if "" in values[index]:
                    raise Refusal("a measurement without the tag cannot be told apart")
                scope.conditions.append(condition(key, "=~", literal_alternation(values[index])))
            else:
                scope.conditions.append(condition(key, "=", values[index].pop()))
        scope.split_tag = split_key
        return scope

    def domain(
        self,
        scope: Scope,
        stated: str | None,
        object_ids: frozenset[str] | None,
        work: StatementRewrite,
    ) -> str:
        """The one domain the query's points belong to: of the FROM, stated, or catalogued.

        ``stated`` is the domain of the WHERE's ``"domain" = '…'``; ``object_ids`` those
        its entity_id conditions allow (``None``: not limited).
        """
        if scope.domain is not None:
            if stated is not None and stated != scope.domain:
                raise Refusal(
                    f"the query asks for domain {stated!r} in a measurement of "
                    f"domain {scope.domain!r}, which holds nothing"
                )
            return scope.domain
        if stated is not None:
            return stated
        catalog = self.catalog
        if catalog is None:
            raise Refusal(
                f"the legacy measurement {scope.listed} may hold entities of several "
                "domains: add a condition such as \"domain\" = 'sensor' or translate with a "
                "catalog of the legacy database"
            )
        candidates: set[str] = set()
        for name in scope.names:
            contents = catalog.measurements.get(name)
            if contents is None:
                raise Refusal(f"the legacy database has no measurement {quote_identifier(name)}")
            found: set[str] = set()
            for object_id in object_ids or ():
                found |= contents.domains_of(object_id)
            # Entities the measurement never held match nothing either way: any domain of it
            # gives the same (empty) answer.
            candidates |= found or contents.domains
        if len(candidates) != 1:
            listed = ", ".join(sorted(candidates)) or "none"
            raise Refusal(
                f"the entities queried in {scope.listed} belong to the domains {listed}: add "
                "a condition such as \"domain\" = 'sensor'"
            )
        (domain,) = candidates
        work.changes.append(
            f"the domain {domain!r} comes from the legacy database: "
            f"{scope.listed} holds no other for these entities"
        )
        return domain

    def conditions(self, domain: str, scope: Scope | None = None) -> list[str]:
        """The conditions selecting the legacy points of ``domain`` (and ``scope``)."""
        self._guard(domain)
        return [*(scope.conditions if scope is not None else ()), *self._exclusions(domain)]

    def _exclusions(self, domain: str) -> list[str]:
        """Conditions leaving out entities a per-entity override writes elsewhere."""
        exact, by_domain, by_glob = self.layouts.overrides
        if domain in by_domain:
            raise Refusal(
                f"component_config_domain sends {domain} entities to "
                f"{by_domain[domain]!r}; query that measurement"
            )
        patterns = [
            re2_escape(entity) for entity in sorted(exact) if entity.startswith(f"{domain}.")
        ]
        patterns += [glob_regex(glob)[1:-1] for glob in sorted(by_glob)]
        if not patterns:
            return []
        return [condition(ENTITY_ID, "!~", "^(?:" + "|".join(patterns) + ")$")]

    def _guard(self, domain: str) -> None:
        legacy = self.layouts.legacy
        legacy_names = {
            legacy.default_measurement,
            legacy.override_measurement,
            *self.layouts.override_targets,
        }
        if domain in legacy_names:
            raise Refusal(
                f"the legacy layout also writes to a measurement named {domain!r}, "
                "so the domain measurement would mix both layouts"
            )
