"""A stand-in for an InfluxDB 2.x server, backed by the real influxd 1.x.

No InfluxDB 2.x server can be installed on these machines. This emulator serves the parts of
the documented v2 HTTP API that the integration uses — token auth, /ping, orgs, buckets,
/api/v2/write and /api/v2/query answering in annotated CSV — and stores every point in the
real influxd, so line-protocol parsing, type conflicts and rejections are the real server's.
Flux is NOT executed: only the two query shapes the integration emits are translated to
InfluxQL. What it proves: our 2.x client's HTTP contract, auth and error mapping, CSV parsing
and data round trips. What it cannot prove: behaviour of a real Flux engine.
"""

import csv
from datetime import UTC, datetime
import io
import json
import re
import urllib.parse

from aiohttp import ClientSession, web

from custom_components.ha_ingestor.influx.v1 import quote_ident

from .influx_server import ADMIN_PASSWORD, ADMIN_USER, InfluxServer, free_port

_MEASUREMENTS = re.compile(r'schema\.measurements\(bucket: "((?:[^"\\]|\\.)*)"\)')
_READ = re.compile(
    r'from\(bucket: "(?P<bucket>(?:[^"\\]|\\.)*)"\)\s*'
    r"\|> range\(start: (?P<start>\S+), stop: (?P<stop>\S+)\)\s*"
    r'\|> filter\(fn: \(r\) => r\._measurement == "(?P<measurement>(?:[^"\\]|\\.)*)"\)\s*'
    r'\|> pivot\(rowKey: \["_time"\], columnKey: \["_field"\], valueColumn: "_value"\)$'
)
_FLUX_TYPES = {"float": "double", "integer": "long", "string": "string", "boolean": "boolean"}


def _unflux(value: str) -> str:
    return (
        value.replace("\\${", "${").replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
    )


def _rfc3339_to_ns(value: str) -> int:
    main, _, fraction = value.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(main).replace(tzinfo=UTC).timestamp())
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0")[:9] or 0)


def _ns_to_rfc3339(ns: int) -> str:
    seconds, nanos = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


class InfluxV2Emulator:
    """Serves the v2 API on a free loopback port; start() and stop() inside a running loop."""

    def __init__(self, backend: InfluxServer, *, token: str, org: str) -> None:
        self.backend = backend
        self.token = token
        self.org = org
        self.port = free_port()
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/ping", self._ping)
        app.router.add_get("/api/v2/orgs", self._orgs)
        app.router.add_get("/api/v2/buckets", self._buckets)
        app.router.add_post("/api/v2/buckets", self._create_bucket)
        app.router.add_delete("/api/v2/buckets/{bucket_id}", self._delete_bucket)
        app.router.add_post("/api/v2/write", self._write)
        app.router.add_post("/api/v2/query", self._query)
        self._session = ClientSession()
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
        if self._session:
            await self._session.close()

    @web.middleware
    async def _auth(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        self.requests.append(f"{request.method} {request.path}")
        if request.path != "/ping" and request.headers.get("Authorization") != (
            f"Token {self.token}"
        ):
            return _error(401, "unauthorized", "unauthorized access")
        return await handler(request)

    def _org_ok(self, request: web.Request) -> bool:
        return request.query.get("org") == self.org

    async def _backend(self, path: str, params: dict[str, str], data: bytes) -> tuple[int, bytes]:
        assert self._session is not None
        async with self._session.post(
            f"{self.backend.url}{path}?{urllib.parse.urlencode(params)}",
            data=data,
            auth=_basic_auth(),
        ) as resp:
            return resp.status, await resp.read()

    async def _influxql(self, query: str, db: str | None = None) -> list[dict]:
        params = {"q": query, "epoch": "ns"} | ({"db": db} if db else {})
        status, body = await self._backend("/query", params, b"")
        assert status == 200, body
        result = json.loads(body)["results"][0]
        if "error" in result:
            raise RuntimeError(result["error"])
        return result.get("series", [])

    async def _databases(self) -> list[str]:
        series = await self._influxql("SHOW DATABASES")
        return [row[0] for s in series for row in s.get("values", [])]

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"X-Influxdb-Version": "v2-emulator"})

    async def _orgs(self, request: web.Request) -> web.Response:
        if not self._org_ok(request):
            return _error(404, "not found", f"organization name {request.query.get('org')!r}")
        return web.json_response({"orgs": [{"id": "emulated-org-id", "name": self.org}]})

    async def _buckets(self, request: web.Request) -> web.Response:
        if not self._org_ok(request):
            return _error(404, "not found", "organization not found")
        name = request.query.get("name")
        buckets = [{"id": db, "name": db} for db in await self._databases() if db == name]
        return web.json_response({"buckets": buckets})

    async def _create_bucket(self, request: web.Request) -> web.Response:
        body = await request.json()
        await self._influxql(f"CREATE DATABASE {quote_ident(body['name'])}")
        return web.json_response({"id": body["name"], "name": body["name"]}, status=201)

    async def _delete_bucket(self, request: web.Request) -> web.Response:
        bucket = request.match_info["bucket_id"]
        if bucket not in await self._databases():
            return _error(404, "not found", "bucket not found")
        await self._influxql(f"DROP DATABASE {quote_ident(bucket)}")
        return web.Response(status=204)

    async def _write(self, request: web.Request) -> web.Response:
        if not self._org_ok(request):
            return _error(404, "not found", "organization not found")
        bucket = request.query.get("bucket", "")
        if bucket not in await self._databases():
            return _error(404, "not found", f'bucket "{bucket}" not found')
        status, body = await self._backend(
            "/write",
            {"db": bucket, "precision": request.query.get("precision", "ns")},
            await request.read(),
        )
        if status == 204:
            return web.Response(status=204)
        message = json.loads(body).get("error", body.decode())
        return _error(400 if status == 400 else 500, "invalid", message)

    async def _query(self, request: web.Request) -> web.Response:
        if not self._org_ok(request):
            return _error(404, "not found", "organization not found")
        flux = (await request.json())["query"]
        if match := _MEASUREMENTS.search(flux):
            series = await self._influxql("SHOW MEASUREMENTS", _unflux(match.group(1)))
            names = [row[0] for s in series for row in s.get("values", [])]
            return self._csv(
                [("_value", "string", False)], [[name] for name in names], start=0, stop=0
            )
        if match := _READ.search(flux.strip()):
            return await self._read(match)
        return _error(400, "invalid", "emulator: unsupported Flux query")

    async def _read(self, match: re.Match[str]) -> web.Response:
        bucket, measurement = _unflux(match["bucket"]), _unflux(match["measurement"])
        start, stop = _rfc3339_to_ns(match["start"]), _rfc3339_to_ns(match["stop"])
        types = {
            key: kind
            for s in await self._influxql(
                f"SHOW FIELD KEYS FROM {quote_ident(measurement)}", bucket
            )
            for key, kind in s.get("values", [])
        }
        series = await self._influxql(
            f"SELECT * FROM {quote_ident(measurement)} "
            f"WHERE time >= {start} AND time < {stop} GROUP BY *",
            bucket,
        )
        out = io.StringIO()
        for table, one in enumerate(series):
            tags = sorted((one.get("tags") or {}).items())
            fields = one["columns"][1:]
            columns = (
                [("_time", "dateTime:RFC3339", False), ("_measurement", "string", True)]
                + [(key, "string", True) for key, _ in tags]
                + [(key, _FLUX_TYPES[types[key]], False) for key in fields]
            )
            rows = []
            for values in one["values"]:
                row = [_ns_to_rfc3339(values[0]), measurement] + [value for _, value in tags]
                for key, value in zip(fields, values[1:], strict=True):
                    if value is None:
                        row.append("")
                    elif types[key] == "boolean":
                        row.append("true" if value else "false")
                    elif types[key] == "float":
                        row.append(repr(float(value)))
                    else:
                        row.append(str(value))
                rows.append(row)
            out.write(self._table(columns, rows, table, start, stop))
            out.write("\r\n")
        return web.Response(body=out.getvalue().encode(), content_type="text/csv")

    def _csv(self, columns, rows, *, start: int, stop: int) -> web.Response:  # type: ignore[no-untyped-def]
        return web.Response(
            body=self._table(columns, rows, 0, start, stop).encode(), content_type="text/csv"
        )

    @staticmethod
    def _table(columns, rows, table: int, start: int, stop: int) -> str:  # type: ignore[no-untyped-def]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        meta = [("result", "string", False), ("table", "long", False)]
        meta += [("_start", "dateTime:RFC3339", True), ("_stop", "dateTime:RFC3339", True)]
        everything = meta + list(columns)
        writer.writerow(["#datatype"] + [kind for _, kind, _ in everything])
        writer.writerow(["#group"] + ["true" if group else "false" for _, _, group in everything])
        writer.writerow([""] + [name for name, _, _ in everything])
        for row in rows:
            writer.writerow(
                ["", "_result", table, _ns_to_rfc3339(start), _ns_to_rfc3339(stop), *row]
            )
        return out.getvalue()


def _basic_auth():  # type: ignore[no-untyped-def]
    from aiohttp import BasicAuth  # noqa: PLC0415

    return BasicAuth(ADMIN_USER, ADMIN_PASSWORD)
