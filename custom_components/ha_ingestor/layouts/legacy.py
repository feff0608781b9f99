"""HA core's `influxdb` "legacy layout": the point core writes for a state, reproduced exactly.

The ingestor writes this layout as a drop-in replacement for core, and the backfill has to read
history that core wrote in it, so every rule here mirrors core's ``event_to_json``
(``homeassistant/components/influxdb/__init__.py``) and is checked against it by golden tests.

What lands in the database is mirrored rather than core's intermediate JSON: tag values are the
text both InfluxDB client libraries send (``str(value)``; ``None`` and empty values are left out),
and the time is the exact nanosecond of ``time_fired``. One deliberate deviation: an attribute
whose ``float()`` overflows (an integer beyond 1e308) makes core raise and lose the whole state;
here it is stored like any other non-numeric value. The points are sent with the escaping of
core's client (:func:`core_encoder`), so the server stores the bytes it stores for core.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
import math
import re
from typing import Any, Final, Self, cast

from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import State
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.entity_values import EntityValues
from homeassistant.helpers.state import state_as_number
import voluptuous as vol

from ..const import (
    CONF_COMPONENT_CONFIG,
    CONF_COMPONENT_CONFIG_DOMAIN,
    CONF_COMPONENT_CONFIG_GLOB,
    CONF_DEFAULT_MEASUREMENT,
    CONF_IGNORE_ATTRIBUTES,
    CONF_MEASUREMENT_ATTR,
    CONF_OVERRIDE_MEASUREMENT,
    CONF_TAGS,
    CONF_TAGS_ATTRIBUTES,
    MEASUREMENT_ATTR_DOMAIN_DEVICE_CLASS,
    MEASUREMENT_ATTR_ENTITY_ID,
    MEASUREMENT_ATTR_UNIT,
)
from ..engine.influx import ApiVersion
from ..engine.line_protocol import (
    Encoder,
    FieldValue,
    Point,
    encode_like_core_v1,
    encode_like_core_v2,
    to_time_ns,
)

# States core never writes (it checks them before anything else).
SKIPPED_STATES: Final = frozenset({STATE_UNKNOWN, STATE_UNAVAILABLE, ""})

# Core's RE_DIGIT_TAIL / RE_DECIMAL, copied because importing core's influxdb package pulls in
# its client libraries. A text such as "12.5 %" also yields the number 12.5.
_DIGIT_TAIL: Final = re.compile(r"^[^\.]*\d+\.?\d+[^\.]*$")
_NON_DECIMAL: Final = re.compile(r"[^\d.]+")

_CUSTOMIZE_SCHEMA: Final = vol.Schema(
    {
        vol.Optional(CONF_OVERRIDE_MEASUREMENT): cv.string,
        vol.Optional(CONF_IGNORE_ATTRIBUTES): vol.All(cv.ensure_list, [cv.string]),
    }
)

# Core's options schema for these keys, except that measurement_attr may name any attribute
# (core's own code handles any name; only its YAML schema limits it to three).
LEGACY_OPTIONS_SCHEMA: Final = vol.Schema(
    {
        vol.Optional(CONF_MEASUREMENT_ATTR, default=MEASUREMENT_ATTR_UNIT): cv.string,
        vol.Optional(CONF_DEFAULT_MEASUREMENT): vol.Any(None, cv.string),
        vol.Optional(CONF_OVERRIDE_MEASUREMENT): vol.Any(None, cv.string),
        vol.Optional(CONF_TAGS, default={}): vol.Schema({cv.string: cv.string}),
        vol.Optional(CONF_TAGS_ATTRIBUTES, default=[]): vol.All(cv.ensure_list, [cv.string]),
        vol.Optional(CONF_IGNORE_ATTRIBUTES, default=[]): vol.All(cv.ensure_list, [cv.string]),
        vol.Optional(CONF_COMPONENT_CONFIG, default={}): vol.Schema(
            {cv.entity_id: _CUSTOMIZE_SCHEMA}
        ),
        vol.Optional(CONF_COMPONENT_CONFIG_GLOB, default={}): vol.Schema(
            {cv.string: _CUSTOMIZE_SCHEMA}
        ),
        vol.Optional(CONF_COMPONENT_CONFIG_DOMAIN, default={}): vol.Schema(
            {cv.string: _CUSTOMIZE_SCHEMA}
        ),
    },
    extra=vol.REMOVE_EXTRA,
)


@dataclass(frozen=True, slots=True)
class EntityCustomization:
    """Core's per-entity settings; ``None`` means "not set here", so a broader level applies."""

    override_measurement: str | None = None
    ignore_attributes: frozenset[str] | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        """Build from an already validated ``component_config*`` entry."""
        ignore = options.get(CONF_IGNORE_ATTRIBUTES)
        return cls(
            override_measurement=options.get(CONF_OVERRIDE_MEASUREMENT),
            ignore_attributes=None if ignore is None else frozenset(ignore),
        )

    def as_config(self) -> dict[str, Any]:
        """The keys this level sets, as core's component_config holds them."""
        config: dict[str, Any] = {}
        if self.override_measurement is not None:
            config[CONF_OVERRIDE_MEASUREMENT] = self.override_measurement
        if self.ignore_attributes is not None:
            config[CONF_IGNORE_ATTRIBUTES] = self.ignore_attributes
        return config


class EntityCustomizations:
    """Resolves core's component_config, _domain and _glob for one entity.

    The levels merge key by key exactly as core merges them, through HA's ``EntityValues``:
    domain first, then every matching glob in order, then the exact entity id.
    """

    def __init__(
        self,
        exact: Mapping[str, EntityCustomization],
        domain: Mapping[str, EntityCustomization],
        glob: Mapping[str, EntityCustomization],
        *,
        override_measurement: str | None,
        ignore_attributes: frozenset[str],
    ) -> None:
        """Index the three levels; the global options complete every entity's result."""
        self._values = EntityValues(
            *(
                cast(dict[str, dict[str, str]], {k: v.as_config() for k, v in level.items()})
                for level in (exact, domain, glob)
            )
        )
        self._override_measurement = override_measurement or None
        self._ignore_attributes = ignore_attributes
        # Resolved per entity id; bounded by the number of entities, looked up on every state.
        self._resolved: dict[str, tuple[str | None, frozenset[str]]] = {}

    def resolve(self, entity_id: str) -> tuple[str | None, frozenset[str]]:
        """The measurement override (entity level, else global) and the ignored attributes."""
        if (resolved := self._resolved.get(entity_id)) is not None:
            return resolved
        config: Mapping[str, Any] = self._values.get(entity_id)
        override = config.get(CONF_OVERRIDE_MEASUREMENT)
        if override in (None, ""):
            override = self._override_measurement
        ignored = self._ignore_attributes.union(config.get(CONF_IGNORE_ATTRIBUTES, ()))
        resolved = (override, ignored)
        self._resolved[entity_id] = resolved
        return resolved


def _customizations(options: Mapping[str, Any]) -> dict[str, EntityCustomization]:
    return {key: EntityCustomization.from_options(value) for key, value in options.items()}


@dataclass(frozen=True)
class LegacyOptions:
    """The options of core's influxdb integration that shape the points it writes."""

    measurement_attr: str = MEASUREMENT_ATTR_UNIT
    default_measurement: str | None = None
    override_measurement: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    tags_attributes: tuple[str, ...] = ()
    ignore_attributes: frozenset[str] = frozenset()
    component_config: Mapping[str, EntityCustomization] = field(default_factory=dict)
    component_config_domain: Mapping[str, EntityCustomization] = field(default_factory=dict)
    component_config_glob: Mapping[str, EntityCustomization] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        """Build from plain config keys named as core names them; unrelated keys are ignored.

        Raises ``vol.Invalid`` for values core would reject.
        """
        conf = LEGACY_OPTIONS_SCHEMA(dict(options))
        return cls(
            measurement_attr=conf[CONF_MEASUREMENT_ATTR],
            default_measurement=conf.get(CONF_DEFAULT_MEASUREMENT),
            override_measurement=conf.get(CONF_OVERRIDE_MEASUREMENT),
            tags=conf[CONF_TAGS],
            tags_attributes=tuple(conf[CONF_TAGS_ATTRIBUTES]),
            ignore_attributes=frozenset(conf[CONF_IGNORE_ATTRIBUTES]),
            component_config=_customizations(conf[CONF_COMPONENT_CONFIG]),
            component_config_domain=_customizations(conf[CONF_COMPONENT_CONFIG_DOMAIN]),
            component_config_glob=_customizations(conf[CONF_COMPONENT_CONFIG_GLOB]),
        )

    @cached_property
    def customizations(self) -> EntityCustomizations:
        """Per-entity overrides and ignored attributes, resolved once per entity."""
        return EntityCustomizations(
            self.component_config,
            self.component_config_domain,
            self.component_config_glob,
            override_measurement=self.override_measurement,
            ignore_attributes=self.ignore_attributes,
        )

    def fallback_measurement(self, entity_id: str) -> str:
        """The measurement used when ``measurement_attr`` gives nothing."""
        return self.default_measurement or entity_id


def core_encoder(api_version: ApiVersion) -> Encoder:
    """The line encoding of core's client for this server version: what the legacy writer
    sends, so the server stores what it stores for core."""
    return encode_like_core_v1 if api_version is ApiVersion.V1 else encode_like_core_v2


def attribute_number(value: object) -> float | None:
    """The numeric field the legacy layout stores for an attribute value, if any.

    ``float(value)``, else the digit-tail reading of its text ("12.5 %" → 12.5); NaN and
    infinities are dropped because InfluxDB cannot store them.
    """
    try:
        number = float(value)  # type: ignore[arg-type]
    except (ValueError, TypeError, OverflowError):
        text = str(value)
        if not _DIGIT_TAIL.match(text):
            return None
        number = float(_NON_DECIMAL.sub("", text))
    return number if math.isfinite(number) else None


def _attribute_fields(value: object) -> tuple[float | None, str | None]:
    """The legacy ``<attr>`` number (possibly not finite) and ``<attr>_str`` text of a value."""
    try:
        return float(value), None  # type: ignore[arg-type]
    except (ValueError, TypeError, OverflowError):
        text = str(value)
        if _DIGIT_TAIL.match(text):
            return float(_NON_DECIMAL.sub("", text)), text
        return None, text


def state_fields(state: State) -> tuple[float | None, str | None]:
    """The ``value`` and ``state`` fields for a state, by core's rule.

    A number gives ``value`` only (NaN and infinities included, as core passes them on);
    a state ``state_as_number`` understands (on/off, home/not_home, …) gives both;
    anything else gives ``state`` only.
    """
    try:
        return float(state.state), None
    except ValueError:
        try:
            return float(state_as_number(state)), state.state
        except ValueError:
            return None, state.state


class LegacyLayout:
    """Turns states into the points HA core's influxdb integration writes."""

    def __init__(self, options: LegacyOptions) -> None:
        """Precompute everything that depends only on the options."""
        self.options = options
        self._customizations = options.customizations
        self._measurement_attr = options.measurement_attr
        self._default_measurement = options.default_measurement
        self._tags_attributes = frozenset(options.tags_attributes)
        self._global_tags = dict(options.tags)
        self._uses_unit = options.measurement_attr == MEASUREMENT_ATTR_UNIT

    def point(self, state: State, time_fired: datetime) -> Point | None:
        """The point core writes for ``state``, or ``None`` when core writes nothing."""
        if state.state in SKIPPED_STATES:
            return None
        entity_id = state.entity_id
        attributes = state.attributes
        override, ignored = self._customizations.resolve(entity_id)

        include_uom = include_dc = True
        measurement: Any = override
        if measurement is None:
            measurement_attr = self._measurement_attr
            if measurement_attr == MEASUREMENT_ATTR_ENTITY_ID:
                measurement = entity_id
            elif measurement_attr == MEASUREMENT_ATTR_DOMAIN_DEVICE_CLASS:
                device_class = attributes.get("device_class")
                if device_class is None:
                    measurement = state.domain
                else:
                    measurement = f"{state.domain}__{device_class}"
                    include_dc = False
            else:
                measurement = attributes.get(measurement_attr)
            if measurement in (None, ""):
                measurement = self._default_measurement or entity_id
            else:
                include_uom = not self._uses_unit

        fields: dict[str, FieldValue] = {}
        value, state_text = state_fields(state)
        if state_text is not None:
            fields["state"] = state_text
        if value is not None:
            fields["value"] = value

        tags: dict[str, Any] = {"domain": state.domain, "entity_id": state.object_id}
        tags_attributes = self._tags_attributes
        for name, attribute in attributes.items():
            if name in tags_attributes:
                tags[name] = attribute
                continue
            if (
                name in ignored
                or (name == "unit_of_measurement" and not include_uom)
                or (name == "device_class" and not include_dc)
            ):
                continue
            key = f"{name}_" if name in fields else name
            number, text = _attribute_fields(attribute)
            if text is not None:
                fields[f"{key}_str"] = text
            if number is not None:
                # Core stores the number and then deletes it when it is not finite, which also
                # removes a field an earlier attribute had written under the same key.
                if math.isfinite(number):
                    fields[key] = number
                else:
                    fields.pop(key, None)
        tags.update(self._global_tags)

        return Point(
            measurement if type(measurement) is str else str(measurement),
            {
                key: text
                for key, tag in tags.items()
                if key and tag is not None and (text := tag if type(tag) is str else str(tag))
            },
            fields,
            to_time_ns(time_fired),
        )
