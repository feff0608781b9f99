"""InfluxQL's lexical syntax: its tokens, how quoted text decodes, and how to quote text back."""

from dataclasses import dataclass
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


class QuerySyntaxError(ValueError):
    """The text is not InfluxQL this parser understands; ``position`` is the offending offset."""

    def __init__(self, message: str, position: int) -> None:
        """Keep where the problem is, for the message shown to the user."""
        super().__init__(f"{message} at position {position}")
        self.reason = message
        self.position = position


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token: its kind, its decoded value and where it sits in the text."""

    kind: str  # IDENT, QIDENT, KEYWORD, STRING, NUMBER, DURATION, REGEX, VAR, OP, EOF
    value: str
    start: int
    end: int


class Lexer:
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


def describe(token: Token) -> str:
    """A token as an error message names it."""
    if token.kind == "EOF":
        return "the end of the query"
    return repr(token.value) if token.kind != "STRING" else "a string"


def variables_in(text: str) -> list[str]:
    """Names of the Grafana template variables in a piece of text."""
    return [
        match.group("plain") or match.group("braced") or match.group("bracketed")
        for match in VARIABLE.finditer(text)
    ]
