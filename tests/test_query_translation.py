"""The query translator without a server: what it rewrites, what it leaves, what it refuses."""

import re
from typing import Any

from hypothesis import assume, given, settings, strategies as st
import pytest

from custom_components.ha_ingestor.layouts.legacy import LegacyOptions
from custom_components.ha_ingestor.layouts.optimized import OptimizedOptions
from custom_components.ha_ingestor.translation.query import (
    LegacyCatalog,
    MeasurementPlan,
    QuerySyntaxError,
    QueryTranslator,
    Refusal,
    literal_set,
    prefix_object_id_regex,
    translate_query,
)
from custom_components.ha_ingestor.translation.rewrite import TextEdits

LEGACY = LegacyOptions()
OPTIMIZED = OptimizedOptions()
CATALOG = LegacyCatalog.from_tag_values(
    {"°C": ["sensor"], "%": ["sensor", "input_number"], "W": ["sensor"]},
    {"°C": ["kitchen"], "%": ["kitchen_humidity", "fan"], "W": ["tv_power"]},
    {"%": ["input_number.fan"]},
)


def _translate(text: str, **options: object) -> str:
    translation = translate_query(
        text,
        LegacyOptions.from_options(options) if options else LEGACY,
        OptimizedOptions.from_options(options) if options else OPTIMIZED,
        CATALOG,
    )
    assert translation.exact, translation.warnings
    return translation.query


def _refusal(text: str, catalog: LegacyCatalog | None = CATALOG, **options: object) -> str:
    translation = translate_query(
        text,
        LegacyOptions.from_options(options) if options else LEGACY,
        OptimizedOptions.from_options(options) if options else OPTIMIZED,
        catalog,
    )
    assert not translation.exact
    assert translation.query == text
    assert translation.changes == ()
    return " ".join(translation.warnings)


def test_grafana_builder_query() -> None:
    assert _translate(
        'SELECT mean("value") FROM "°C" WHERE ("entity_id" = \'kitchen\') AND $timeFilter '
        "GROUP BY time($__interval) fill(null)"
    ) == (
        'SELECT mean("value") FROM "sensor" WHERE "unit_of_measurement" = \'°C\' AND '
        "(\"entity_id\" = 'sensor.kitchen') AND $timeFilter GROUP BY time($__interval) fill(null)"
    )


def test_domain_condition_becomes_the_measurement() -> None:
    assert _translate(
        'SELECT last("value") FROM "%" WHERE ("domain" = \'sensor\' AND '
        "\"entity_id\" = 'kitchen_humidity') AND $timeFilter"
    ) == (
        'SELECT last("value") FROM "sensor" WHERE ("unit_of_measurement" = \'%\' AND '
        "\"entity_id\" = 'sensor.kitchen_humidity') AND $timeFilter"
    )


def test_entity_id_measurement() -> None:
    assert _translate('SELECT last("state") FROM "binary_sensor.front_door"') == (
        'SELECT last("state") FROM "binary_sensor" WHERE "entity_id" = '
        "'binary_sensor.front_door' AND \"unit_of_measurement\" = ''"
    )


def test_a_domain_condition_alone_is_dropped() -> None:
    assert _translate("SELECT value FROM \"light.desk\" WHERE domain = 'light'") == (
        'SELECT value FROM "light" WHERE "entity_id" = \'light.desk\' AND '
        "\"unit_of_measurement\" = ''"
    )


def test_or_at_the_top_is_kept_together() -> None:
    assert _translate(
        "SELECT value FROM \"°C\" WHERE entity_id = 'kitchen' OR entity_id = 'hall'"
    ) == (
        'SELECT value FROM "sensor" WHERE "unit_of_measurement" = \'°C\' AND '
        "(entity_id = 'sensor.kitchen' OR entity_id = 'sensor.hall')"
    )


def test_text_outside_the_rewrites_is_untouched() -> None:
    text = (
        "select  MEAN(value)  -- per bucket\nfrom \"W\"\twhere entity_id = 'tv_power' and "
        "$timeFilter group by time([[interval]]),\"entity_id\" fill(previous) tz('UTC')"
    )
    assert _translate(text) == (
        'select  MEAN(value)  -- per bucket\nfrom "sensor"\twhere "unit_of_measurement" = '
        "'W' AND entity_id = 'sensor.tv_power' and $timeFilter group by time([[interval]]),"
        "\"entity_id\" fill(previous) tz('UTC')"
    )


def test_no_where_gets_one() -> None:
    assert _translate('SELECT count("value") FROM "W" GROUP BY time(1d)') == (
        'SELECT count("value") FROM "sensor" WHERE "unit_of_measurement" = \'W\' GROUP BY time(1d)'
    )


def test_retention_policy_is_kept() -> None:
    assert _translate('SELECT value FROM "home"."autogen"."W"').startswith(
        'SELECT value FROM "home"."autogen"."sensor" WHERE'
    )


def test_entity_regex_gets_the_domain() -> None:
    assert _translate('SELECT value FROM "W" WHERE entity_id =~ /^tv|oven$/') == (
        'SELECT value FROM "sensor" WHERE "unit_of_measurement" = \'W\' AND '
        "entity_id =~ /^(?:sensor\\.tv|sensor\\..*(?:oven$))/"
    )


def test_several_units_are_split_by_the_unit_tag() -> None:
    assert _translate("SELECT mean(value) FROM /^(°C|W)$/ WHERE $timeFilter GROUP BY time(1h)") == (
        'SELECT mean(value) FROM "sensor" WHERE "unit_of_measurement" =~ /^(?:W|°C)$/ AND '
        '$timeFilter GROUP BY time(1h), "unit_of_measurement"'
    )


def test_group_by_domain_is_dropped() -> None:
    assert _translate('SELECT last(value) FROM "W" GROUP BY "domain", "entity_id"') == (
        'SELECT last(value) FROM "sensor" WHERE "unit_of_measurement" = \'W\' GROUP BY "entity_id"'
    )


def test_group_by_star_names_the_tags() -> None:
    query = _translate(
        'SELECT last(value) FROM "W" GROUP BY *',
        tags={"instance": "home"},
        tags_attributes=["friendly_name"],
    )
    assert query.endswith('GROUP BY "entity_id", "friendly_name", "instance"')


def test_subquery_and_outer_entity_condition() -> None:
    assert _translate(
        'SELECT max(m) FROM (SELECT mean(value) AS m FROM "°C" GROUP BY time(1h), entity_id) '
        "WHERE entity_id = 'kitchen'"
    ) == (
        'SELECT max(m) FROM (SELECT mean(value) AS m FROM "sensor" WHERE '
        "\"unit_of_measurement\" = '°C' GROUP BY time(1h), entity_id) "
        "WHERE entity_id = 'sensor.kitchen'"
    )


def test_allow_listed_text_attribute_condition() -> None:
    assert _translate(
        "SELECT count(state) FROM \"climate.hall\" WHERE hvac_action_str = 'heating'"
    ).endswith("AND hvac_action = 'heating'".replace("hvac_action", '"hvac_action"'))


def test_device_class_layout() -> None:
    assert _translate(
        "SELECT mean(value) FROM \"sensor__temperature\" WHERE entity_id = 'kitchen'",
        measurement_attr="domain__device_class",
    ) == (
        'SELECT mean(value) FROM "sensor" WHERE "device_class" = \'temperature\' AND '
        "entity_id = 'sensor.kitchen'"
    )


def test_entity_id_layout() -> None:
    assert (
        _translate('SELECT mean(value) FROM "sensor.kitchen"', measurement_attr="entity_id")
        == 'SELECT mean(value) FROM "sensor" WHERE "entity_id" = \'sensor.kitchen\''
    )


def test_default_measurement_means_no_unit() -> None:
    assert (
        _translate(
            "SELECT last(state) FROM \"state\" WHERE domain = 'light' AND $timeFilter",
            default_measurement="state",
        )
        == 'SELECT last(state) FROM "light" WHERE "unit_of_measurement" = \'\' AND $timeFilter'
    )


def test_global_override_measurement() -> None:
    assert (
        _translate(
            "SELECT last(value) FROM \"ha\" WHERE domain = 'sensor' AND entity_id = 'tv_power'",
            override_measurement="ha",
        )
        == "SELECT last(value) FROM \"sensor\" WHERE entity_id = 'sensor.tv_power'"
    )


def test_entities_overridden_elsewhere_are_left_out() -> None:
    query = _translate(
        "SELECT mean(value) FROM \"W\" WHERE domain = 'sensor'",
        component_config={"sensor.grid_power": {"override_measurement": "grid"}},
        component_config_glob={"sensor.solar_*": {"override_measurement": "solar"}},
    )
    assert query == (
        'SELECT mean(value) FROM "sensor" WHERE "unit_of_measurement" = \'W\' AND '
        '"entity_id" !~ /^(?:sensor\\.grid_power|sensor\\.solar_.*)$/'
    )


def test_show_tag_values() -> None:
    translator = QueryTranslator(LEGACY, OPTIMIZED, CATALOG)
    translation = translator.translate('SHOW TAG VALUES FROM "°C" WITH KEY = "entity_id"')
    assert translation.query == (
        'SHOW TAG VALUES FROM "sensor" WITH KEY = "entity_id" WHERE "unit_of_measurement" = \'°C\''
    )
    assert translation.full_entity_ids


def test_show_tag_values_of_a_domain() -> None:
    assert (
        _translate('SHOW TAG VALUES WITH KEY = "entity_id" WHERE "domain" = \'light\'')
        == 'SHOW TAG VALUES FROM "light" WITH KEY = "entity_id"'
    )


def test_show_entity_ids_without_catalog_keeps_only_full_ids() -> None:
    translation = translate_query('SHOW TAG VALUES WITH KEY = "entity_id"', LEGACY, OPTIMIZED)
    assert translation.query == 'SHOW TAG VALUES WITH KEY = "entity_id" WHERE "entity_id" =~ /\\./'


def test_entity_variable_is_kept() -> None:
    translator = QueryTranslator(LEGACY, OPTIMIZED, CATALOG, entity_variables=["entity"])
    translation = translator.translate(
        'SELECT value FROM "°C" WHERE "entity_id" =~ /^$entity$/ AND $timeFilter'
    )
    assert translation.query == (
        'SELECT value FROM "sensor" WHERE "unit_of_measurement" = \'°C\' AND '
        '"entity_id" =~ /^$entity$/ AND $timeFilter'
    )


def test_every_statement_is_translated() -> None:
    assert _translate('SELECT last(value) FROM "W"; SELECT last(value) FROM "°C"') == (
        'SELECT last(value) FROM "sensor" WHERE "unit_of_measurement" = \'W\'; '
        'SELECT last(value) FROM "sensor" WHERE "unit_of_measurement" = \'°C\''
    )


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ('SELECT value FROM "°C"', "may hold entities of several domains"),
        ("SELECT value FROM \"°C\" WHERE entity_id = 'kitchen'", "several domains"),
    ],
)
def test_without_catalog_the_domain_must_be_stated(query: str, reason: str) -> None:
    assert reason in _refusal(query, catalog=None)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ('SELECT * FROM "W"', "SELECT *"),
        ('SELECT mean(*) FROM "W"', "name the field"),
        ('SELECT /temp/ FROM "W"', "field regex"),
        ('SELECT last(icon_str) FROM "W"', "not in the optimized layout"),
        ('SELECT last(hvac_mode_str) FROM "climate.hall"', "'None'"),
        ('SELECT friendly_name_str FROM "W"', "cannot be aggregated or selected alone"),
        ('SELECT value FROM "W" WHERE "unit_of_measurement_str" = \'W\'', "names the measurement"),
        ("SELECT value FROM \"%\" WHERE entity_id = 'kitchen_humidity' OR value > 3", "domains"),
        ("SELECT value FROM \"%\" WHERE domain != 'sensor'", "domain condition"),
        ('SELECT value FROM "W" GROUP BY "domain"', "GROUP BY domain alone"),
        ('SELECT value FROM "W" GROUP BY /e/', "regex"),
        ('SELECT value FROM "W" GROUP BY "icon"', "no tag 'icon'"),
        ('SELECT value FROM "$unit"', "template variable"),
        ("SELECT value FROM $unit", "template variable"),
        ("SELECT value FROM /^$unit$/", "template variable"),
        ("SELECT value FROM \"W\" WHERE entity_id = '$entity'", "$entity"),
        ('SELECT value FROM "W" WHERE entity_id =~ /^(^a)/', "start anchor"),
        ("SELECT value FROM \"W\" WHERE entity_id > 'a'", "entity_id > … is not translated"),
        ("SELECT value FROM \"W\" WHERE icon = 'x'", "not in the optimized layout"),
        ('SELECT value FROM "W" WHERE value * 2 > 3', "calculation"),
        ('SELECT value FROM "W" WHERE "entity_id" = "domain"', "comparing two"),
        ('SELECT value FROM "W", "sensor.x"', "different kinds"),
        ('SELECT value FROM "W", (SELECT value FROM "W")', "mixing a subquery"),
        ('SELECT value INTO "x" FROM "W"', "INTO"),
        ('SELECT value FROM "unknown_unit"', "no measurement"),
        ('SELECT value FROM "None"', "not kept as a unit_of_measurement tag"),
        ("SHOW MEASUREMENTS", "SHOW MEASUREMENTS"),
        ('SHOW FIELD KEYS FROM "W"', "SHOW FIELD KEYS"),
        ('DROP MEASUREMENT "W"', "DROP MEASUREMENT"),
        ('SHOW TAG VALUES WITH KEY = "domain"', "no domain tag"),
        ("SHOW TAG VALUES WITH KEY =~ /e/", "name the key"),
        ('SHOW TAG VALUES FROM "W" WITH KEY = "icon"', "no tag 'icon'"),
        ('SELECT value FROM "W"; SELECT * FROM "W"', "SELECT *"),
    ],
)
def test_refusals_name_their_reason(query: str, reason: str) -> None:
    assert reason in _refusal(query)


def test_ignored_unit_cannot_select_a_unit_measurement() -> None:
    assert "ignore_attributes" in _refusal(
        'SELECT value FROM "W"', ignore_attributes=["unit_of_measurement"]
    )


def test_override_target_is_refused() -> None:
    assert "per-entity override_measurement" in _refusal(
        'SELECT value FROM "grid"',
        component_config={"sensor.grid_power": {"override_measurement": "grid"}},
    )


def test_domain_override_is_refused() -> None:
    assert "component_config_domain" in _refusal(
        "SELECT value FROM \"W\" WHERE domain = 'sensor'",
        component_config_domain={"sensor": {"override_measurement": "sensors"}},
    )


def test_other_measurements_with_global_override_are_refused() -> None:
    assert "writes no measurement" in _refusal('SELECT value FROM "W"', override_measurement="ha")


def test_a_domain_that_is_also_a_legacy_measurement_is_refused() -> None:
    assert "also writes to a measurement named 'sensor'" in _refusal(
        "SELECT value FROM \"W\" WHERE domain = 'sensor'", default_measurement="sensor"
    )


def test_syntax_errors_are_raised() -> None:
    with pytest.raises(QuerySyntaxError):
        translate_query("SELECT FROM", LEGACY, OPTIMIZED)


def test_catalog_round_trips_through_json() -> None:
    assert LegacyCatalog.from_dict(CATALOG.as_dict()) == CATALOG


def test_catalog_knows_shared_measurements_only_by_pairs() -> None:
    contents = CATALOG.measurements["%"]
    assert contents.domains_of("fan") == {"input_number"}
    assert contents.domains_of("kitchen_humidity") == {"sensor", "input_number"}
    assert contents.domains_of("nothing") == frozenset()


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("^°C$", {"°C"}),
        ("^(°C|°F)$", {"°C", "°F"}),
        ("^(?:a\\.b|c)$", {"a.b", "c"}),
        ("^a|b$", None),
        ("^(a)|(b)$", None),
        ("°C", None),
        ("^a.*$", None),
        ("^\\d$", None),
    ],
)
def test_literal_sets(pattern: str, names: set[str] | None) -> None:
    assert literal_set(pattern) == (None if names is None else frozenset(names))


@pytest.mark.parametrize(
    ("pattern", "prefixed"),
    [
        ("^kitchen$", "^sensor\\.kitchen$"),
        ("kitchen", "^sensor\\..*(?:kitchen)"),
        ("^a|b", "^(?:sensor\\.a|sensor\\..*(?:b))"),
        ("(?i)^Kitchen", "(?i)^sensor\\.Kitchen"),
        ("\\bhall", "^sensor\\..*(?:\\bhall)"),
        ("[^a]b", "^sensor\\..*(?:[^a]b)"),
    ],
)
def test_prefixed_regexes(pattern: str, prefixed: str) -> None:
    assert prefix_object_id_regex(pattern, "sensor") == prefixed


def test_a_start_anchor_inside_a_group_is_refused() -> None:
    with pytest.raises(Refusal):
        prefix_object_id_regex("(^a|b)", "sensor")


_PIECES = st.sampled_from(
    [
        "a",
        "b",
        "_",
        "1",
        ".",
        "^",
        "$",
        "|",
        "*",
        "+",
        "?",
        "(",
        ")",
        "[ab]",
        "[^a]",
        "\\b",
        "\\.",
        "(?:a|b)",
        "a{1,2}",
    ]
)
_OBJECT_IDS = st.text(alphabet="ab_1", min_size=1, max_size=6)


@given(st.lists(_PIECES, max_size=8).map("".join), _OBJECT_IDS)
@settings(max_examples=400)
def test_prefixed_regex_matches_what_the_original_matched(pattern: str, object_id: str) -> None:
    """On the object id alone, or after the domain's prefix: the same verdict."""
    try:
        original = re.compile(pattern)
        prefixed = re.compile(prefix_object_id_regex(pattern, "sensor"))
    except (re.error, Refusal):
        assume(False)
        return
    assert bool(original.search(object_id)) == bool(prefixed.search(f"sensor.{object_id}"))


@given(st.text())
@settings(max_examples=300)
def test_translate_never_raises_on_arbitrary_text(text: str) -> None:
    try:
        translation = translate_query(text, LEGACY, OPTIMIZED, CATALOG)
    except QuerySyntaxError:
        return
    if not translation.exact:
        assert translation.query == text


_QUERY_PARTS = st.sampled_from(
    [
        "SELECT",
        "mean(",
        '"value"',
        ")",
        "FROM",
        '"°C"',
        '"W"',
        '"sensor.x"',
        "/^(W|°C)$/",
        "WHERE",
        '"entity_id"',
        "=",
        "=~",
        "'kitchen'",
        "/^k/",
        "AND",
        "OR",
        '"domain"',
        "'sensor'",
        "$timeFilter",
        "GROUP BY",
        "time($__interval)",
        '"entity_id"',
        ",",
        "*",
        "fill(null)",
        "(",
        ")",
        "LIMIT 1",
        ";",
        "SHOW TAG VALUES",
        "WITH KEY",
        '"friendly_name_str"',
        "'x'",
        "ORDER BY time DESC",
        "last(",
        "count(",
        "hvac_action_str",
    ]
)


@given(st.lists(_QUERY_PARTS, min_size=1, max_size=25).map(" ".join))
@settings(max_examples=1000)
def test_query_like_text_is_translated_refused_or_a_syntax_error(text: str) -> None:
    """Never another exception; a refusal leaves the text byte-identical."""
    try:
        translation = translate_query(text, LEGACY, OPTIMIZED, CATALOG)
    except QuerySyntaxError:
        return
    if translation.exact:
        translate_query(translation.query, LEGACY, OPTIMIZED)  # still parses
    else:
        assert translation.query == text
        assert translation.warnings


@pytest.mark.parametrize("pattern", ["a{4294967296}", "(?<=a+)b", "[z-a]"])
def test_an_unreadable_measurement_regex_is_refused(pattern: str) -> None:
    assert "could not be read" in _refusal(f"SELECT value FROM /{pattern}/")


# --- Rarer rewrites and refusals, pinned to their exact text --------------------------------

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
