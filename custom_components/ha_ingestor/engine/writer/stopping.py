"""How a writer is told to stop, and how its waits learn of it."""

import asyncio

from ..retry import Timer


class StopRequest:
    """Whether the writer is on its way out: stopping (``requested``; ``flush``: sending what
    it holds first) or retiring (taking nothing new, stopping by itself once empty)."""

    def __init__(self, timer: Timer) -> None:
        self.requested = False
        self.flush = True
        self.retiring = False
        self._timer = timer
        self._event = asyncio.Event()

    def set(self, *, flush: bool) -> None:
        self.flush = flush
        self.requested = True
        self._event.set()

    async def pause(self, delay: float) -> None:
        """Sleep on the timer; a stop request cuts it short."""
        await self._timer.pause(delay, self._event)
