"""The one way the integration talks to InfluxDB; 1.x and 2.x sit behind the same interface."""

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp

from ..line_protocol import FieldValue, Point
from ._stream import reaching_server
from .errors import (
    CannotConnect,
    DatabaseNotFound,
    InfluxError,
    InvalidAuth,
    NotInfluxDB,
    PointsRejected,
    QueryFailed,
    TlsMismatch,
    WrongApiVersion,
    check_ping,
)

__all__ = [
    "Aggregate",
    "AggregateRow",
    "Aggregation",
    "ApiVersion",
    "CannotConnect",
    "DatabaseNotFound",
    "InfluxClient",
    "InfluxError",
    "InvalidAuth",
    "NotInfluxDB",
    "PointsRejected",
    "QueryFailed",
    "Selection",
    "SeriesBlock",
    "ServerSettings",
    "TagFilter",
    "TlsMismatch",
    "WrongApiVersion",
    "create_client",
]

# Tag key → the values it may have (any of them); several keys must all match.
type TagFilter = Mapping[str, Collection[str]]


class ApiVersion(StrEnum):
    """Which InfluxDB API the server speaks."""

    V1 = "1"
    V2 = "2"


class Aggregate(StrEnum):
    """Aggregate functions that mean the same on InfluxQL and Flux."""

    COUNT = "count"
    MEAN = "mean"
    FIRST = "first"
    LAST = "last"


@dataclass(frozen=True, slots=True)
class AggregateRow:
    """One result of :meth:`InfluxClient.aggregate`.

    ``time_ns`` is the window start with ``every_ns``; otherwise the time of the selected point
    for ``first``/``last`` and the start of the queried range for ``count``/``mean``.
    """

    measurement: str
    tags: Mapping[str, str]
    time_ns: int
    value: FieldValue


def _keep(value: Any) -> FieldValue:
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class SeriesBlock:
    """Consecutive points of one series as the server streams them, before they become Points.

    Every point of a block shares ``measurement`` and ``tags``. Each row is
    ``[time_ns, value_1, …]`` with one value per name in ``fields`` (``None`` where the point
    lacks the field), as the server sent it; ``converters`` give each value its stored type.
    Readers that only need some rows, or that can reuse work for repeated values, look at the
    raw rows and build :class:`Point` objects only where needed.
    """

    measurement: str
    tags: Mapping[str, str]
    fields: tuple[str, ...]
    rows: Sequence[Sequence[Any]]
    converters: tuple[Callable[[Any], FieldValue], ...] | None = None

    def point(self, row: Sequence[Any]) -> Point | None:
        """The point of one row, or ``None`` when it holds no field value."""
        converters = self.converters or (_keep,) * len(self.fields)
        fields = {
            name: convert(value)
            for name, convert, value in zip(self.fields, converters, row[1:], strict=True)
            if value is not None
        }
        return Point(self.measurement, self.tags, fields, int(row[0])) if fields else None

    def points(self) -> Iterator[Point]:
        """Every point of the block, in the server's order."""
        for row in self.rows:
            if (point := self.point(row)) is not None:
                yield point


@dataclass(frozen=True, slots=True)
class Selection:
    """The points a read covers: those of ``measurements`` in ``database`` with
    ``start_ns <= time < end_ns`` whose series match ``where`` (checked: no key without values).
    """

    database: str
    measurements: tuple[str, ...]
    start_ns: int
    end_ns: int
    where: TagFilter

    def __post_init__(self) -> None:
        for key, values in self.where.items():
            if not values:
                raise ValueError(f"tag filter on {key!r} has no values")

    def tag_alternatives(self) -> Iterator[tuple[str, list[str]]]:
        """Per tag key of ``where``, the values a series may carry (any of them), sorted."""
        for key, values in self.where.items():
            yield key, sorted(values)


@dataclass(frozen=True, slots=True)
class Aggregation:
    """What :meth:`InfluxClient.aggregate` computes: ``function`` of ``field`` per measurement
    and ``group_by`` tag group, and with ``every_ns`` per window aligned to the epoch."""

    field: str
    function: Aggregate
    group_by: tuple[str, ...]
    every_ns: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """How to reach one InfluxDB server; ``database`` is the bucket on 2.x."""

    api_version: ApiVersion
    url: str
    database: str
    verify_ssl: bool = True
    username: str | None = None
    password: str | None = None
    token: str | None = None
    organization: str | None = None
    timeout: float = 30.0


class InfluxClient(ABC):
    """Operations the integration needs, independent of the server version.

    ``database`` arguments default to the configured database (1.x) or bucket (2.x). What
    both versions check and normalise (measurement lists, tag filters, empty ranges) is done
    here once; the versions build and run the queries (``_read_series``, ``_aggregate``,
    ``_delete_range``).
    """

    def __init__(self, session: aiohttp.ClientSession, settings: ServerSettings) -> None:
        self._session = session
        self.settings = settings
        self.database = settings.database
        # The version the server named in its last /ping answer.
        self.server_version: str | None = None
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout)
        # A streamed answer may take as long as it takes, but no read of it may stall.
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.timeout, sock_read=settings.timeout
        )

    def _url(self, path: str) -> str:
        return self.settings.url.rstrip("/") + path

    async def ping(self) -> None:
        """Raise CannotConnect unless the server answers."""
        with reaching_server():
            async with self._session.get(
                self._url("/ping"), timeout=self._timeout, ssl=self.settings.verify_ssl
            ) as resp:
                status, version, body = (
                    resp.status,
                    resp.headers.get("X-Influxdb-Version"),
                    await resp.read(),
                )
        self.server_version = check_ping(status, version, body)

    @abstractmethod
    async def validate(self) -> None:
        """Check credentials and that the configured database exists.

        Raises CannotConnect, InvalidAuth or DatabaseNotFound.
        """

    @abstractmethod
    async def database_exists(self, name: str) -> bool:
        """Whether a database (bucket) of that name exists."""

    @abstractmethod
    async def create_database(self, name: str) -> None:
        """Create a database (bucket); a no-op when it exists."""

    @abstractmethod
    async def drop_database(self, name: str) -> None:
        """Delete a database (bucket) and all its data; a no-op when it is missing."""

    @abstractmethod
    async def write(self, body: bytes, database: str | None = None) -> None:
        """Write encoded line protocol (nanosecond precision).

        Raises PointsRejected when the server refuses points, CannotConnect when it is
        unreachable or failing, InvalidAuth, DatabaseNotFound.
        """

    @abstractmethod
    async def measurements(self, database: str | None = None) -> list[str]:
        """Names of all measurements in a database."""

    async def read_points(
        self,
        measurement: str,
        start_ns: int,
        end_ns: int,
        database: str | None = None,
        *,
        where: TagFilter | None = None,
        fields: Collection[str] | None = None,
    ) -> AsyncIterator[Point]:
        """Stream every point of a measurement with start_ns <= time < end_ns.

        Streams in chunks, so memory stays flat however large the window is. ``where``
        keeps only the series whose tags match; ``fields`` (when given) only those fields,
        and so only the points that have one of them.
        """
        async for block in self.read_series(
            measurement, start_ns, end_ns, database, where=where, fields=fields
        ):
            for point in block.points():
                yield point

    async def read_series(
        self,
        measurement: str,
        start_ns: int,
        end_ns: int,
        database: str | None = None,
        *,
        where: TagFilter | None = None,
        fields: Collection[str] | None = None,
    ) -> AsyncIterator[SeriesBlock]:
        """Stream the points of :meth:`read_points` as blocks of raw rows, series by series.

        The lean path for bulk copies: no per-point objects unless the caller builds them.
        Blocks are at most one server chunk long; one series may span several blocks.
        """
        selection = self._selection(measurement, start_ns, end_ns, where, database)
        if fields is not None and not fields:
            return
        async for block in self._read_series(selection, fields):
            yield block

    @abstractmethod
    def _read_series(
        self, selection: Selection, fields: Collection[str] | None
    ) -> AsyncIterator[SeriesBlock]:
        """:meth:`read_series` of one measurement; ``fields`` is None or not empty."""

    @abstractmethod
    async def field_keys(self, measurement: str, database: str | None = None) -> list[str]:
        """Names of the fields a measurement has."""

    @abstractmethod
    async def tag_values(
        self, key: str, measurement: str, database: str | None = None
    ) -> list[str]:
        """The distinct values of one tag key in a measurement."""

    async def aggregate(
        self,
        measurements: str | Sequence[str],
        field: str,
        function: Aggregate,
        *,
        start_ns: int,
        end_ns: int,
        group_by: Sequence[str] = (),
        every_ns: int | None = None,
        where: TagFilter | None = None,
        database: str | None = None,
    ) -> list[AggregateRow]:
        """Aggregate one field over start_ns <= time < end_ns, per measurement and tag group.

        ``every_ns`` also groups by time windows aligned to the epoch; empty windows are left
        out. Groups where the field never occurs are left out.
        """
        if not isinstance(measurements, str) and not measurements:
            return []
        selection = self._selection(measurements, start_ns, end_ns, where, database)
        aggregation = Aggregation(field, Aggregate(function), tuple(group_by), every_ns)
        return await self._aggregate(selection, aggregation)

    @abstractmethod
    async def _aggregate(
        self, selection: Selection, aggregation: Aggregation
    ) -> list[AggregateRow]:
        """:meth:`aggregate` of at least one measurement."""

    async def delete_range(
        self,
        measurement: str,
        tags: Mapping[str, str],
        *,
        start_ns: int,
        end_ns: int,
        database: str | None = None,
    ) -> None:
        """Delete the points with start_ns <= time < end_ns of the series carrying ``tags``.

        Only series carrying all of ``tags`` are touched, and only inside the time range: the
        one way the integration deletes points (rollback and cleanup act on what a migration
        wrote and verified, never on a whole series). ``tags`` must not be empty.
        """
        if not tags:
            raise ValueError("delete_range needs at least one tag to match")
        if end_ns <= start_ns:
            return
        await self._delete_range(measurement, tags, start_ns, end_ns, database or self.database)

    @abstractmethod
    async def _delete_range(
        self, measurement: str, tags: Mapping[str, str], start_ns: int, end_ns: int, database: str
    ) -> None:
        """:meth:`delete_range` of a non-empty range, with at least one tag."""

    def _selection(
        self,
        measurements: str | Sequence[str],
        start_ns: int,
        end_ns: int,
        where: TagFilter | None,
        database: str | None,
    ) -> Selection:
        names = (measurements,) if isinstance(measurements, str) else tuple(measurements)
        return Selection(database or self.database, names, start_ns, end_ns, where or {})


def create_client(session: aiohttp.ClientSession, settings: ServerSettings) -> InfluxClient:
    """Return the client for the server's API version."""
    if settings.api_version is ApiVersion.V1:
        from .v1 import InfluxV1Client  # noqa: PLC0415 - keep the unused variant unloaded

        return InfluxV1Client(session, settings)
    from .v2 import InfluxV2Client  # noqa: PLC0415

    return InfluxV2Client(session, settings)
