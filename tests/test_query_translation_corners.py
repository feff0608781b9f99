"""The translator's rarer rewrites and refusals, each pinned to its exact text or reason."""

from typing import Any

import pytest

from custom_components.ha_ingestor.layouts.legacy import LegacyOptions
from custom_components.ha_ingestor.layouts.optimized import OptimizedOptions
from custom_components.ha_ingestor.translation.query import (
    LegacyCatalog,
    MeasurementPlan,
    QueryTranslator,
    Refusal,
    literal_set,
    prefix_object_id_regex,
    translate_query,
)
from custom_components.ha_ingestor.translation.rewrite import TextEdits

CATALOG = LegacyCatalog.from_tag_values(
    {"°C": ["sensor"], "%": ["sensor", "input_number"], "W": ["sensor"]},
    {"°C": ["kitchen"], "%": ["kitchen_humidity", "fan"], "W": ["tv_power"]},
    {"%": ["input_number.fan"]},
)
NAMES = {"tags_attributes": ["friendly_name"]}
OVERRIDE = {"component_config": {"sensor.x": {"override_measurement": "grid"}}}


def _outcome(
    text: str,
    options: dict[str, Any],
    catalog: LegacyCatalog | None = CATALOG,
    entity_variables: tuple[str, ...] = (),
) -> Any:
    return translate_query(
        text,
        LegacyOptions.from_options(options),
        OptimizedOptions.from_options(options),
        catalog,
        entity_variables,
    )


@pytest.mark.parametrize(
    ("query", "options", "translated"),
    [
        (
            'SELECT last(value) FROM "sensor.a", "sensor.b"',
            {},
            'SELECT last(value) FROM "sensor" WHERE "entity_id" =~ /^(?:sensor\\.a|sensor\\.b)$/'
            ' AND "unit_of_measurement" = \'\' GROUP BY "entity_id"',
        ),
        (
            'SELECT last(value) FROM "°C", "W" GROUP BY *',
            {},
            'SELECT last(value) FROM "sensor" WHERE "unit_of_measurement" =~ /^(?:W|°C)$/ '
            'GROUP BY "entity_id", "unit_of_measurement"',
        ),
        (
            'SELECT last(value) FROM "°C", "W" GROUP BY unit_of_measurement',
            {},
            'SELECT last(value) FROM "sensor" WHERE "unit_of_measurement" =~ /^(?:W|°C)$/ '
            "GROUP BY unit_of_measurement",
        ),
        (
            'SELECT last(value) FROM "W" GROUP BY "entity_id", "domain"',
            {},
            'SELECT last(value) FROM "sensor" WHERE "unit_of_measurement" = \'W\' '
            'GROUP BY "entity_id"',
        ),
        (
            'SELECT max(m), entity_id FROM (SELECT mean(value) AS m FROM "W" GROUP BY entity_id)',
            {},
            'SELECT max(m), entity_id FROM (SELECT mean(value) AS m FROM "sensor" WHERE '
            "\"unit_of_measurement\" = 'W' GROUP BY entity_id)",
        ),
        (
            'SELECT max(m) FROM (SELECT mean(value) AS m FROM "W" GROUP BY entity_id) GROUP BY *',
            {},
            'SELECT max(m) FROM (SELECT mean(value) AS m FROM "sensor" WHERE '
            "\"unit_of_measurement\" = 'W' GROUP BY entity_id) GROUP BY *",
        ),
        (
            'SELECT derivative(mean(value), $__interval), -value FROM "W" GROUP BY time(1h)',
            {},
            'SELECT derivative(mean(value), $__interval), -value FROM "sensor" WHERE '
            "\"unit_of_measurement\" = 'W' GROUP BY time(1h)",
        ),
        (
            'SELECT top(value, friendly_name, 2) FROM "W"',
            NAMES,
            'SELECT top(value, friendly_name, 2) FROM "sensor" WHERE "unit_of_measurement" = \'W\'',
        ),
        (
            "SELECT value FROM \"%\" WHERE (entity_id = 'fan' OR (entity_id = 'x')) "
            "AND entity_id = 'fan'",
            {},
            'SELECT value FROM "input_number" WHERE "unit_of_measurement" = \'%\' AND '
            "(entity_id = 'input_number.fan' OR (entity_id = 'input_number.x')) "
            "AND entity_id = 'input_number.fan'",
        ),
        (
            'SELECT value FROM "W" WHERE 1 = 1 AND 3 < value AND value::field > 1 AND '
            "entity_id::tag = 'tv_power'",
            {},
            'SELECT value FROM "sensor" WHERE "unit_of_measurement" = \'W\' AND 1 = 1 AND '
            "3 < value AND value::field > 1 AND entity_id::tag = 'sensor.tv_power'",
        ),
        (
            'SELECT value FROM "light.desk" WHERE brightness > 3',
            {},
            'SELECT value FROM "light" WHERE "entity_id" = \'light.desk\' AND '
            "\"unit_of_measurement\" = '' AND brightness > 3",
        ),
        (
            'SELECT value FROM "W" WHERE entity_id =~ /\\Atv/',
            {},
            'SELECT value FROM "sensor" WHERE "unit_of_measurement" = \'W\' AND '
            "entity_id =~ /^sensor\\.tv/",
        ),
        (
            "SELECT value FROM \"W\" WHERE domain = 'sensor'",
            {"component_config_glob": {"sensor.a?[!b]c": {"override_measurement": "x"}}},
            'SELECT value FROM "sensor" WHERE "unit_of_measurement" = \'W\' AND '
            '"entity_id" !~ /^(?:sensor\\.a.[^b]c)$/',
        ),
        (
            "SELECT value FROM \"ha\" WHERE entity_id = 'a' AND (domain = 'sensor')",
            {"override_measurement": "ha"},
            "SELECT value FROM \"sensor\" WHERE entity_id = 'sensor.a'",
        ),
        (
            'SHOW TAG VALUES FROM "°C", "W" WITH KEY = "entity_id"',
            {},
            'SHOW TAG VALUES FROM "sensor" WITH KEY = "entity_id" WHERE '
            '"unit_of_measurement" =~ /^(?:W|°C)$/',
        ),
        (
            'SHOW TAG VALUES WITH KEY = "entity_id"',
            {},
            'SHOW TAG VALUES FROM /^(?:input_number|sensor)$/ WITH KEY = "entity_id"',
        ),
    ],
)
def test_rarer_rewrites(query: str, options: dict[str, Any], translated: str) -> None:
    translation = _outcome(query, options)
    assert translation.exact, translation.warnings
    assert translation.query == translated


def test_several_measurements_are_noted_as_split() -> None:
    translation = _outcome('SELECT last(value) FROM "sensor.a", "sensor.b"', {})
    assert translation.changes[0] == (
        "the series of sensor.a, sensor.b are told apart by the tag entity_id instead of by "
        "the measurement name"
    )


@pytest.mark.parametrize(
    ("name", "plan"),
    [
        ("°C", MeasurementPlan("°C", None, (("unit_of_measurement", "°C"),))),
        (
            "light.desk",
            MeasurementPlan(
                "light.desk",
                "light",
                (("entity_id", "light.desk"), ("unit_of_measurement", "")),
                entity="light.desk",
            ),
        ),
    ],
)
def test_a_measurement_plan_names_its_domain_and_tags(name: str, plan: MeasurementPlan) -> None:
    translator = QueryTranslator(LegacyOptions(), OptimizedOptions(), CATALOG)
    assert translator.plan(name) == plan


def test_a_bare_entity_variable_is_kept() -> None:
    translation = _outcome(
        'SELECT value FROM "W" WHERE entity_id =~ $entity', {}, entity_variables=("entity",)
    )
    assert translation.query == (
        'SELECT value FROM "sensor" WHERE "unit_of_measurement" = \'W\' AND entity_id =~ $entity'
    )


@pytest.mark.parametrize(
    ("query", "options", "reason"),
    [
        (
            'SELECT value FROM "W"',
            {"component_config": {"sensor.x": {"override_measurement": ""}}},
            "an empty per-entity override_measurement (which falls back to the global "
            "setting) is not supported",
        ),
        (
            'SELECT value FROM "W"',
            {"measurement_attr": "entity_id"},
            "with measurement_attr entity_id every measurement is an entity id; 'W' is not one",
        ),
        (
            'SELECT value FROM "sensor__None"',
            {"measurement_attr": "domain__device_class"},
            "the device class 'None' is not kept as a tag as is",
        ),
        (
            'SELECT value FROM "sensor", "sensor__temperature"',
            {"measurement_attr": "domain__device_class"},
            "a measurement without the tag cannot be told apart",
        ),
        (
            'SELECT value FROM "W"',
            {"measurement_attr": "icon"},
            "measurement_attr 'icon' is not kept as a tag in the optimized layout",
        ),
        ("SELECT value FROM /^zzz/", {}, "the FROM clause matches no legacy measurement"),
        (
            'SELECT value FROM "a"."b"."W", "°C"',
            {},
            "the measurements are in different retention policies",
        ),
        (
            'SHOW TAG VALUES FROM "a"."b"."W", "°C" WITH KEY = "entity_id"',
            {},
            "the measurements are in different retention policies",
        ),
        (
            'SELECT value FROM "°C", "W" WHERE domain = \'sensor\' SLIMIT 1',
            {},
            "SLIMIT/SOFFSET over several measurements is not translated",
        ),
        (
            "SELECT value FROM \"light.desk\" WHERE domain = 'sensor'",
            {},
            "the query asks for domain 'sensor' in a measurement of domain 'light', which "
            "holds nothing",
        ),
        ("SELECT top(value, 'x', 2) FROM \"W\"", {}, "top() takes tag names"),
        (
            'SELECT top(value, icon, 2) FROM "W"',
            {},
            "the tag 'icon' is not in the optimized layout",
        ),
        (
            'SELECT top(value, domain, 2) FROM "W"',
            {},
            "the optimized layout has no domain tag (the measurement is the domain)",
        ),
        ('SELECT value::tag FROM "W"', {}, "legacy points have no tag 'value'"),
        ('SELECT $f FROM "W"', {}, "the field comes from the template variable $f"),
        (
            'SELECT last(value) FROM "W" GROUP BY "$tag"',
            {},
            "GROUP BY '$tag' comes from a template variable",
        ),
        (
            'SELECT last(value) FROM "W" GROUP BY *',
            {"tags_attributes": ["icon"]},
            "GROUP BY * includes the tags icon, which are not in the optimized layout",
        ),
        ('SHOW TAG VALUES FROM "W" WITH KEY != "x"', {}, "WITH KEY != is not translated"),
        (
            'SHOW TAG VALUES FROM "W" WITH KEY = "entity_id" WHERE value > 1',
            {},
            "'value' is not a legacy tag",
        ),
        (
            "SHOW TAG VALUES WITH KEY = \"entity_id\" WHERE entity_id = 'x'",
            {},
            "the entities' domain is unknown",
        ),
        (
            'SELECT value FROM "W" WHERE entity_id',
            {},
            "the condition 'entity_id' alone is not understood",
        ),
        (
            "SELECT max(m) FROM (SELECT mean(value) AS m FROM \"W\") WHERE domain = 'sensor'",
            {},
            "the optimized layout has no domain tag to filter on",
        ),
        (
            "SELECT value FROM \"%\" WHERE domain = '$d'",
            {},
            "the domain comes from a template variable",
        ),
        (
            "SELECT value FROM \"%\" WHERE domain = 'sensor' AND domain = 'light'",
            {},
            "the query asks for two domains at once",
        ),
        (
            "SELECT value FROM \"%\" WHERE domain = 'sensor' AND domain = 'sensor'",
            {},
            "the domain condition appears twice",
        ),
        (
            "SELECT value FROM \"W\" WHERE friendly_name = '1984.0'",
            NAMES,
            "the friendly_name '1984.0' is not kept as a tag as is",
        ),
        (
            "SELECT value FROM \"W\" WHERE icon = 'x'",
            {"tags_attributes": ["icon"]},
            "the tag 'icon' is not in the optimized layout",
        ),
        (
            "SELECT value FROM \"W\" WHERE icon::tag = 'x'",
            {},
            "legacy points have no tag 'icon'",
        ),
        (
            "SELECT value FROM \"climate.hall\" WHERE hvac_action_str = '1'",
            {},
            "the optimized field hvac_action never holds '1' (numbers, 'None' and '' are left out)",
        ),
        (
            "SELECT value FROM \"W\" WHERE unit_of_measurement_str = 'W'",
            OVERRIDE,
            "only entities with an override_measurement have a field unit_of_measurement_str",
        ),
        (
            "SELECT value FROM \"W\" WHERE device_class_str = '1984.0'",
            {},
            "the device_class '1984.0' is not kept as a tag as is",
        ),
        (
            "SELECT value FROM \"W\" WHERE device_class_str != 'battery'",
            {},
            "device_class_str != … also matches points without the attribute once "
            "device_class is a tag; only device_class_str = '…' is translated",
        ),
        (
            "SELECT value FROM \"W\" WHERE 'x' = entity_id",
            {},
            "write the tag or field on the left of a comparison",
        ),
    ],
)
def test_refusals_give_their_exact_reason(query: str, options: dict[str, Any], reason: str) -> None:
    translation = _outcome(query, options)
    assert not translation.exact
    assert translation.query == query
    assert translation.warnings == (f"{query}: {reason}",)


@pytest.mark.parametrize("field", ["icon_str", "_str"])
def test_a_field_off_the_allow_list_is_refused_with_the_list(field: str) -> None:
    query = f"SELECT value FROM \"W\" WHERE {field} = 'x'"
    (warning,) = _outcome(query, {}).warnings
    assert warning.startswith(
        f"{query}: the field '{field}' is not in the optimized layout (it keeps value, state "
        "and the allow-listed attributes: battery_level, brightness, "
    )
    assert warning.endswith("temperature); add the attribute to the allow-list")


def test_an_unknown_bare_variable_is_refused() -> None:
    (warning,) = _outcome('SELECT value FROM "W" WHERE entity_id = $room', {}).warnings
    assert "the entity_id condition uses $room, whose values may be legacy object ids" in warning


def test_a_measurement_regex_needs_a_catalog() -> None:
    (warning,) = _outcome("SELECT value FROM /^°/", {}, catalog=None).warnings
    assert warning == (
        "SELECT value FROM /^°/: the measurement regex /^°/ may match measurements of any "
        "kind; list them as ^(?:a|b)$ or translate with a catalog of the legacy database"
    )


def test_tag_values_of_every_domain_need_domains_in_the_catalog() -> None:
    (warning,) = _outcome(
        'SHOW TAG VALUES WITH KEY = "entity_id"', {}, catalog=LegacyCatalog()
    ).warnings
    assert warning.endswith(": the catalog lists no domains")


def test_tag_values_without_from_domain_or_catalog_are_refused() -> None:
    (warning,) = _outcome('SHOW TAG VALUES WITH KEY = "friendly_name"', NAMES, None).warnings
    assert warning.endswith(
        "without FROM or a domain condition the values would include the legacy "
        "measurements of the same database; add FROM or \"domain\" = '…'"
    )


@pytest.mark.parametrize(
    "pattern", ["^[]a]$", "^a)$", "^[a$", "^(a$", "^(a)(b)$", "^([)]|b)$", "^a\\$", "^\\d$"]
)
def test_patterns_that_are_not_a_literal_set(pattern: str) -> None:
    assert literal_set(pattern) is None


def test_a_grouped_alternation_with_escapes_is_a_literal_set() -> None:
    assert literal_set("^(?:a\\(b|c\\])$") == {"a(b", "c]"}


@pytest.mark.parametrize(
    ("pattern", "prefixed"),
    [
        ("\\Akitchen", "^sensor\\.kitchen"),
        ("^", "^sensor\\."),
        ("", "^sensor\\..*"),
        ("[]^]x", "^sensor\\..*(?:[]^]x)"),
    ],
)
def test_more_prefixed_regexes(pattern: str, prefixed: str) -> None:
    assert prefix_object_id_regex(pattern, "sensor") == prefixed


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("a)", "the regex /a)/ could not be read"),
        ("[a", "the regex /[a/ could not be read"),
        (
            "a\\Ab",
            "the regex /a\\Ab/ has a start anchor inside a group; write it as ^(…) or "
            "without anchors",
        ),
    ],
)
def test_unprefixable_regexes_are_refused(pattern: str, reason: str) -> None:
    with pytest.raises(Refusal) as refusal:
        prefix_object_id_regex(pattern, "sensor")
    assert str(refusal.value) == reason


def test_overlapping_edits_are_refused() -> None:
    edits = TextEdits()
    edits.replace(0, 4, "x")
    edits.replace(2, 6, "y")
    with pytest.raises(Refusal, match="overlapping rewrites"):
        edits.apply("abcdefgh")


def test_edits_at_one_place_keep_their_order() -> None:
    edits = TextEdits()
    edits.insert(3, "1")
    edits.insert(3, "2")
    edits.replace(0, 1, "A")
    assert edits.apply("abcdef") == "Abc12def"


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ({"W": []}, TypeError, "catalog entry 'W' must be an object"),
        ({1: {}}, TypeError, "catalog entry 1 must be an object"),
        (
            {"W": {"domains": "sensor"}},
            ValueError,
            "catalog entry 'W': domains must be a list of text",
        ),
        (
            {"W": {"domains": ["sensor"], "entity_ids": [1]}},
            ValueError,
            "catalog entry 'W': entity_ids must be a list of text",
        ),
    ],
)
def test_a_malformed_catalog_is_rejected(
    data: dict[Any, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        LegacyCatalog.from_dict(data)
    assert str(raised.value) == message
