"""The query translator without a server: what it rewrites, what it leaves, what it refuses."""

import re

from hypothesis import assume, given, settings, strategies as st
import pytest

from custom_components.ha_ingestor.layouts.legacy import LegacyOptions
from custom_components.ha_ingestor.layouts.optimized import OptimizedOptions
from custom_components.ha_ingestor.translation.query import (
    LegacyCatalog,
    QuerySyntaxError,
    QueryTranslator,
    Refusal,
    literal_set,
    prefix_object_id_regex,
    translate_query,
)

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
