"""What translating one statement produces: edits to its text and notes on them, or a refusal."""

from dataclasses import dataclass, field

from ..engine.influxql import quote_identifier, quote_regex, quote_string


class Refusal(Exception):
    """A statement cannot be translated exactly; the message says why."""


@dataclass(slots=True)
class TextEdits:
    """Replacements of spans of the original text, applied all at once."""

    items: list[tuple[int, int, int, str]] = field(default_factory=list)

    def replace(self, start: int, end: int, text: str) -> None:
        """Replace ``[start, end)`` of the original text."""
        self.items.append((start, end, len(self.items), text))

    def insert(self, position: int, text: str) -> None:
        """Insert before ``position`` of the original text."""
        self.replace(position, position, text)

    def apply(self, text: str) -> str:
        """The text with every edit made; edits at one position keep their order."""
        out: list[str] = []
        cursor = 0
        for start, end, _, replacement in sorted(self.items):
            if start < cursor:
                raise Refusal("internal error: overlapping rewrites")
            out.append(text[cursor:start])
            out.append(replacement)
            cursor = end
        out.append(text[cursor:])
        return "".join(out)


@dataclass(slots=True)
class StatementRewrite:
    """The work in progress on one statement: its edits and the changes they make."""

    text: str
    edits: TextEdits = field(default_factory=TextEdits)
    changes: list[str] = field(default_factory=list)


def condition(key: str, operator: str, value: str) -> str:
    """The InfluxQL text of ``key operator value``, the value quoted as its operator needs."""
    rendered = quote_regex(value) if operator in ("=~", "!~") else quote_string(value)
    return f"{quote_identifier(key)} {operator} {rendered}"
