"""InfluxDB line protocol: the one place that turns points into bytes for the server.

Two kinds of encoding live here:

- :func:`encode`, ours (the optimized layout, rollups, the backfill): every name is made
  representable by :func:`sanitize_name` (one point always stays one line and reads back
  exactly), and string field values carry any text unchanged.
- :func:`encode_like_core_v1` and :func:`encode_like_core_v2`, the bytes HA core's
  ``influxdb`` integration sends through its client libraries, so the legacy layout stores
  what core stores. Core's 1.x client writes a backslash in a name doubled and a line break as
  backslash + ``n`` everywhere, and InfluxDB 1.x undoes only line protocol's own escapes, so
  what the server keeps is not the attribute's text: :func:`name_from_stored` reads a stored
  name back, and :func:`as_stored_text` is the one form of a text value that a real line break
  and a typed backslash + ``n`` share once stored.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
import math
import re
from typing import Final

type FieldValue = float | int | bool | str

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def to_time_ns(moment: datetime) -> int:
    """Exact nanoseconds since the epoch; a naive time is UTC, as the client libraries read it."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def from_time_ns(time_ns: int) -> datetime:
    """The UTC time of a point's nanoseconds (to the microsecond a datetime holds)."""
    return _EPOCH + timedelta(microseconds=time_ns // 1000)


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


def as_written(point: Point) -> Point:
    """What InfluxDB gives back for ``point`` written by :func:`encode` (numbers aside: JSON
    reads 12.0 as 12): names as :func:`sanitize_name` makes them, empty tags and keys and
    non-finite numbers gone."""
    measurement = sanitize_name(point.measurement)
    if measurement.startswith("#"):
        measurement = "_" + measurement
    return Point(
        measurement,
        {
            sanitize_name(key): sanitize_name(value)
            for key, value in point.tags.items()
            if key and value
        },
        {
            sanitize_name(key): value
            for key, value in point.fields.items()
            if key and not (isinstance(value, float) and not math.isfinite(value))
        },
        point.time_ns,
    )


def encode_batch(points: Iterable[Point]) -> bytes:
    """Encode points as one write body; points with nothing writable are skipped."""
    lines = [line for point in points if (line := encode(point)) is not None]
    return "\n".join(lines).encode()


type Encoder = Callable[[Point], str | None]


# HA core's clients ------------------------------------------------------------------------------
#
# The escaping of core's 1.x client (``influxdb`` 5.3.1, ``line_protocol.make_line``): names
# escape backslash, space, comma, "=" and a line break; string values backslash, the double
# quote and a line break. InfluxDB 1.x unescapes in names only space, comma and "=", in string
# values only the backslash and the quote, so a name keeps its doubled backslashes and every
# line break is kept as backslash + "n" (checked against influxd in tests/test_core_bytes.py).
_CORE_V1_NAME: Final = str.maketrans(
    {"\\": "\\\\", " ": "\\ ", ",": "\\,", "=": "\\=", "\n": "\\n"}
)
_CORE_V1_STRING: Final = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
# Names core's 1.x line loses or garbles on InfluxDB 1.x: the server reads "\\" followed by a
# separator as an escaped separator, so a name ending in a backslash makes the line
# unparsable (the point is refused), and in a measurement a backslash before a space, comma,
# "=" or quote (in a field key: before a quote) leaves a series without readable fields. Ours
# writes a slash for that backslash instead, the same repair sanitize_name makes.
_CORE_V1_MEASUREMENT_LOST: Final = re.compile(r'\\(?=[ ,="]|\Z)')
_CORE_V1_FIELD_KEY_LOST: Final = re.compile(r'\\(?="|\Z)')
_CORE_V1_TAG_LOST: Final = re.compile(r"\\\Z")


@lru_cache(maxsize=65_536)
def _core_v1_measurement(name: str) -> str:
    if "\\" in name:
        name = _CORE_V1_MEASUREMENT_LOST.sub("/", name)
    if not (kept := name.lstrip(_UNESCAPED_BLANKS)) or kept.startswith("#"):
        # The server skips tabs and NULs before the measurement: core's line would then start
        # a comment or have no measurement, and the point would be lost.
        name = "_" + kept
    return name.translate(_CORE_V1_NAME)


@lru_cache(maxsize=65_536)
def _core_v1_tag(name: str) -> str:
    if name.endswith("\\"):
        name = _CORE_V1_TAG_LOST.sub("/", name)
    return name.translate(_CORE_V1_NAME)


@lru_cache(maxsize=65_536)
def _core_v1_field_key(name: str) -> str:
    if "\\" in name:
        name = _CORE_V1_FIELD_KEY_LOST.sub("/", name)
    return name.translate(_CORE_V1_NAME)


def _core_v1_value(value: FieldValue) -> str | None:
    if isinstance(value, str):
        return '"' + value.translate(_CORE_V1_STRING) + '"'
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return f"{value}i"
    if math.isnan(value) or math.isinf(value):
        # Core sends "nan"/"inf", which the server refuses with the whole point.
        return None
    return repr(value)


def encode_like_core_v1(point: Point) -> str | None:
    """The line HA core's 1.x client sends for ``point``; ``None`` when nothing is writable.

    Byte for byte ``influxdb.line_protocol.make_line`` (tags and fields sorted, empty tag
    values left out), except where core's line would be refused or garbled by the server:
    a non-finite field is left out (core loses the whole point), a measurement starting with
    ``#`` (after tabs or NULs, which the server skips, as before the first field key) or of
    nothing but those gets a leading ``_``, a first field key of nothing but them is ``_``,
    and a backslash that would be read as escaping a separator
    becomes a slash (see above).
    """
    fields: list[str] = []
    for key in sorted(point.fields):
        if key and (value := _core_v1_value(point.fields[key])) is not None:
            # Tabs and NULs before the first field key are skipped by the server; a key of
            # nothing else would be stored without a name.
            name = "_" if not fields and not key.lstrip(_UNESCAPED_BLANKS) else key
            fields.append(f"{_core_v1_field_key(name)}={value}")
    if not fields or not point.measurement:
        return None
    parts = [_core_v1_measurement(point.measurement)]
    for key in sorted(point.tags):
        value = point.tags[key]
        if key and value:
            parts.append(f"{_core_v1_tag(key)}={_core_v1_tag(value)}")
    return f"{','.join(parts)} {','.join(fields)} {point.time_ns}"


# The escaping of core's 2.x client (``influxdb-client`` 1.24, ``Point.to_line_protocol``):
# names escape comma, space and "=" (not in measurements) and write line break, tab and
# carriage return as "\n", "\t" and "\r"; backslashes stay single; a tag value ending in a
# backslash gets a space appended; string values escape the quote and the backslash only.
_CORE_V2_MEASUREMENT: Final = str.maketrans(
    {",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_CORE_V2_KEY: Final = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_CORE_V2_STRING: Final = str.maketrans({'"': r"\"", "\\": r"\\"})
# As on 1.x, a backslash before a separator (or ending the name) is read as an escape by the
# server, and a line starting with "#" is a comment: core's point would be lost or garbled,
# so ours writes a slash (a leading "_") there instead.
_CORE_V2_MEASUREMENT_LOST: Final = re.compile(r'\\(?=[ ,"]|\Z)')
_CORE_V2_KEY_LOST: Final = re.compile(r'\\(?=[ ,="]|\Z)')


@lru_cache(maxsize=65_536)
def _core_v2_measurement(name: str) -> str:
    if "\\" in name:
        name = _CORE_V2_MEASUREMENT_LOST.sub("/", name)
    if name.startswith("#"):
        name = "_" + name
    return name.translate(_CORE_V2_MEASUREMENT)


@lru_cache(maxsize=65_536)
def _core_v2_key(name: str) -> str:
    if "\\" in name:
        name = _CORE_V2_KEY_LOST.sub("/", name)
    return name.translate(_CORE_V2_KEY)


def _core_v2_value(value: FieldValue) -> str | None:
    if isinstance(value, str):
        return '"' + value.translate(_CORE_V2_STRING) + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if not math.isfinite(value):
        return None
    text = str(value)
    return text[:-2] if text.endswith(".0") else text


def encode_like_core_v2(point: Point) -> str | None:
    """The line HA core's 2.x client sends for ``point``; ``None`` when nothing is writable.

    Byte for byte ``influxdb_client`` ``Point.to_line_protocol`` at nanosecond precision,
    with the same repairs as :func:`encode_like_core_v1` where core's line would be lost or
    garbled. Not checked against a real InfluxDB 2.x server (none can run here).
    """
    fields = []
    for key in sorted(point.fields):
        if (value := _core_v2_value(point.fields[key])) is not None:
            fields.append(f"{_core_v2_key(key)}={value}")
    if not fields or not point.measurement:
        return None
    parts = [_core_v2_measurement(point.measurement)]
    for key in sorted(point.tags):
        # A tag value ending in a backslash got a space from core's client; ours a slash.
        tag, text = _core_v2_key(key), _core_v2_key(point.tags[key])
        if tag and text:
            parts.append(f"{tag}={text}")
    return f"{','.join(parts)} {','.join(fields)} {point.time_ns}"


# Reading back what core's clients stored ---------------------------------------------------------

# In a stored name, "\\" is a backslash and "\n", "\t", "\r" a control character (1.x keeps
# core's escapes of them; only the 2.x client writes the last two). Scanned left to right, so
# the pair "\\" is read before what follows it.
_STORED_ESCAPE: Final = re.compile(r"\\([\\ntr])")
_STORED_CHARACTERS: Final = {"\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


@lru_cache(maxsize=65_536)
def name_from_stored(name: str) -> str:
    """The text of a name as core's client stored it (a measurement, tag key or value, field
    key): the inverse of what the server keeps of core's escaping.

    A name written by core's 1.x client reads back exactly (or with the slash the repairs of
    :func:`encode_like_core_v1` put in); one without a backslash is returned unchanged.
    """
    if "\\" not in name:
        return name
    return _STORED_ESCAPE.sub(lambda match: _STORED_CHARACTERS[match.group(1)], name)


def measurement_from_stored(name: str) -> str:
    """The text of a measurement core's client stored: :func:`name_from_stored`, and the ``_``
    put before a leading ``#`` taken off again."""
    name = name_from_stored(name)
    return name[1:] if name.startswith("_#") else name


@lru_cache(maxsize=4_096)
def read_back_tag(name: str) -> str:
    """The name a tag key or value core's 1.x client writes has when read back."""
    return _CORE_V1_TAG_LOST.sub("/", name) if name.endswith("\\") else name


@lru_cache(maxsize=4_096)
def read_back_field_key(name: str) -> str:
    """The name a field key core's 1.x client writes has when read back."""
    return _CORE_V1_FIELD_KEY_LOST.sub("/", name) if "\\" in name else name


def stored_name(name: str) -> str:
    """The name InfluxDB 1.x keeps for a field key or tag core's 1.x client writes."""
    return name.replace("\\", "\\\\").replace("\n", "\\n")


def as_stored_text(text: str) -> str:
    """``text`` as InfluxDB 1.x keeps a string field value core's 1.x client wrote.

    A line break is kept as backslash + ``n``, the same as a typed backslash + ``n``: once
    stored the two cannot be told apart, so wherever a layout writes text it writes this form,
    which the backfill reads back unchanged from core's history.
    """
    return text.replace("\n", "\\n") if "\n" in text else text


_UNESCAPED_BLANKS: Final = "\t\x00"


def stored_by_influxdb_v1(point: Point) -> Point | None:
    """What InfluxDB 1.x gives back for ``point`` sent by :func:`encode_like_core_v1`.

    A model of the server (checked against influxd in tests/test_core_bytes.py): names as the
    server keeps core's escaping, string values in :func:`as_stored_text` form, empty tags
    and non-finite numbers gone, a field named "time" dropped, tabs and NULs starting the
    measurement or the first field key dropped; ``None`` when nothing is stored (no field is
    left, or a tag is named "time", which refuses the point).
    """
    measurement = point.measurement
    if "\\" in measurement:
        measurement = _CORE_V1_MEASUREMENT_LOST.sub("/", measurement)
    if not (kept := measurement.lstrip(_UNESCAPED_BLANKS)) or kept.startswith("#"):
        measurement = "_" + kept
    tags = {
        stored_name(read_back_tag(key)): stored_name(read_back_tag(value))
        for key, value in point.tags.items()
        if key and value
    }
    fields: dict[str, FieldValue] = {}
    for key in sorted(point.fields):
        value = point.fields[key]
        if not key or (isinstance(value, float) and not math.isfinite(value)):
            continue
        name = stored_name(read_back_field_key(key))
        if not fields:
            # The parser skips white space before the fields: tabs and NULs are not escaped.
            name = name.lstrip(_UNESCAPED_BLANKS) or "_"
        fields[name] = as_stored_text(value) if isinstance(value, str) else value
    fields.pop("time", None)
    # Likewise before the measurement.
    measurement = measurement.lstrip(_UNESCAPED_BLANKS)
    if not fields or not measurement or "time" in tags:
        return None
    return Point(stored_name(measurement), tags, fields, point.time_ns)


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
