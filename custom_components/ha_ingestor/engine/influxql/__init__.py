"""A parser for the InfluxQL that dashboards send, keeping where every part sits in the text.

Covers what Grafana panels, Grafana variables and core's ``influxdb`` sensors write: SELECT
(fields, FROM measurements, regexes and subqueries, WHERE, GROUP BY, fill, ORDER BY, LIMIT,
OFFSET, SLIMIT, SOFFSET, tz) and SHOW TAG VALUES; other statements are recognised and kept
whole. Grafana's macros and template variables (``$timeFilter``, ``$__interval``, ``$var``,
``${var}``, ``[[var]]``) are atoms of their own. Every node records its ``start``/``end``
offsets, so a caller rewrites a query by replacing spans and leaves the rest byte-identical.

The parser is three cooperating readers over one token cursor (:mod:`.cursor`): statements and
SELECT clauses (:mod:`.statements`) use the expression reader (:mod:`.expressions`); tokens and
quoting are in :mod:`.lexer`, the nodes in :mod:`.syntax`.
"""

from .expressions import COMPARISONS
from .lexer import (
    VARIABLE,
    QuerySyntaxError,
    Token,
    quote_identifier,
    quote_regex,
    quote_string,
    variables_in,
)
from .statements import StatementParser
from .syntax import (
    Binary,
    BooleanLiteral,
    Call,
    DurationLiteral,
    Expression,
    Identifier,
    Measurement,
    Node,
    NumberLiteral,
    OtherStatement,
    Parenthesized,
    Query,
    RegexLiteral,
    Select,
    SelectField,
    ShowTagValues,
    Source,
    Statement,
    StringLiteral,
    Subquery,
    Unary,
    Variable,
    Wildcard,
    walk,
)


def parse(text: str) -> Query:
    """Parse a query text; raises :class:`QuerySyntaxError` when it is not understood."""
    try:
        return StatementParser(text).query()
    except RecursionError:
        raise QuerySyntaxError("query nested too deeply", 0) from None


__all__ = [
    "COMPARISONS",
    "VARIABLE",
    "Binary",
    "BooleanLiteral",
    "Call",
    "DurationLiteral",
    "Expression",
    "Identifier",
    "Measurement",
    "Node",
    "NumberLiteral",
    "OtherStatement",
    "Parenthesized",
    "Query",
    "QuerySyntaxError",
    "RegexLiteral",
    "Select",
    "SelectField",
    "ShowTagValues",
    "Source",
    "Statement",
    "StringLiteral",
    "Subquery",
    "Token",
    "Unary",
    "Variable",
    "Wildcard",
    "parse",
    "quote_identifier",
    "quote_regex",
    "quote_string",
    "variables_in",
    "walk",
]
