"""InfluxDB 1.x: InfluxQL over /query and line protocol over /write, on HA's aiohttp session."""

from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import Any

import aiohttp
import orjson

from ..line_protocol import FieldValue
from . import AggregateRow, Aggregation, InfluxClient, Selection, SeriesBlock
from ._stream import iter_lines, reaching_server
from .errors import (
    CannotConnect,
    DatabaseNotFound,
    InvalidAuth,
    PointsRejected,
    QueryFailed,
    error_text,
)

CHUNK_SIZE = 10_000
# Compressing an answer costs the server more CPU than the bytes cost the network: backfill
# and validation read the whole history, usually from a server on the same host or LAN.
_QUERY_HEADERS = {"Accept-Encoding": "identity"}

_CONVERTERS: dict[str, Callable[[Any], FieldValue]] = {
    "float": float,
    "integer": int,
    "string": str,
    "boolean": bool,
}


def quote_ident(name: str) -> str:
    """Quote an InfluxQL identifier so no name can end the statement early."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def quote_literal(value: str) -> str:
    """Quote an InfluxQL string literal."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def _error_text(body: bytes) -> str:
    return error_text(body, "error")


class InfluxV1Client(InfluxClient):
    """Talks InfluxQL to an InfluxDB 1.x server."""

    @property
    def _auth(self) -> aiohttp.BasicAuth | None:
        if self.settings.username:
            return aiohttp.BasicAuth(
                self.settings.username, self.settings.password or "", encoding="utf-8"
            )
        return None

    async def validate(self) -> None:
        if not await self.database_exists(self.database):
            raise DatabaseNotFound(self.database)

    async def database_exists(self, name: str) -> bool:
        rows = await self._rows("SHOW DATABASES")
        return any(row[0] == name for row in rows)

    async def create_database(self, name: str) -> None:
        await self._rows(f"CREATE DATABASE {quote_ident(name)}")

    async def drop_database(self, name: str) -> None:
        await self._rows(f"DROP DATABASE {quote_ident(name)}")

    async def write(self, body: bytes, database: str | None = None) -> None:
        params = {"db": database or self.database, "precision": "ns"}
        with reaching_server():
            async with self._session.post(
                self._url("/write"),
                params=params,
                data=body,
                auth=self._auth,
                timeout=self._timeout,
                ssl=self.settings.verify_ssl,
            ) as resp:
                if resp.status == 204:
                    return
                text = _error_text(await resp.read())
        raise _write_error(resp.status, text)

    async def measurements(self, database: str | None = None) -> list[str]:
        rows = await self._rows("SHOW MEASUREMENTS", database or self.database)
        return [str(row[0]) for row in rows]

    async def field_types(self, measurement: str, database: str | None = None) -> dict[str, str]:
        """Field key → InfluxDB type; the JSON answer alone can't tell 1.0 from 1."""
        types: dict[str, str] = {}
        rows = await self._rows(
            f"SHOW FIELD KEYS FROM {quote_ident(measurement)}", database or self.database
        )
        for key, field_type in rows:
            # A key written with two types (in different shards) reads back as the first.
            types.setdefault(str(key), str(field_type))
        return types

    async def _read_series(
        self, selection: Selection, fields: Collection[str] | None
    ) -> AsyncIterator[SeriesBlock]:
        (measurement,) = selection.measurements
        types = await self.field_types(measurement, selection.database)
        if fields is None:
            chosen = "*"
        else:
            types = {key: kind for key, kind in types.items() if key in fields}
            if not types:
                return
            chosen = ", ".join(quote_ident(key) for key in types)
        converters = {key: _CONVERTERS.get(kind, _identity) for key, kind in types.items()}
        query = (
            f"SELECT {chosen} FROM {quote_ident(measurement)} "
            f"WHERE {_time_and_tags(selection)} GROUP BY *"
        )
        async for series in self._stream(query, selection.database):
            rows = series.get("values")
            if not rows:
                continue
            columns: list[str] = series["columns"]
            yield SeriesBlock(
                str(series.get("name", measurement)),
                {k: v for k, v in (series.get("tags") or {}).items() if v},
                tuple(columns[1:]),
                rows,
                tuple(converters.get(column, _identity) for column in columns[1:]),
            )

    async def field_keys(self, measurement: str, database: str | None = None) -> list[str]:
        return list(await self.field_types(measurement, database))

    async def tag_values(
        self, key: str, measurement: str, database: str | None = None
    ) -> list[str]:
        rows = await self._rows(
            f"SHOW TAG VALUES FROM {quote_ident(measurement)} WITH KEY = {quote_ident(key)}",
            database or self.database,
        )
        return [str(row[1]) for row in rows]

    async def _aggregate(
        self, selection: Selection, aggregation: Aggregation
    ) -> list[AggregateRow]:
        groups = [quote_ident(key) for key in aggregation.group_by]
        if aggregation.every_ns is not None:
            groups.insert(0, f"time({int(aggregation.every_ns)}ns)")
        query = (
            f"SELECT {aggregation.function.value}({quote_ident(aggregation.field)}) "
            f"FROM {', '.join(quote_ident(name) for name in selection.measurements)} "
            f"WHERE {_time_and_tags(selection)}"
        )
        if groups:
            query += f" GROUP BY {', '.join(groups)}"
        if aggregation.every_ns is not None:
            query += " fill(none)"
        result = []
        async for series in self._stream(query, selection.database):
            name = str(series.get("name", ""))
            tags = {k: v for k, v in (series.get("tags") or {}).items() if v}
            for time_ns, value in series.get("values") or ():
                if value is not None:
                    result.append(AggregateRow(name, tags, int(time_ns), value))
        return result

    async def _delete_range(
        self, measurement: str, tags: Mapping[str, str], start_ns: int, end_ns: int, database: str
    ) -> None:
        condition = " AND ".join(
            f"{quote_ident(key)} = {quote_literal(value)}" for key, value in tags.items()
        )
        await self._rows(
            f"DELETE FROM {quote_ident(measurement)} WHERE {condition} "
            f"AND time >= {int(start_ns)} AND time < {int(end_ns)}",
            database,
        )

    async def query(self, query: str, database: str | None = None) -> list[Mapping[str, Any]]:
        """Run InfluxQL and return every series of the first statement."""
        return [series async for series in self._stream(query, database or self.database)]

    async def _rows(self, query: str, database: str | None = None) -> list[list[Any]]:
        rows: list[list[Any]] = []
        async for series in self._stream(query, database):
            rows.extend(series.get("values") or ())
        return rows

    async def _stream(self, query: str, database: str | None) -> AsyncIterator[Mapping[str, Any]]:
        """Yield the series of a chunked /query answer one chunk at a time."""
        data = {"q": query, "epoch": "ns", "chunked": "true", "chunk_size": str(CHUNK_SIZE)}
        if database:
            data["db"] = database
        with reaching_server():
            async with self._session.post(
                self._url("/query"),
                data=data,
                headers=_QUERY_HEADERS,
                auth=self._auth,
                timeout=self._stream_timeout,
                ssl=self.settings.verify_ssl,
            ) as resp:
                if resp.status != 200:
                    text = _error_text(await resp.read())
                    if resp.status in (401, 403):
                        raise InvalidAuth(text)
                    if resp.status >= 500:
                        raise CannotConnect(f"HTTP {resp.status}: {text}")
                    raise QueryFailed(text)
                async for line in iter_lines(resp.content):
                    if not line.strip():
                        continue
                    for result in orjson.loads(line).get("results", ()):
                        if "error" in result:
                            _raise_query_error(str(result["error"]))
                        for series in result.get("series", ()):
                            yield series


def _time_and_tags(selection: Selection) -> str:
    """A WHERE condition: the half-open time range and, per tag key, any of its values."""
    conditions = [f"time >= {int(selection.start_ns)}", f"time < {int(selection.end_ns)}"]
    for key, values in selection.tag_alternatives():
        alternatives = " OR ".join(
            f"{quote_ident(key)} = {quote_literal(value)}" for value in values
        )
        conditions.append(f"({alternatives})")
    return " AND ".join(conditions)


def _identity(value: Any) -> FieldValue:
    return value  # type: ignore[no-any-return]


# What a query answers while the server shuts down: it will answer again.
_STOPPING = ("query engine shutdown", "engine is closed", "store is closed", "query interrupted")


def _raise_query_error(text: str) -> None:
    if any(reason in text for reason in _STOPPING):
        raise CannotConnect(text)
    if "database not found" in text:
        raise DatabaseNotFound(text)
    if "authorized" in text or "authentication" in text:
        raise InvalidAuth(text)
    raise QueryFailed(text)


def _write_error(status: int, text: str) -> Exception:
    if status in (401, 403):
        return InvalidAuth(text)
    if status == 404 or "database not found" in text:
        return DatabaseNotFound(text)
    if status in (400, 413, 422):
        return PointsRejected(text)
    return CannotConnect(f"HTTP {status}: {text}")
