"""A stand-in for an InfluxDB 2.x server, backed by the real influxd 1.x.

No InfluxDB 2.x server can be installed on these machines. This emulator serves the parts of
the documented v2 HTTP API that the integration uses — token auth, /ping, orgs, buckets,
/api/v2/write and /api/v2/query answering in annotated CSV — and stores every point in the
real influxd, so line-protocol parsing, type conflicts and rejections are the real server's.
Flux is NOT executed: only the query shapes the integration emits (schema listings, a ranged
and filtered read with pivot, and grouped count/mean/first/last aggregates) are translated to
InfluxQL, stage by stage, and anything else is refused. /api/v2/delete predicates become an
InfluxQL DELETE. What it proves: our 2.x client's HTTP contract, auth and error mapping, CSV
parsing and data round trips. What it cannot prove: behaviour of a real Flux engine.
"""

import csv
from datetime import UTC, datetime
import io
import json
import re
import urllib.parse

from aiohttp import ClientSession, web

from custom_components.ha_ingestor.engine.influx.v1 import quote_ident, quote_literal

from .influx_server import ADMIN_PASSWORD, ADMIN_USER, InfluxServer, free_port

_STRING = r'"((?:[^"\\]|\\.)*)"'
_SCHEMA_START = r"(?:, start: 1970-01-01T00:00:00Z)?"
_MEASUREMENTS = re.compile(rf"schema\.measurements\(bucket: {_STRING}{_SCHEMA_START}\)")
_FIELD_KEYS = re.compile(
    rf"schema\.measurementFieldKeys\(bucket: {_STRING}, measurement: {_STRING}{_SCHEMA_START}\)"
)
_TAG_VALUES = re.compile(
    rf"schema\.tagValues\(bucket: {_STRING}, tag: {_STRING}, "
    rf"predicate: \(r\) => r\._measurement == {_STRING}{_SCHEMA_START}\)"
)
# The stages of a pipeline, one per line, exactly as the client writes them.
_FROM = re.compile(rf"^from\(bucket: {_STRING}\)$")
_RANGE = re.compile(r"^\|> range\(start: (\S+), stop: (\S+)\)$")
_MEASUREMENT_FILTER = re.compile(
    rf"^\|> filter\(fn: \(r\) => (r\._measurement == {_STRING}(?: or r\._measurement == "
    rf"{_STRING})*)\)$"
)
_TAG_FILTER = re.compile(r"^\|> filter\(fn: \(r\) => (\(r\[.*\))\)$")
_TAG_GROUP = re.compile(rf'\((r\["(?:[^"\\]|\\.)*"\] == {_STRING}(?: or .*?)?)\)(?: and |$)')
_TAG_TEST = re.compile(rf"r\[{_STRING}\] == {_STRING}")
_FIELD_FILTER = re.compile(rf"^\|> filter\(fn: \(r\) => r\._field == {_STRING}\)$")
_FIELDS_FILTER = re.compile(
    rf"^\|> filter\(fn: \(r\) => (r\._field == {_STRING}(?: or r\._field == {_STRING})*)\)$"
)
_PIVOT = '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
_GROUP = re.compile(rf"^\|> group\(columns: \[({_STRING}(?:, {_STRING})*)\]\)$")
_WINDOW = re.compile(
    r"^\|> aggregateWindow\(every: (\d+)ns, fn: (count|mean|first|last), "
    r'createEmpty: false, timeSrc: "_start"\)$'
)
_DELETE_TERM = re.compile(rf"(\w+)={_STRING}(?: AND |$)")
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
        # The body of every annotated-CSV answer, for tests that read it with other parsers.
        self.answers: list[bytes] = []
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
        app.router.add_post("/api/v2/delete", self._delete)
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
        listing = await self._schema(flux)
        if listing is not None:
            answer = self._csv(
                [("_value", "string", False)], [[name] for name in listing], start=0, stop=0
            )
        else:
            try:
                answer = await self._pipeline([line.strip() for line in flux.strip().split("\n")])
            except _Unsupported as err:
                return _error(400, "invalid", f"emulator: unsupported Flux: {err}")
        assert isinstance(answer.body, bytes)
        self.answers.append(answer.body)
        return answer

    async def _schema(self, flux: str) -> list[str] | None:
        """The answer of a schema.* listing, or None when the query is not one."""
        if match := _MEASUREMENTS.search(flux):
            query, bucket, column = "SHOW MEASUREMENTS", match.group(1), 0
        elif match := _FIELD_KEYS.search(flux):
            bucket = match.group(1)
            query, column = f"SHOW FIELD KEYS FROM {quote_ident(_unflux(match.group(2)))}", 0
        elif match := _TAG_VALUES.search(flux):
            bucket, key, measurement = (_unflux(group) for group in match.groups())
            query = f"SHOW TAG VALUES FROM {quote_ident(measurement)} WITH KEY = {quote_ident(key)}"
            column = 1
        else:
            return None
        series = await self._influxql(query, _unflux(bucket))
        return list(dict.fromkeys(row[column] for s in series for row in s.get("values", [])))

    async def _pipeline(self, stages: list[str]) -> web.Response:
        """Translate from() |> range() |> filter()… into one InfluxQL SELECT and answer it."""
        if not stages or not (match := _FROM.match(stages[0])):
            raise _Unsupported("expected from(bucket: …)")
        bucket = _unflux(match.group(1))
        if len(stages) < 3 or not (match := _RANGE.match(stages[1])):
            raise _Unsupported("expected range(start: …, stop: …)")
        start, stop = _rfc3339_to_ns(match.group(1)), _rfc3339_to_ns(match.group(2))
        if not (match := _MEASUREMENT_FILTER.match(stages[2])):
            raise _Unsupported("expected a filter on _measurement")
        measurements = [_unflux(name) for name in re.findall(_STRING, match.group(1))]
        conditions = [f"time >= {start}", f"time < {stop}"]
        rest = stages[3:]
        if rest and (match := _TAG_FILTER.match(rest[0])):
            conditions += _tag_conditions(match.group(1))
            rest = rest[1:]
        where = " AND ".join(conditions)
        if rest == [_PIVOT] and len(measurements) == 1:
            return await self._read(bucket, measurements[0], where, start, stop)
        if (
            len(rest) == 2
            and rest[1] == _PIVOT
            and len(measurements) == 1
            and (match := _FIELDS_FILTER.match(rest[0]))
        ):
            names = {_unflux(name) for name in re.findall(_STRING, match.group(1))}
            return await self._read(bucket, measurements[0], where, start, stop, names)
        if not rest or not (match := _FIELD_FILTER.match(rest[0])):
            raise _Unsupported("expected pivot() or a filter on _field")
        field = _unflux(match.group(1))
        shape = " ".join(re.sub(r"\(.*", "", stage) for stage in rest[1:])
        if shape == "|> group |> aggregateWindow":
            group, window = _GROUP.match(rest[1]), _WINDOW.match(rest[2])
            if not group or not window:
                raise _Unsupported(" ".join(rest[1:]))
            function, every = window.group(2), int(window.group(1))
        elif shape in ("|> group |> count", "|> group |> mean"):
            group, function, every = _GROUP.match(rest[1]), shape.rsplit(" ", 1)[1], None
            if not group or rest[2] != f"|> {function}()":
                raise _Unsupported(" ".join(rest[1:]))
        elif shape in ("|> first |> group |> min", "|> last |> group |> max"):
            group, function, every = _GROUP.match(rest[2]), shape.split(" ")[1], None
            pick = "min" if function == "first" else "max"
            if (
                not group
                or rest[1] != f"|> {function}()"
                or rest[3] != f'|> {pick}(column: "_time")'
            ):
                raise _Unsupported(" ".join(rest[1:]))
        else:
            raise _Unsupported(shape)
        keys = [_unflux(key) for key in re.findall(_STRING, group.group(1))]
        if keys[:1] != ["_measurement"]:
            raise _Unsupported("the group must keep _measurement first")
        return await self._aggregate(
            bucket, measurements, field, function, where, keys[1:], every, start, stop
        )

    async def _field_types(self, bucket: str, measurement: str) -> dict[str, str]:
        return {
            key: kind
            for s in await self._influxql(
                f"SHOW FIELD KEYS FROM {quote_ident(measurement)}", bucket
            )
            for key, kind in s.get("values", [])
        }

    async def _read(
        self,
        bucket: str,
        measurement: str,
        where: str,
        start: int,
        stop: int,
        names: set[str] | None = None,
    ) -> web.Response:
        types = await self._field_types(bucket, measurement)
        selection = "*"
        if names is not None:
            if not (chosen := [key for key in types if key in names]):
                return web.Response(body=b"", content_type="text/csv")
            selection = ", ".join(quote_ident(key) for key in chosen)
        series = await self._influxql(
            f"SELECT {selection} FROM {quote_ident(measurement)} WHERE {where} GROUP BY *", bucket
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
                row += [
                    _csv_value(types[key], value)
                    for key, value in zip(fields, values[1:], strict=True)
                ]
                rows.append(row)
            out.write(self._table(columns, rows, table, start, stop))
            out.write("\r\n")
        return web.Response(body=out.getvalue().encode(), content_type="text/csv")

    async def _aggregate(
        self,
        bucket: str,
        measurements: list[str],
        field: str,
        function: str,
        where: str,
        keys: list[str],
        every: int | None,
        start: int,
        stop: int,
    ) -> web.Response:
        groups = [quote_ident(key) for key in keys]
        if every is not None:
            groups.insert(0, f"time({every}ns)")
        query = (
            f"SELECT {function}({quote_ident(field)}) "
            f"FROM {', '.join(quote_ident(m) for m in measurements)} WHERE {where}"
        )
        if groups:
            query += f" GROUP BY {', '.join(groups)}"
        if every is not None:
            query += " fill(none)"
        out = io.StringIO()
        table = 0
        for one in await self._influxql(query, bucket):
            measurement = one["name"]
            kind = {"count": "integer", "mean": "float"}.get(function)
            kind = kind or (await self._field_types(bucket, measurement)).get(field, "float")
            tags = one.get("tags") or {}
            # Flux's count() and mean() drop _time; windows and selectors keep one.
            timed = every is not None or function in ("first", "last")
            columns = [("_time", "dateTime:RFC3339", False)] if timed else []
            columns += [("_value", _FLUX_TYPES[kind], False), ("_measurement", "string", True)]
            columns += [(key, "string", True) for key in keys]
            rows = []
            for time_ns, value in one.get("values", []):
                if value is None:
                    continue
                row = [_ns_to_rfc3339(time_ns)] if timed else []
                row += [_csv_value(kind, value), measurement, *(tags.get(key, "") for key in keys)]
                rows.append(row)
            if rows:
                out.write(self._table(columns, rows, table, start, stop))
                out.write("\r\n")
                table += 1
        return web.Response(body=out.getvalue().encode(), content_type="text/csv")

    async def _delete(self, request: web.Request) -> web.Response:
        if not self._org_ok(request):
            return _error(404, "not found", "organization not found")
        bucket = request.query.get("bucket", "")
        if bucket not in await self._databases():
            return _error(404, "not found", f'bucket "{bucket}" not found')
        body = await request.json()
        predicate = body.get("predicate", "")
        terms = []
        position = 0
        while position < len(predicate):
            match = _DELETE_TERM.match(predicate, position)
            if not match:
                return _error(400, "invalid", f"emulator: unsupported predicate {predicate!r}")
            terms.append((match.group(1), _unflux(match.group(2))))
            position = match.end()
        tags = dict(terms)
        measurement = tags.pop("_measurement", None)
        if measurement is None or not tags:
            return _error(400, "invalid", "emulator: needs _measurement and a tag")
        conditions = [f"{quote_ident(k)} = {quote_literal(v)}" for k, v in tags.items()]
        conditions += [
            f"time >= {_rfc3339_to_ns(body['start'])}",
            f"time <= {_rfc3339_to_ns(body['stop'])}",
        ]
        await self._influxql(
            f"DELETE FROM {quote_ident(measurement)} WHERE {' AND '.join(conditions)}", bucket
        )
        return web.Response(status=204)

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


class _Unsupported(Exception):
    """A Flux query outside the shapes the emulator translates."""


def _tag_conditions(text: str) -> list[str]:
    """InfluxQL conditions for `(r["k"] == "v" or r["k"] == "w") and (…)`."""
    conditions = []
    position = 0
    while position < len(text):
        group = _TAG_GROUP.match(text, position)
        if not group:
            raise _Unsupported(f"tag filter {text!r}")
        tests = _TAG_TEST.findall(group.group(1))
        if " or ".join(f'r["{k}"] == "{v}"' for k, v in tests) != group.group(1):
            raise _Unsupported(f"tag filter {text!r}")
        either = " OR ".join(
            f"{quote_ident(_unflux(k))} = {quote_literal(_unflux(v))}" for k, v in tests
        )
        conditions.append(f"({either})")
        position = group.end()
    return conditions


def _csv_value(kind: str, value: object) -> str:
    if value is None:
        return ""
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "float":
        return repr(float(value))  # type: ignore[arg-type]
    return str(value)


def _basic_auth():  # type: ignore[no-untyped-def]
    from aiohttp import BasicAuth  # noqa: PLC0415

    return BasicAuth(ADMIN_USER, ADMIN_PASSWORD)
