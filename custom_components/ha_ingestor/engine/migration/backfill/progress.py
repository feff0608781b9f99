"""What a running backfill tells the outside: saves of its state, throughput, progress
reports at a bounded rate. No Home Assistant in here.
"""

import asyncio
from collections.abc import Callable

from ...retry import Timer
from ..model import MigrationState, ThroughputWindow
from .plan import SaveState

type ProgressListener = Callable[[MigrationState], None]


class StateSaves:
    """Saves the state whenever windows were recorded, one save at a time."""

    def __init__(self, state: MigrationState, save: SaveState) -> None:
        self._state = state
        self._save = save
        self._dirty = asyncio.Event()
        self._finished = False

    def start(self) -> None:
        """A new pipeline: :meth:`run` saves until :meth:`finish`."""
        self._finished = False

    def mark(self) -> None:
        """Something was recorded: save again soon."""
        self._dirty.set()

    def finish(self) -> None:
        """Nothing more will be recorded: :meth:`run` returns after a last save."""
        self._finished = True
        self._dirty.set()

    async def run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._save(self._state)
            if self._finished and not self._dirty.is_set():
                return


class BackfillProgress:
    """Points written per second, and progress pushed at most every ``interval`` seconds
    (the report due last is sent when the interval is over)."""

    def __init__(
        self,
        state: MigrationState,
        *,
        on_progress: ProgressListener | None,
        interval: float,
        timer: Timer,
    ) -> None:
        self._state = state
        self._on_progress = on_progress
        self._interval = interval
        self._timer = timer
        self._throughput = ThroughputWindow()
        self._processed = 0
        self._last = 0.0
        self._pending: asyncio.TimerHandle | None = None

    @property
    def points_per_second(self) -> float | None:
        """Points written or dead-lettered per second over the last minute."""
        return self._throughput.points_per_second(self._timer.monotonic())

    def count(self, points: int) -> None:
        """``points`` more were written or dead-lettered."""
        self._processed += points
        self._throughput.add(self._timer.monotonic(), self._processed)
        self.schedule()

    def schedule(self) -> None:
        """Report now, or once the interval since the last report is over."""
        if self._on_progress is None or self._pending is not None:
            return
        wait = self._last + self._interval - self._timer.monotonic()
        if wait <= 0:
            self.report()
        else:
            self._pending = asyncio.get_running_loop().call_later(wait, self.report)

    def cancel(self) -> None:
        """Drop the report still due, if any."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def report(self) -> None:
        """Report at once (a report still due is sent now instead)."""
        self.cancel()
        self._last = self._timer.monotonic()
        if self._on_progress is not None:
            self._on_progress(self._state)
