"""What can go wrong talking to InfluxDB, in terms the rest of the integration acts on."""

import orjson


class InfluxError(Exception):
    """Base class for every InfluxDB failure."""


class CannotConnect(InfluxError):
    """The server did not answer, timed out, or answered with a server error (retryable)."""


class InvalidAuth(InfluxError):
    """The credentials or token were rejected, or lack a needed permission."""


class DatabaseNotFound(InfluxError):
    """The database (1.x) or bucket (2.x) does not exist."""


class PointsRejected(InfluxError):
    """The server refused some or all points of a write (bad data, type conflicts).

    On InfluxDB the valid points of such a write are stored anyway, so re-sending them is
    harmless (same series and time overwrite with identical values).
    """


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
