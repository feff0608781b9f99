"""InfluxDB 2.x and Cloud: the v2 HTTP API (token auth, buckets, Flux) on HA's aiohttp session.

We speak the documented HTTP API directly instead of using influxdb-client: its async API
needs influxdb-client >= 1.30 while HA core's own influxdb integration pins 1.24.0, and HA
would reinstall whichever version the integration loaded last.
"""

from collections.abc import AsyncIterator, Callable, Mapping
import csv
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from ..line_protocol import FieldValue, Point
from . import InfluxClient
from ._stream import iter_lines
from .errors import CannotConnect, DatabaseNotFound, InvalidAuth, PointsRejected, QueryFailed

# Columns Flux adds to every row; everything else after a pivot is a tag or a field.
_FLUX_META = {"", "result", "table", "_start", "_stop", "_time", "_measurement"}

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

    def _url(self, path: str) -> str:
        return self.settings.url.rstrip("/") + path

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
        try:
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
        except (aiohttp.ClientError, TimeoutError) as err:
            raise CannotConnect(str(err) or type(err).__name__) from err

    async def ping(self) -> None:
        status, _ = await self._request("GET", "/ping")
        if status >= 300:
            raise CannotConnect(f"/ping answered HTTP {status}")

    async def validate(self) -> None:
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
            f"schema.measurements(bucket: {flux_string(database or self.database)})"
        )
        return [str(row["_value"]) async for row in self._flux_rows(flux)]

    async def read_points(
        self,
        measurement: str,
        start_ns: int,
        end_ns: int,
        database: str | None = None,
    ) -> AsyncIterator[Point]:
        flux = (
            f"from(bucket: {flux_string(database or self.database)})\n"
            f"  |> range(start: {rfc3339(start_ns)}, stop: {rfc3339(end_ns)})\n"
            f"  |> filter(fn: (r) => r._measurement == {flux_string(measurement)})\n"
            '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
        )
        async for row in self._flux_rows(flux, typed=True):
            tags: dict[str, str] = {}
            fields: dict[str, FieldValue] = {}
            for key, value in row.items():
                if key in _FLUX_META or value is None:
                    continue
                if isinstance(value, _Tag):
                    if value:
                        tags[key] = str(value)
                else:
                    fields[key] = value
            if fields:
                yield Point(str(row["_measurement"]), tags, fields, int(row["_time"]))

    async def _flux_rows(self, flux: str, *, typed: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Stream the rows of an annotated-CSV Flux answer."""
        body = {
            "query": flux,
            "type": "flux",
            "dialect": {"annotations": ["datatype", "group"], "header": True},
        }
        try:
            async with self._session.post(
                self._url("/api/v2/query"),
                params={"org": self.settings.organization or ""},
                data=orjson.dumps(body),
                headers=self._headers("application/json") | {"Accept": "application/csv"},
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.settings.timeout, sock_read=self.settings.timeout
                ),
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
        except (aiohttp.ClientError, TimeoutError) as err:
            raise CannotConnect(str(err) or type(err).__name__) from err


class _Tag(str):
    """A column from the group key that is not a field: a tag value."""

    __slots__ = ()


class _AnnotatedCsv:
    """Incremental parser for Flux annotated CSV (datatype + group annotations, header)."""

    def __init__(self, *, typed: bool) -> None:
        self._typed = typed
        self._datatypes: list[str] = []
        self._groups: list[str] = []
        self._header: list[str] | None = None
        self._pending = ""

    def feed(self, line: str) -> dict[str, Any] | None:
        if self._pending:
            line = f"{self._pending}\n{line}"
            self._pending = ""
        if line.count('"') % 2:
            # A quoted value holding a line break: the record continues on the next line.
            self._pending = line
            return None
        line = line.removesuffix("\r")
        if not line.strip():
            # A blank line separates tables; each table repeats its annotations.
            self._header = None
            return None
        (cells,) = csv.reader([line])
        if cells[0] == "#datatype":
            self._datatypes, self._header = cells, None
            return None
        if cells[0] == "#group":
            self._groups = cells
            return None
        if cells[0].startswith("#"):
            return None
        if self._header is None:
            self._header = cells
            return None
        if cells[1:3] == ["error", "reference"] or (len(cells) > 1 and cells[1] == "error"):
            raise QueryFailed(line.strip())
        row: dict[str, Any] = {}
        for index, (name, raw) in enumerate(zip(self._header, cells, strict=False)):
            row[name] = self._convert(index, name, raw)
        return row

    def _convert(self, index: int, name: str, raw: str) -> Any:
        datatype = self._datatypes[index] if index < len(self._datatypes) else "string"
        if name == "_time":
            return parse_rfc3339_ns(raw)
        if not self._typed or name in _FLUX_META:
            return raw
        if raw == "":
            return None
        if datatype.startswith("dateTime"):
            return parse_rfc3339_ns(raw)
        is_group = index < len(self._groups) and self._groups[index] == "true"
        if is_group and datatype == "string":
            return _Tag(raw)
        return _CONVERTERS.get(datatype, str)(raw)


def _error_text(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace").strip()
    if isinstance(parsed, dict) and "message" in parsed:
        return str(parsed["message"])
    return body.decode(errors="replace").strip()


def _raise_for_status(status: int, body: bytes) -> None:
    if status < 300:
        return
    text = _error_text(body)
    if status in (401, 403):
        raise InvalidAuth(text)
    if status == 404:
        raise DatabaseNotFound(text)
    raise CannotConnect(f"HTTP {status}: {text}")
