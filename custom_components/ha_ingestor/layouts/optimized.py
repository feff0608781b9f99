"""Our optimized layout, and the one transform that turns legacy points into it.

One measurement per domain and the full entity id as a tag, so a unit or name change never
moves history to another measurement; ``value`` always a float and ``state`` always a string;
only allow-listed attributes as fields, each with one fixed type, so fields never conflict and
cardinality stays predictable.

:func:`to_optimized` sees only a legacy point, yet must give exactly the point
:class:`OptimizedLayout` writes for the same state, so backfilled history and live data are one
series. Each rule is therefore one that both sides can compute:

- Unit, device class and friendly name tags: a value that reads as a number is written as the
  number's canonical text ("1984.0" → "1984"), since the legacy layout keeps only its float;
  ``None``, "None" (core's text for ``None``), empty and non-finite values give no tag.
- A textual attribute (``hvac_mode`` …) whose value reads as a number, or is ``None``, "None"
  or empty, is dropped; a numeric attribute without a number (not even a digit tail such as
  "12 %") is dropped.
- ``ignore_attributes`` (global and per entity, resolved as core does) applies here too: an
  ignored attribute is absent from both sides, even where the legacy point still shows it (a
  ``tags_attributes`` tag, or the unit or device class in the measurement name).
- A non-finite state ("nan", "inf") gives no ``value``: InfluxDB cannot store it.
- A global tag that the legacy options also set keeps the value the legacy point carries
  (several HA instances may share one database); other global tags take the configured value.
- Text (the state, textual attributes, unit, device class and friendly name tags) carries a
  line break as backslash + "n": core's history keeps a line break so, the same as a typed
  backslash + "n", so that is the one form the backfill can give (``as_stored_text``).
- The legacy point is the one the server gives back: its names are read back from what
  InfluxDB keeps of core's escaping (doubled backslashes, backslash + "n"), see
  ``line_protocol.name_from_stored``.

What a legacy point cannot tell, so the two sides may differ (the property test excludes
exactly these): ``domain``/``entity_id`` overwritten by ``tags_attributes`` or global tags; an
attribute both in ``tags_attributes`` and in the global tags; a unit equal to the fallback
measurement (``default_measurement``, else the entity id) when the unit names the measurement;
a boolean unit, device class, friendly name or allow-listed attribute that the legacy layout
kept as text (a tag, or the measurement name), since the text "True" does not read as the
number 1 the live side sees; an allow-listed name ending in ``_`` or ``_str``, which a renamed
legacy field can collide with; names core's client line loses or garbles on the server (the
README's lossy corners), which it keeps repaired or stripped.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache
import math
from operator import itemgetter
from types import MappingProxyType
from typing import Any, Final, Self

from homeassistant.core import State, valid_entity_id
from homeassistant.exceptions import InvalidStateError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.state import state_as_number
import voluptuous as vol

from ..const import MEASUREMENT_ATTR_DOMAIN_DEVICE_CLASS, MEASUREMENT_ATTR_UNIT
from ..engine.line_protocol import (
    FieldValue,
    Point,
    as_stored_text,
    encode,
    measurement_from_stored,
    name_from_stored,
    read_back_field_key,
    read_back_tag,
    stored_name,
    to_time_ns,
)
from .legacy import (
    SKIPPED_STATES,
    EntityCustomization,
    EntityCustomizations,
    LegacyOptions,
    attribute_number,
    state_fields,
)

type AttributeType = type[float] | type[str]
type AreaLookup = Callable[[str], str | None]

CONF_ALLOWED_ATTRIBUTES: Final = "allowed_attributes"

DEFAULT_ALLOWED_ATTRIBUTES: Final[Mapping[str, AttributeType]] = MappingProxyType(
    {
        "brightness": float,
        "color_temp": float,
        "temperature": float,
        "current_temperature": float,
        "target_temp_high": float,
        "target_temp_low": float,
        "humidity": float,
        "current_humidity": float,
        "hvac_action": str,
        "hvac_mode": str,
        "preset_mode": str,
        "fan_mode": str,
        "position": float,
        "current_position": float,
        "battery_level": float,
    }
)

# Attributes that become tags: they say what a series is, not what it measured.
IDENTITY_ATTRIBUTES: Final = ("device_class", "unit_of_measurement", "friendly_name")

# Field and tag names of this layout that an allow-listed attribute would collide with.
RESERVED_NAMES: Final = frozenset({"value", "state", "entity_id", "area", *IDENTITY_ATTRIBUTES})

_ATTRIBUTE_TYPES: Final[Mapping[str, AttributeType]] = MappingProxyType(
    {"float": float, "str": str}
)

OPTIMIZED_OPTIONS_SCHEMA: Final = vol.Schema(
    {
        vol.Optional(CONF_ALLOWED_ATTRIBUTES): vol.Schema(
            {cv.string: vol.All(cv.string, vol.In(list(_ATTRIBUTE_TYPES)))}
        )
    },
    extra=vol.ALLOW_EXTRA,
)


@dataclass(frozen=True)
class OptimizedOptions:
    """What shapes an optimized point: the attribute allow-list, global tags, ignored attributes.

    The ignore settings are core's (``ignore_attributes`` and the per-entity ones), so one
    options mapping configures both layouts the same way.
    """

    allowed_attributes: Mapping[str, AttributeType] = DEFAULT_ALLOWED_ATTRIBUTES
    tags: Mapping[str, str] = field(default_factory=dict)
    ignore_attributes: frozenset[str] = frozenset()
    component_config: Mapping[str, EntityCustomization] = field(default_factory=dict)
    component_config_domain: Mapping[str, EntityCustomization] = field(default_factory=dict)
    component_config_glob: Mapping[str, EntityCustomization] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Reject allow-lists that would make a field collide or change type."""
        for name, kind in self.allowed_attributes.items():
            if name in RESERVED_NAMES or not name:
                raise ValueError(f"Attribute {name!r} cannot be allow-listed: name is reserved")
            if kind not in (float, str):
                raise ValueError(f"Attribute {name!r} must be float or str, not {kind!r}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        """Build from the same plain config keys as :meth:`LegacyOptions.from_options`.

        ``allowed_attributes`` maps attribute names to "float" or "str"; absent, the default
        allow-list applies. Raises ``vol.Invalid`` or ``ValueError`` for invalid options.
        """
        conf = OPTIMIZED_OPTIONS_SCHEMA(dict(options))
        legacy = LegacyOptions.from_options(conf)
        allowed = conf.get(CONF_ALLOWED_ATTRIBUTES)
        return cls(
            allowed_attributes=(
                DEFAULT_ALLOWED_ATTRIBUTES
                if allowed is None
                else {name: _ATTRIBUTE_TYPES[kind] for name, kind in allowed.items()}
            ),
            tags=legacy.tags,
            ignore_attributes=legacy.ignore_attributes,
            component_config=legacy.component_config,
            component_config_domain=legacy.component_config_domain,
            component_config_glob=legacy.component_config_glob,
        )

    @cached_property
    def customizations(self) -> EntityCustomizations:
        """Ignored attributes per entity (measurement overrides do not apply to this layout)."""
        return EntityCustomizations(
            self.component_config,
            self.component_config_domain,
            self.component_config_glob,
            override_measurement=None,
            ignore_attributes=self.ignore_attributes,
        )


def _number_text(number: float) -> str | None:
    """Canonical text of a number: integers without ".0"; nothing for NaN and infinities."""
    if not math.isfinite(number):
        return None
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number)


def _tag_text(text: str) -> str | None:
    """A tag from text: numbers canonical, "None" and empty text no tag, a line break as
    the backslash + "n" core's history holds (see ``as_stored_text``)."""
    if text in ("", "None"):
        return None
    try:
        number = float(text)
    except ValueError:
        return as_stored_text(text)
    return _number_text(number)


def identity_tag(value: object) -> str | None:
    """The tag text of a unit, device class or friendly name attribute value."""
    if value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:
        return None
    except (ValueError, TypeError):
        return _tag_text(str(value))
    return _number_text(number)


def _reads_as_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except OverflowError:
        return True
    except (ValueError, TypeError):
        return False
    return True


def attribute_text(value: object) -> str | None:
    """The value of a textual attribute field, or ``None`` when it is not text."""
    if value is None or _reads_as_number(value):
        return None
    text = str(value)
    if text in ("", "None") or _reads_as_number(text):
        return None
    return as_stored_text(text)


def _attribute_value(value: object, kind: AttributeType) -> FieldValue | None:
    return attribute_number(value) if kind is float else attribute_text(value)


def _finished_tags(tags: dict[str, str], global_tags: Mapping[str, str]) -> dict[str, str]:
    tags.update(global_tags)
    return {key: text for key, text in tags.items() if key and text}


class OptimizedLayout:
    """Turns states into optimized points (measurement = domain, entity as a tag)."""

    def __init__(self, options: OptimizedOptions, area_of: AreaLookup | None = None) -> None:
        """Keep the options; ``area_of`` maps an entity id to its area name, if it has one."""
        self.options = options
        self._customizations = options.customizations
        self._allowed = dict(options.allowed_attributes)
        self._global_tags = dict(options.tags)
        self._area_of = area_of

    def point(self, state: State, time_fired: datetime) -> Point | None:
        """The optimized point for ``state``, or ``None`` when there is nothing to write."""
        if state.state in SKIPPED_STATES:
            return None
        entity_id = state.entity_id
        attributes = state.attributes
        _, ignored = self._customizations.resolve(entity_id)

        fields: dict[str, FieldValue] = {}
        value, state_text = state_fields(state)
        if value is not None and math.isfinite(value):
            fields["value"] = value
        if state_text is not None:
            fields["state"] = as_stored_text(state_text)
        allowed = self._allowed
        for name, attribute in attributes.items():
            if (
                (kind := allowed.get(name)) is not None
                and name not in ignored
                and (field_value := _attribute_value(attribute, kind)) is not None
            ):
                fields[name] = field_value
        if not fields:
            return None

        tags = {"entity_id": entity_id}
        for name in IDENTITY_ATTRIBUTES:
            if name not in ignored and (text := identity_tag(attributes.get(name))) is not None:
                tags[name] = text
        if self._area_of is not None and (area := self._area_of(entity_id)):
            tags["area"] = area
        return Point(
            state.domain,
            _finished_tags(tags, self._global_tags),
            fields,
            to_time_ns(time_fired),
        )


@lru_cache(maxsize=1024)
def _state_number(text: str) -> float | None:
    """``state_as_number`` for a state text read back from a legacy point."""
    try:
        return float(state_as_number(State("sensor.legacy", text, validate_entity_id=False)))
    except (ValueError, InvalidStateError):
        return None


def _stored_number(value: object) -> float | None:
    """A numeric field as read back (InfluxDB's JSON turns 12.0 into 12)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _legacy_identity(
    name: str,
    legacy: Point,
    options: LegacyOptions,
    *,
    measurement_overridden: bool,
    entity_id: str,
    domain: str,
) -> str | None:
    """Invert the legacy rules for where a unit, device class or friendly name went."""
    if name in options.tags_attributes:
        tag = legacy.tags.get(read_back_tag(name))
        return _tag_text(tag) if tag else None
    if not measurement_overridden:
        measurement = legacy.measurement
        if name == "unit_of_measurement" and options.measurement_attr == MEASUREMENT_ATTR_UNIT:
            # The unit named the measurement, else the fallback did and there was no unit.
            if measurement == options.fallback_measurement(entity_id):
                return None
            return _tag_text(measurement)
        if (
            name == "device_class"
            and options.measurement_attr == MEASUREMENT_ATTR_DOMAIN_DEVICE_CLASS
        ):
            prefix = f"{domain}__"
            if not measurement.startswith(prefix):
                return None
            return _tag_text(measurement[len(prefix) :])
    # A text field exists exactly when the value was not a number; an attribute literally
    # named "<name>_str" can only write a number there.
    number_key, text_key = _legacy_field_keys(name)
    text = legacy.fields.get(text_key)
    if isinstance(text, str):
        return _tag_text(text)
    number = _stored_number(legacy.fields.get(number_key))
    return None if number is None else _number_text(number)


@lru_cache(maxsize=1024)
def _legacy_field_keys(name: str) -> tuple[str, str]:
    """The keys of an attribute's number and text fields in a legacy point read back."""
    return read_back_field_key(name), read_back_field_key(f"{name}_str")


def _stored_field_keys(name: str) -> set[str]:
    """The keys the server holds an attribute's legacy fields under: as written by core's
    1.x client, by its 2.x client, and unescaped (older data of ours)."""
    keys = set()
    for key in (name, f"{name}_str"):
        keys |= {
            key,
            stored_name(read_back_field_key(key)),
            key.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r"),
        }
    return keys


def _names_read_back(legacy: Point) -> Point:
    """The legacy point with its names as the attribute texts core wrote (see
    ``name_from_stored``); string values stay as stored."""
    measurement = measurement_from_stored(legacy.measurement)
    tags = legacy.tags
    # A tag the row lacks reads back as null.
    if any("\\" in key or (value and "\\" in value) for key, value in tags.items()):
        tags = {
            name_from_stored(key): name_from_stored(value) if value else value
            for key, value in tags.items()
        }
    fields = legacy.fields
    if any("\\" in key for key in fields):
        fields = {name_from_stored(key): value for key, value in fields.items()}
    if measurement is legacy.measurement and tags is legacy.tags and fields is legacy.fields:
        return legacy
    return Point(measurement, tags, fields, legacy.time_ns)


def _legacy_attribute(
    name: str, kind: AttributeType, legacy: Point, options: LegacyOptions
) -> FieldValue | None:
    if name in options.tags_attributes:
        tag = legacy.tags.get(read_back_tag(name))
        return _attribute_value(tag, kind) if tag else None
    number_key, text_key = _legacy_field_keys(name)
    if kind is float:
        return _stored_number(legacy.fields.get(number_key))
    text = legacy.fields.get(text_key)
    return attribute_text(text) if isinstance(text, str) else None


def to_optimized(
    legacy: Point,
    legacy_options: LegacyOptions,
    optimized_options: OptimizedOptions,
    area_of: AreaLookup | None = None,
) -> Point | None:
    """The optimized point for a point written in the legacy layout with ``legacy_options``.

    Gives what :meth:`OptimizedLayout.point` gives for the same state (see the module
    docstring for the cases the legacy layout cannot tell apart); ``None`` when the point has
    no entity or nothing to write. ``legacy`` is the point as the server gives it back.
    """
    legacy = _names_read_back(legacy)
    legacy_tags = legacy.tags
    legacy_fields = legacy.fields
    domain = legacy_tags.get("domain")
    object_id = legacy_tags.get("entity_id")
    if not domain or not object_id:
        return None
    entity_id = f"{domain}.{object_id}"
    if not valid_entity_id(entity_id):
        # A global tag named domain or entity_id replaced the real ones (core writes global
        # tags last): the entity cannot be told from the point.
        return None
    _, ignored = optimized_options.customizations.resolve(entity_id)

    fields: dict[str, FieldValue] = {}
    # A text "state" field is always the state itself: an attribute named "state" is either a
    # number or renamed "state_str". A "value" beside it may be an attribute named "value".
    stored_state = legacy_fields.get("state")
    state_text: str | None = None
    if isinstance(stored_state, str):
        try:
            value: float | None = float(stored_state)
        except ValueError:
            value = _state_number(stored_state)
            state_text = as_stored_text(stored_state)
    else:
        value = _stored_number(legacy_fields.get("value"))
        state_text = None
    if value is not None and math.isfinite(value):
        fields["value"] = value
    if state_text is not None:
        fields["state"] = state_text
    for name, kind in optimized_options.allowed_attributes.items():
        if name not in ignored and (
            (field_value := _legacy_attribute(name, kind, legacy, legacy_options)) is not None
        ):
            fields[name] = field_value
    if not fields:
        return None

    override, _ = legacy_options.customizations.resolve(entity_id)
    tags = {"entity_id": entity_id}
    for name in IDENTITY_ATTRIBUTES:
        if name not in ignored and (
            text := _legacy_identity(
                name,
                legacy,
                legacy_options,
                measurement_overridden=override is not None,
                entity_id=entity_id,
                domain=domain,
            )
        ):
            tags[name] = text
    if area_of is not None and (area := area_of(entity_id)):
        tags["area"] = area
    # A missing or empty instance tag (older data) takes the configured value.
    global_tags = {
        key: (legacy_tags.get(read_back_tag(key)) or configured)
        if key in legacy_options.tags
        else configured
        for key, configured in optimized_options.tags.items()
    }
    return Point(domain, _finished_tags(tags, global_tags), fields, legacy.time_ns)


# A finite stand-in for the value while the rest of a record is converted (see SeriesEncoder).
_PLACEHOLDER: Final = 0.0
_PLACEHOLDER_SUFFIX: Final = " value=0.0 0"


@dataclass(frozen=True)
class LegacyTransform:
    """:func:`to_optimized` with its options bound: what the backfill and validation apply."""

    legacy_options: LegacyOptions
    optimized_options: OptimizedOptions
    area_of: AreaLookup | None = None

    def __call__(self, legacy: Point) -> Point | None:
        """The optimized point for one legacy point (see :func:`to_optimized`)."""
        return to_optimized(legacy, self.legacy_options, self.optimized_options, self.area_of)

    @cached_property
    def fields_read(self) -> frozenset[str]:
        """The legacy fields the transform looks at; the others cannot change its result.

        Legacy points carry every attribute (icons, colour modes, supported features …):
        reading only these saves the server most of the work of a bulk read.
        """
        names = {*self.optimized_options.allowed_attributes, *IDENTITY_ATTRIBUTES}
        return frozenset({"value", "state"}.union(*map(_stored_field_keys, names)))

    def series_encoder(
        self, fields: Sequence[str], point_of: Callable[[Sequence[Any]], Point | None]
    ) -> "SeriesEncoder":
        """An encoder for the rows of one legacy series (see :class:`SeriesEncoder`)."""
        return SeriesEncoder(self, fields, point_of)


class SeriesEncoder:
    """The optimized lines, without their timestamps, of the records of one legacy series.

    A row is ``[time_ns, value_1, …]`` with one value per name in ``fields`` as the server
    sent it, and ``point_of(row)`` is its legacy point. For every row this gives exactly
    ``encode(to_optimized(point_of(row)))`` up to the last space (``""`` when that is
    ``None``), but converts each distinct record once: a series' tags and attributes rarely
    change while its value does, so a record with a numeric value is remembered without the
    value, which is formatted in place. This relies on how :func:`to_optimized` treats a
    record without a textual state: its ``value`` field is the legacy ``value`` as a float
    when that is a finite number, absent otherwise, and written first.
    """

    __slots__ = ("_lines", "_parts", "_point_of", "_rest", "_state", "_transform", "_value")

    # Distinct records remembered, of each kind; beyond this the memory starts afresh.
    MEMO_LIMIT: Final = 4_096

    def __init__(
        self,
        transform: LegacyTransform,
        fields: Sequence[str],
        point_of: Callable[[Sequence[Any]], Point | None],
    ) -> None:
        """Prepare for rows of ``fields``; ``point_of`` turns a row into its legacy point."""
        self._transform = transform
        self._point_of = point_of
        # Row indexes (0 is the time).
        self._value = fields.index("value") + 1 if "value" in fields else None
        self._state = fields.index("state") + 1 if "state" in fields else None
        rest = [index for index in range(1, len(fields) + 1) if index != self._value]
        # The record without its time and value, as a dictionary key.
        self._rest: Callable[[Sequence[Any]], object] = (
            itemgetter(*rest) if rest else lambda row: ()
        )
        # The row without its time → the line without its timestamp.
        self._lines: dict[tuple[Any, ...], str] = {}
        # A row with a numeric value, without its time and value → the line's series key and
        # its fields besides "value".
        self._parts: dict[object, tuple[str, str]] = {}

    def __call__(self, row: Sequence[Any]) -> str:
        """The optimized line of ``row`` without its timestamp; ``""`` when nothing is written."""
        value_index = self._value
        state_index = self._state
        if value_index is None or (state_index is not None and isinstance(row[state_index], str)):
            # A textual state: the value is derived from it, so the whole record is the key.
            key = tuple(row[1:])
            if (line := self._lines.get(key)) is None:
                line = _remember(self._lines, key, self._whole_line(row))
            return line
        rest = self._rest(row)
        if (parts := self._parts.get(rest)) is None:
            parts = _remember(self._parts, rest, self._split_line(row, value_index))
        head, tail = parts
        if not head:
            return ""
        value = row[value_index]
        if type(value) is float or type(value) is int:
            number = float(value)
            if math.isfinite(number):
                return f"{head} value={number!r},{tail}" if tail else f"{head} value={number!r}"
        return f"{head} {tail}" if tail else ""

    def _whole_line(self, row: Sequence[Any]) -> str:
        point = self._point_of(row)
        optimized = None if point is None else self._transform(point)
        line = None if optimized is None else encode(optimized)
        return "" if line is None else line[: line.rindex(" ")]

    def _split_line(self, row: Sequence[Any], value_index: int) -> tuple[str, str]:
        """The series key and the fields besides "value" of a record with a numeric value."""
        probe = list(row)
        probe[0] = 0
        probe[value_index] = _PLACEHOLDER
        point = self._point_of(probe)
        optimized = None if point is None else self._transform(point)
        if optimized is None:
            # No entity to write for: no value can change that.
            return "", ""
        head_line = encode(Point(optimized.measurement, optimized.tags, {"value": _PLACEHOLDER}, 0))
        if head_line is None or not head_line.endswith(_PLACEHOLDER_SUFFIX):
            raise ValueError(f"unexpected encoding of {optimized}")
        head = head_line[: -len(_PLACEHOLDER_SUFFIX)]
        others = {name: value for name, value in optimized.fields.items() if name != "value"}
        line = encode(Point(optimized.measurement, optimized.tags, others, 0))
        # The encoder writes "<series key> <fields> <time>": the key is the one above.
        return head, "" if line is None else line[len(head) + 1 : -2]


def _remember[K, V](memo: dict[K, V], key: K, value: V) -> V:
    if len(memo) >= SeriesEncoder.MEMO_LIMIT:
        memo.clear()
    memo[key] = value
    return value
