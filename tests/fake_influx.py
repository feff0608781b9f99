"""An in-memory InfluxDB 1.x behind the integration's ``InfluxClient`` interface (the fast tier).

What it stores and refuses follows influxd 1.6, the server the real-server tier runs; each rule
was checked by hand against it (the texts of its errors are the server's own): line protocol as
influxd parses it, one point per series and time (a rewrite merges fields), the field type rule
per weekly shard (shards start on Mondays, as Go truncates times), partial writes answered with
``dropped=N``, credentials, missing databases, and a server that can be stopped and started.

Reads cover the interface's structured methods (measurements, field and tag keys, points,
aggregates, deletes). Arbitrary InfluxQL (the 1.x client's ``query``) and the 2.x API are not
faked: they raise NotImplementedError naming what is missing. Use the real-server tier there.
"""

from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
import re
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from custom_components.ha_ingestor.engine.influx import (
    Aggregate,
    AggregateRow,
    Aggregation,
    ApiVersion,
    CannotConnect,
    DatabaseNotFound,
    InfluxClient,
    InvalidAuth,
    PointsRejected,
    QueryFailed,
    Selection,
    SeriesBlock,
    ServerSettings,
    TagFilter,
    WrongApiVersion,
)
from custom_components.ha_ingestor.engine.influx.v1 import CHUNK_SIZE
from custom_components.ha_ingestor.engine.line_protocol import FieldValue, Point

SERVER_VERSION = "1.6.7"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "fake-admin-Pa55"

DAY_NS = 86_400 * 10**9
WEEK_NS = 7 * DAY_NS
# influxd's earliest time: a count or mean over a range starting there is reported at 0.
MIN_TIME_NS = -(2**63) + 2
# 1970-01-01 is a Thursday; Go truncates to weeks from year 1, whose weeks start on Mondays.
_SHARD_OFFSET_NS = 3 * DAY_NS

type SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


# --- Line protocol, as influxd 1.6 reads it -------------------------------------------------------


class LineError(ValueError):
    """A line influxd cannot parse; the text is influxd's reason."""


_BLANKS = " \t\x00"
_BOOLEANS = {
    **dict.fromkeys(("t", "T", "true", "True", "TRUE"), True),
    **dict.fromkeys(("f", "F", "false", "False", "FALSE"), False),
}
_FLOAT = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_INTEGER = re.compile(r"-?\d+i")
_TIMESTAMP = re.compile(r"-?\d+")
_INT64 = (-(2**63), 2**63 - 1)


def _scan_lines(body: str) -> Iterator[str]:
    """The lines of a body: influxd's scanLine (a quoted field value may hold a line break)."""
    i, start, size = 0, 0, len(body)
    quoted = in_fields = False
    equals = commas = 0
    while i < size:
        char = body[i]
        if char == "\\" and i + 2 < size:
            i += 2
            continue
        if char == " ":
            in_fields = True
        if in_fields and not quoted and char == "=":
            equals += 1
        elif in_fields and not quoted and char == ",":
            commas += 1
        elif in_fields and char == '"' and equals > commas:
            quoted = not quoted
        elif char == "\n" and not quoted:
            yield body[start:i]
            start = i + 1
            quoted = in_fields = False
            equals = commas = 0
        i += 1
    if start < size:
        yield body[start:]


def _skip(line: str, i: int, blanks: str = _BLANKS) -> int:
    while i < len(line) and line[i] in blanks:
        i += 1
    return i


def _scan_to(line: str, i: int, stops: str) -> int:
    """Index of the first unescaped stop character from ``i`` (or the end)."""
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line):
            i += 2
            continue
        if line[i] in stops:
            return i
        i += 1
    return len(line)


def _split(text: str, separator: str) -> list[str]:
    parts, start = [], 0
    while (end := _scan_to(text, start, separator)) < len(text):
        parts.append(text[start:end])
        start = end + 1
    parts.append(text[start:])
    return parts


def _unescape_measurement(name: str) -> str:
    # influxd's escape.Unescape: a backslash before , " space = is dropped, any other is kept.
    out, i = [], 0
    while i < len(name):
        if name[i] == "\\" and i + 1 < len(name) and name[i + 1] in '," =':
            out.append(name[i + 1])
            i += 2
            continue
        out.append(name[i])
        i += 1
    return "".join(out)


def _unescape_name(name: str, codes: str) -> str:
    # Tag keys and values (, space =) and field keys (also "): bytes.Replace per code.
    for code in codes:
        name = name.replace("\\" + code, code)
    return name


def _unescape_string(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in '\\"':
            out.append(text[i + 1])
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _field_value(raw: str) -> FieldValue:
    first = raw[0]
    if first in "tTfF":
        if raw not in _BOOLEANS:
            raise LineError("invalid boolean")
        return _BOOLEANS[raw]
    if first.isdigit() or first in "-." or raw.lower() in ("nan", "inf", "-inf"):
        if _INTEGER.fullmatch(raw):
            number = int(raw[:-1])
            if not _INT64[0] <= number <= _INT64[1]:
                raise LineError(
                    f"unable to parse integer {raw[:-1]}: strconv.ParseInt: "
                    f'parsing "{raw[:-1]}": value out of range'
                )
            return number
        if _FLOAT.fullmatch(raw):
            return float(raw)
        raise LineError("invalid number")
    raise LineError("invalid boolean")


def parse_line(line: str, now_ns: int) -> Point:
    """One line as influxd reads it; raises LineError with influxd's reason."""
    key_end = _scan_to(line, 0, " ")
    parts = _split(line[:key_end], ",")
    measurement = _unescape_measurement(parts[0])
    if not parts[0]:
        raise LineError("missing measurement")
    tags: dict[str, str] = {}
    for part in parts[1:]:
        equals = _scan_to(part, 0, "=")
        if not part or equals == 0:
            raise LineError("missing tag key")
        tag_value = part[equals + 1 :]
        if equals == len(part) or not tag_value:
            raise LineError("missing tag value")
        name = _unescape_name(part[:equals], ", =")
        if name in tags:
            raise LineError("duplicate tags")
        tags[name] = _unescape_name(tag_value, ", =")
    i = _skip(line, key_end)
    if i >= len(line):
        raise LineError("missing fields")
    fields: list[tuple[str, FieldValue]] = []
    while True:
        end = _scan_to(line, i, "=, ")
        key = line[i:end]
        if end >= len(line) or line[end] != "=":
            raise LineError("missing field key" if not key else "invalid field format")
        if not key:
            raise LineError("missing field key")
        i = end + 1
        if i < len(line) and line[i] == '"':
            close = _scan_to(line, i + 1, '"')
            if close >= len(line):
                raise LineError("unbalanced quotes")
            value: FieldValue = _unescape_string(line[i + 1 : close])
            i = close + 1
        else:
            end = _scan_to(line, i, ", ")
            if end == i:
                raise LineError("missing field value")
            value = _field_value(line[i:end])
            i = end
        fields.append((_unescape_name(key, '," ='), value))
        if i < len(line) and line[i] == ",":
            i += 1
            continue
        break
    i = _skip(line, i, " ")
    time_ns = now_ns
    if i < len(line):
        end = _scan_to(line, i, " ")
        stamp = line[i:end]
        if not _TIMESTAMP.fullmatch(stamp):
            raise LineError("bad timestamp")
        time_ns = int(stamp)
        if _skip(line, end, " ") < len(line):
            raise LineError("point is invalid")
    # Duplicate keys stay in order: the type rule looks at each (see FakeInfluxServer.write).
    return Point(measurement, dict(sorted(tags.items())), _Fields(fields), time_ns)


class _Fields(dict[str, FieldValue]):
    """A point's fields, remembering every key=value of the line (duplicates included)."""

    def __init__(self, pairs: list[tuple[str, FieldValue]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def parse_body(body: bytes, now_ns: int | None = None) -> tuple[list[Point], list[str]]:
    """The points of a write body and influxd's message for each line it cannot parse."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    points: list[Point] = []
    failed: list[str] = []
    for raw in _scan_lines(body.decode(errors="replace")):
        start = _skip(raw, 0)
        if start >= len(raw) or raw[start] == "#":
            continue
        line = raw[start:]
        try:
            points.append(parse_line(line, now_ns))
        except LineError as err:
            failed.append(f"unable to parse '{line}': {err}")
    return points, failed


def _type_name(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    return "string"


def shard_of(time_ns: int) -> int:
    """The weekly shard group (the default retention policy's) a point time falls in."""
    return (time_ns + _SHARD_OFFSET_NS) // WEEK_NS


# --- The server -----------------------------------------------------------------------------------


@dataclass
class FakeDatabase:
    """Points by series and time, and the field types each shard has fixed."""

    series: dict[SeriesKey, dict[int, dict[str, FieldValue]]] = field(default_factory=dict)
    # (shard, measurement) → field key → type; kept after deletes, as influxd keeps them.
    field_types: dict[tuple[int, str], dict[str, str]] = field(default_factory=dict)


@dataclass
class FakeInfluxServer:
    """One InfluxDB 1.x server in memory; every client made for its URL shares its state."""

    url: str = "http://influxdb.fake:8086"
    auth: bool = True
    users: dict[str, str] = field(default_factory=lambda: {ADMIN_USER: ADMIN_PASSWORD})
    databases: dict[str, FakeDatabase] = field(default_factory=dict)
    running: bool = True
    # Every write body that reached the server (past credentials and database): (database, body).
    writes: list[tuple[str, bytes]] = field(default_factory=list)

    # The switches tests use, named like tests/influx_server.py's.

    def stop(self) -> None:
        """Unreachable from now on: every call raises CannotConnect (data is kept)."""
        self.running = False

    def start(self) -> None:
        self.running = True

    def create_database(self, name: str) -> None:
        self.databases.setdefault(name, FakeDatabase())

    def drop_database(self, name: str) -> None:
        self.databases.pop(name, None)

    def points(self, database: str, measurement: str | None = None) -> list[Point]:
        """What the server holds, by measurement, series (tags) and time."""
        found: list[Point] = []
        for (name, tags), rows in sorted(self.databases[database].series.items()):
            if measurement is None or name == measurement:
                found.extend(Point(name, dict(tags), dict(rows[t]), t) for t in sorted(rows))
        return found

    def create_client(
        self, session: aiohttp.ClientSession, settings: ServerSettings
    ) -> "FakeInfluxClient":
        """The integration's ``create_client``: a client reaching this server only at its URL."""
        here = _address(settings.url) == _address(self.url)
        return FakeInfluxClient(session, settings, self if here else None)

    # What influxd does with a write.

    def write(self, database: str, body: bytes) -> None:
        """Store a body; raises PointsRejected with influxd's text when it refuses points."""
        self.writes.append((database, body))
        points, failed = parse_body(body)
        if failed and not points:
            raise PointsRejected("\n".join(failed))
        store = self.databases[database]
        reason: str | None = None
        dropped = 0
        for point in points:
            problem = self._store(store, point)
            if problem is not None:
                dropped += 1
                reason = reason or problem
        if dropped:
            raise PointsRejected(f"partial write: {reason} dropped={dropped}")
        if failed:
            raise PointsRejected(f"partial write: {'\n'.join(failed)} dropped=0")

    @staticmethod
    def _store(store: FakeDatabase, point: Point) -> str | None:
        name = point.measurement
        if "time" in point.tags:
            return f'invalid tag key: input tag "time" on measurement "{name}" is invalid'
        pairs = [(k, v) for k, v in getattr(point.fields, "pairs", point.fields.items())]
        pairs = [(k, v) for k, v in pairs if k != "time"]
        if not pairs:
            return f'invalid field name: input field "time" on measurement "{name}" is invalid'
        known = store.field_types.setdefault((shard_of(point.time_ns), name), {})
        new: dict[str, str] = {}
        for key, value in pairs:
            kind = _type_name(value)
            existing = known.get(key) or new.get(key)
            if existing is not None and existing != kind:
                return (
                    f'field type conflict: input field "{key}" on measurement "{name}" is type '
                    f"{kind}, already exists as type {existing}"
                )
            new[key] = kind
        known.update(new)
        rows = store.series.setdefault((name, tuple(sorted(point.tags.items()))), {})
        rows.setdefault(point.time_ns, {}).update(dict(pairs))
        return None


def _address(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url.strip().rstrip("/").lower())
    default = 443 if parts.scheme == "https" else 8086
    return parts.scheme, parts.hostname or "", parts.port or default


# --- The client -----------------------------------------------------------------------------------


def _matches(tags: Mapping[str, str], where: TagFilter | None) -> bool:
    for key, values in (where or {}).items():
        if not values:
            raise ValueError(f"tag filter on {key!r} has no values")
        if tags.get(key, "") not in values:
            return False
    return True


class FakeInfluxClient(InfluxClient):
    """The 1.x client's behaviour on a FakeInfluxServer (None: nothing listens at the URL)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: ServerSettings,
        server: FakeInfluxServer | None,
    ) -> None:
        super().__init__(session, settings)
        self.server = server

    # Every call meets what a real request meets, in the same order: the network, the API
    # version, the credentials, the database.

    def _reach(self) -> FakeInfluxServer:
        server = self.server
        if server is None or not server.running:
            parts = urlsplit(self.settings.url)
            raise CannotConnect(
                f"Cannot connect to host {parts.hostname}:{parts.port} ssl:default "
                "[Connect call failed: connection refused]"
            )
        return server

    def _authorized(self) -> FakeInfluxServer:
        server = self._reach()
        if self.settings.api_version is not ApiVersion.V1:
            raise NotImplementedError("FakeInfluxClient fakes the 1.x API only, not 2.x")
        if server.auth:
            username = self.settings.username
            if not username:
                raise InvalidAuth("unable to parse authentication credentials")
            if server.users.get(username) != (self.settings.password or ""):
                raise InvalidAuth("authorization failed")
        return server

    def _database(self, database: str | None) -> FakeDatabase:
        name = database or self.database
        found = self._authorized().databases.get(name)
        if found is None:
            raise DatabaseNotFound(f"database not found: {name}")
        return found

    def _series(
        self, database: str | None, measurement: str, where: TagFilter | None = None
    ) -> list[tuple[dict[str, str], dict[int, dict[str, FieldValue]]]]:
        store = self._database(database)
        return [
            (dict(tags), rows)
            for (name, tags), rows in sorted(store.series.items())
            if name == measurement and rows and _matches(dict(tags), where)
        ]

    async def ping(self) -> None:
        self._reach()
        self.server_version = SERVER_VERSION

    async def validate(self) -> None:
        if self.settings.api_version is ApiVersion.V2:
            # What the 2.x client finds at a 1.x server.
            await self.ping()
            raise WrongApiVersion(SERVER_VERSION)
        if not await self.database_exists(self.database):
            raise DatabaseNotFound(self.database)

    async def database_exists(self, name: str) -> bool:
        return name in self._authorized().databases

    async def create_database(self, name: str) -> None:
        self._authorized().create_database(name)

    async def drop_database(self, name: str) -> None:
        self._authorized().drop_database(name)

    async def write(self, body: bytes, database: str | None = None) -> None:
        name = database or self.database
        server = self._authorized()
        if name not in server.databases:
            raise DatabaseNotFound(f'database not found: "{name}"')
        server.write(name, body)

    async def measurements(self, database: str | None = None) -> list[str]:
        # influxd answers SHOW MEASUREMENTS on a missing database with nothing, not an error.
        server = self._authorized()
        store = server.databases.get(database or self.database)
        if store is None:
            return []
        return sorted({name for (name, _), rows in store.series.items() if rows})

    async def field_types(self, measurement: str, database: str | None = None) -> dict[str, str]:
        """Field key → type, the first shard's type for a key typed twice (as the 1.x client)."""
        store = self._database(database)
        types: dict[str, str] = {}
        for (_, name), kinds in sorted(store.field_types.items()):
            if name == measurement:
                for key, kind in kinds.items():
                    types.setdefault(key, kind)
        return dict(sorted(types.items()))

    async def field_keys(self, measurement: str, database: str | None = None) -> list[str]:
        return list(await self.field_types(measurement, database))

    async def tag_values(
        self, key: str, measurement: str, database: str | None = None
    ) -> list[str]:
        return sorted({tags[key] for tags, _ in self._series(database, measurement) if key in tags})

    async def _read_series(
        self, selection: Selection, fields: Collection[str] | None
    ) -> AsyncIterator[SeriesBlock]:
        (measurement,) = selection.measurements
        database, where = selection.database, selection.where
        start_ns, end_ns = selection.start_ns, selection.end_ns
        columns = tuple(await self.field_keys(measurement, database))
        if fields is not None:
            columns = tuple(key for key in columns if key in fields)
            if not columns:
                return
        for tags, rows in self._series(database, measurement, where):
            selected = [
                [time_ns, *(rows[time_ns].get(key) for key in columns)]
                for time_ns in sorted(rows)
                if start_ns <= time_ns < end_ns and any(key in rows[time_ns] for key in columns)
            ]
            for chunk in range(0, len(selected), CHUNK_SIZE):
                yield SeriesBlock(measurement, tags, columns, selected[chunk : chunk + CHUNK_SIZE])

    async def _aggregate(
        self, selection: Selection, aggregation: Aggregation
    ) -> list[AggregateRow]:
        names = selection.measurements
        database, where = selection.database, selection.where
        start_ns, end_ns = selection.start_ns, selection.end_ns
        field, function = aggregation.field, aggregation.function
        group_by, every_ns = aggregation.group_by, aggregation.every_ns
        result: list[AggregateRow] = []
        for name in sorted(set(names)):
            groups: dict[tuple[tuple[str, str], ...], dict[int, list[tuple[int, FieldValue]]]]
            groups = {}
            for tags, rows in self._series(database, name, where):
                group = tuple((key, tags.get(key, "")) for key in group_by)
                for time_ns, values in rows.items():
                    if start_ns <= time_ns < end_ns and field in values:
                        window = start_ns if every_ns is None else time_ns // every_ns * every_ns
                        groups.setdefault(group, {}).setdefault(window, []).append(
                            (time_ns, values[field])
                        )
            for group in sorted(groups):
                tags = {key: value for key, value in group if value}
                for window, found in sorted(groups[group].items()):
                    time_ns, value = _aggregate(function, found)
                    if every_ns is not None or function in (Aggregate.COUNT, Aggregate.MEAN):
                        time_ns = 0 if every_ns is None and window <= MIN_TIME_NS else window
                    result.append(AggregateRow(name, tags, time_ns, value))
        return result

    async def _delete_range(
        self, measurement: str, tags: Mapping[str, str], start_ns: int, end_ns: int, database: str
    ) -> None:
        store = self._database(database)
        for (name, series_tags), rows in list(store.series.items()):
            carried = dict(series_tags)
            if name != measurement or any(carried.get(k) != v for k, v in tags.items()):
                continue
            for time_ns in [t for t in rows if start_ns <= t < end_ns]:
                del rows[time_ns]
            if not rows:
                del store.series[(name, series_tags)]

    async def query(self, query: str, database: str | None = None) -> list[Mapping[str, Any]]:
        """Arbitrary InfluxQL is not faked: the real-server tier runs it."""
        raise NotImplementedError(
            "FakeInfluxClient.query: arbitrary InfluxQL is not faked; use the real-server tier"
        )


_AGGREGATES: dict[Aggregate, Callable[[list[tuple[int, FieldValue]]], tuple[int, FieldValue]]] = {
    Aggregate.COUNT: lambda found: (0, len(found)),
    Aggregate.FIRST: lambda found: min(found, key=lambda item: item[0]),
    Aggregate.LAST: lambda found: max(found, key=lambda item: item[0]),
}


def _aggregate(function: Aggregate, found: list[tuple[int, FieldValue]]) -> tuple[int, FieldValue]:
    if function is not Aggregate.MEAN:
        return _AGGREGATES[function](found)
    values = [value for _, value in found]
    for value in values:
        if isinstance(value, bool):
            raise QueryFailed("unsupported mean iterator type: *query.booleanInterruptIterator")
        if isinstance(value, str):
            raise QueryFailed("unsupported mean iterator type: *query.stringInterruptIterator")
    return 0, sum(float(value) for value in values) / len(values)
