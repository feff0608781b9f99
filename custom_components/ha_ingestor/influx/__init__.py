"""The one way the integration talks to InfluxDB; 1.x and 2.x sit behind the same interface."""

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum

import aiohttp

from ..line_protocol import Point
from .errors import (
    CannotConnect,
    DatabaseNotFound,
    InfluxError,
    InvalidAuth,
    PointsRejected,
    QueryFailed,
)

__all__ = [
    "ApiVersion",
    "CannotConnect",
    "DatabaseNotFound",
    "InfluxClient",
    "InfluxError",
    "InvalidAuth",
    "PointsRejected",
    "QueryFailed",
    "ServerSettings",
    "create_client",
]


class ApiVersion(StrEnum):
    """Which InfluxDB API the server speaks."""

    V1 = "1"
    V2 = "2"


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

    ``database`` arguments default to the configured database (1.x) or bucket (2.x).
    """

    def __init__(self, session: aiohttp.ClientSession, settings: ServerSettings) -> None:
        self._session = session
        self.settings = settings
        self.database = settings.database
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout)

    @abstractmethod
    async def ping(self) -> None:
        """Raise CannotConnect unless the server answers."""

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

    @abstractmethod
    def read_points(
        self,
        measurement: str,
        start_ns: int,
        end_ns: int,
        database: str | None = None,
    ) -> AsyncIterator[Point]:
        """Stream every point of a measurement with start_ns <= time < end_ns.

        Streams in chunks, so memory stays flat however large the window is.
        """


def create_client(session: aiohttp.ClientSession, settings: ServerSettings) -> InfluxClient:
    """Return the client for the server's API version."""
    if settings.api_version is ApiVersion.V1:
        from .v1 import InfluxV1Client  # noqa: PLC0415 - keep the unused variant unloaded

        return InfluxV1Client(session, settings)
    from .v2 import InfluxV2Client  # noqa: PLC0415

    return InfluxV2Client(session, settings)
