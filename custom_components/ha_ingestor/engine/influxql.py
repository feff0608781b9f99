"""A parser for the InfluxQL that dashboards send, keeping where every part sits in the text.

Covers what Grafana panels, Grafana variables and core's ``influxdb`` sensors write: SELECT
(fields, FROM measurements, regexes and subqueries, WHERE, GROUP BY, fill, ORDER BY, LIMIT,
OFFSET, SLIMIT, SOFFSET, tz) and SHOW TAG VALUES; other statements are recognised and kept
whole. Grafana's macros and template variables (``$timeFilter``, ``$__interval``, ``$var``,
``${var}``, ``[[var]]``) are atoms of their own. Every node records its ``start``/``end``
offsets, so a caller rewrites a query by replacing spans and leaves the rest byte-identical.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
import re
from typing import Final

# Grafana's template variable syntaxes: $name, ${name} / ${name:format}, [[name]] / [[name:format]].
VARIABLE: Final = re.compile(
    r"\$(?P<plain>\w+)|\$\{(?P<braced>\w+)(?::[^}]*)?\}|\[\[(?P<bracketed>\w+)(?::[^\]]*)?\]\]",
    re.ASCII,
)
# A unit written right after a braced variable: ${__from}ms.
_VARIABLE_SUFFIX: Final = re.compile(r"[A-Za-zµ]+")

_KEYWORDS: Final = frozenset(
    {
        "ALL",
        "AND",
        "AS",
        "ASC",
        "BY",
        "DESC",
        "FILL",
        "FROM",
        "GROUP",
        "IN",
        "INTO",
        "KEY",
        "LIMIT",
        "OFFSET",
        "ON",
        "OR",
        "ORDER",
        "SELECT",
        "SHOW",
        "SLIMIT",
        "SOFFSET",
        "TAG",
        "VALUES",
        "WHERE",
        "WITH",
    }
)
_DURATION: Final = re.compile(r"(?:[0-9]+(?:ns|ms|u|µ|s|m|h|d|w))+(?![A-Za-z0-9_])")
_NUMBER: Final = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIGITS: Final = "0123456789"
_DIGITS_SET: Final = frozenset(_DIGITS)
_ESCAPES: Final = {"n": "\n", "\\": "\\", '"': '"', "'": "'"}
# Longest first, so "<=" is never read as "<" then "=".
_OPERATORS: Final = ("=~", "!~", "!=", "<>", "<=", ">=", "::", "=", "<", ">", "+", "-", "*", "/")
_OPERATORS_MORE: Final = ("%", "&", "|", "^", "(", ")", ",", ";", ".")
COMPARISONS: Final = frozenset({"=", "!=", "<>", "<", "<=", ">", ">=", "=~", "!~"})
# Binary operator precedence, loosest first.
_PRECEDENCE: Final = {
    "OR": 1,
    "AND": 2,
    **dict.fromkeys(COMPARISONS, 3),
    "+": 4,
    "-": 4,
    "|": 4,
    "^": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "&": 5,
}


class QuerySyntaxError(ValueError):
    """The text is not InfluxQL this parser understands; ``position`` is the offending offset."""

    def __init__(self, message: str, position: int) -> None:
        """Keep where the problem is, for the message shown to the user."""
        super().__init__(f"{message} at position {position}")
        self.reason = message
        self.position = position


# --- Tokens ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token: its kind, its decoded value and where it sits in the text."""

    kind: str  # IDENT, QIDENT, KEYWORD, STRING, NUMBER, DURATION, REGEX, VAR, OP, EOF
    value: str
    start: int
    end: int


class _Lexer:
    """Reads tokens on demand: whether "/" opens a regex depends on where the parser is."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _skip(self) -> None:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char.isspace():
                self.pos += 1
            elif text.startswith("--", self.pos):
                newline = text.find("\n", self.pos)
                self.pos = len(text) if newline < 0 else newline + 1
            elif text.startswith("/*", self.pos):
                # Also where a regex may start: a regex cannot begin with "*" in RE2.
                close = text.find("*/", self.pos + 2)
                if close < 0:
                    raise QuerySyntaxError("unterminated comment", self.pos)
                self.pos = close + 2
            else:
                return

    def next(self, *, regex: bool = False) -> Token:
        self._skip()
        text, start = self.text, self.pos
        if start >= len(text):
            return Token("EOF", "", start, start)
        char = text[start]
        if char in "'\"":
            value, end = _quoted(text, start)
            self.pos = end
            return Token("STRING" if char == "'" else "QIDENT", value, start, end)
        if char == "/" and regex:
            value, end = _regex(text, start)
            self.pos = end
            return Token("REGEX", value, start, end)
        if char == "$" or text.startswith("[[", start):
            match = VARIABLE.match(text, start)
            if match is None:
                raise QuerySyntaxError("malformed template variable", start)
            end = match.end()
            if not match.group("plain") and (suffix := _VARIABLE_SUFFIX.match(text, end)):
                end = suffix.end()
            self.pos = end
            return Token("VAR", text[start:end], start, end)
        if char in _DIGITS or (char == "." and text[start + 1 : start + 2] in _DIGITS_SET):
            if (match := _DURATION.match(text, start)) is not None:
                self.pos = match.end()
                return Token("DURATION", match.group(), start, match.end())
            match = _NUMBER.match(text, start)
            assert match is not None
            self.pos = match.end()
            return Token("NUMBER", match.group(), start, match.end())
        if (match := _IDENT.match(text, start)) is not None:
            self.pos = match.end()
            word = match.group()
            kind = "KEYWORD" if word.upper() in _KEYWORDS else "IDENT"
            return Token(kind, word.upper() if kind == "KEYWORD" else word, start, match.end())
        for operator in (*_OPERATORS, *_OPERATORS_MORE):
            if text.startswith(operator, start):
                self.pos = start + len(operator)
                return Token("OP", operator, start, self.pos)
        raise QuerySyntaxError(f"unexpected character {char!r}", start)

    def peek(self, *, regex: bool = False) -> Token:
        saved = self.pos
        try:
            return self.next(regex=regex)
        finally:
            self.pos = saved


def _quoted(text: str, start: int) -> tuple[str, int]:
    """Decode a '…' string or "…" identifier as InfluxQL's scanner does."""
    quote = text[start]
    out: list[str] = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == quote:
            return "".join(out), index + 1
        if char == "\\":
            escaped = text[index + 1 : index + 2]
            if escaped not in _ESCAPES:
                raise QuerySyntaxError("bad escape in quoted text", index)
            out.append(_ESCAPES[escaped])
            index += 2
            continue
        if char == "\n":
            raise QuerySyntaxError("line break in quoted text", index)
        out.append(char)
        index += 1
    raise QuerySyntaxError("unterminated quoted text", start)


def _regex(text: str, start: int) -> tuple[str, int]:
    r"""Decode a /…/ regex: only "\/" is an escape of InfluxQL's; other backslashes stay."""
    out: list[str] = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == "/":
            return "".join(out), index + 1
        if char == "\\" and text[index + 1 : index + 2] == "/":
            out.append("/")
            index += 2
            continue
        if char == "\\" and index + 1 < len(text):
            out.append(text[index : index + 2])
            index += 2
            continue
        if char == "\n":
            raise QuerySyntaxError("line break in regex", index)
        out.append(char)
        index += 1
    raise QuerySyntaxError("unterminated regex", start)


def quote_identifier(name: str) -> str:
    """A double-quoted identifier that decodes back to ``name``."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def quote_string(value: str) -> str:
    """A single-quoted string literal that decodes back to ``value``."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def quote_regex(pattern: str) -> str:
    """A /…/ literal whose pattern is ``pattern`` (an escaped slash reads back as "/")."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            escaped = pattern[index + 1]
            out.append("\\/" if escaped == "/" else char + escaped)
            index += 2
            continue
        out.append("\\/" if char == "/" else char)
        index += 1
    return "/" + "".join(out) + "/"


# --- Syntax tree ----------------------------------------------------------------------------


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


# --- Parser ---------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lexer = _Lexer(text)
        self.depth = 0

    # Token helpers.

    def peek(self, *, regex: bool = False) -> Token:
        return self.lexer.peek(regex=regex)

    def next(self, *, regex: bool = False) -> Token:
        return self.lexer.next(regex=regex)

    def at_keyword(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "KEYWORD" and token.value in words

    def at_op(self, *ops: str) -> bool:
        token = self.peek()
        return token.kind == "OP" and token.value in ops

    def expect_keyword(self, word: str) -> Token:
        token = self.next()
        if token.kind != "KEYWORD" or token.value != word:
            raise QuerySyntaxError(f"expected {word}, found {_describe(token)}", token.start)
        return token

    def expect_op(self, op: str) -> Token:
        token = self.next()
        if token.kind != "OP" or token.value != op:
            raise QuerySyntaxError(f"expected {op!r}, found {_describe(token)}", token.start)
        return token

    # Statements.

    def query(self) -> Query:
        statements: list[Statement] = []
        while True:
            while self.at_op(";"):
                self.next()
            if self.peek().kind == "EOF":
                break
            statements.append(self.statement())
            token = self.peek()
            if token.kind == "EOF":
                break
            if not (token.kind == "OP" and token.value == ";"):
                raise QuerySyntaxError(f"unexpected {_describe(token)}", token.start)
        if not statements:
            raise QuerySyntaxError("empty query", 0)
        return Query(self.text, tuple(statements))

    def statement(self) -> Statement:
        token = self.peek()
        if token.kind == "KEYWORD" and token.value == "SELECT":
            return self.select()
        if token.kind == "KEYWORD" and token.value == "SHOW":
            saved = self.lexer.pos
            self.next()
            if self.at_keyword("TAG"):
                self.next()
                if self.at_keyword("VALUES"):
                    self.next()
                    return self.show_tag_values(token.start)
            self.lexer.pos = saved
        if token.kind not in ("KEYWORD", "IDENT"):
            raise QuerySyntaxError(f"a statement cannot start with {_describe(token)}", token.start)
        return self.other_statement()

    def other_statement(self) -> OtherStatement:
        start = self.peek().start
        words: list[str] = []
        end = start
        depth = 0
        while True:
            token = self.peek(regex=True)
            if token.kind == "EOF" or (token.kind == "OP" and token.value == ";" and not depth):
                break
            self.next(regex=True)
            if token.kind == "OP" and token.value == "(":
                depth += 1
            elif token.kind == "OP" and token.value == ")":
                depth -= 1
            if len(words) < 3 and token.kind in ("KEYWORD", "IDENT"):
                words.append(token.value.upper())
            end = token.end
        return OtherStatement(start=start, end=end, words=" ".join(words))

    def select(self) -> Select:
        self.depth += 1
        if self.depth > 32:
            raise QuerySyntaxError("subqueries nested too deeply", self.peek().start)
        start = self.expect_keyword("SELECT").start
        fields = [self.select_field()]
        while self.at_op(","):
            self.next()
            fields.append(self.select_field())
        into: Node | None = None
        if self.at_keyword("INTO"):
            into_token = self.next()
            target = self.measurement()
            into = Node(start=into_token.start, end=target.end)
        self.expect_keyword("FROM")
        sources_start = self.peek(regex=True).start
        sources: list[Source] = [self.source()]
        while self.at_op(","):
            self.next()
            sources.append(self.source())
        sources_end = sources[-1].end
        end = sources_end
        where = where_start = None
        if self.at_keyword("WHERE"):
            where_start = self.next().start
            where = self.expression()
            end = where.end
        dimensions: list[Expression] = []
        group_by_start = None
        if self.at_keyword("GROUP"):
            group_by_start = self.next().start
            self.expect_keyword("BY")
            dimensions.append(self.dimension())
            while self.at_op(","):
                self.next()
                dimensions.append(self.dimension())
            end = dimensions[-1].end
        fill = None
        if self.at_keyword("FILL"):
            fill_token = self.next()
            fill = self.call_rest("fill", fill_token.start)
            end = fill.end
        order_desc = False
        if self.at_keyword("ORDER"):
            self.next()
            self.expect_keyword("BY")
            token = self.next()
            if token.kind != "IDENT" or token.value.lower() != "time":
                raise QuerySyntaxError("only ORDER BY time is supported", token.start)
            end = token.end
            if self.at_keyword("ASC", "DESC"):
                direction = self.next()
                order_desc = direction.value == "DESC"
                end = direction.end
        limits: dict[str, Node] = {}
        for word in ("LIMIT", "OFFSET", "SLIMIT", "SOFFSET"):
            if self.at_keyword(word):
                self.next()
                limits[word] = self.count()
                end = limits[word].end
        timezone = None
        token = self.peek()
        if token.kind == "IDENT" and token.value.lower() == "tz":
            self.next()
            timezone = self.call_rest("tz", token.start)
            end = timezone.end
        self.depth -= 1
        return Select(
            start=start,
            end=end,
            fields=tuple(fields),
            sources=tuple(sources),
            sources_start=sources_start,
            sources_end=sources_end,
            into=into,
            where=where,
            where_start=where_start,
            dimensions=tuple(dimensions),
            group_by_start=group_by_start,
            fill=fill,
            order_desc=order_desc,
            limit=limits.get("LIMIT"),
            offset=limits.get("OFFSET"),
            slimit=limits.get("SLIMIT"),
            soffset=limits.get("SOFFSET"),
            timezone=timezone,
        )

    def show_tag_values(self, start: int) -> ShowTagValues:
        if self.at_keyword("ON"):
            self.next()
            self.identifier_token()
        sources: list[Measurement] = []
        sources_end = None
        if self.at_keyword("FROM"):
            self.next()
            sources.append(self.measurement())
            while self.at_op(","):
                self.next()
                sources.append(self.measurement())
            sources_end = sources[-1].end
        with_start = self.expect_keyword("WITH").start
        self.expect_keyword("KEY")
        token = self.next()
        keys: list[Identifier] = []
        key_regex = None
        if token.kind == "KEYWORD" and token.value == "IN":
            operator = "IN"
            self.expect_op("(")
            keys.append(self.plain_identifier())
            while self.at_op(","):
                self.next()
                keys.append(self.plain_identifier())
            key_end = self.expect_op(")").end
        elif token.kind == "OP" and token.value in ("=", "!=", "<>"):
            operator = token.value
            keys.append(self.plain_identifier())
            key_end = keys[-1].end
        elif token.kind == "OP" and token.value in ("=~", "!~"):
            operator = token.value
            regex_token = self.next(regex=True)
            if regex_token.kind != "REGEX":
                raise QuerySyntaxError("expected a regex", regex_token.start)
            key_regex = RegexLiteral(
                start=regex_token.start, end=regex_token.end, pattern=regex_token.value
            )
            key_end = regex_token.end
        else:
            raise QuerySyntaxError(
                f"expected a key operator, found {_describe(token)}", token.start
            )
        end = key_end
        where = where_start = None
        if self.at_keyword("WHERE"):
            where_start = self.next().start
            where = self.expression()
            end = where.end
        limits: dict[str, Node] = {}
        for word in ("LIMIT", "OFFSET"):
            if self.at_keyword(word):
                self.next()
                limits[word] = self.count()
                end = limits[word].end
        return ShowTagValues(
            start=start,
            end=end,
            sources=tuple(sources),
            sources_end=sources_end,
            with_start=with_start,
            key_operator=operator,
            keys=tuple(keys),
            key_regex=key_regex,
            key_end=key_end,
            where=where,
            where_start=where_start,
            limit=limits.get("LIMIT"),
            offset=limits.get("OFFSET"),
        )

    # Clauses.

    def select_field(self) -> SelectField:
        expression = self.expression()
        alias = None
        if self.at_keyword("AS"):
            self.next()
            alias = self.plain_identifier()
        end = alias.end if alias else expression.end
        return SelectField(start=expression.start, end=end, expression=expression, alias=alias)

    def source(self) -> Source:
        token = self.peek()
        if token.kind == "OP" and token.value == "(":
            self.next()
            select = self.select()
            close = self.expect_op(")")
            return Subquery(start=token.start, end=close.end, select=select)
        return self.measurement()

    def measurement(self) -> Measurement:
        parts: list[tuple[str | None, Token]] = []
        start = self.peek(regex=True).start
        while True:
            token = self.next(regex=True)
            if token.kind == "REGEX":
                regex = RegexLiteral(start=token.start, end=token.end, pattern=token.value)
                return self._measurement(start, parts, token, regex=regex)
            if token.kind == "VAR":
                variable = Variable(start=token.start, end=token.end, text=token.value)
                return self._measurement(start, parts, token, variable=variable)
            if token.kind not in ("IDENT", "QIDENT", "KEYWORD"):
                raise QuerySyntaxError(f"expected a measurement, found {_describe(token)}", start)
            if token.kind == "KEYWORD":
                raise QuerySyntaxError(f"expected a measurement, found {token.value}", token.start)
            if not self.at_op("."):
                return self._measurement(start, parts, token, name=token.value)
            parts.append((token.value, token))
            self.next()
            # "db..measurement" skips the retention policy.
            if self.at_op(".") and len(parts) == 1:
                self.next()
                parts.append((None, token))
            if len(parts) > 2:
                raise QuerySyntaxError("too many parts in a measurement name", token.start)

    def _measurement(
        self,
        start: int,
        parts: list[tuple[str | None, Token]],
        last: Token,
        *,
        name: str | None = None,
        regex: RegexLiteral | None = None,
        variable: Variable | None = None,
    ) -> Measurement:
        database = policy = None
        if len(parts) == 2:
            database, policy = parts[0][0], parts[1][0]
        elif len(parts) == 1:
            policy = parts[0][0]
        return Measurement(
            start=start,
            end=last.end,
            database=database,
            policy=policy,
            name=name,
            regex=regex,
            variable=variable,
            name_start=last.start,
            name_end=last.end,
        )

    def dimension(self) -> Expression:
        token = self.peek(regex=True)
        if token.kind == "REGEX":
            self.next(regex=True)
            return RegexLiteral(start=token.start, end=token.end, pattern=token.value)
        return self.expression()

    def count(self) -> Node:
        token = self.next()
        if token.kind == "NUMBER" and token.value.isdigit():
            return NumberLiteral(start=token.start, end=token.end, text=token.value)
        if token.kind == "VAR":
            return Variable(start=token.start, end=token.end, text=token.value)
        raise QuerySyntaxError(f"expected a whole number, found {_describe(token)}", token.start)

    def plain_identifier(self) -> Identifier:
        token = self.identifier_token()
        return Identifier(
            start=token.start, end=token.end, name=token.value, quoted=token.kind == "QIDENT"
        )

    def identifier_token(self) -> Token:
        token = self.next()
        if token.kind not in ("IDENT", "QIDENT"):
            raise QuerySyntaxError(f"expected an identifier, found {_describe(token)}", token.start)
        return token

    # Expressions.

    def expression(self, min_precedence: int = 1) -> Expression:
        lhs = self.unary()
        while True:
            token = self.peek()
            operator = token.value if token.kind in ("OP", "KEYWORD") else ""
            precedence = _PRECEDENCE.get(operator, 0)
            if precedence < min_precedence or precedence == 0:
                return lhs
            self.next()
            if operator in ("=~", "!~"):
                rhs_token = self.peek(regex=True)
                if rhs_token.kind == "REGEX":
                    self.next(regex=True)
                    rhs: Expression = RegexLiteral(
                        start=rhs_token.start, end=rhs_token.end, pattern=rhs_token.value
                    )
                elif rhs_token.kind == "VAR":
                    rhs = self.unary()
                else:
                    raise QuerySyntaxError("expected a regex", rhs_token.start)
            else:
                rhs = self.expression(precedence + 1)
            lhs = Binary(start=lhs.start, end=rhs.end, operator=operator, lhs=lhs, rhs=rhs)

    def unary(self) -> Expression:
        token = self.peek(regex=True)
        if token.kind == "OP" and token.value in ("-", "+"):
            self.next()
            operand = self.unary()
            return Unary(start=token.start, end=operand.end, operator=token.value, operand=operand)
        return self.primary()

    def primary(self) -> Expression:
        token = self.next(regex=True)
        kind, value = token.kind, token.value
        if kind == "OP" and value == "(":
            self.depth += 1
            if self.depth > 64:
                raise QuerySyntaxError("expression nested too deeply", token.start)
            inner = self.expression()
            close = self.expect_op(")")
            self.depth -= 1
            return Parenthesized(start=token.start, end=close.end, expression=inner)
        if kind == "OP" and value == "*":
            return Wildcard(start=token.start, end=self._cast_end(token.end), cast=self._cast())
        if kind == "STRING":
            return StringLiteral(start=token.start, end=token.end, value=value)
        if kind == "NUMBER":
            return NumberLiteral(start=token.start, end=token.end, text=value)
        if kind == "DURATION":
            return DurationLiteral(start=token.start, end=token.end, text=value)
        if kind == "REGEX":
            return RegexLiteral(start=token.start, end=token.end, pattern=value)
        if kind == "VAR":
            return Variable(start=token.start, end=token.end, text=value)
        if kind == "IDENT" and value.lower() in ("true", "false"):
            return BooleanLiteral(start=token.start, end=token.end, value=value.lower() == "true")
        if kind == "IDENT" and self.at_op("("):
            self.next()
            return self.call_rest(value, token.start, opened=True)
        if kind in ("IDENT", "QIDENT"):
            cast_end = self._cast_end(token.end)
            return Identifier(
                start=token.start,
                end=cast_end,
                name=value,
                cast=self._cast(),
                quoted=kind == "QIDENT",
            )
        raise QuerySyntaxError(f"unexpected {_describe(token)}", token.start)

    def _cast_end(self, end: int) -> int:
        # Peeks "::tag"/"::field" without consuming; _cast consumes it.
        saved = self.lexer.pos
        token = self.lexer.next()
        if token.kind == "OP" and token.value == "::":
            word = self.lexer.next()
            self.lexer.pos = saved
            return word.end
        self.lexer.pos = saved
        return end

    def _cast(self) -> str | None:
        if not self.at_op("::"):
            return None
        self.next()
        token = self.next()
        if token.kind not in ("IDENT", "KEYWORD") or token.value.lower() not in ("tag", "field"):
            raise QuerySyntaxError("expected ::tag or ::field", token.start)
        return token.value.lower()

    def call_rest(self, name: str, start: int, *, opened: bool = False) -> Call:
        if not opened:
            self.expect_op("(")
        args: list[Expression] = []
        if not self.at_op(")"):
            args.append(self.dimension())
            while self.at_op(","):
                self.next()
                args.append(self.dimension())
        close = self.expect_op(")")
        return Call(start=start, end=close.end, name=name, args=tuple(args))


def _describe(token: Token) -> str:
    if token.kind == "EOF":
        return "the end of the query"
    return repr(token.value) if token.kind != "STRING" else "a string"


def parse(text: str) -> Query:
    """Parse a query text; raises :class:`QuerySyntaxError` when it is not understood."""
    try:
        return _Parser(text).query()
    except RecursionError:
        raise QuerySyntaxError("query nested too deeply", 0) from None


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


def variables_in(text: str) -> list[str]:
    """Names of the Grafana template variables in a piece of text."""
    return [
        match.group("plain") or match.group("braced") or match.group("bracketed")
        for match in VARIABLE.finditer(text)
    ]


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
