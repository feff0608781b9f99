"""InfluxDB 2.x and Cloud: the v2 HTTP API (token auth, buckets, Flux) on HA's aiohttp session.

We speak the documented HTTP API and parse annotated CSV ourselves instead of using
influxdb-client: its parser reads a blocking urllib3 response (an executor thread per query on
1.24.0, which HA 2025.4's core pins; no async API before ~1.28) and truncates times to
microseconds; ours streams from HA's session and keeps nanoseconds, at the same speed
(benchmarks/flux_parser.py). tests/test_flux_csv_crosscheck.py holds it to the library's reading.
"""

from collections.abc import AsyncIterator, Callable, Collection, Mapping
import csv
from datetime import UTC, datetime
import re
from typing import Any

import orjson

from ..line_protocol import FieldValue
from . import Aggregate, AggregateRow, Aggregation, InfluxClient, Selection, SeriesBlock
from ._stream import iter_lines, reaching_server
from .errors import (
    CannotConnect,
    DatabaseNotFound,
    InvalidAuth,
    PointsRejected,
    QueryFailed,
    WrongApiVersion,
    error_text,
)

# Columns Flux adds to every row; everything else after a pivot is a tag or a field.
_FLUX_META = {"", "result", "table", "_start", "_stop", "_time", "_measurement"}

# The schema functions look back only 30 days unless told otherwise; history is older.
_SCHEMA_START = "1970-01-01T00:00:00Z"
# The time range the delete API accepts (what InfluxDB can store).
_DELETE_MIN_NS = -9_223_372_036_854_775_806
_DELETE_MAX_NS = 9_223_372_036_854_775_806
# A tag key the delete predicate syntax can carry unquoted.
_PREDICATE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Rows per block handed out by read_series, so one long series never sits in memory at once.
_BLOCK_ROWS = 10_000

_CONVERTERS: dict[str, Callable[[str], FieldValue]] = {
    "double": float,
    "long": int,
    "unsignedLong": int,
    "boolean": lambda v: v == "true",
    "string": str,
}


def flux_string(value: str) -> str:
    """Quote a Flux string literal so no value can end it early."""
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("${", "\\${")
    )
    return f'"{escaped}"'


def rfc3339(time_ns: int) -> str:
    """Nanosecond timestamp as RFC 3339 with all nine fraction digits."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


def parse_rfc3339_ns(value: str) -> int:
    """Parse Flux's RFC 3339 time (up to nanoseconds) into epoch nanoseconds."""
    main, _, rest = value.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(main).replace(tzinfo=UTC).timestamp())
    return seconds * 1_000_000_000 + int((rest or "0").ljust(9, "0")[:9])


class InfluxV2Client(InfluxClient):
    """Talks to InfluxDB 2.x / Cloud with a token."""

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Token {self.settings.token or ''}"}
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, bytes]:
        with reaching_server():
            async with self._session.request(
                method,
                self._url(path),
                params=params,
                data=orjson.dumps(json) if json is not None else data,
                headers=self._headers("application/json" if json is not None else content_type),
                timeout=self._timeout,
                ssl=self.settings.verify_ssl,
            ) as resp:
                return resp.status, await resp.read()

    async def validate(self) -> None:
        if self.server_version is None:
            await self.ping()
        version = (self.server_version or "").removeprefix("v")
        if version.startswith("1."):
            # A 1.x server has no /api/v2: every bucket would look missing.
            raise WrongApiVersion(version)
        if not await self.database_exists(self.database):
            raise DatabaseNotFound(self.database)

    async def _bucket_id(self, name: str) -> str | None:
        status, body = await self._request(
            "GET",
            "/api/v2/buckets",
            params={"name": name, "org": self.settings.organization or ""},
        )
        if status == 404:
            # Unknown organization: nothing can exist in it.
            return None
        _raise_for_status(status, body)
        buckets = orjson.loads(body).get("buckets") or []
        return str(buckets[0]["id"]) if buckets else None

    async def database_exists(self, name: str) -> bool:
        return await self._bucket_id(name) is not None

    async def create_database(self, name: str) -> None:
        if await self.database_exists(name):
            return
        status, body = await self._request(
            "GET", "/api/v2/orgs", params={"org": self.settings.organization or ""}
        )
        _raise_for_status(status, body)
        orgs = orjson.loads(body).get("orgs") or []
        if not orgs:
            raise DatabaseNotFound(f"organization {self.settings.organization!r} not found")
        status, body = await self._request(
            "POST",
            "/api/v2/buckets",
            json={"orgID": orgs[0]["id"], "name": name, "retentionRules": []},
        )
        _raise_for_status(status, body)

    async def drop_database(self, name: str) -> None:
        bucket_id = await self._bucket_id(name)
        if bucket_id is None:
            return
        status, body = await self._request("DELETE", f"/api/v2/buckets/{bucket_id}")
        if status != 404:
            _raise_for_status(status, body)

    async def write(self, body: bytes, database: str | None = None) -> None:
        status, answer = await self._request(
            "POST",
            "/api/v2/write",
            params={
                "org": self.settings.organization or "",
                "bucket": database or self.database,
                "precision": "ns",
            },
            data=body,
            content_type="text/plain; charset=utf-8",
        )
        if status == 204:
            return
        text = _error_text(answer)
        if status in (400, 413, 422):
            raise PointsRejected(text)
        _raise_for_status(status, answer)
        raise CannotConnect(f"HTTP {status}: {text}")

    async def measurements(self, database: str | None = None) -> list[str]:
        flux = (
            'import "influxdata/influxdb/schema"\n'
            f"schema.measurements(bucket: {flux_string(database or self.database)}, "
            f"start: {_SCHEMA_START})"
        )
        return [str(row["_value"]) async for row in self._flux_rows(flux)]

    async def field_keys(self, measurement: str, database: str | None = None) -> list[str]:
        flux = (
            'import "influxdata/influxdb/schema"\n'
            f"schema.measurementFieldKeys(bucket: {flux_string(database or self.database)}, "
            f"measurement: {flux_string(measurement)}, start: {_SCHEMA_START})"
        )
        return [str(row["_value"]) async for row in self._flux_rows(flux)]

    async def tag_values(
        self, key: str, measurement: str, database: str | None = None
    ) -> list[str]:
        flux = (
            'import "influxdata/influxdb/schema"\n'
            f"schema.tagValues(bucket: {flux_string(database or self.database)}, "
            f"tag: {flux_string(key)}, "
            f"predicate: (r) => r._measurement == {flux_string(measurement)}, "
            f"start: {_SCHEMA_START})"
        )
        return [str(row["_value"]) async for row in self._flux_rows(flux)]

    async def _aggregate(
        self, selection: Selection, aggregation: Aggregation
    ) -> list[AggregateRow]:
        function = aggregation.function
        # Like InfluxQL, results stay apart per measurement.
        columns = ", ".join(flux_string(key) for key in ("_measurement", *aggregation.group_by))
        lines = [
            *_select(selection),
            f"  |> filter(fn: (r) => r._field == {flux_string(aggregation.field)})",
        ]
        if aggregation.every_ns is not None:
            lines += [
                f"  |> group(columns: [{columns}])",
                f"  |> aggregateWindow(every: {int(aggregation.every_ns)}ns, fn: {function.value}, "
                'createEmpty: false, timeSrc: "_start")',
            ]
        elif function in (Aggregate.FIRST, Aggregate.LAST):
            # first()/last() of each series, then the earliest/latest of those per group:
            # rows of a regrouped table are not in time order.
            pick = "min" if function is Aggregate.FIRST else "max"
            lines += [
                f"  |> {function.value}()",
                f"  |> group(columns: [{columns}])",
                f'  |> {pick}(column: "_time")',
            ]
        else:
            lines += [f"  |> group(columns: [{columns}])", f"  |> {function.value}()"]
        result = []
        async for row in self._flux_rows("\n".join(lines), typed=True):
            value = row.get("_value")
            if value is None:
                continue
            time_ns = row.get("_time")
            if time_ns is None:
                time_ns = parse_rfc3339_ns(row["_start"])
            tags = {key: str(row[key]) for key in aggregation.group_by if row.get(key)}
            result.append(AggregateRow(str(row["_measurement"]), tags, int(time_ns), value))
        return result

    async def _delete_range(
        self, measurement: str, tags: Mapping[str, str], start_ns: int, end_ns: int, database: str
    ) -> None:
        terms = [f"_measurement={_predicate_string(measurement)}"]
        for key, value in tags.items():
            if not _PREDICATE_KEY.match(key):
                raise ValueError(f"tag key {key!r} cannot be used in a delete predicate")
            terms.append(f"{key}={_predicate_string(value)}")
        # The delete API's stop is inclusive; the range here is half-open.
        start = max(start_ns, _DELETE_MIN_NS)
        stop = min(end_ns - 1, _DELETE_MAX_NS)
        if stop < start:
            return
        status, body = await self._request(
            "POST",
            "/api/v2/delete",
            params={"org": self.settings.organization or "", "bucket": database},
            json={"start": rfc3339(start), "stop": rfc3339(stop), "predicate": " AND ".join(terms)},
        )
        if status == 400:
            raise QueryFailed(_error_text(body))
        _raise_for_status(status, body)

    async def _read_series(
        self, selection: Selection, fields: Collection[str] | None
    ) -> AsyncIterator[SeriesBlock]:
        lines = _select(selection)
        if fields is not None:
            either = " or ".join(f"r._field == {flux_string(name)}" for name in sorted(fields))
            lines.append(f"  |> filter(fn: (r) => {either})")
        lines.append('  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")')
        (name,) = selection.measurements
        async for block in _series_blocks(self._flux_rows("\n".join(lines), typed=True), name):
            yield block

    async def _flux_rows(self, flux: str, *, typed: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Stream the rows of an annotated-CSV Flux answer."""
        body = {
            "query": flux,
            "type": "flux",
            "dialect": {"annotations": ["datatype", "group"], "header": True},
        }
        with reaching_server():
            async with self._session.post(
                self._url("/api/v2/query"),
                params={"org": self.settings.organization or ""},
                data=orjson.dumps(body),
                headers=self._headers("application/json") | {"Accept": "application/csv"},
                timeout=self._stream_timeout,
                ssl=self.settings.verify_ssl,
            ) as resp:
                if resp.status != 200:
                    answer = await resp.read()
                    if resp.status == 400:
                        raise QueryFailed(_error_text(answer))
                    _raise_for_status(resp.status, answer)
                    raise CannotConnect(f"HTTP {resp.status}: {_error_text(answer)}")
                parser = _AnnotatedCsv(typed=typed)
                async for line in iter_lines(resp.content):
                    row = parser.feed(line.decode())
                    if row is not None:
                        yield row


def _select(selection: Selection) -> list[str]:
    """The Flux lines choosing a time range, measurements and series by tag."""
    alternatives = " or ".join(
        f"r._measurement == {flux_string(name)}" for name in selection.measurements
    )
    lines = [
        f"from(bucket: {flux_string(selection.database)})",
        f"  |> range(start: {rfc3339(selection.start_ns)}, stop: {rfc3339(selection.end_ns)})",
        f"  |> filter(fn: (r) => {alternatives})",
    ]
    conditions = []
    for key, values in selection.tag_alternatives():
        either = " or ".join(f"r[{flux_string(key)}] == {flux_string(value)}" for value in values)
        conditions.append(f"({either})")
    if conditions:
        lines.append(f"  |> filter(fn: (r) => {' and '.join(conditions)})")
    return lines


async def _series_blocks(
    rows_in: AsyncIterator[dict[str, Any]], name: str
) -> AsyncIterator[SeriesBlock]:
    """Group pivoted Flux rows into blocks: after the pivot every table is one series, and its
    tags are its group columns. ``name`` is the measurement asked for."""
    table: str | None = None
    tags: dict[str, str] = {}
    columns: tuple[str, ...] = ()
    rows: list[list[Any]] = []
    async for row in rows_in:
        if row.get("table") != table or len(rows) >= _BLOCK_ROWS:
            if rows:
                yield SeriesBlock(name, tags, columns, rows)
            rows = []
            if row.get("table") != table:
                table = row.get("table")
                name = str(row["_measurement"])
                tags = {
                    key: str(value)
                    for key, value in row.items()
                    if isinstance(value, _Tag) and key not in _FLUX_META and value
                }
                columns = tuple(
                    key
                    for key, value in row.items()
                    if key not in _FLUX_META and not isinstance(value, _Tag) and key not in tags
                )
        if row["_time"] is None:
            # A point without its time would be written at "now" by the server.
            raise QueryFailed(f"a row of {name!r} without _time")
        rows.append([row["_time"], *(row.get(key) for key in columns)])
    if rows:
        yield SeriesBlock(name, tags, columns, rows)


def _predicate_string(value: str) -> str:
    """Quote a value for the delete API's predicate syntax."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class _Tag(str):
    """A column from the group key that is not a field: a tag value."""

    __slots__ = ()


class _AnnotatedCsv:
    """Incremental parser for Flux annotated CSV: per table, annotations, a header, records."""

    def __init__(self, *, typed: bool) -> None:
        self._typed = typed
        self._datatypes: list[str] = []
        self._groups: list[str] = []
        self._defaults: list[tuple[int, str]] = []
        # Per column of the current table: its name and how its text becomes a value.
        self._columns: list[tuple[str, Callable[[str], Any] | None]] | None = None
        # Annotation rows seen since the last header: the next one continues the same table.
        self._annotating = False
        self._error = False
        self._pending = ""

    def feed(self, line: str) -> dict[str, Any] | None:
        if self._pending:
            line = f"{self._pending}\n{line}"
            self._pending = ""
        quoted = '"' in line
        if quoted and line.count('"') % 2:
            # A quoted value holding a line break: the record continues on the next line.
            self._pending = line
            return None
        line = line.removesuffix("\r")
        if not line.strip():
            # A blank line separates tables; each table repeats its annotations.
            self._columns, self._annotating = None, False
            return None
        cells = next(csv.reader([line])) if quoted else line.split(",")
        if cells[0].startswith("#"):
            self._annotation(cells)
            return None
        if self._columns is None:
            self._columns, self._annotating = self._plan(cells), False
            # A query that fails while running answers with a table of its own (HTTP 200).
            self._error = cells[1:3] == ["error", "reference"]
            return None
        if self._error:
            message, reference = [*cells, "", ""][1:3]
            raise QueryFailed(f"{message} (reference {reference})" if reference else message)
        for index, default in self._defaults:
            # Empty cells take the table's default value.
            if index < len(cells) and not cells[index]:
                cells[index] = default
        return {
            name: raw if convert is None else (convert(raw) if raw else None)
            for (name, convert), raw in zip(self._columns, cells, strict=False)
        }

    def _annotation(self, cells: list[str]) -> None:
        if not self._annotating:
            # The first annotation after a header or a blank line starts a new table.
            self._datatypes, self._groups, self._defaults = [], [], []
            self._columns, self._error, self._annotating = None, False, True
        if cells[0] == "#datatype":
            self._datatypes = cells
        elif cells[0] == "#group":
            self._groups = cells
        elif cells[0] == "#default":
            self._defaults = [(index, value) for index, value in enumerate(cells) if value][1:]

    def _plan(self, header: list[str]) -> list[tuple[str, Callable[[str], Any] | None]]:
        """Each column's converter (None: keep the text), decided once per table."""
        plan: list[tuple[str, Callable[[str], Any] | None]] = []
        for index, name in enumerate(header):
            datatype = self._datatypes[index] if index < len(self._datatypes) else "string"
            convert: Callable[[str], Any] | None
            if name == "_time":
                convert = parse_rfc3339_ns
            elif not self._typed or name in _FLUX_META:
                convert = None
            elif datatype.startswith("dateTime"):
                convert = parse_rfc3339_ns
            elif (
                datatype == "string" and index < len(self._groups) and self._groups[index] == "true"
            ):
                convert = _Tag
            else:
                convert = _CONVERTERS.get(datatype, str)
            plan.append((name, convert))
        return plan


def _error_text(body: bytes) -> str:
    return error_text(body, "message")


def _raise_for_status(status: int, body: bytes) -> None:
    if status < 300:
        return
    text = _error_text(body)
    if status in (401, 403):
        raise InvalidAuth(text)
    if status == 404:
        raise DatabaseNotFound(text)
    raise CannotConnect(f"HTTP {status}: {text}")
