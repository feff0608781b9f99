"""The legacy layout writes exactly what HA core's influxdb integration writes.

Every case is compared with core's own converter (``_generate_event_to_json``) built from the
same options through core's own schema, as the points land in the database: tag values as
text, ``None``/empty tags left out, the time as exact nanoseconds.
"""

import calendar
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
import math
from typing import Any

from homeassistant.components import influxdb as core_influxdb
from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, State
from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.ha_ingestor.engine.line_protocol import Point, to_time_ns
from custom_components.ha_ingestor.layouts.legacy import (
    EntityCustomization,
    LegacyLayout,
    LegacyOptions,
)

TIME_FIRED = datetime(2025, 4, 1, 12, 30, 45, 123456, tzinfo=UTC)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """Pure module: these tests need no Home Assistant instance."""


CORE_MEASUREMENT_ATTRS = ("unit_of_measurement", "domain__device_class", "entity_id")


def core_converter(
    options: Mapping[str, Any],
) -> Callable[[Event[Any]], dict[str, Any] | None]:
    """Core's converter, its config validated by core's own schema."""
    options = dict(options)
    measurement_attr = options.get("measurement_attr")
    if measurement_attr not in (None, *CORE_MEASUREMENT_ATTRS):
        # Core's schema allows three names, its code any attribute: bypass the schema there.
        del options["measurement_attr"]
    conf = core_influxdb.CONFIG_SCHEMA({"influxdb": options})["influxdb"]
    if measurement_attr is not None:
        conf["measurement_attr"] = measurement_attr
    converter: Callable[[Event[Any]], dict[str, Any] | None] = (
        core_influxdb._generate_event_to_json(conf)
    )
    return converter


def _exact_ns(moment: datetime) -> int:
    return calendar.timegm(moment.utctimetuple()) * 10**9 + moment.microsecond * 1000


def as_landed(json: dict[str, Any] | None) -> Point | None:
    """Core's JSON as the InfluxDB client libraries send it."""
    if json is None:
        return None
    tags = {
        str(key): str(value)
        for key, value in json["tags"].items()
        if key != "" and value is not None and str(value) != ""
    }
    return Point(str(json["measurement"]), tags, json["fields"], _exact_ns(json["time"]))


def comparable(point: Point | None) -> Any:
    """A point with NaN made equal to itself (core passes a "nan" state on as a float NaN)."""
    if point is None:
        return None
    fields = {
        key: "NaN" if isinstance(value, float) and math.isnan(value) else value
        for key, value in point.fields.items()
    }
    return (point.measurement, dict(point.tags), fields, point.time_ns)


def state_changed(state: State, time_fired: datetime = TIME_FIRED) -> Event[Any]:
    return Event(
        EVENT_STATE_CHANGED,
        {"entity_id": state.entity_id, "old_state": None, "new_state": state},
        time_fired_timestamp=time_fired.timestamp(),
    )


def both(
    options: Mapping[str, Any], state: State, time_fired: datetime = TIME_FIRED
) -> tuple[Point | None, Point | None]:
    """(core's point, our point) for one state."""
    event = state_changed(state, time_fired)
    core = as_landed(core_converter(options)(event))
    ours = LegacyLayout(LegacyOptions.from_options(options)).point(state, event.time_fired)
    return core, ours


def assert_matches_core(
    options: Mapping[str, Any], state: State, time_fired: datetime = TIME_FIRED
) -> Point | None:
    core, ours = both(options, state, time_fired)
    assert comparable(ours) == comparable(core)
    return ours


# --- Behaviour, shown on concrete points (each also checked against core) ---


def test_numeric_state_gives_value_field_and_unit_measurement() -> None:
    state = State(
        "sensor.kitchen_temperature",
        "21.5",
        {"unit_of_measurement": "°C", "device_class": "temperature", "friendly_name": "Kitchen"},
    )
    point = assert_matches_core({}, state)
    assert point == Point(
        "°C",
        {"domain": "sensor", "entity_id": "kitchen_temperature"},
        {"value": 21.5, "device_class_str": "temperature", "friendly_name_str": "Kitchen"},
        to_time_ns(TIME_FIRED),
    )


@pytest.mark.parametrize(
    ("state_text", "number"),
    [
        ("on", 1.0),
        ("off", 0.0),
        ("home", 1.0),
        ("not_home", 0.0),
        ("open", 1.0),
        ("closed", 0.0),
        ("locked", 1.0),
        ("unlocked", 0.0),
        ("above_horizon", 1.0),
        ("below_horizon", 0.0),
    ],
)
def test_state_as_number_states_give_value_and_state(state_text: str, number: float) -> None:
    point = assert_matches_core({}, State("binary_sensor.door", state_text))
    assert point is not None
    assert point.fields == {"value": number, "state": state_text}


@pytest.mark.parametrize("state_text", ["heat", "playing", "Heat", "ON", "12,5", "1.2.3"])
def test_other_states_give_state_field_only(state_text: str) -> None:
    point = assert_matches_core({}, State("climate.hall", state_text))
    assert point is not None
    assert point.fields == {"state": state_text}


@pytest.mark.parametrize("state_text", [" 12 ", "1_000", "1e3", "-0", "0x10", "١٢"])
def test_state_parses_exactly_as_python_float_does(state_text: str) -> None:
    assert_matches_core({}, State("sensor.odd", state_text))


@pytest.mark.parametrize("state_text", ["nan", "inf", "-Infinity"])
def test_non_finite_state_is_passed_on_like_core(state_text: str) -> None:
    point = assert_matches_core({}, State("sensor.broken", state_text))
    assert point is not None
    assert not math.isfinite(float(point.fields["value"]))


@pytest.mark.parametrize("state_text", ["unknown", "unavailable", ""])
def test_unknown_unavailable_and_empty_states_are_skipped(state_text: str) -> None:
    assert assert_matches_core({}, State("sensor.gone", state_text, {"a": 1})) is None


def test_text_with_digit_tail_also_gives_number() -> None:
    state = State("sensor.s", "1", {"level": "12.5 %", "version": "v1.2", "plain": "abc"})
    point = assert_matches_core({}, state)
    assert point is not None
    assert point.fields == {
        "value": 1.0,
        "level_str": "12.5 %",
        "level": 12.5,
        "version_str": "v1.2",
        "version": 1.2,
        "plain_str": "abc",
    }


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, "nan", "inf", "1e999", "99" * 200],
    ids=["nan", "inf", "-inf", "text-nan", "text-inf", "text-overflow", "digit-tail-overflow"],
)
def test_non_finite_attribute_numbers_are_dropped(value: object) -> None:
    point = assert_matches_core({}, State("sensor.s", "1", {"x": value}))
    assert point is not None
    assert "x" not in point.fields


@pytest.mark.parametrize(
    "value",
    [True, False, None, [1, 2], ["a"], {"a": 1}, {}, [], "", 0, -3, 10**15, 1.5e-7],
    ids=repr,
)
def test_attribute_types_are_stored_like_core(value: object) -> None:
    assert_matches_core({}, State("sensor.s", "on", {"x": value}))


def test_attribute_named_value_or_state_gets_underscore() -> None:
    state = State("switch.plug", "on", {"value": 3, "state": "x", "value_": "y"})
    point = assert_matches_core({}, state)
    assert point is not None
    assert point.fields == {
        "value": 1.0,
        "state": "on",
        "value_": 3.0,
        "state__str": "x",
        "value___str": "y",  # "value_" was taken by the renamed "value"
    }


def test_attribute_named_value_on_text_state_takes_the_value_field() -> None:
    point = assert_matches_core({}, State("sensor.s", "text", {"value": 3}))
    assert point is not None
    assert point.fields == {"state": "text", "value": 3.0}


@pytest.mark.parametrize(
    "attributes",
    [
        {"value_": 1, "value": math.nan},
        {"value_": 1, "value": "nan"},
        {"a_str": 5, "a": "x"},
        {"a": "x", "a_str": 5},
        {"a": "12 %", "a_str": "y"},
        {"state": 2, "state_": "1 %"},
    ],
    ids=repr,
)
def test_clashing_attribute_keys_overwrite_like_core(attributes: dict[str, Any]) -> None:
    assert_matches_core({}, State("sensor.s", "5", attributes))


@pytest.mark.parametrize(
    ("unit", "measurement"),
    [("°C", "°C"), (None, "sensor.s"), ("", "sensor.s"), (5, "5"), ("m³/h", "m³/h")],
)
def test_unit_names_the_measurement_and_leaves_the_fields(unit: object, measurement: str) -> None:
    state = State("sensor.s", "1", {"unit_of_measurement": unit})
    point = assert_matches_core({}, state)
    assert point is not None
    assert point.measurement == measurement
    assert ("unit_of_measurement_str" in point.fields) == (unit in (None, ""))


def test_missing_unit_uses_default_measurement() -> None:
    point = assert_matches_core({"default_measurement": "state"}, State("light.a", "on"))
    assert point is not None
    assert point.measurement == "state"


@pytest.mark.parametrize(
    ("device_class", "measurement"),
    [("temperature", "sensor__temperature"), (None, "sensor"), ("", "sensor__"), (3, "sensor__3")],
)
def test_domain_device_class_measurement_drops_device_class_field(
    device_class: object, measurement: str
) -> None:
    attributes = {"device_class": device_class, "unit_of_measurement": "°C"}
    point = assert_matches_core(
        {"measurement_attr": "domain__device_class"}, State("sensor.s", "1", attributes)
    )
    assert point is not None
    assert point.measurement == measurement
    assert point.fields["unit_of_measurement_str"] == "°C"
    assert ("device_class_str" in point.fields) == (device_class is None)


def test_entity_id_measurement_keeps_unit_field() -> None:
    state = State("sensor.s", "1", {"unit_of_measurement": "W"})
    point = assert_matches_core({"measurement_attr": "entity_id"}, state)
    assert point is not None
    assert point.measurement == "sensor.s"
    assert point.fields["unit_of_measurement_str"] == "W"


@pytest.mark.parametrize("name", [7, None, ["a"], "", "Kitchen"], ids=repr)
def test_any_attribute_can_name_the_measurement(name: object) -> None:
    state = State("sensor.s", "1", {"friendly_name": name, "unit_of_measurement": "W"})
    assert_matches_core({"measurement_attr": "friendly_name"}, state)


OVERRIDES = {
    "override_measurement": "global",
    "component_config": {
        "sensor.exact": {"override_measurement": "exact"},
        "sensor.empty": {"override_measurement": ""},
    },
    "component_config_glob": {"sensor.*_power": {"override_measurement": "glob"}},
    "component_config_domain": {"sensor": {"override_measurement": "domain"}},
}


@pytest.mark.parametrize(
    ("options", "entity_id", "measurement"),
    [
        (OVERRIDES, "sensor.exact", "exact"),
        (OVERRIDES, "sensor.kitchen_power", "glob"),
        (OVERRIDES, "sensor.other", "domain"),
        # An empty entity override replaces the domain's, so the global one applies.
        (OVERRIDES, "sensor.empty", "global"),
        (OVERRIDES, "light.other", "global"),
        ({"component_config": {"sensor.empty": {"override_measurement": ""}}}, "sensor.empty", "W"),
    ],
)
def test_measurement_overrides_take_precedence_per_entity_glob_domain_global(
    options: dict[str, Any], entity_id: str, measurement: str
) -> None:
    state = State(entity_id, "1", {"unit_of_measurement": "W"})
    point = assert_matches_core(options, state)
    assert point is not None
    assert point.measurement == measurement
    assert ("unit_of_measurement_str" in point.fields) == (measurement != "W")


def test_tags_attributes_become_text_tags_even_when_ignored() -> None:
    options = {
        "tags_attributes": ["friendly_name", "floor", "gone", "empty", "rooms"],
        "ignore_attributes": ["friendly_name"],
    }
    attributes = {"friendly_name": "Hall", "floor": 2, "gone": None, "empty": "", "rooms": [1]}
    point = assert_matches_core(options, State("sensor.s", "1", attributes))
    assert point is not None
    assert point.tags == {
        "domain": "sensor",
        "entity_id": "s",
        "friendly_name": "Hall",
        "floor": "2",
        "rooms": "[1]",
    }
    assert point.fields == {"value": 1.0}


def test_global_tags_are_applied_last() -> None:
    options = {"tags": {"instance": "cabin", "floor": "top"}, "tags_attributes": ["floor"]}
    point = assert_matches_core(options, State("sensor.s", "1", {"floor": 2}))
    assert point is not None
    assert point.tags == {"domain": "sensor", "entity_id": "s", "instance": "cabin", "floor": "top"}


@pytest.mark.parametrize(
    "options",
    [
        {"tags": {"domain": "x", "entity_id": "y"}},
        {"tags_attributes": ["domain", "entity_id"]},
        {"tags": {"entity_id": ""}},
    ],
    ids=repr,
)
def test_identity_tags_can_be_overwritten_like_core(options: dict[str, Any]) -> None:
    attributes = {"domain": None, "entity_id": ["light.a", "light.b"]}
    assert_matches_core(options, State("group.all", "on", attributes))


def test_ignore_attributes_merge_global_with_the_most_specific_entity_level() -> None:
    options = {
        "ignore_attributes": ["a"],
        "component_config_domain": {"sensor": {"ignore_attributes": ["b"]}},
        "component_config": {"sensor.exact": {"ignore_attributes": ["c"]}},
    }
    attributes = {"a": 1, "b": 2, "c": 3, "d": 4}
    exact = assert_matches_core(options, State("sensor.exact", "1", attributes))
    other = assert_matches_core(options, State("sensor.other", "1", attributes))
    assert exact is not None
    assert other is not None
    assert set(exact.fields) == {"value", "b", "d"}
    assert set(other.fields) == {"value", "c", "d"}


def test_ignoring_the_unit_does_not_change_the_measurement() -> None:
    options = {"ignore_attributes": ["unit_of_measurement"]}
    point = assert_matches_core(options, State("sensor.s", "1", {"unit_of_measurement": "W"}))
    assert point is not None
    assert point.measurement == "W"


HOSTILE = ['say "hi"', "a,b", "a b", "a=b", "line\nbreak", "tab\t", "back\\slash", "🔥", "#x"]


@pytest.mark.parametrize("text", HOSTILE, ids=repr)
def test_hostile_names_and_values_pass_through_unchanged(text: str) -> None:
    options = {
        "tags": {text: text},
        "tags_attributes": [f"tag {text}"],
        "default_measurement": text,
    }
    attributes = {text: text, f"tag {text}": text, "friendly_name": text}
    point = assert_matches_core(options, State("sensor.s", text, attributes))
    assert point is not None
    assert point.fields[f"{text}_str"] == text


def test_unvalidated_entity_ids_are_split_like_core() -> None:
    state = State("sensor.Küche Temp.2", "1", validate_entity_id=False)
    point = assert_matches_core({}, state)
    assert point is not None
    assert point.tags == {"domain": "sensor", "entity_id": "Küche Temp.2"}


def test_time_is_the_exact_nanosecond_of_time_fired() -> None:
    moment = datetime(2031, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    point = LegacyLayout(LegacyOptions()).point(State("sensor.s", "1"), moment)
    assert point is not None
    assert point.time_ns == 1956527999_999999000
    assert to_time_ns(moment.replace(tzinfo=None)) == point.time_ns


def test_attribute_beyond_float_range_is_kept_as_text_where_core_raises() -> None:
    state = State("sensor.s", "1", {"huge": 10**400})
    with pytest.raises(OverflowError):
        core_converter({})(state_changed(state))
    point = LegacyLayout(LegacyOptions()).point(state, TIME_FIRED)
    assert point is not None
    assert point.fields == {"value": 1.0, "huge_str": str(10**400)}


def test_from_options_reads_core_keys_and_ignores_others() -> None:
    options = LegacyOptions.from_options(
        {
            "measurement_attr": "entity_id",
            "default_measurement": "state",
            "tags": {"instance": 1},
            "tags_attributes": "friendly_name",
            "ignore_attributes": ["a", "b"],
            "component_config": {"Sensor.X": {"ignore_attributes": "c"}},
            "component_config_glob": {"*": {"override_measurement": "m"}},
            "batch_size": 1000,
        }
    )
    assert options == LegacyOptions(
        measurement_attr="entity_id",
        default_measurement="state",
        tags={"instance": "1"},
        tags_attributes=("friendly_name",),
        ignore_attributes=frozenset({"a", "b"}),
        component_config={"sensor.x": EntityCustomization(ignore_attributes=frozenset({"c"}))},
        component_config_glob={"*": EntityCustomization(override_measurement="m")},
    )


# --- Any state, any options: identical to core ---

KEYS = [
    "unit_of_measurement",
    "device_class",
    "friendly_name",
    "value",
    "value_",
    "state",
    "state_",
    "brightness",
    "brightness_str",
    "a",
    "a_str",
    "a_",
    "domain",
    "entity_id",
    'q"uote',
    "sp ace",
    "c,omma",
    "e=q",
    "new\nline",
    "🌡",
]
ENTITY_IDS = [
    "sensor.kitchen",
    "sensor.kitchen_power",
    "binary_sensor.door",
    "light.hall",
    "climate.living_room",
    "group.all",
]
texts = st.text(max_size=12)
attribute_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**18), 10**18),
    st.floats(),
    texts,
    st.sampled_from(["12.5 %", "v1.2", "nan", "inf", "", "None", "°C", "1_000", " 7 ", "a.b.1"]),
    st.lists(st.integers(0, 9) | texts, max_size=2),
    st.dictionaries(texts, st.integers(0, 9), max_size=2),
)
state_texts = st.one_of(
    st.sampled_from(["on", "off", "home", "not_home", "open", "closed", "locked", "unknown"]),
    st.sampled_from(["", "unavailable", "heat", "nan", "inf", " 12 ", "1_0", "12.5 %"]),
    st.floats().map(str),
    st.integers().map(str),
    texts,
)
# Mostly the names that matter, so options and attributes meet often; now and then anything.
names = st.one_of(*[st.sampled_from(KEYS)] * 4, texts.filter(bool))
customization = st.fixed_dictionaries(
    {},
    optional={
        "override_measurement": st.sampled_from(["", "custom", "°C"]),
        "ignore_attributes": st.lists(names, max_size=3),
    },
)


def _set_keys(**options: Any) -> dict[str, Any]:
    """Options with the unset (``None``) keys left out, as a user's config leaves them out."""
    return {key: value for key, value in options.items() if value is not None}


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


legacy_options_mappings = st.builds(
    _set_keys,
    measurement_attr=st.sampled_from(
        [None, None, *CORE_MEASUREMENT_ATTRS, "domain__device_class", "friendly_name", "a"]
    ),
    default_measurement=_maybe(st.sampled_from(["state", "units", "°C", "sensor.kitchen"])),
    # Rarer: a global override hides every other measurement rule.
    override_measurement=st.sampled_from([None, None, None, "all", "°C"]),
    tags=_maybe(st.dictionaries(names, texts, max_size=3)),
    tags_attributes=_maybe(st.lists(names, max_size=3)),
    ignore_attributes=_maybe(st.lists(names, max_size=3)),
    component_config=_maybe(
        st.dictionaries(st.sampled_from(ENTITY_IDS), customization, max_size=2)
    ),
    component_config_domain=_maybe(
        st.dictionaries(st.sampled_from(["sensor", "light", "climate"]), customization, max_size=2)
    ),
    component_config_glob=_maybe(
        st.dictionaries(
            st.sampled_from(["sensor.*", "*kitchen*", "*.door", "?ight.*"]),
            customization,
            max_size=2,
        )
    ),
)
# The attributes that shape the measurement are common; the rest comes in any order.
identity_attributes = st.fixed_dictionaries(
    {},
    optional={
        "unit_of_measurement": st.sampled_from(["°C", "%", "W", "", "state", "sensor.kitchen"])
        | attribute_values,
        "device_class": st.sampled_from(["temperature", "power", ""]) | attribute_values,
        "friendly_name": texts | attribute_values,
    },
)
states = st.builds(
    State,
    entity_id=st.sampled_from(ENTITY_IDS),
    state=state_texts,
    attributes=st.builds(
        lambda rest, identity: {**rest, **identity},
        st.dictionaries(names, attribute_values, max_size=6),
        identity_attributes,
    ),
)
# Hypothesis takes naive bounds and attaches the timezone itself.
times = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options=legacy_options_mappings, state=states, time_fired=times)
def test_any_state_and_options_give_exactly_cores_point(
    options: dict[str, Any], state: State, time_fired: datetime
) -> None:
    assert_matches_core(options, state, time_fired)
