"""The InfluxQL syntax tree: every node keeps where it sits in the query text."""

from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """Anything with a place in the text."""

    start: int
    end: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Identifier(Node):
    """A field, tag or column name, quoted or not, with its ``::tag``/``::field`` cast."""

    name: str
    cast: str | None = None
    quoted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StringLiteral(Node):
    """A '…' literal (decoded)."""

    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberLiteral(Node):
    """An integer or float literal, as written."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DurationLiteral(Node):
    """A duration such as ``5m`` or ``1h30m``, as written."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RegexLiteral(Node):
    """A /…/ literal; ``pattern`` is the RE2 pattern InfluxDB compiles."""

    pattern: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BooleanLiteral(Node):
    """``true`` or ``false``."""

    value: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Variable(Node):
    """A Grafana macro or template variable (or an InfluxQL bound parameter), kept as text."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Wildcard(Node):
    """``*``, optionally ``*::tag`` / ``*::field``."""

    cast: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Call(Node):
    """A function call such as ``mean("value")`` or ``time(5m)``."""

    name: str
    args: tuple["Expression", ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Parenthesized(Node):
    """``( expression )``."""

    expression: "Expression"


@dataclass(frozen=True, slots=True, kw_only=True)
class Unary(Node):
    """A negated operand: ``-x``."""

    operator: str
    operand: "Expression"


@dataclass(frozen=True, slots=True, kw_only=True)
class Binary(Node):
    """``lhs operator rhs``; ``operator`` is upper case for AND/OR."""

    operator: str
    lhs: "Expression"
    rhs: "Expression"


type Expression = (
    Identifier
    | StringLiteral
    | NumberLiteral
    | DurationLiteral
    | RegexLiteral
    | BooleanLiteral
    | Variable
    | Wildcard
    | Call
    | Parenthesized
    | Unary
    | Binary
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectField(Node):
    """One item of the SELECT list and its ``AS`` alias."""

    expression: Expression
    alias: Identifier | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement(Node):
    """A FROM source: ``[db.][rp.]name``, a regex or a variable.

    ``name_start``/``name_end`` are the place of the last part (the measurement itself).
    """

    database: str | None
    policy: str | None
    name: str | None
    regex: RegexLiteral | None
    variable: Variable | None
    name_start: int
    name_end: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Subquery(Node):
    """``( SELECT … )`` as a FROM source."""

    select: "Select"


type Source = Measurement | Subquery


@dataclass(frozen=True, slots=True, kw_only=True)
class Select(Node):
    """A SELECT statement and the places of its clauses.

    ``sources_end`` is where the FROM list ends (a WHERE is inserted there when missing);
    ``where_start`` is the place of the WHERE keyword; ``group_by_end`` of the last dimension.
    """

    fields: tuple[SelectField, ...]
    sources: tuple[Source, ...]
    sources_start: int
    sources_end: int
    into: Node | None = None
    where: Expression | None = None
    where_start: int | None = None
    dimensions: tuple[Expression, ...] = ()
    group_by_start: int | None = None
    fill: Call | None = None
    order_desc: bool = False
    limit: Node | None = None
    offset: Node | None = None
    slimit: Node | None = None
    soffset: Node | None = None
    timezone: Call | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowTagValues(Node):
    """``SHOW TAG VALUES [ON db] [FROM …] WITH KEY <op> … [WHERE …] [LIMIT …] [OFFSET …]``.

    ``keys`` are the identifiers after ``=``/``!=``/``IN``; ``key_regex`` the one after
    ``=~``/``!~``.
    """

    sources: tuple[Measurement, ...]
    sources_end: int | None
    with_start: int
    key_operator: str
    keys: tuple[Identifier, ...]
    key_regex: RegexLiteral | None
    key_end: int
    where: Expression | None = None
    where_start: int | None = None
    limit: Node | None = None
    offset: Node | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OtherStatement(Node):
    """A statement of another kind, kept whole; ``words`` are its first keywords."""

    words: str


type Statement = Select | ShowTagValues | OtherStatement


@dataclass(frozen=True, slots=True)
class Query:
    """The statements of a query text (separated by ";")."""

    text: str
    statements: tuple[Statement, ...] = field(default=())


def walk(node: Expression) -> Iterator[Expression]:
    """The expression and every expression inside it, outermost first."""
    yield node
    if isinstance(node, Call):
        for arg in node.args:
            yield from walk(arg)
    elif isinstance(node, Parenthesized):
        yield from walk(node.expression)
    elif isinstance(node, Unary):
        yield from walk(node.operand)
    elif isinstance(node, Binary):
        yield from walk(node.lhs)
        yield from walk(node.rhs)
