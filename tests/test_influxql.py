"""The InfluxQL parser: what it reads, where it says each part is, and what it rejects."""

import contextlib

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.ha_ingestor.engine.influxql import (
    Binary,
    Call,
    Identifier,
    Measurement,
    OtherStatement,
    Parenthesized,
    QuerySyntaxError,
    RegexLiteral,
    Select,
    ShowTagValues,
    StringLiteral,
    Subquery,
    Variable,
    parse,
    quote_identifier,
    quote_regex,
    quote_string,
    variables_in,
)

GRAFANA = (
    'SELECT mean("value") FROM "°C" WHERE ("entity_id" = \'kitchen\') AND $timeFilter '
    "GROUP BY time($__interval) fill(null)"
)


def _select(text: str) -> Select:
    (statement,) = parse(text).statements
    assert isinstance(statement, Select)
    return statement


def test_grafana_builder_query_is_read_with_every_clause() -> None:
    select = _select(GRAFANA)
    (field,) = select.fields
    assert isinstance(field.expression, Call)
    assert field.expression.name == "mean"
    (source,) = select.sources
    assert isinstance(source, Measurement)
    assert source.name == "°C"
    assert GRAFANA[source.name_start : source.name_end] == '"°C"'
    assert isinstance(select.where, Binary)
    assert select.where.operator == "AND"
    assert isinstance(select.where.rhs, Variable)
    assert select.where.rhs.text == "$timeFilter"
    (time,) = select.dimensions
    assert GRAFANA[time.start : time.end] == "time($__interval)"
    assert select.fill is not None
    assert GRAFANA[select.fill.start : select.fill.end] == "fill(null)"


def test_every_node_span_is_its_own_text() -> None:
    text = 'SELECT last(value) FROM "db"."rp"."W" WHERE entity_id = \'a\' LIMIT 1'
    select = _select(text)
    assert text[select.start : select.end] == text
    (source,) = select.sources
    assert isinstance(source, Measurement)
    assert (source.database, source.policy, source.name) == ("db", "rp", "W")
    assert text[source.start : source.end] == '"db"."rp"."W"'
    assert text[source.name_start : source.name_end] == '"W"'
    assert select.limit is not None
    assert text[select.limit.start : select.limit.end] == "1"


def test_database_with_default_policy() -> None:
    (source,) = _select("SELECT value FROM home..temperature").sources
    assert isinstance(source, Measurement)
    assert (source.database, source.policy, source.name) == ("home", None, "temperature")


def test_quoted_text_escapes_are_decoded() -> None:
    select = _select(r"""SELECT "a\"b" FROM "x\\y" WHERE t = 'it\'s'""")
    assert isinstance(select.fields[0].expression, Identifier)
    assert select.fields[0].expression.name == 'a"b'
    assert isinstance(select.sources[0], Measurement)
    assert select.sources[0].name == "x\\y"
    assert isinstance(select.where, Binary)
    assert isinstance(select.where.rhs, StringLiteral)
    assert select.where.rhs.value == "it's"


def test_regex_with_escaped_slash() -> None:
    select = _select(r"SELECT value FROM /^k\/h$/ WHERE entity_id =~ /a\.b|c/")
    (source,) = select.sources
    assert isinstance(source, Measurement)
    assert source.regex is not None
    assert source.regex.pattern == "^k/h$"
    assert isinstance(select.where, Binary)
    assert isinstance(select.where.rhs, RegexLiteral)
    assert select.where.rhs.pattern == r"a\.b|c"


def test_division_is_not_a_regex() -> None:
    select = _select("SELECT value / 2 / 3 FROM m")
    expression = select.fields[0].expression
    assert isinstance(expression, Binary)
    assert expression.operator == "/"


def test_and_binds_tighter_than_or() -> None:
    select = _select("SELECT v FROM m WHERE a = 'x' OR b = 'y' AND c = 'z'")
    assert isinstance(select.where, Binary)
    assert select.where.operator == "OR"
    assert isinstance(select.where.rhs, Binary)
    assert select.where.rhs.operator == "AND"


def test_subquery_source() -> None:
    select = _select(
        'SELECT max("m") FROM (SELECT mean("value") AS "m" FROM "W" GROUP BY time(1h), '
        '"entity_id") GROUP BY time(1d)'
    )
    (source,) = select.sources
    assert isinstance(source, Subquery)
    assert source.select.fields[0].alias is not None
    assert source.select.fields[0].alias.name == "m"
    assert len(source.select.dimensions) == 2


def test_trailing_clauses() -> None:
    text = (
        "SELECT value FROM m WHERE time > now() - 1h30m ORDER BY time DESC LIMIT 10 OFFSET 2 "
        "SLIMIT 3 SOFFSET 1 tz('Europe/Amsterdam')"
    )
    select = _select(text)
    assert select.order_desc
    assert select.offset is not None
    assert select.slimit is not None
    assert select.soffset is not None
    assert select.timezone is not None
    assert text[select.timezone.start : select.timezone.end] == "tz('Europe/Amsterdam')"


def test_casts_on_identifiers() -> None:
    select = _select('SELECT "value"::field FROM m WHERE "entity_id"::tag = \'a\'')
    field = select.fields[0].expression
    assert isinstance(field, Identifier)
    assert field.cast == "field"
    assert isinstance(select.where, Binary)
    assert isinstance(select.where.lhs, Identifier)
    assert select.where.lhs.cast == "tag"


@pytest.mark.parametrize(
    ("text", "variable"),
    [
        ("SELECT v FROM m WHERE $timeFilter", "$timeFilter"),
        ("SELECT v FROM m WHERE time > ${__from}ms", "${__from}ms"),
        ("SELECT v FROM m WHERE e =~ $entity", "$entity"),
        ("SELECT v FROM m WHERE e = [[entity]]", "[[entity]]"),
        ("SELECT v FROM m WHERE e = ${entity:raw}", "${entity:raw}"),
    ],
)
def test_grafana_variables_are_atoms(text: str, variable: str) -> None:
    where = _select(text).where
    assert isinstance(where, Binary | Variable)
    atom = where.rhs if isinstance(where, Binary) else where
    assert isinstance(atom, Variable)
    assert atom.text == variable


def test_variables_inside_text() -> None:
    assert variables_in("^$entity$|${room:regex}_[[x]]") == ["entity", "room", "x"]


def test_show_tag_values() -> None:
    (statement,) = parse(
        'SHOW TAG VALUES FROM "°C" WITH KEY = "entity_id" WHERE "domain" = \'sensor\''
    ).statements
    assert isinstance(statement, ShowTagValues)
    assert statement.key_operator == "="
    assert [key.name for key in statement.keys] == ["entity_id"]
    assert statement.sources[0].name == "°C"
    assert statement.where is not None


def test_show_tag_values_with_key_in() -> None:
    (statement,) = parse('SHOW TAG VALUES WITH KEY IN ("entity_id", domain)').statements
    assert isinstance(statement, ShowTagValues)
    assert [key.name for key in statement.keys] == ["entity_id", "domain"]


def test_other_statements_are_kept_whole() -> None:
    text = "SHOW MEASUREMENTS WITH MEASUREMENT =~ /°/; SELECT v FROM m"
    first, second = parse(text).statements
    assert isinstance(first, OtherStatement)
    assert first.words == "SHOW MEASUREMENTS WITH"
    assert text[first.start : first.end] == "SHOW MEASUREMENTS WITH MEASUREMENT =~ /°/"
    assert isinstance(second, Select)


def test_comments_are_skipped() -> None:
    select = _select("SELECT v -- the value\nFROM /* unit */ m")
    assert isinstance(select.sources[0], Measurement)
    assert select.sources[0].name == "m"


def test_parenthesised_conditions() -> None:
    where = _select("SELECT v FROM m WHERE ((a = 'x'))").where
    assert isinstance(where, Parenthesized)
    assert isinstance(where.expression, Parenthesized)


@pytest.mark.parametrize(
    "text",
    [
        "",
        ";",
        "SELECT",
        "SELECT value",
        "SELECT value FROM",
        "SELECT value FROM m WHERE",
        "SELECT value FROM m WHERE a = 'unterminated",
        'SELECT value FROM "m',
        "SELECT value FROM m WHERE a =~ /open",
        "SELECT value FROM m GROUP BY",
        "SELECT value FROM m ORDER BY value",
        "SELECT value FROM m LIMIT x",
        "SELECT value FROM m WHERE a = 'bad \\q escape'",
        "SELECT value FROM m extra",
        "SELECT (value FROM m",
        "SELECT value FROM a.b.c.d",
        "SELECT value FROM m WHERE $",
        "SELECT v FROM m /* never closed",
        "SHOW TAG VALUES WITH KEY",
        "42",
    ],
)
def test_malformed_queries_raise_syntax_errors(text: str) -> None:
    with pytest.raises(QuerySyntaxError):
        parse(text)


def test_deep_nesting_is_a_syntax_error() -> None:
    with pytest.raises(QuerySyntaxError):
        parse("SELECT v FROM m WHERE " + "(" * 500 + "a = 'x'" + ")" * 500)


def _parenthesized_where(depth: int, subqueries: int = 0) -> str:
    """A SELECT inside ``subqueries`` subqueries whose WHERE sits in ``depth`` parentheses."""
    return (
        "SELECT v FROM "
        + "(SELECT v FROM " * subqueries
        + "m WHERE "
        + "(" * depth
        + "a = 'x'"
        + ")" * (depth + subqueries)
    )


def test_parentheses_nest_63_deep_and_the_64th_is_reported_where_it_opens() -> None:
    parse(_parenthesized_where(63))
    text = _parenthesized_where(64)
    with pytest.raises(QuerySyntaxError) as error:
        parse(text)
    assert error.value.reason == "expression nested too deeply"
    assert error.value.position == text.index("(" * 64) + 63


def test_subqueries_nest_32_deep_and_the_33rd_is_reported_at_its_select() -> None:
    def nested(count: int) -> str:
        return "SELECT v FROM " + "(SELECT v FROM " * (count - 1) + "m" + ")" * (count - 1)

    parse(nested(32))
    text = nested(33)
    with pytest.raises(QuerySyntaxError) as error:
        parse(text)
    assert error.value.reason == "subqueries nested too deeply"
    assert error.value.position == text.rindex("SELECT")


def test_subqueries_count_towards_the_parenthesis_limit() -> None:
    """One nesting count covers both: 31 subqueries leave room for 32 parentheses, not 63."""
    parse(_parenthesized_where(32, subqueries=31))
    text = _parenthesized_where(33, subqueries=31)
    with pytest.raises(QuerySyntaxError) as error:
        parse(text)
    assert error.value.reason == "expression nested too deeply"
    assert error.value.position == text.index("(" * 33) + 32


@given(st.text())
@settings(max_examples=300)
def test_any_text_parses_or_raises_a_syntax_error(text: str) -> None:
    with contextlib.suppress(QuerySyntaxError):
        parse(text)


@given(st.text(min_size=1))
def test_quoted_identifiers_read_back(name: str) -> None:
    select = _select(f"SELECT {quote_identifier(name)} FROM {quote_identifier(name)}")
    field = select.fields[0].expression
    assert isinstance(field, Identifier)
    assert field.name == name
    assert isinstance(select.sources[0], Measurement)
    assert select.sources[0].name == name


@given(st.text())
def test_string_literals_read_back(value: str) -> None:
    where = _select(f"SELECT v FROM m WHERE t = {quote_string(value)}").where
    assert isinstance(where, Binary)
    assert isinstance(where.rhs, StringLiteral)
    assert where.rhs.value == value


def _unescaped_slashes(pattern: str) -> str:
    out, index = [], 0
    while index < len(pattern):
        if pattern[index] == "\\" and pattern[index + 1 : index + 2] == "/":
            out.append("/")
            index += 2
        elif pattern[index] == "\\":
            out.append(pattern[index : index + 2])
            index += 2
        else:
            out.append(pattern[index])
            index += 1
    return "".join(out)


@given(
    st.text().filter(
        # "/*" opens a comment; RE2 rejects a leading "*" anyway.
        lambda text: "\n" not in text and not text.endswith("\\") and not text.startswith("*")
    )
)
def test_regex_literals_read_back(pattern: str) -> None:
    """The same regex comes back ("\\/" and "/" mean the same to RE2)."""
    where = _select(f"SELECT v FROM m WHERE t =~ {quote_regex(pattern)}").where
    assert isinstance(where, Binary)
    assert isinstance(where.rhs, RegexLiteral)
    assert where.rhs.pattern == _unescaped_slashes(pattern)


def test_escaped_slash_in_regex_reads_back_as_slash() -> None:
    assert quote_regex("a\\/b/c") == "/a\\/b\\/c/"
