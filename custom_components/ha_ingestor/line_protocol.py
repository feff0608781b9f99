"""InfluxDB line protocol: the one place that turns points into bytes for the server.

Line protocol cannot carry every string in every position. Names (measurement, tag keys and
values, field keys) cannot hold a line break, and a backslash in front of a separator is read
as an escape; such names are made representable by :func:`sanitize_name`, so one point always
stays one line. String field values can carry any text and round-trip unchanged.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
import math
import re

type FieldValue = float | int | bool | str

# Characters that make a name unrepresentable: line breaks end the line; other C0 controls
# are rejected by the server's parser or mangled by its JSON output.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A backslash is an escape when followed by a separator or a quote (InfluxDB 1.x unescapes
# \" in measurements and field keys), or when it ends the name.
_BACKSLASH_BEFORE_SEPARATOR = re.compile(r'\\(?=[ ,="\\]|$)')

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": r"\\"})


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point; ``time_ns`` is nanoseconds since the epoch."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int


def sanitize_name(name: str) -> str:
    """Return ``name`` in a form line protocol carries exactly.

    Control characters become a space, a backslash that the server would read as an escape
    becomes a slash, and a leading ``#`` (a comment line) is prefixed with ``_``. Names that
    need none of this are returned unchanged.
    """
    if _CONTROL.search(name):
        name = _CONTROL.sub(" ", name)
    if "\\" in name:
        name = _BACKSLASH_BEFORE_SEPARATOR.sub("/", name)
    return name


def is_representable(name: str) -> bool:
    """Whether ``name`` survives a write and a read unchanged as a measurement, key or tag."""
    return bool(name) and sanitize_name(name) == name and not name.startswith("#")


# Names repeat endlessly (a few hundred entities, units and attributes), so escaping each
# once and remembering it makes encoding several times faster; the bound keeps memory flat.
@lru_cache(maxsize=65_536)
def _measurement(name: str) -> str:
    name = sanitize_name(name)
    if name.startswith("#"):
        name = "_" + name
    return name.translate(_MEASUREMENT_ESCAPES)


@lru_cache(maxsize=65_536)
def _key(name: str) -> str:
    return sanitize_name(name).translate(_KEY_ESCAPES)


def _field_value(value: FieldValue) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return repr(value)
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def encode(point: Point) -> str | None:
    """Encode one point as a line, or ``None`` when it has no writable field.

    Empty tag values are left out (the server rejects them) and so are NaN and infinite
    floats, which the server cannot store.
    """
    fields = []
    for key, value in point.fields.items():
        if not key:
            continue
        encoded = _field_value(value)
        if encoded is not None:
            fields.append(f"{_key(key)}={encoded}")
    if not fields or not point.measurement:
        return None
    parts = [_measurement(point.measurement)]
    for key in sorted(point.tags):
        value = point.tags[key]
        if key and value:
            parts.append(f"{_key(key)}={_key(value)}")
    return f"{','.join(parts)} {','.join(fields)} {point.time_ns}"


def encode_batch(points: Iterable[Point]) -> bytes:
    """Encode points as one write body; points with nothing writable are skipped."""
    lines = [line for point in points if (line := encode(point)) is not None]
    return "\n".join(lines).encode()


# A line as line_protocol.encode writes it: the series key (no unescaped space), the fields,
# the timestamp. Names never hold a line break; only a quoted string field value can, and its
# quotes and backslashes are escaped.
_NAME_CHAR = rb"(?:[^ \\\n]|\\.)"
_FIELD_KEY = rb"(?:[^=, \\\n]|\\.)+"
_FIELD_VALUE = rb'(?:"(?:[^"\\]|\\.)*"|[^," \n]+)'
_FIELD = _FIELD_KEY + rb"=" + _FIELD_VALUE
_LINE = re.compile(
    _NAME_CHAR + rb"+ " + _FIELD + rb"(?:," + _FIELD + rb")*(?: -?\d+)?(?=\n|\Z)", re.DOTALL
)


def split_lines(body: bytes) -> list[bytes]:
    """Split a write body into its lines (a string field value may itself hold line breaks)."""
    if b'"' not in body:
        return [line for line in body.split(b"\n") if line]
    lines = []
    position = 0
    while position < len(body):
        if match := _LINE.match(body, position):
            end = match.end()
        elif (end := body.find(b"\n", position)) < 0:
            end = len(body)
        if end > position:
            lines.append(body[position:end])
        position = end + 1
    return lines


_TAG_SEPARATOR = re.compile(r"(?<!\\),")


def tag_value(line: str, key: str) -> str | None:
    """The value of one tag in an encoded line (unescaped), or None when it has none."""
    series = re.match(r"(?:[^ \\]|\\.)*", line)
    if series is None:
        return None
    wanted = key.translate(_KEY_ESCAPES) + "="
    for part in _TAG_SEPARATOR.split(series.group(0))[1:]:
        if part.startswith(wanted):
            return re.sub(r"\\([, =])", r"\1", part[len(wanted) :])
    return None
