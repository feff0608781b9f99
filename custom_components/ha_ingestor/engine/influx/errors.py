"""What can go wrong talking to InfluxDB, in terms the rest of the integration acts on."""

from collections.abc import Sequence
import re

import orjson


class InfluxError(Exception):
    """Base class for every InfluxDB failure."""


class CannotConnect(InfluxError):
    """The server did not answer, timed out, or answered with a server error (retryable)."""


class NotInfluxDB(CannotConnect):
    """Something answered at the URL, but not an InfluxDB server."""


class TlsMismatch(CannotConnect):
    """The URL's scheme does not match the server (https to an http port, or the reverse),
    or the server's certificate is not trusted."""

    def __init__(self, message: str, *, certificate: bool = False) -> None:
        super().__init__(message)
        self.certificate = certificate


class WrongApiVersion(InfluxError):
    """The server speaks the other InfluxDB API version than the one configured."""

    def __init__(self, server_version: str) -> None:
        super().__init__(f"the server is InfluxDB {server_version}")
        self.server_version = server_version


class InvalidAuth(InfluxError):
    """The credentials or token were rejected, or lack a needed permission."""


class DatabaseNotFound(InfluxError):
    """The database (1.x) or bucket (2.x) does not exist."""


class PointsRejected(InfluxError):
    """The server refused some or all points of a write (bad data, type conflicts).

    On InfluxDB the valid points of such a write are stored anyway, so re-sending them is
    harmless (same series and time overwrite with identical values): the live writer and the
    backfill both find the refused lines by sending halves again (:meth:`halves`).
    """

    def halves[L](self, lines: Sequence[L]) -> tuple[Sequence[L], Sequence[L]] | None:
        """The two halves of a refused write of ``lines`` to send again, or None when every
        line of it is refused: it is one line, or the server says it dropped them all."""
        dropped = _DROPPED.search(str(self))
        if len(lines) <= 1 or (dropped is not None and int(dropped.group(1)) == len(lines)):
            return None
        middle = len(lines) // 2
        return lines[:middle], lines[middle:]


# How InfluxDB counts the points of a partial write it dropped ("... dropped=3").
_DROPPED = re.compile(r"dropped=(\d+)")


class QueryFailed(InfluxError):
    """The server refused a query."""


def error_text(body: bytes, key: str) -> str:
    """The server's explanation from an error answer: its JSON ``key``, else the raw text."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and key in parsed:
        return str(parsed[key])
    return body.decode(errors="replace").strip()


def connection_error(err: Exception) -> CannotConnect:
    """The CannotConnect an aiohttp or timeout error means (TLS problems said so)."""
    import aiohttp  # noqa: PLC0415 - errors stays importable without the HTTP stack

    text = str(err) or type(err).__name__
    if isinstance(err, aiohttp.ClientConnectorCertificateError):
        return TlsMismatch(text, certificate=True)
    if isinstance(err, aiohttp.ClientSSLError) or "SSL" in text or "WRONG_VERSION" in text:
        return TlsMismatch(text)
    return CannotConnect(text)


def check_ping(status: int, version: str | None, body: bytes) -> str:
    """The server's version from a /ping answer; raises what the answer says went wrong."""
    if version is None:
        if status == 400 and b"https" in body.lower():
            raise TlsMismatch("an http:// URL points at an https:// server")
        if status >= 500:
            raise CannotConnect(f"/ping answered HTTP {status}")
        raise NotInfluxDB(f"/ping answered HTTP {status} without an InfluxDB version header")
    if status >= 300:
        raise CannotConnect(f"/ping answered HTTP {status}")
    return version
