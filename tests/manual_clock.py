"""A clock for the writer tests: time moves only when a test moves it."""

import asyncio
from collections.abc import Callable
import heapq
import itertools
import time

from custom_components.ha_ingestor.engine.retry import Timer


class ManualClock:
    """Monotonic time that stands still until :meth:`advance`; sleepers on it wake once it
    has passed their time, in that order. ``timer`` is what the code under test is given."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self.timer = Timer(monotonic=lambda: self.now, sleep=self.sleep)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), woken))
        await woken

    @property
    def sleeping(self) -> int:
        """How many sleeps on this clock are waiting for it."""
        return sum(1 for _, _, woken in self._sleepers if not woken.done())

    async def advance(self, seconds: float) -> None:
        """Move the time on, wake whoever's time has come, and let them run."""
        self.now += seconds
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, woken = heapq.heappop(self._sleepers)
            if not woken.done():
                woken.set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)

    async def run_until(
        self, predicate: Callable[[], bool], *, step: float, within: float = 20.0
    ) -> None:
        """Advance ``step`` at a time, with a real moment between steps for I/O to finish,
        until ``predicate`` holds (an AssertionError after ``within`` real seconds)."""
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            await self.advance(step)
            await asyncio.sleep(0.005)

    async def run_for(self, seconds: float, *, step: float) -> None:
        """Let ``seconds`` of clock time pass, ``step`` at a time, with I/O in between."""
        for _ in range(round(seconds / step)):
            await self.advance(step)
            await asyncio.sleep(0.005)
