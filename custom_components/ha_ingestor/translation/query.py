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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
import re
from typing import Any, Final

from ..const import MEASUREMENT_ATTR_DOMAIN_DEVICE_CLASS, MEASUREMENT_ATTR_ENTITY_ID
from ..engine.influxql import (
    Binary,
    BooleanLiteral,
    Call,
    DurationLiteral,
    Expression,
    Identifier,
    Measurement,
    NumberLiteral,
    OtherStatement,
    Parenthesized,
    QuerySyntaxError,
    RegexLiteral,
    Select,
    ShowTagValues,
    Statement,
    StringLiteral,
    Subquery,
    Unary,
    Variable,
    Wildcard,
    parse,
    quote_identifier,
    quote_regex,
    quote_string,
    variables_in,
    walk,
)
from ..layouts.legacy import LegacyOptions
from ..layouts.optimized import (
    IDENTITY_ATTRIBUTES,
    OptimizedOptions,
    attribute_text,
    identity_tag,
)

ENTITY_ID: Final = "entity_id"
DOMAIN: Final = "domain"
UNIT: Final = "unit_of_measurement"
DEVICE_CLASS: Final = "device_class"

# Home Assistant's valid_entity_id and domain rules (kept here so this module needs no hass).
_ENTITY_ID: Final = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$", re.ASCII)
_DOMAIN: Final = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)$", re.ASCII)
# Characters RE2 and Python treat as literal when escaped with a backslash.
_REGEX_META: Final = frozenset(r"\.+*?()|[]{}^$")


def looks_like_entity_id(text: str) -> bool:
    """Whether ``text`` has the shape of a Home Assistant entity id."""
    return _ENTITY_ID.match(text) is not None


class Refusal(Exception):
    """A statement cannot be translated exactly; the message says why."""


@dataclass(frozen=True, slots=True)
class MeasurementContents:
    """What one legacy measurement holds: its domains and entities.

    ``entity_ids`` are the full ids whose domain is known for sure; ``object_ids`` all the
    ``entity_id`` tag values, also those of a measurement shared by several domains.
    """

    domains: frozenset[str]
    object_ids: frozenset[str] = frozenset()
    entity_ids: frozenset[str] = frozenset()

    def domains_of(self, object_id: str) -> frozenset[str]:
        """The domains an object id may belong to in this measurement (empty: not here)."""
        known = frozenset(
            domain for domain in self.domains if f"{domain}.{object_id}" in self.entity_ids
        )
        if known:
            return known
        return self.domains if object_id in self.object_ids else frozenset()


@dataclass(frozen=True)
class LegacyCatalog:
    """The legacy measurements of a database and what each holds (from SHOW TAG VALUES)."""

    measurements: Mapping[str, MeasurementContents] = field(default_factory=dict)

    @classmethod
    def from_tag_values(
        cls,
        domains: Mapping[str, Iterable[str]],
        object_ids: Mapping[str, Iterable[str]] | None = None,
        entity_ids: Mapping[str, Iterable[str]] | None = None,
    ) -> "LegacyCatalog":
        """Build from measurement → domain values, → entity_id values, → known full ids.

        A measurement with one domain has all its entities known for sure.
        """
        measurements: dict[str, MeasurementContents] = {}
        for name, values in domains.items():
            domain_set = frozenset(values)
            objects = frozenset((object_ids or {}).get(name, ()))
            known = set((entity_ids or {}).get(name, ()))
            if len(domain_set) == 1:
                (only,) = domain_set
                known.update(f"{only}.{object_id}" for object_id in objects)
            measurements[name] = MeasurementContents(
                domain_set,
                objects | {entity.partition(".")[2] for entity in known},
                frozenset(known),
            )
        return cls(measurements)

    @classmethod
    def from_series(
        cls,
        domain_series: Iterable[Mapping[str, Any]],
        entity_series: Mapping[str, Iterable[Mapping[str, Any]]],
    ) -> "LegacyCatalog":
        """Build from the answers of :data:`CATALOG_DOMAINS_QUERY` and, per domain found,
        :func:`catalog_entities_query` (InfluxDB's JSON series: name, columns, values).
        """
        domains: dict[str, list[str]] = {}
        for series in domain_series:
            domains[str(series["name"])] = [str(row[1]) for row in series.get("values") or ()]
        entity_ids: dict[str, set[str]] = {}
        for domain, series_list in entity_series.items():
            for series in series_list:
                known = entity_ids.setdefault(str(series["name"]), set())
                known.update(f"{domain}.{row[1]}" for row in series.get("values") or ())
        return cls.from_tag_values(domains, None, entity_ids)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form, read back by :meth:`from_dict`."""
        return {
            name: {
                "domains": sorted(contents.domains),
                "object_ids": sorted(contents.object_ids),
                "entity_ids": sorted(contents.entity_ids),
            }
            for name, contents in sorted(self.measurements.items())
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LegacyCatalog":
        """Read the form written by :meth:`as_dict`; ``TypeError``/``ValueError`` when malformed."""
        measurements: dict[str, MeasurementContents] = {}
        for name, contents in data.items():
            if not isinstance(contents, Mapping) or not isinstance(name, str):
                raise TypeError(f"catalog entry {name!r} must be an object")
            parts = {}
            for key in ("domains", "object_ids", "entity_ids"):
                values = contents.get(key, [])
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise ValueError(f"catalog entry {name!r}: {key} must be a list of text")
                parts[key] = frozenset(values)
            measurements[name] = MeasurementContents(
                parts["domains"], parts["object_ids"], parts["entity_ids"]
            )
        return cls(measurements)


# What a catalog is read with: the domains of every measurement, then per domain its entities.
CATALOG_DOMAINS_QUERY: Final = 'SHOW TAG VALUES WITH KEY = "domain"'


def catalog_entities_query(domain: str) -> str:
    """The query listing, per measurement, the object ids of one domain's entities."""
    return f'SHOW TAG VALUES WITH KEY = "entity_id" WHERE "domain" = {quote_string(domain)}'


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


# --- Text edits -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Edits:
    """Replacements of spans of the original text, applied all at once."""

    items: list[tuple[int, int, int, str]] = field(default_factory=list)

    def replace(self, start: int, end: int, text: str) -> None:
        self.items.append((start, end, len(self.items), text))

    def insert(self, position: int, text: str) -> None:
        self.replace(position, position, text)

    def apply(self, text: str) -> str:
        out: list[str] = []
        cursor = 0
        for start, end, _, replacement in sorted(self.items):
            if start < cursor:
                raise Refusal("internal error: overlapping rewrites")
            out.append(text[cursor:start])
            out.append(replacement)
            cursor = end
        out.append(text[cursor:])
        return "".join(out)


def _condition(key: str, operator: str, value: str) -> str:
    rendered = quote_regex(value) if operator in ("=~", "!~") else quote_string(value)
    return f"{quote_identifier(key)} {operator} {rendered}"


def _literal_alternation(values: Iterable[str]) -> str:
    return "^(?:" + "|".join(re2_escape(value) for value in sorted(values)) + ")$"


# --- Regexes ---------------------------------------------------------------------------------


def _split_alternatives(pattern: str) -> list[str] | None:
    """Top-level ``|`` alternatives of an RE2 pattern; ``None`` when it is malformed."""
    alternatives: list[str] = []
    depth = 0
    current: list[str] = []
    index = 0
    in_class = False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            current.append(pattern[index : index + 2])
            index += 2
            continue
        if in_class:
            if char == "]":
                in_class = False
        elif char == "[":
            in_class = True
            current.append(char)
            index += 1
            # A "]" right after "[" or "[^" is a literal.
            if pattern[index : index + 1] == "^":
                current.append("^")
                index += 1
            if pattern[index : index + 1] == "]":
                current.append("]")
                index += 1
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return None
        elif char == "|" and depth == 0:
            alternatives.append("".join(current))
            current = []
            index += 1
            continue
        current.append(char)
        index += 1
    if depth or in_class:
        return None
    alternatives.append("".join(current))
    return alternatives


def _has_start_anchor(part: str) -> bool:
    """Whether ``^`` or ``\\A`` occurs outside a character class."""
    index = 0
    in_class = False
    while index < len(part):
        char = part[index]
        if char == "\\":
            if part[index + 1 : index + 2] == "A" and not in_class:
                return True
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if part[index + 1 : index + 2] == "^":
                index += 1
            if part[index + 1 : index + 2] == "]":
                index += 1
        elif char == "^":
            return True
        index += 1
    return False


_FLAGS: Final = re.compile(r"^\(\?[imsU]+\)")


def prefix_object_id_regex(pattern: str, domain: str) -> str:
    """A regex matching ``<domain>.<id>`` exactly when ``pattern`` matches the object id ``id``.

    Unanchored alternatives may match anywhere in the object id; anchored ones (``^``) at
    its start, which is now after the prefix. ``\\b`` and ``\\B`` behave the same after the
    prefix's dot as at the start of the text. Raises :class:`Refusal` for a start anchor
    anywhere else.
    """
    flags = ""
    if match := _FLAGS.match(pattern):
        flags, pattern = match.group(), pattern[match.end() :]
    alternatives = _split_alternatives(pattern)
    if alternatives is None:
        raise Refusal(f"the regex /{pattern}/ could not be read")
    prefix = re2_escape(domain) + r"\."
    rewritten = []
    for alternative in alternatives:
        body = alternative
        anchored = False
        if body.startswith("^"):
            body, anchored = body[1:], True
        elif body.startswith("\\A"):
            body, anchored = body[2:], True
        if _has_start_anchor(body):
            raise Refusal(
                f"the regex /{pattern}/ has a start anchor inside a group; "
                "write it as ^(…) or without anchors"
            )
        if anchored:
            rewritten.append(prefix + body)
        else:
            rewritten.append(prefix + ".*" + (f"(?:{body})" if body else ""))
    if len(rewritten) == 1:
        return f"{flags}^{rewritten[0]}"
    return f"{flags}^(?:{'|'.join(rewritten)})"


def re2_escape(text: str) -> str:
    """``text`` as an RE2 pattern matching itself (only RE2's metacharacters escaped)."""
    return "".join(f"\\{char}" if char in _REGEX_META else char for char in text)


def _group_end(pattern: str, opening: int) -> int | None:
    """The index of the ")" closing the "(" at ``opening``."""
    depth = 0
    index = opening
    in_class = False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[index + 1 : index + 2] == "^":
                index += 1
            if pattern[index + 1 : index + 2] == "]":
                index += 1
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return None


def literal_set(pattern: str) -> frozenset[str] | None:
    """The names an anchored alternation of literals matches (``^(?:a|b)$``), else ``None``."""
    if not pattern.startswith("^") or not pattern.endswith("$") or pattern.endswith("\\$"):
        return None
    body = pattern[1:-1]
    grouped = False
    for opening in ("(?:", "("):
        if body.startswith(opening) and _group_end(body, 0) == len(body) - 1:
            body, grouped = body[len(opening) : -1], True
            break
    alternatives = _split_alternatives(body)
    # "^a|b$" is (^a)|(b$): only a group makes both anchors apply to every alternative.
    if alternatives is None or (len(alternatives) > 1 and not grouped):
        return None
    names = set()
    for alternative in alternatives:
        literal = _unescape_literal(alternative)
        if literal is None:
            return None
        names.add(literal)
    return frozenset(names)


def _unescape_literal(text: str) -> str | None:
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            escaped = text[index + 1 : index + 2]
            if not escaped or escaped.isalnum() or escaped.isspace():
                return None
            out.append(escaped)
            index += 2
            continue
        if char in _REGEX_META:
            return None
        out.append(char)
        index += 1
    return "".join(out) if out else None


def _glob_regex(glob: str) -> str:
    """The RE2 pattern of an fnmatch glob, anchored at both ends (HA's component_config_glob)."""
    out = ["^"]
    index = 0
    while index < len(glob):
        char = glob[index]
        index += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and (close := glob.find("]", index + 1)) > 0:
            content = glob[index:close]
            index = close + 1
            negate = content.startswith("!")
            content = content[1:] if negate else content
            escaped = content.replace("\\", "\\\\").replace("[", "\\[")
            out.append(f"[{'^' if negate else ''}{escaped}]")
        else:
            out.append(re2_escape(char))
    out.append("$")
    return "".join(out)


# --- What a measurement name means ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    """The optimized form of one legacy measurement: its domain and the tags that select it."""

    label: str
    domain: str | None
    tags: tuple[tuple[str, str], ...] = ()
    # Set when the measurement is one entity's (an entity id measurement).
    entity: str | None = None


@dataclass(slots=True)
class _Scope:
    """The FROM of a statement once resolved."""

    plans: list[_Plan]
    domain: str | None = None
    conditions: list[str] = field(default_factory=list)
    split_tag: str | None = None
    # Edits to the FROM text: (start, end, measurement name).
    names: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Statement:
    """Work in progress for one statement."""

    edits: _Edits
    changes: list[str]
    text: str


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

    # Derived from the options.

    @cached_property
    def _global_tags(self) -> frozenset[str]:
        return frozenset(self.legacy.tags) & frozenset(self.optimized.tags)

    @cached_property
    def _identity_tags_attributes(self) -> frozenset[str]:
        return frozenset(self.legacy.tags_attributes) & frozenset(IDENTITY_ATTRIBUTES)

    @cached_property
    def _legacy_tags(self) -> frozenset[str]:
        return frozenset(
            {DOMAIN, ENTITY_ID, *self.legacy.tags_attributes, *self.legacy.tags} - {""}
        )

    @cached_property
    def _ignored_identity(self) -> frozenset[str]:
        """Identity attributes some entity ignores: their tags are not reliable."""
        ignored = set(self.legacy.ignore_attributes) | set(self.optimized.ignore_attributes)
        for options in (self.legacy, self.optimized):
            for level in (
                options.component_config,
                options.component_config_domain,
                options.component_config_glob,
            ):
                for customization in level.values():
                    ignored.update(customization.ignore_attributes or ())
        return frozenset(ignored) & frozenset(IDENTITY_ATTRIBUTES)

    @cached_property
    def _overrides(self) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """Per-entity override_measurement: by entity id, by domain, by glob."""
        legacy = self.legacy
        levels = (
            legacy.component_config,
            legacy.component_config_domain,
            legacy.component_config_glob,
        )
        found: list[dict[str, str]] = []
        for level in levels:
            overrides = {}
            for key, customization in level.items():
                if customization.override_measurement is not None:
                    overrides[key] = customization.override_measurement
            found.append(overrides)
        return found[0], found[1], found[2]

    @cached_property
    def _override_targets(self) -> frozenset[str]:
        return frozenset(value for level in self._overrides for value in level.values())

    def _check_overrides(self) -> None:
        if "" in self._override_targets:
            raise Refusal(
                "an empty per-entity override_measurement (which falls back to the global "
                "setting) is not supported"
            )

    def _attribute_usable(self, name: str) -> None:
        if name in self._ignored_identity:
            raise Refusal(
                f"{name} is in ignore_attributes, so the optimized layout has no {name} tag "
                "to select the legacy measurement's points by"
            )

    # Measurements.

    def plan(self, name: str) -> _Plan:
        """What the legacy measurement ``name`` holds, as optimized tags; or a refusal."""
        self._check_overrides()
        legacy = self.legacy
        if variables_in(name):
            raise Refusal(f"the measurement {name!r} comes from a template variable")
        if name in self._override_targets:
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
            return _Plan(name, None)
        attribute = legacy.measurement_attr
        if attribute == MEASUREMENT_ATTR_ENTITY_ID:
            if not looks_like_entity_id(name):
                raise Refusal(
                    f"with measurement_attr entity_id every measurement is an entity id; "
                    f"{name!r} is not one"
                )
            return _Plan(name, name.partition(".")[0], ((ENTITY_ID, name),), entity=name)
        if attribute == MEASUREMENT_ATTR_DOMAIN_DEVICE_CLASS:
            domain, separator, device_class = name.partition("__")
            if not _DOMAIN.match(domain):
                raise Refusal(f"{name!r} is not a domain__device_class measurement")
            self._attribute_usable(DEVICE_CLASS)
            if not separator:
                return _Plan(name, domain, ((DEVICE_CLASS, ""),))
            tag = identity_tag(device_class)
            if tag is None or tag != device_class:
                raise Refusal(f"the device class {device_class!r} is not kept as a tag as is")
            return _Plan(name, domain, ((DEVICE_CLASS, tag),))
        if attribute not in IDENTITY_ATTRIBUTES:
            raise Refusal(
                f"measurement_attr {attribute!r} is not kept as a tag in the optimized layout"
            )
        self._attribute_usable(attribute)
        if legacy.default_measurement:
            if name == legacy.default_measurement:
                return _Plan(name, None, ((attribute, ""),))
        elif looks_like_entity_id(name):
            return _Plan(
                name, name.partition(".")[0], ((ENTITY_ID, name), (attribute, "")), entity=name
            )
        tag = identity_tag(name)
        if tag is None or tag != name:
            raise Refusal(
                f"the measurement {name!r} is not kept as a {attribute} tag as is "
                "(numbers and the text 'None' are rewritten)"
            )
        return _Plan(name, None, ((attribute, tag),))

    def _source_names(self, source: Measurement) -> list[str]:
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

    def _scope(self, sources: tuple[Measurement, ...], work: _Statement) -> _Scope:
        names: list[str] = []
        for source in sources:
            names.extend(self._source_names(source))
        if not names:
            raise Refusal("the FROM clause matches no legacy measurement")
        unique = sorted(set(names))
        plans = [self.plan(name) for name in unique]
        scope = _Scope(plans, names=unique)
        if len(plans) == 1:
            plan = plans[0]
            scope.domain = plan.domain
            scope.conditions = [_condition(key, "=", value) for key, value in plan.tags]
            return scope
        # Several measurements: their plans may differ in one tag only, which then splits
        # the series as the measurement names did.
        keys = {tuple(key for key, _ in plan.tags) for plan in plans}
        domains = {plan.domain for plan in plans}
        if len(keys) != 1 or len(domains) != 1:
            raise Refusal(
                f"the measurements {', '.join(unique)} are of different kinds; query them "
                "one at a time"
            )
        (key_names,) = keys
        differing = [
            index
            for index, key in enumerate(key_names)
            if len({plan.tags[index][1] for plan in plans}) > 1
        ]
        if len(differing) != 1:
            raise Refusal(f"the measurements {', '.join(unique)} cannot be told apart by a tag")
        (split_index,) = differing
        split_key = key_names[split_index]
        if split_key == ENTITY_ID and plans[0].domain is None:
            raise Refusal("the entities' domain is unknown")
        scope.domain = plans[0].domain
        for index, key in enumerate(key_names):
            values = {plan.tags[index][1] for plan in plans}
            if index == split_index:
                if "" in values:
                    raise Refusal("a measurement without the tag cannot be told apart")
                scope.conditions.append(_condition(key, "=~", _literal_alternation(values)))
            else:
                scope.conditions.append(_condition(key, "=", values.pop()))
        scope.split_tag = split_key
        work.changes.append(
            f"the series of {', '.join(unique)} are told apart by the tag {split_key} "
            "instead of by the measurement name"
        )
        return scope

    def _exclusions(self, domain: str) -> list[str]:
        """Conditions leaving out entities a per-entity override writes elsewhere."""
        exact, by_domain, by_glob = self._overrides
        if domain in by_domain:
            raise Refusal(
                f"component_config_domain sends {domain} entities to "
                f"{by_domain[domain]!r}; query that measurement"
            )
        patterns = [
            re2_escape(entity) for entity in sorted(exact) if entity.startswith(f"{domain}.")
        ]
        patterns += [_glob_regex(glob)[1:-1] for glob in sorted(by_glob)]
        if not patterns:
            return []
        return [_condition(ENTITY_ID, "!~", "^(?:" + "|".join(patterns) + ")$")]

    def _guard_domain(self, domain: str) -> None:
        legacy_names = {
            self.legacy.default_measurement,
            self.legacy.override_measurement,
            *self._override_targets,
        }
        if domain in legacy_names:
            raise Refusal(
                f"the legacy layout also writes to a measurement named {domain!r}, "
                "so the domain measurement would mix both layouts"
            )

    # Translation entry points.

    def translate(self, text: str) -> Translation:
        """Translate a query text (one or more statements); raises QuerySyntaxError."""
        query = parse(text)
        edits = _Edits()
        changes: list[str] = []
        warnings: list[str] = []
        full_ids = False
        for statement in query.statements:
            work = _Statement(_Edits(), [], text)
            label = text[statement.start : statement.end]
            try:
                full_ids |= self._statement(statement, work)
            except Refusal as refusal:
                warnings.append(f"{_short(label)}: {refusal}")
                continue
            edits.items.extend(work.edits.items)
            changes.extend(work.changes)
        if warnings:
            return Translation(text, text, exact=False, warnings=tuple(warnings))
        translated = edits.apply(text)
        return Translation(
            text,
            translated,
            exact=True,
            changes=tuple(dict.fromkeys(changes)),
            full_entity_ids=full_ids,
        )

    def _statement(self, statement: Statement, work: _Statement) -> bool:
        if isinstance(statement, Select):
            self._select(statement, work)
            return False
        if isinstance(statement, ShowTagValues):
            return self._show_tag_values(statement, work)
        assert isinstance(statement, OtherStatement)
        if statement.words.startswith("SHOW MEASUREMENTS"):
            raise Refusal(
                "SHOW MEASUREMENTS lists units in the legacy layout and domains in the "
                'optimized one; list units with SHOW TAG VALUES FROM "sensor" WITH KEY = '
                '"unit_of_measurement"'
            )
        raise Refusal(f"{statement.words or 'this statement'} is not translated")

    # SELECT.

    def _select(self, select: Select, work: _Statement) -> str | None:
        """Translate one SELECT into ``work``; the domain its series belong to."""
        if select.into is not None:
            raise Refusal("SELECT … INTO writes data; it is not translated")
        subqueries = [source for source in select.sources if isinstance(source, Subquery)]
        if subqueries:
            if len(select.sources) != 1:
                raise Refusal("a FROM mixing a subquery with other sources is not translated")
            (subquery,) = subqueries
            domain = self._select(subquery.select, work)
            where = _Where(self, select.where, inner=True, where_start=select.where_start)
            where.check_domain_free()
            self._fields(select, work, inner=True)
            where.rewrite(work, domain)
            self._group_by(select, work, domain, None, inner=True)
            return domain
        measurements = tuple(source for source in select.sources if isinstance(source, Measurement))
        if len({(source.database, source.policy) for source in measurements}) > 1:
            raise Refusal("the measurements are in different retention policies")
        scope = self._scope(measurements, work)
        where = _Where(self, select.where, inner=False, where_start=select.where_start)
        domain = self._resolve_domain(scope, where, work)
        self._fields(select, work, inner=False)
        self._guard_domain(domain)
        scope.conditions += self._exclusions(domain)
        if scope.split_tag is not None and (select.slimit or select.soffset):
            raise Refusal("SLIMIT/SOFFSET over several measurements is not translated")

        first, last = measurements[0], measurements[-1]
        work.edits.replace(first.name_start, last.end, quote_identifier(domain))
        where.rewrite(work, domain, scope.conditions, select.sources_end)
        self._group_by(
            select,
            work,
            domain,
            scope.split_tag,
            inner=False,
            after=select.where.end if select.where is not None else select.sources_end,
        )
        work.changes.append(
            f"FROM {', '.join(_display(name) for name in scope.names)} → "
            f"FROM {_display(domain)}"
            + (f" WHERE {' AND '.join(scope.conditions)}" if scope.conditions else "")
        )
        return domain

    def _resolve_domain(self, scope: _Scope, where: "_Where", work: _Statement) -> str:
        stated = where.domain
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
                f"the legacy measurement {', '.join(_display(name) for name in scope.names)} "
                "may hold entities of several domains: add a condition such as "
                "\"domain\" = 'sensor' or translate with a catalog of the legacy database"
            )
        candidates: set[str] = set()
        for name in scope.names:
            contents = catalog.measurements.get(name)
            if contents is None:
                raise Refusal(f"the legacy database has no measurement {_display(name)}")
            found: set[str] = set()
            for object_id in where.entity_literals or ():
                found |= contents.domains_of(object_id)
            # Entities the measurement never held match nothing either way: any domain of it
            # gives the same (empty) answer.
            candidates |= found or contents.domains
        if len(candidates) != 1:
            listed = ", ".join(sorted(candidates)) or "none"
            raise Refusal(
                f"the entities queried in {', '.join(_display(n) for n in scope.names)} belong "
                f"to the domains {listed}: add a condition such as \"domain\" = 'sensor'"
            )
        (domain,) = candidates
        work.changes.append(
            f"the domain {domain!r} comes from the legacy database: "
            f"{', '.join(_display(n) for n in scope.names)} holds no other for these entities"
        )
        return domain

    def _fields(self, select: Select, work: _Statement, *, inner: bool) -> None:
        for item in select.fields:
            expression = item.expression
            if isinstance(expression, Wildcard):
                raise Refusal(
                    "SELECT * returns every legacy attribute field and tag; name the fields"
                )
            self._field_expression(expression, work, inner=inner)

    def _field_expression(self, expression: Expression, work: _Statement, *, inner: bool) -> None:
        if isinstance(expression, Call):
            name = expression.name.lower()
            if name in ("top", "bottom") and len(expression.args) > 2:
                self._field_expression(expression.args[0], work, inner=inner)
                for tag in expression.args[1:-1]:
                    if not isinstance(tag, Identifier):
                        raise Refusal(f"{name}() takes tag names")
                    self._selected_tag(tag.name, work)
                return
            for arg in expression.args:
                self._field_expression(arg, work, inner=inner)
            return
        if isinstance(expression, Identifier):
            if inner:
                if expression.name in (ENTITY_ID, DOMAIN) or expression.cast == "tag":
                    self._selected_tag(expression.name, work)
                return
            if expression.cast != "field" and expression.name in self._legacy_tags:
                self._selected_tag(expression.name, work)
                return
            if expression.cast == "tag":
                raise Refusal(f"legacy points have no tag {expression.name!r}")
            self._selected_field(expression.name)
            return
        if isinstance(expression, Wildcard):
            raise Refusal("* inside a function selects every legacy field; name the field")
        if isinstance(expression, RegexLiteral):
            raise Refusal(f"the field regex /{expression.pattern}/ selects legacy attribute fields")
        if isinstance(expression, Variable):
            if expression.text.startswith("$__interval") or expression.text in (
                "$interval",
                "[[interval]]",
                "${__interval}",
            ):
                return
            raise Refusal(f"the field comes from the template variable {expression.text}")
        for inner_expression in _children(expression):
            self._field_expression(inner_expression, work, inner=inner)

    def _selected_tag(self, name: str, work: _Statement) -> None:
        if name == ENTITY_ID:
            work.changes.append("entity_id values are full entity ids (sensor.kitchen)")
            return
        if name in self._global_tags or name in self._identity_tags_attributes:
            return
        if name == DOMAIN:
            raise Refusal("the optimized layout has no domain tag (the measurement is the domain)")
        raise Refusal(f"the tag {name!r} is not in the optimized layout")

    def _selected_field(self, name: str) -> None:
        if name in ("value", "state", "time"):
            return
        allowed = self.optimized.allowed_attributes
        if allowed.get(name) is float:
            return
        base = name.removesuffix("_str")
        if name.endswith("_str") and allowed.get(base) is str:
            raise Refusal(
                f"{name} → {base}: the optimized field leaves out the texts 'None' and '' "
                "(and numbers) that the legacy field holds when the attribute was unset, so "
                f"results can differ; query {base} on the optimized layout by hand"
            )
        if name.endswith("_str") and base in IDENTITY_ATTRIBUTES:
            raise Refusal(
                f"{name} is the tag {base} in the optimized layout; a tag cannot be "
                "aggregated or selected alone"
            )
        raise Refusal(_missing_field(name, allowed))

    def _group_by(
        self,
        select: Select,
        work: _Statement,
        domain: str | None,
        split_tag: str | None,
        *,
        inner: bool,
        after: int | None = None,
    ) -> None:
        dimensions = select.dimensions
        remove: list[int] = []
        for index, dimension in enumerate(dimensions):
            if isinstance(dimension, Call) and dimension.name.lower() == "time":
                continue
            if isinstance(dimension, Wildcard):
                if inner:
                    continue
                tags = [ENTITY_ID, *self._tags_attributes_for_group(), *sorted(self._global_tags)]
                if split_tag is not None and split_tag not in tags:
                    tags.append(split_tag)
                    split_tag = None
                work.edits.replace(
                    dimension.start,
                    dimension.end,
                    ", ".join(quote_identifier(tag) for tag in tags),
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
                continue
            if name == ENTITY_ID:
                work.changes.append("GROUP BY entity_id: series are tagged with full entity ids")
                continue
            if name in self._global_tags or name in self._identity_tags_attributes:
                continue
            if name == split_tag:
                split_tag = None
                continue
            raise Refusal(
                f"legacy points have no tag {name!r} to group by (or it is not in the "
                "optimized layout)"
            )
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

    def _tags_attributes_for_group(self) -> list[str]:
        others = set(self.legacy.tags_attributes) - set(IDENTITY_ATTRIBUTES) - set(self.legacy.tags)
        others |= set(self.legacy.tags) - set(self.optimized.tags)
        if others:
            raise Refusal(
                f"GROUP BY * includes the tags {', '.join(sorted(others))}, which are not in "
                "the optimized layout"
            )
        return sorted(self._identity_tags_attributes - set(self.legacy.tags))

    # SHOW TAG VALUES.

    def _show_tag_values(self, show: ShowTagValues, work: _Statement) -> bool:
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
            elif name not in self._global_tags and name not in self._identity_tags_attributes:
                raise Refusal(
                    f"legacy points have no tag {name!r} (or it is not in the optimized layout)"
                )
        where = _Where(self, show.where, inner=False, tags_only=True, where_start=show.where_start)
        if show.sources:
            if len({(source.database, source.policy) for source in show.sources}) > 1:
                raise Refusal("the measurements are in different retention policies")
            scope = self._scope(show.sources, work)
            if scope.split_tag is not None:
                work.changes.pop()
                work.changes.append("the values of several measurements are listed together")
            domain = self._resolve_domain(scope, where, work)
            self._guard_domain(domain)
            conditions = scope.conditions + self._exclusions(domain)
            first, last = show.sources[0], show.sources[-1]
            work.edits.replace(first.name_start, last.end, quote_identifier(domain))
            assert show.sources_end is not None
            where.rewrite(work, domain, conditions, show.key_end)
        elif where.domain is not None:
            domain = where.domain
            self._guard_domain(domain)
            work.edits.insert(show.with_start, f"FROM {quote_identifier(domain)} ")
            where.rewrite(work, domain, self._exclusions(domain), show.key_end)
        elif self.catalog is not None:
            domains: set[str] = set()
            for contents in self.catalog.measurements.values():
                domains |= contents.domains
            if not domains:
                raise Refusal("the catalog lists no domains")
            pattern = _literal_alternation(domains)
            work.edits.insert(show.with_start, f"FROM {quote_regex(pattern)} ")
            where.rewrite(work, None, [], show.key_end)
        elif show.keys and all(key.name == ENTITY_ID for key in show.keys):
            # Full ids have a dot; legacy object ids (in the same database) never do.
            where.rewrite(work, None, [_condition(ENTITY_ID, "=~", r"\.")], show.key_end)
        else:
            raise Refusal(
                "without FROM or a domain condition the values would include the legacy "
                "measurements of the same database; add FROM or \"domain\" = '…'"
            )
        if full_ids:
            work.changes.append("the entity_id values listed are full entity ids (sensor.kitchen)")
        return full_ids


class _Where:
    """The WHERE clause of a statement: its domain condition, entity conditions, fields."""

    def __init__(
        self,
        translator: QueryTranslator,
        where: Expression | None,
        *,
        inner: bool,
        tags_only: bool = False,
        where_start: int | None = None,
    ) -> None:
        self.translator = translator
        self.where = where
        self.where_start = where_start
        self.inner = inner
        self.tags_only = tags_only
        self.domain: str | None = None
        self.domain_node: Expression | None = None
        # Object ids the WHERE limits entity_id to, when it does (for catalog look-ups).
        self.entity_literals: frozenset[str] | None = None
        self._entity_nodes: list[Binary] = []
        self._renames: list[tuple[Identifier, str]] = []
        self._parents: dict[int, Expression | None] = {}
        if where is not None:
            self._index(where, None)
            self._analyse(where)

    def _index(self, node: Expression, parent: Expression | None) -> None:
        self._parents[id(node)] = parent
        for child in _children(node):
            self._index(child, node)

    def _analyse(self, where: Expression) -> None:
        conjuncts = _conjuncts(where)
        top = {id(node) for node in conjuncts}
        for node in walk(where):
            if isinstance(node, Binary) and node.operator in ("AND", "OR"):
                continue
            if isinstance(node, Binary) and _is_comparison(node):
                self._comparison(node, top_level=id(node) in top)
            elif isinstance(node, Identifier) and self._parents[id(node)] is None:
                raise Refusal(f"the condition {node.name!r} alone is not understood")
        sets = [found for node in conjuncts if (found := _entity_set(node)) is not None]
        if sets:
            literals = sets[0]
            for other in sets[1:]:
                literals &= other
            self.entity_literals = literals

    def _comparison(self, node: Binary, *, top_level: bool) -> None:
        identifier, literal = _sides(node)
        if identifier is None:
            return
        name, operator = identifier.name, node.operator
        if name.lower() == "time" and identifier.cast is None:
            return
        tag = self._is_tag(identifier)
        if self.inner:
            if name == DOMAIN:
                raise Refusal("the optimized layout has no domain tag to filter on")
            if name == ENTITY_ID:
                self._entity(node, operator, literal)
            return
        if tag:
            if name == DOMAIN:
                if not (top_level and operator == "=" and isinstance(literal, StringLiteral)):
                    raise Refusal(
                        "a domain condition is translated only as \"domain\" = '…' joined "
                        "to the rest with AND"
                    )
                if variables_in(literal.value):
                    raise Refusal("the domain comes from a template variable")
                if self.domain is not None and self.domain != literal.value:
                    raise Refusal("the query asks for two domains at once")
                if self.domain_node is not None:
                    raise Refusal("the domain condition appears twice")
                self.domain = literal.value
                self.domain_node = node
                return
            if name == ENTITY_ID:
                self._entity(node, operator, literal)
                return
            translator = self.translator
            if name in translator._global_tags:
                return
            if name in translator._identity_tags_attributes:
                if (
                    isinstance(literal, StringLiteral)
                    and not variables_in(literal.value)
                    and literal.value
                    and identity_tag(literal.value) != literal.value
                ):
                    raise Refusal(f"the {name} {literal.value!r} is not kept as a tag as is")
                return
            raise Refusal(f"the tag {name!r} is not in the optimized layout")
        if self.tags_only:
            raise Refusal(f"{name!r} is not a legacy tag")
        self._field_condition(identifier, operator, literal)

    def _is_tag(self, identifier: Identifier) -> bool:
        if identifier.cast == "tag":
            if identifier.name not in self.translator._legacy_tags:
                raise Refusal(f"legacy points have no tag {identifier.name!r}")
            return True
        if identifier.cast == "field":
            return False
        return identifier.name in self.translator._legacy_tags

    def _entity(self, node: Binary, operator: str, literal: Expression | None) -> None:
        entity_variables = self.translator.entity_variables
        if isinstance(literal, StringLiteral) and operator in ("=", "!=", "<>"):
            names = variables_in(literal.value)
            if names:
                if all(n in entity_variables for n in names) and _only_variables(literal.value):
                    return
                raise Refusal(_unknown_variable(names))
            self._entity_nodes.append(node)
            return
        if isinstance(literal, RegexLiteral) and operator in ("=~", "!~"):
            names = variables_in(literal.pattern)
            if names:
                if all(n in entity_variables for n in names) and _only_variables(
                    literal.pattern, anchors=True
                ):
                    return
                raise Refusal(_unknown_variable(names))
            self._entity_nodes.append(node)
            return
        if isinstance(literal, Variable) and operator in ("=~", "!~", "=", "!="):
            names = variables_in(literal.text)
            if all(n in entity_variables for n in names):
                return
            raise Refusal(_unknown_variable(names))
        raise Refusal(f"entity_id {operator} … is not translated")

    def _field_condition(
        self, identifier: Identifier, operator: str, literal: Expression | None
    ) -> None:
        name = identifier.name
        translator = self.translator
        if name in ("value", "state"):
            return
        allowed = translator.optimized.allowed_attributes
        if allowed.get(name) is float:
            return
        base = name.removesuffix("_str")
        if not name.endswith("_str") or not base:
            raise Refusal(_missing_field(name, allowed))
        text = literal.value if isinstance(literal, StringLiteral) else None
        if allowed.get(base) is str:
            if operator == "=" and text is not None and not variables_in(text):
                if attribute_text(text) != text:
                    raise Refusal(
                        f"the optimized field {base} never holds {text!r} (numbers, 'None' "
                        "and '' are left out)"
                    )
                self._renames.append((identifier, quote_identifier(base)))
                return
            raise Refusal(
                f"{name} {operator} … would also match the texts 'None' and '' that the "
                f"optimized field {base} leaves out; only {name} = '…' is translated"
            )
        if base in IDENTITY_ATTRIBUTES:
            legacy = translator.legacy
            names_measurement = base == legacy.measurement_attr or (
                base == DEVICE_CLASS
                and legacy.measurement_attr == MEASUREMENT_ATTR_DOMAIN_DEVICE_CLASS
            )
            if names_measurement and not legacy.override_measurement:
                if translator._override_targets:
                    raise Refusal(f"only entities with an override_measurement have a field {name}")
                raise Refusal(f"legacy points have no field {name}: {base} names the measurement")
            translator._attribute_usable(base)
            if operator == "=" and text and not variables_in(text):
                if identity_tag(text) != text:
                    raise Refusal(f"the {base} {text!r} is not kept as a tag as is")
                self._renames.append((identifier, quote_identifier(base)))
                return
            raise Refusal(
                f"{name} {operator} … also matches points without the attribute once {base} "
                f"is a tag; only {name} = '…' is translated"
            )
        raise Refusal(_missing_field(name, allowed))

    def check_domain_free(self) -> None:
        if self.domain_node is not None:
            raise Refusal("the optimized layout has no domain tag to filter on")

    def rewrite(
        self,
        work: _Statement,
        domain: str | None,
        conditions: list[str] | None = None,
        insert_at: int | None = None,
    ) -> None:
        """Map entity ids to ``domain``, drop the domain condition, add ``conditions``."""
        edits = work.edits
        for node in self._entity_nodes:
            identifier, literal = _sides(node)
            if domain is None:
                raise Refusal("the entities' domain is unknown")
            if isinstance(literal, StringLiteral):
                full = f"{domain}.{literal.value}" if literal.value else ""
                edits.replace(literal.start, literal.end, quote_string(full))
                if literal.value:
                    work.changes.append(f"entity_id '{literal.value}' → '{full}'")
            elif isinstance(literal, RegexLiteral):
                pattern = prefix_object_id_regex(literal.pattern, domain)
                edits.replace(literal.start, literal.end, quote_regex(pattern))
                work.changes.append(f"entity_id /{literal.pattern}/ → /{pattern}/")
        for identifier, replacement in self._renames:
            edits.replace(identifier.start, identifier.end, replacement)
            work.changes.append(f"field {identifier.name} → {replacement}")
        conditions = conditions or []
        added = " AND ".join(conditions)
        where = self.where
        if (domain_node := self.domain_node) is not None:
            if added:
                edits.replace(domain_node.start, domain_node.end, added)
            else:
                self._remove(domain_node, work)
            return
        if not added:
            return
        if where is None:
            assert insert_at is not None
            edits.insert(insert_at, f" WHERE {added}")
        elif isinstance(where, Binary) and where.operator == "OR":
            edits.insert(where.start, f"{added} AND (")
            edits.insert(where.end, ")")
        else:
            edits.insert(where.start, f"{added} AND ")

    def _remove(self, node: Expression, work: _Statement) -> None:
        edits = work.edits
        parent = self._parents.get(id(node))
        if parent is None:
            # The whole clause: drop it, keyword and the space before it included.
            assert self.where_start is not None
            start = self.where_start
            while start > 0 and work.text[start - 1].isspace():
                start -= 1
            edits.replace(start, node.end, "")
            return
        if isinstance(parent, Parenthesized):
            self._remove(parent, work)
            return
        assert isinstance(parent, Binary)
        if parent.lhs is node:
            edits.replace(node.start, parent.rhs.start, "")
        else:
            edits.replace(parent.lhs.end, node.end, "")


# --- Helpers ---------------------------------------------------------------------------------


def _children(node: Expression) -> tuple[Expression, ...]:
    if isinstance(node, Call):
        return node.args
    if isinstance(node, Parenthesized):
        return (node.expression,)
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.lhs, node.rhs)
    return ()


def _conjuncts(node: Expression) -> list[Expression]:
    if isinstance(node, Parenthesized):
        return _conjuncts(node.expression)
    if isinstance(node, Binary) and node.operator == "AND":
        return _conjuncts(node.lhs) + _conjuncts(node.rhs)
    return [node]


def _entity_set(node: Expression) -> frozenset[str] | None:
    """The object ids an OR of ``entity_id = '…'`` conditions allows, else ``None``."""
    if isinstance(node, Parenthesized):
        return _entity_set(node.expression)
    if isinstance(node, Binary) and node.operator == "OR":
        lhs, rhs = _entity_set(node.lhs), _entity_set(node.rhs)
        return None if lhs is None or rhs is None else lhs | rhs
    if isinstance(node, Binary) and node.operator == "=":
        identifier, literal = _sides(node)
        if (
            identifier is not None
            and identifier.name == ENTITY_ID
            and identifier.cast != "field"
            and isinstance(literal, StringLiteral)
            and not variables_in(literal.value)
        ):
            return frozenset({literal.value})
    return None


def _is_comparison(node: Binary) -> bool:
    return node.operator not in ("AND", "OR", "+", "-", "*", "/", "%", "&", "|", "^")


def _sides(node: Binary) -> tuple[Identifier | None, Expression | None]:
    if isinstance(node.lhs, Identifier):
        if isinstance(node.rhs, Identifier):
            raise Refusal("comparing two fields or tags is not translated")
        return node.lhs, node.rhs
    if isinstance(node.rhs, Identifier):
        if isinstance(node.lhs, StringLiteral | RegexLiteral) or node.operator in ("=~", "!~"):
            raise Refusal("write the tag or field on the left of a comparison")
        return node.rhs, node.lhs
    for side in (node.lhs, node.rhs):
        if not isinstance(
            side,
            StringLiteral | NumberLiteral | DurationLiteral | BooleanLiteral | Variable,
        ) and any(isinstance(inner, Identifier) for inner in walk(side)):
            for inner in walk(side):
                if isinstance(inner, Identifier) and inner.name.lower() != "time":
                    raise Refusal(
                        f"a calculation with {inner.name!r} in a condition is not translated"
                    )
    return None, None


def _only_variables(text: str, *, anchors: bool = False) -> bool:
    from ..engine.influxql import VARIABLE  # noqa: PLC0415 - one compiled pattern, shared

    rest = VARIABLE.sub("", text)
    if anchors:
        rest = rest.replace("^", "").replace("$", "").replace("(", "").replace(")", "")
        rest = rest.replace("?:", "")
    return rest == ""


def _unknown_variable(names: list[str]) -> str:
    listed = ", ".join(f"${name}" for name in dict.fromkeys(names))
    return (
        f"the entity_id condition uses {listed}, whose values may be legacy object ids: "
        "translate the whole dashboard (its entity_id variables then list full ids) or name "
        "the variable as one that holds full entity ids"
    )


def _missing_field(name: str, allowed: Mapping[str, type]) -> str:
    listed = ", ".join(
        f"{attribute}_str→{attribute}" if kind is str else attribute
        for attribute, kind in sorted(allowed.items())
    )
    return (
        f"the field {name!r} is not in the optimized layout (it keeps value, state and the "
        f"allow-listed attributes: {listed}); add the attribute to the allow-list"
    )


def _display(name: str) -> str:
    return quote_identifier(name)


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
    "LegacyCatalog",
    "MeasurementContents",
    "QuerySyntaxError",
    "QueryTranslator",
    "Refusal",
    "Translation",
    "catalog_entities_query",
    "literal_set",
    "looks_like_entity_id",
    "prefix_object_id_regex",
    "translate_query",
]
