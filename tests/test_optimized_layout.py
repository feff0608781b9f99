"""The optimized layout, and the transform that turns legacy points into it.

The property at the end is the migration's guarantee: for any state and options, the point the
backfill derives from the legacy point equals the point the live writer writes, so backfilled
history and live data form the same series.
"""

from datetime import UTC, datetime
import math
from typing import Any

from homeassistant.core import State
from hypothesis import HealthCheck, assume, given, settings, strategies as st
import pytest
import voluptuous as vol

from custom_components.ha_ingestor.engine.influx import SeriesBlock
from custom_components.ha_ingestor.engine.line_protocol import (
    FieldValue,
    Point,
    as_stored_text,
    encode,
    measurement_from_stored,
    name_from_stored,
    sanitize_name,
    stored_by_influxdb_v1,
    to_time_ns,
)
from custom_components.ha_ingestor.layouts.legacy import (
    LegacyLayout,
    LegacyOptions,
)
from custom_components.ha_ingestor.layouts.optimized import (
    DEFAULT_ALLOWED_ATTRIBUTES,
    IDENTITY_ATTRIBUTES,
    AreaLookup,
    LegacyTransform,
    OptimizedLayout,
    OptimizedOptions,
    to_optimized,
)

TIME_FIRED = datetime(2025, 4, 1, 12, 30, 45, 123456, tzinfo=UTC)
TIME_NS = to_time_ns(TIME_FIRED)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """Pure module: these tests need no Home Assistant instance."""


def optimized(
    state: State, options: dict[str, Any] | None = None, area_of: AreaLookup | None = None
) -> Point | None:
    return OptimizedLayout(OptimizedOptions.from_options(options or {}), area_of).point(
        state, TIME_FIRED
    )


def backfilled(
    state: State, options: dict[str, Any] | None = None, area_of: AreaLookup | None = None
) -> Point | None:
    """The optimized point the backfill derives from the legacy point of ``state``, as
    InfluxDB 1.x keeps it when core's client wrote it."""
    legacy_options = LegacyOptions.from_options(options or {})
    legacy = LegacyLayout(legacy_options).point(state, TIME_FIRED)
    assert legacy is not None
    stored = stored_by_influxdb_v1(legacy)
    if stored is None:  # nothing the server can store, as for a lone NaN
        return None
    return to_optimized(
        stored, legacy_options, OptimizedOptions.from_options(options or {}), area_of
    )


def live_and_backfilled(
    state: State, options: dict[str, Any] | None = None, area_of: AreaLookup | None = None
) -> Point | None:
    """The live point, after checking that the backfill derives the same one."""
    live = optimized(state, options, area_of)
    assert backfilled(state, options, area_of) == live
    return live


# --- The layout ---


def test_measurement_is_the_domain_and_the_entity_a_full_id_tag() -> None:
    state = State(
        "sensor.kitchen_temperature",
        "21.5",
        {
            "unit_of_measurement": "°C",
            "device_class": "temperature",
            "friendly_name": "Kitchen",
            "state_class": "measurement",
        },
    )
    no_areas: dict[str, str] = {}
    assert live_and_backfilled(state, {"tags": {"instance": "cabin"}}, no_areas.get) == Point(
        "sensor",
        {
            "entity_id": "sensor.kitchen_temperature",
            "device_class": "temperature",
            "unit_of_measurement": "°C",
            "friendly_name": "Kitchen",
            "instance": "cabin",
        },
        {"value": 21.5},
        TIME_NS,
    )


def test_unit_change_keeps_measurement_entity_tag_and_value_field() -> None:
    """Core's layout moves the history to another measurement; here one query still finds it."""
    before = live_and_backfilled(State("sensor.t", "21.5", {"unit_of_measurement": "°C"}))
    after = live_and_backfilled(State("sensor.t", "70.7", {"unit_of_measurement": "°F"}))
    assert before is not None
    assert after is not None
    assert before.measurement == after.measurement == "sensor"
    assert before.tags["entity_id"] == after.tags["entity_id"] == "sensor.t"
    assert set(before.fields) == set(after.fields) == {"value"}


def test_value_is_always_a_float() -> None:
    point = live_and_backfilled(State("sensor.count", "5"))
    assert point is not None
    assert point.fields == {"value": 5.0}
    assert type(point.fields["value"]) is float


@pytest.mark.parametrize(("text", "number"), [("on", 1.0), ("not_home", 0.0), ("open", 1.0)])
def test_state_as_number_states_give_value_and_state(text: str, number: float) -> None:
    point = live_and_backfilled(State("binary_sensor.door", text))
    assert point is not None
    assert point.fields == {"value": number, "state": text}


def test_other_states_give_state_text_only() -> None:
    point = live_and_backfilled(State("climate.hall", "heat"))
    assert point is not None
    assert point.fields == {"state": "heat"}


@pytest.mark.parametrize("text", ["unknown", "unavailable", ""])
def test_unknown_unavailable_and_empty_states_are_skipped(text: str) -> None:
    assert optimized(State("sensor.s", text, {"brightness": 1})) is None


def test_non_finite_state_gives_no_value_and_no_point_alone() -> None:
    assert optimized(State("sensor.s", "nan")) is None
    assert backfilled(State("sensor.s", "nan")) is None
    point = live_and_backfilled(State("light.l", "inf", {"brightness": 3}))
    assert point is not None
    assert point.fields == {"brightness": 3.0}


def test_only_allow_listed_attributes_become_fields() -> None:
    attributes = {"brightness": 128, "color_mode": "hs", "supported_features": 44}
    point = live_and_backfilled(State("light.hall", "on", attributes))
    assert point is not None
    assert point.fields == {"value": 1.0, "state": "on", "brightness": 128.0}


@pytest.mark.parametrize(
    ("value", "field"),
    [(128, 128.0), ("128", 128.0), ("12.5 %", 12.5), (True, 1.0), ("bright", None), (None, None)],
    ids=repr,
)
def test_numeric_attribute_is_a_float_or_absent(value: object, field: float | None) -> None:
    point = live_and_backfilled(State("light.hall", "on", {"brightness": value}))
    assert point is not None
    assert point.fields.get("brightness") == field
    assert type(point.fields.get("brightness")) is type(field)


@pytest.mark.parametrize(
    ("value", "field"),
    [("heating", "heating"), (5, None), ("5", None), (None, None), ("None", None), ("", None)],
    ids=repr,
)
def test_textual_attribute_is_a_str_or_absent(value: object, field: str | None) -> None:
    point = live_and_backfilled(State("climate.hall", "heat", {"hvac_action": value}))
    assert point is not None
    assert point.fields.get("hvac_action") == field


def test_allow_list_is_configurable_with_fixed_types() -> None:
    options = {"allowed_attributes": {"speed": "float", "mode": "str"}}
    attributes = {"speed": "3", "mode": "auto", "brightness": 9}
    point = live_and_backfilled(State("fan.f", "on", attributes), options)
    assert point is not None
    assert point.fields == {"value": 1.0, "state": "on", "speed": 3.0, "mode": "auto"}


@pytest.mark.parametrize("name", ["value", "state", "entity_id", "friendly_name", "area", ""])
def test_allow_list_rejects_names_the_layout_uses(name: str) -> None:
    with pytest.raises(ValueError, match="reserved"):
        OptimizedOptions(allowed_attributes={name: float})


def test_allow_list_rejects_unknown_types() -> None:
    with pytest.raises(vol.Invalid):
        OptimizedOptions.from_options({"allowed_attributes": {"speed": "int"}})


def test_area_tag_comes_from_the_lookup() -> None:
    areas = {"light.hall": "Hall", "light.attic": ""}
    hall = live_and_backfilled(State("light.hall", "on"), area_of=areas.get)
    attic = live_and_backfilled(State("light.attic", "on"), area_of=areas.get)
    assert hall is not None
    assert attic is not None
    assert hall.tags["area"] == "Hall"
    assert "area" not in attic.tags


@pytest.mark.parametrize(
    ("name", "tag"),
    [("Kitchen", "Kitchen"), (1984, "1984"), ("1984.0", "1984"), ("2.50", "2.5"), (None, None)],
    ids=repr,
)
def test_identity_tag_numbers_are_canonical(name: object, tag: str | None) -> None:
    point = live_and_backfilled(State("sensor.s", "1", {"friendly_name": name}))
    assert point is not None
    assert point.tags.get("friendly_name") == tag


def test_ignored_attributes_are_absent_even_where_legacy_shows_them() -> None:
    options = {
        "ignore_attributes": ["unit_of_measurement", "brightness"],
        "tags_attributes": ["brightness"],
        "component_config": {"light.hall": {"ignore_attributes": ["friendly_name"]}},
    }
    attributes = {"unit_of_measurement": "%", "brightness": 5, "friendly_name": "Hall"}
    hall = live_and_backfilled(State("light.hall", "on", attributes), options)
    attic = live_and_backfilled(State("light.attic", "on", attributes), options)
    assert hall is not None
    assert attic is not None
    assert hall.tags == {"entity_id": "light.hall"}
    assert attic.tags == {"entity_id": "light.attic", "friendly_name": "Hall"}
    assert "brightness" not in hall.fields


# --- The transform: reading the legacy layout's rules backwards ---


def test_unit_is_read_from_the_measurement_it_named() -> None:
    point = backfilled(State("sensor.p", "3", {"unit_of_measurement": "kW"}))
    assert point is not None
    assert point.tags["unit_of_measurement"] == "kW"


@pytest.mark.parametrize(
    "options",
    [
        {"override_measurement": "all"},
        {"component_config_glob": {"sensor.*": {"override_measurement": "power"}}},
        {"measurement_attr": "entity_id"},
        {"tags_attributes": ["unit_of_measurement"]},
    ],
    ids=repr,
)
def test_unit_is_read_from_field_or_tag_when_it_did_not_name_the_measurement(
    options: dict[str, Any],
) -> None:
    point = live_and_backfilled(State("sensor.p", "3", {"unit_of_measurement": "kW"}), options)
    assert point is not None
    assert point.tags["unit_of_measurement"] == "kW"


def test_device_class_is_read_from_a_domain_device_class_measurement() -> None:
    state = State("sensor.p", "3", {"device_class": "power"})
    point = live_and_backfilled(state, {"measurement_attr": "domain__device_class"})
    assert point is not None
    assert point.tags["device_class"] == "power"


def test_attribute_named_value_on_a_text_state_is_not_the_value() -> None:
    point = live_and_backfilled(State("sensor.s", "idle", {"value": 3, "state": 4}))
    assert point is not None
    assert point.fields == {"state": "idle"}


def test_attributes_named_like_legacy_fields_do_not_leak_in() -> None:
    attributes = {
        "brightness_str": 7,
        "hvac_mode_str": 8,
        "friendly_name_str": 9,
        "unit_of_measurement_str": "x",
    }
    point = live_and_backfilled(State("climate.c", "heat", attributes))
    assert point == Point("climate", {"entity_id": "climate.c"}, {"state": "heat"}, TIME_NS)


def test_numbers_read_back_as_integers_are_floats() -> None:
    """InfluxDB's JSON returns the float 21.0 as 21."""
    legacy = Point(
        "°C", {"domain": "sensor", "entity_id": "t"}, {"value": 21, "temperature": 20}, 1
    )
    point = to_optimized(legacy, LegacyOptions(), OptimizedOptions())
    assert point == Point(
        "sensor",
        {"entity_id": "sensor.t", "unit_of_measurement": "°C"},
        {"value": 21.0, "temperature": 20.0},
        1,
    )
    assert type(point.fields["value"]) is float


def test_tags_and_fields_read_back_as_null_or_empty_are_absent() -> None:
    """InfluxQL returns the tags and fields a row lacks as null, or a tag as empty text."""
    legacy = Point(
        "W",
        {"domain": "sensor", "entity_id": "p", "instance": "", "friendly_name": None},  # type: ignore[dict-item]
        {"value": 2.0, "state": None, "brightness": None, "hvac_mode_str": None},  # type: ignore[dict-item]
        1,
    )
    legacy_options = LegacyOptions(tags={"instance": "home"}, tags_attributes=("friendly_name",))
    point = to_optimized(legacy, legacy_options, OptimizedOptions(tags={"instance": "home"}))
    assert point == Point(
        "sensor",
        {"entity_id": "sensor.p", "unit_of_measurement": "W", "instance": "home"},
        {"value": 2.0},
        1,
    )


def test_global_tag_keeps_the_value_the_legacy_point_carries() -> None:
    """Several HA instances can share a database; each point stays with its instance."""
    legacy = Point(
        "W", {"domain": "sensor", "entity_id": "p", "instance": "cabin"}, {"value": 1}, 1
    )
    legacy_options = LegacyOptions(tags={"instance": "home"})
    options = OptimizedOptions(tags={"instance": "home", "site": "eu"})
    point = to_optimized(legacy, legacy_options, options)
    assert point is not None
    assert point.tags["instance"] == "cabin"
    assert point.tags["site"] == "eu"


def test_point_without_entity_tags_gives_nothing() -> None:
    assert (
        to_optimized(
            Point("W", {"domain": "sensor"}, {"value": 1.0}, 1), LegacyOptions(), OptimizedOptions()
        )
        is None
    )


def test_unit_equal_to_the_fallback_measurement_is_read_as_no_unit() -> None:
    """Lossy: the legacy point cannot tell this unit from a missing one."""
    state = State("sensor.s", "1", {"unit_of_measurement": "state"})
    point = backfilled(state, {"default_measurement": "state"})
    assert point is not None
    assert "unit_of_measurement" not in point.tags


def test_boolean_friendly_name_is_canonical_from_a_legacy_field() -> None:
    state = State("sensor.s", "1", {"friendly_name": True})
    point = live_and_backfilled(state)
    assert point is not None
    assert point.tags["friendly_name"] == "1"


def test_boolean_friendly_name_in_a_legacy_tag_reads_as_its_text() -> None:
    """Lossy: a legacy tag holds "True", which reads as text, not as the number 1."""
    state = State("sensor.s", "1", {"friendly_name": True})
    options = {"tags_attributes": ["friendly_name"]}
    assert optimized(state, options).tags["friendly_name"] == "1"  # type: ignore[union-attr]
    assert backfilled(state, options).tags["friendly_name"] == "True"  # type: ignore[union-attr]


def test_global_tag_the_legacy_options_lack_takes_the_configured_value() -> None:
    legacy = Point("W", {"domain": "sensor", "entity_id": "p", "site": "attr"}, {"value": 1.0}, 1)
    legacy_options = LegacyOptions(tags_attributes=("site",))
    point = to_optimized(legacy, legacy_options, OptimizedOptions(tags={"site": "eu"}))
    assert point is not None
    assert point.tags["site"] == "eu"


# --- Any state, any options: the backfill gives the live point ---

ALLOWED = ["brightness", "temperature", "hvac_action", "hvac_mode", "speed", "mode", "level"]
KEYS = [
    *IDENTITY_ATTRIBUTES,
    *ALLOWED,
    "value",
    "state",
    "value_",
    "state_",
    "brightness_str",
    "hvac_mode_str",
    "friendly_name_str",
    "device_class_str",
    "unit_of_measurement_str",
    "temperature_",
    "other",
    "a,b c=d",
    "🌡",
]
ENTITY_IDS = ["sensor.kitchen", "sensor.power", "light.hall", "climate.living", "switch.plug"]
# Line protocol's special characters often: core's client escapes them, the server keeps some.
texts = st.text(st.one_of(st.characters(), st.sampled_from(list('\\\n\t\r" ,=#'))), max_size=10)
names = st.one_of(*[st.sampled_from(KEYS)] * 4, texts.filter(bool))
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**18), 10**18),
    st.floats(),
    texts,
    st.sampled_from(["12.5 %", "heat", "None", "", "nan", "1e3", "°C", "1984", " 7 ", "state"]),
    st.lists(st.integers(0, 9), max_size=2),
)
state_texts = st.one_of(
    st.sampled_from(["on", "off", "home", "heat", "nan", "inf", " 12 ", "idle", "unknown", ""]),
    st.floats().map(str),
    texts,
)
customization = st.fixed_dictionaries(
    {},
    optional={
        "override_measurement": st.sampled_from(["", "custom"]),
        "ignore_attributes": st.lists(names, max_size=2),
    },
)


def _set_keys(**options: Any) -> dict[str, Any]:
    return {key: value for key, value in options.items() if value is not None}


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


# One options mapping configures both layouts, as a config entry does.
options_mappings = st.builds(
    _set_keys,
    measurement_attr=st.sampled_from(
        [None, None, "unit_of_measurement", "domain__device_class", "entity_id", "friendly_name"]
    ),
    default_measurement=_maybe(st.sampled_from(["state", "°C", "sensor.kitchen"])),
    override_measurement=st.sampled_from([None, None, None, "all"]),
    tags=_maybe(
        st.dictionaries(
            st.sampled_from(["instance", "site", "friendly_name", "area", "domain", "entity_id"]),
            texts,
            max_size=2,
        )
    ),
    tags_attributes=_maybe(st.lists(names, max_size=3)),
    ignore_attributes=_maybe(st.lists(names, max_size=2)),
    component_config=_maybe(
        st.dictionaries(st.sampled_from(ENTITY_IDS), customization, max_size=2)
    ),
    component_config_domain=_maybe(
        st.dictionaries(st.sampled_from(["sensor", "light"]), customization, max_size=1)
    ),
    component_config_glob=_maybe(
        st.dictionaries(st.sampled_from(["*.power", "light.*"]), customization, max_size=1)
    ),
    allowed_attributes=_maybe(
        st.dictionaries(st.sampled_from(ALLOWED), st.sampled_from(["float", "str"]), max_size=5)
    ),
)
# Attributes that matter to the transform are common; the rest comes in any order.
states = st.builds(
    State,
    entity_id=st.sampled_from(ENTITY_IDS),
    state=state_texts,
    attributes=st.builds(
        lambda rest, known: {**rest, **known},
        st.dictionaries(names, values, max_size=5),
        st.dictionaries(st.sampled_from([*IDENTITY_ATTRIBUTES, *ALLOWED]), values, max_size=5),
    ),
)
area_lookups = st.dictionaries(
    st.sampled_from(ENTITY_IDS), st.none() | st.sampled_from(["", "Kitchen", "Hall"])
).map(lambda areas: areas.get)


def legacy_loses_information(
    legacy_options: LegacyOptions, options: OptimizedOptions, state: State
) -> bool:
    """The cases the optimized_layout docstring lists as beyond what a legacy point tells."""
    attributes = state.attributes
    tags_attributes = set(legacy_options.tags_attributes)
    global_tags = set(legacy_options.tags)
    meaningful = {*IDENTITY_ATTRIBUTES, *options.allowed_attributes}
    override, _ = legacy_options.customizations.resolve(state.entity_id)
    measurement_attr = legacy_options.measurement_attr
    # Where the legacy layout kept the attribute's text (a tag or the measurement name)
    # rather than its number.
    as_text = set(tags_attributes)
    if override is None and measurement_attr == "unit_of_measurement":
        as_text.add("unit_of_measurement")
    if override is None and measurement_attr == "domain__device_class":
        as_text.add("device_class")
    unit = attributes.get("unit_of_measurement")
    return bool(
        {"domain", "entity_id"} & (tags_attributes | global_tags)
        or tags_attributes & global_tags & meaningful
        or any(isinstance(attributes.get(name), bool) for name in as_text & meaningful)
        or (
            override is None
            and measurement_attr == "unit_of_measurement"
            and "unit_of_measurement" not in tags_attributes
            and unit not in (None, "")
            and str(unit) == legacy_options.fallback_measurement(state.entity_id)
        )
        or any(name.endswith(("_", "_str")) for name in options.allowed_attributes)
    )


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options=options_mappings, state=states, area_of=area_lookups)
def test_backfill_of_any_state_gives_the_live_point(
    options: dict[str, Any], state: State, area_of: AreaLookup
) -> None:
    legacy_options = LegacyOptions.from_options(options)
    optimized_options = OptimizedOptions.from_options(options)
    assume(not legacy_loses_information(legacy_options, optimized_options, state))
    legacy = LegacyLayout(legacy_options).point(state, TIME_FIRED)
    assume(legacy is None or kept_recoverably(legacy))
    live = OptimizedLayout(optimized_options, area_of).point(state, TIME_FIRED)
    if legacy is None:
        assert live is None
    else:
        stored = stored_by_influxdb_v1(legacy)
        assert stored is not None
        backfilled = to_optimized(stored, legacy_options, optimized_options, area_of)
        assert stored_by_ours(backfilled) == stored_by_ours(live)


def kept_recoverably(legacy: Point) -> bool:
    """Whether InfluxDB 1.x keeps core's point so that its names read back as written.

    Not so for the README's lossy corners: names core's line loses or garbles (a trailing
    backslash, a backslash before a separator in a measurement, a leading "#" or tab), whose
    repaired or stripped form the transform cannot undo.
    """
    stored = stored_by_influxdb_v1(legacy)
    if stored is None:
        return False
    written = (
        legacy.measurement,
        {k: v for k, v in legacy.tags.items() if k and v},
        {
            k: as_stored_text(v) if isinstance(v, str) else v
            for k, v in legacy.fields.items()
            if k and not (isinstance(v, float) and v != v) and v not in (math.inf, -math.inf)
        },
    )
    read_back = (
        measurement_from_stored(stored.measurement),
        {name_from_stored(k): name_from_stored(v) for k, v in stored.tags.items()},
        {name_from_stored(k): v for k, v in stored.fields.items()},
    )
    return written == read_back


def stored_by_ours(point: Point | None) -> Any:
    """What InfluxDB keeps of a point our encoder writes: names made representable."""
    if point is None:
        return None
    measurement = sanitize_name(point.measurement)
    if measurement.startswith("#"):
        measurement = "_" + measurement
    return (
        measurement,
        {sanitize_name(k): sanitize_name(v) for k, v in point.tags.items() if k and v},
        {sanitize_name(k): v for k, v in point.fields.items()},
        point.time_ns,
    )


def test_default_allow_list_has_one_fixed_type_per_attribute() -> None:
    assert set(DEFAULT_ALLOWED_ATTRIBUTES.values()) == {float, str}
    textual = {name for name, kind in DEFAULT_ALLOWED_ATTRIBUTES.items() if kind is str}
    assert textual == {"hvac_action", "hvac_mode", "preset_mode", "fan_mode"}


# --- The backfill's fast path: SeriesEncoder and the fields the transform reads ---


def _as_read_back(value: FieldValue) -> FieldValue:
    """A stored float as InfluxDB's JSON gives it back: 12.0 reads as 12."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _converter(values: list[FieldValue]) -> Any:
    kinds = {type(value) for value in values}
    return float if kinds == {float} else (lambda value: value)


def series_blocks(points: list[Point]) -> list[SeriesBlock]:
    """The points as the server streams them back: one block of raw rows per series."""
    by_series: dict[tuple[str, tuple[tuple[str, str], ...]], list[Point]] = {}
    for point in points:
        key = (point.measurement, tuple(sorted(point.tags.items())))
        by_series.setdefault(key, []).append(point)
    blocks = []
    for (measurement, tags), members in by_series.items():
        fields = tuple(sorted({name for point in members for name in point.fields}))
        rows = [
            [
                point.time_ns,
                *(
                    _as_read_back(point.fields[name]) if name in point.fields else None
                    for name in fields
                ),
            ]
            for point in members
        ]
        converters = tuple(
            _converter([point.fields[name] for point in members if name in point.fields])
            for name in fields
        )
        blocks.append(SeriesBlock(measurement, dict(tags), fields, rows, converters))
    return blocks


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    options=options_mappings,
    history=st.lists(st.tuples(states, st.integers(0, 3)), min_size=1, max_size=25),
    area_of=area_lookups,
)
def test_the_series_encoder_gives_the_encoded_transform_of_every_row(
    options: dict[str, Any], history: list[tuple[State, int]], area_of: AreaLookup
) -> None:
    """The backfill's per-series shortcut writes exactly what transform + encode would."""
    legacy_options = LegacyOptions.from_options(options)
    transform = LegacyTransform(legacy_options, OptimizedOptions.from_options(options), area_of)
    layout = LegacyLayout(legacy_options)
    points = []
    for index, (state, repeats) in enumerate(history):
        # Repeats: the same record again later, as a door that opens every day.
        for again in range(repeats + 1):
            point = layout.point(state, TIME_FIRED)
            if point is not None:
                points.append(
                    Point(point.measurement, point.tags, point.fields, TIME_NS + index * 10 + again)
                )
    for block in series_blocks(points):
        encoder = transform.series_encoder(block.fields, block.point)
        for row in block.rows:
            point = block.point(row)
            optimized = None if point is None else transform(point)
            line = None if optimized is None else encode(optimized)
            expected = "" if line is None else line.rsplit(" ", 1)[0]
            assert encoder(row) == expected


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options=options_mappings, state=states, area_of=area_lookups)
def test_the_transform_needs_only_the_fields_it_says_it_reads(
    options: dict[str, Any], state: State, area_of: AreaLookup
) -> None:
    """The backfill reads only ``fields_read`` (of what the server keeps): the other legacy
    fields change nothing."""
    legacy_options = LegacyOptions.from_options(options)
    transform = LegacyTransform(legacy_options, OptimizedOptions.from_options(options), area_of)
    point = LegacyLayout(legacy_options).point(state, TIME_FIRED)
    legacy = None if point is None else stored_by_influxdb_v1(point)
    assume(legacy is not None)
    assert legacy is not None
    read = {name: value for name, value in legacy.fields.items() if name in transform.fields_read}
    projected = Point(legacy.measurement, legacy.tags, read, legacy.time_ns)
    assert transform(projected) == transform(legacy)


def test_the_transform_does_not_read_attributes_outside_the_allow_list() -> None:
    transform = LegacyTransform(LegacyOptions(), OptimizedOptions())
    assert {"value", "state", "friendly_name_str", "brightness", "hvac_mode_str"} <= (
        transform.fields_read
    )
    assert not {"icon_str", "supported_features", "color_mode_str"} & transform.fields_read
