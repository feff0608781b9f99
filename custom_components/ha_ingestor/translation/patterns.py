"""RE2 patterns in queries: reading them (literal sets, alternatives) and writing them."""

from collections.abc import Iterable, Iterator
import re
from typing import Final

from .rewrite import Refusal

# Characters RE2 and Python treat as literal when escaped with a backslash.
_REGEX_META: Final = frozenset(r"\.+*?()|[]{}^$")
_FLAGS: Final = re.compile(r"^\(\?[imsU]+\)")


def re2_escape(text: str) -> str:
    """``text`` as an RE2 pattern matching itself (only RE2's metacharacters escaped)."""
    return "".join(f"\\{char}" if char in _REGEX_META else char for char in text)


def literal_alternation(values: Iterable[str]) -> str:
    """The anchored pattern matching exactly these texts."""
    return "^(?:" + "|".join(re2_escape(value) for value in sorted(values)) + ")$"


def _pieces(pattern: str) -> Iterator[tuple[str, bool]]:
    """The pattern's tokens, each with whether a character class is open after it.

    A piece is an escape (two characters), a class opening (``[``, ``[^``, with the ``]``
    right after it, which is a literal) or one character.
    """
    index = 0
    in_class = False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            piece = pattern[index : index + 2]
        elif in_class:
            piece = char
            in_class = char != "]"
        elif char == "[":
            end = index + 1
            if pattern[end : end + 1] == "^":
                end += 1
            if pattern[end : end + 1] == "]":
                end += 1
            piece = pattern[index:end]
            in_class = True
        else:
            piece = char
        index += len(piece)
        yield piece, in_class


def _split_alternatives(pattern: str) -> list[str] | None:
    """Top-level ``|`` alternatives of an RE2 pattern; ``None`` when it is malformed."""
    alternatives: list[str] = []
    current: list[str] = []
    depth = 0
    in_class = False
    for piece, in_class in _pieces(pattern):
        if not in_class:
            if piece == "(":
                depth += 1
            elif piece == ")":
                depth -= 1
                if depth < 0:
                    return None
            elif piece == "|" and depth == 0:
                alternatives.append("".join(current))
                current = []
                continue
        current.append(piece)
    if depth or in_class:
        return None
    alternatives.append("".join(current))
    return alternatives


def _has_start_anchor(part: str) -> bool:
    """Whether ``^`` or ``\\A`` occurs outside a character class."""
    return any(not in_class and piece in ("^", "\\A") for piece, in_class in _pieces(part))


def _closing_parenthesis(pattern: str) -> int | None:
    """The index of the ")" closing the "(" that ``pattern`` starts with."""
    depth = 0
    index = 0
    for piece, in_class in _pieces(pattern):
        if not in_class and piece == "(":
            depth += 1
        elif not in_class and piece == ")":
            depth -= 1
            if depth == 0:
                return index
        index += len(piece)
    return None


def prefix_object_id_regex(pattern: str, domain: str) -> str:
    """A regex matching ``<domain>.<id>`` exactly when ``pattern`` matches the object id ``id``.

    Unanchored alternatives may match anywhere in the object id; anchored ones (``^``) at
    its start, which is now after the prefix. ``\\b`` and ``\\B`` behave the same after the
    prefix's dot as at the start of the text. Raises :class:`Refusal` for a start anchor
    anywhere else.
    """
    flags = ""
    if match := _FLAGS.match(pattern):
        flags, pattern = match.group(), pattern[match.end() :]
    alternatives = _split_alternatives(pattern)
    if alternatives is None:
        raise Refusal(f"the regex /{pattern}/ could not be read")
    prefix = re2_escape(domain) + r"\."
    rewritten = []
    for alternative in alternatives:
        body = alternative
        anchored = False
        if body.startswith("^"):
            body, anchored = body[1:], True
        elif body.startswith("\\A"):
            body, anchored = body[2:], True
        if _has_start_anchor(body):
            raise Refusal(
                f"the regex /{pattern}/ has a start anchor inside a group; "
                "write it as ^(…) or without anchors"
            )
        if anchored:
            rewritten.append(prefix + body)
        else:
            rewritten.append(prefix + ".*" + (f"(?:{body})" if body else ""))
    if len(rewritten) == 1:
        return f"{flags}^{rewritten[0]}"
    return f"{flags}^(?:{'|'.join(rewritten)})"


def literal_set(pattern: str) -> frozenset[str] | None:
    """The names an anchored alternation of literals matches (``^(?:a|b)$``), else ``None``."""
    if not pattern.startswith("^") or not pattern.endswith("$") or pattern.endswith("\\$"):
        return None
    body = pattern[1:-1]
    grouped = False
    for opening in ("(?:", "("):
        if body.startswith(opening) and _closing_parenthesis(body) == len(body) - 1:
            body, grouped = body[len(opening) : -1], True
            break
    alternatives = _split_alternatives(body)
    # "^a|b$" is (^a)|(b$): only a group makes both anchors apply to every alternative.
    if alternatives is None or (len(alternatives) > 1 and not grouped):
        return None
    names = set()
    for alternative in alternatives:
        literal = _unescape_literal(alternative)
        if literal is None:
            return None
        names.add(literal)
    return frozenset(names)


def _unescape_literal(text: str) -> str | None:
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            escaped = text[index + 1 : index + 2]
            if not escaped or escaped.isalnum() or escaped.isspace():
                return None
            out.append(escaped)
            index += 2
            continue
        if char in _REGEX_META:
            return None
        out.append(char)
        index += 1
    return "".join(out) if out else None


def glob_regex(glob: str) -> str:
    """The RE2 pattern of an fnmatch glob, anchored at both ends (HA's component_config_glob)."""
    out = ["^"]
    index = 0
    while index < len(glob):
        char = glob[index]
        index += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and (close := glob.find("]", index + 1)) > 0:
            content = glob[index:close]
            index = close + 1
            negate = content.startswith("!")
            content = content[1:] if negate else content
            escaped = content.replace("\\", "\\\\").replace("[", "\\[")
            out.append(f"[{'^' if negate else ''}{escaped}]")
        else:
            out.append(re2_escape(char))
    out.append("$")
    return "".join(out)
