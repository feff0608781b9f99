"""The backfill's side of the server: retries, the circuit breaker, whether it answers, and
waits that a stop cuts short. No Home Assistant in here.
"""

import asyncio
from collections.abc import Awaitable, Callable

from ...influx import CannotConnect, InfluxClient, PointsRejected
from ...retry import RetryPolicy, Timer, call_with_retry

type ConnectionListener = Callable[[bool], None]


class Stopping(Exception):
    """A write or wait gave up because the run is stopping."""


class StopRequest:
    """Whether a run is stopping (stop() or a bad error rate), and sleeps on its timer that
    wake up at once when it is."""

    def __init__(self, timer: Timer) -> None:
        self._timer = timer
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the timer, but wake up at once when the run is stopping."""
        await self._timer.pause(seconds, self._event)


class ServerLink:
    """Writes and probes with the shared retry policy; tells the listener when the server
    stops or starts answering again. While the run is stopping, writes and probes give up
    with :class:`Stopping`."""

    def __init__(
        self,
        client: InfluxClient,
        stop: StopRequest,
        *,
        retry: RetryPolicy,
        timer: Timer,
        on_connection: ConnectionListener | None,
    ) -> None:
        self._client = client
        self._stop = stop
        self.backoff = retry.backoff
        self.breaker = retry.new_breaker(timer.monotonic)
        self._on_connection = on_connection
        self._reachable = True

    async def retried(self, operation: Callable[[], Awaitable[None]]) -> None:
        """Run ``operation`` until it succeeds, backing off on the run's stoppable sleep."""
        await call_with_retry(
            operation, backoff=self.backoff, breaker=self.breaker, sleep=self._stop.sleep
        )

    async def write(self, body: bytes, database: str) -> None:
        """One attempt at writing ``body``."""
        if self._stop.is_set():
            raise Stopping
        try:
            await self._client.write(body, database)
        except CannotConnect:
            self.reached(False)
            raise
        except PointsRejected:
            self.reached(True)
            raise
        self.reached(True)

    async def wait_for_server(self) -> None:
        """Return once the server answers again (the circuit breaker paces the probes)."""
        try:
            await self.retried(self._ping)
        except Stopping:
            return

    async def _ping(self) -> None:
        if self._stop.is_set():
            raise Stopping
        try:
            await self._client.ping()
        except CannotConnect:
            self.reached(False)
            raise
        self.reached(True)

    def reached(self, reachable: bool) -> None:
        """Tell the listener when the server stops or starts answering again."""
        if reachable != self._reachable:
            self._reachable = reachable
            if self._on_connection is not None:
                self._on_connection(reachable)
