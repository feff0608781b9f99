"""An HTTP reverse proxy in front of influxd that misbehaves on demand, per request.

Server misbehaviour that influxd cannot produce by itself (stalls, late answers, HTTP 500s,
failures of only some requests) comes from here; everything it forwards is real.
"""

import asyncio
from collections import Counter
from collections.abc import Callable
import contextlib
from enum import StrEnum

from aiohttp import ClientSession, web

from .influx_server import free_port

# A write that has no answer after this many seconds has failed (the product default is 30).
CLIENT_TIMEOUT = 1.0

# Decides from a request (path, query string and body) whether it fails with HTTP 500.
type FailWhen = Callable[[str, str, bytes], bool]


class Fault(StrEnum):
    """How the proxy treats the next request."""

    NONE = "none"  # forward and answer
    STALL = "stall"  # never forward, never answer (until healed, then 503 to nobody)
    LATE = "late"  # forward (the server stores the points) but answer after the timeout
    ERROR_500 = "error_500"  # answer 500 without forwarding


class FaultyProxy:
    """An HTTP reverse proxy in front of influxd that misbehaves on demand, per request."""

    def __init__(self, upstream: str, *, late_seconds: float = 3 * CLIENT_TIMEOUT) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self._fault = Fault.NONE
        self.late_seconds = late_seconds
        self._released = asyncio.Event()  # set unless stalling
        self._released.set()
        self._closed = asyncio.Event()
        self.seen: Counter[tuple[Fault, str]] = Counter()
        # Requests this says yes to answer 500 (whatever ``fault`` is); None: none.
        self.fail_when: FailWhen | None = None
        self.failed = 0
        self._session: ClientSession | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = ClientSession()
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    @property
    def fault(self) -> Fault:
        return self._fault

    @fault.setter
    def fault(self, fault: Fault) -> None:
        self._fault = fault
        if fault is Fault.STALL:
            self._released.clear()
        else:
            self._released.set()

    async def stop(self) -> None:
        self._closed.set()
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def writes(self, fault: Fault) -> int:
        """How many /write requests met ``fault``."""
        return self.seen[(fault, "/write")]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault = self.fault
        self.seen[(fault, request.path)] += 1
        body = await request.read()
        if self.fail_when is not None and self.fail_when(request.path, request.query_string, body):
            self.failed += 1
            return web.json_response({"error": "injected failure"}, status=500)
        if fault is Fault.ERROR_500:
            return web.json_response({"error": "injected failure"}, status=500)
        if fault is Fault.STALL:
            # Until healed (or closed); then the client that asked has long given up.
            await self._released.wait()
            return web.Response(status=503)
        response = await self._forward(request, body)
        if fault is Fault.LATE:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.late_seconds):
                    await self._closed.wait()
        return response

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        assert self._session is not None
        headers = {
            key: value
            for key, value in request.headers.items()
            if key.lower() in ("authorization", "content-type")
        }
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as upstream:
            content = await upstream.read()
            passed = {
                key: value
                for key, value in upstream.headers.items()
                if key.lower() in ("content-type", "x-influxdb-version")
            }
            return web.Response(status=upstream.status, body=content, headers=passed)
