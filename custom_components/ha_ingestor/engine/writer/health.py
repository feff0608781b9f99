"""What a writer reports: its counters, its connection and spool state, and their notification."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
import logging

from ..retry import Timer
from ..spool import DeadLetterFile, Spool, SpoolError

_LOGGER = logging.getLogger(__name__)

type StatsListener = Callable[[WriterStats], None]

# How long to leave the spool alone after it failed, before trying it again.
SPOOL_RETRY_SECONDS = 10.0


class ServerProblem(StrEnum):
    """Why the writer cannot deliver right now; the integration maps these to repair flows."""

    CANNOT_CONNECT = "cannot_connect"
    INVALID_AUTH = "invalid_auth"
    DATABASE_NOT_FOUND = "database_not_found"


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterStats:
    """What the writer has done and what state it is in.

    ``queue_depth`` counts points held in memory (queued, being sent, or waiting because the
    spool can't take them). ``connected`` is False from the first failed write until the next
    successful one, and ``problem`` then says why. ``spool_error`` is set while the spool can't
    be written (points then stay in memory up to the writer's hard cap). ``last_error`` is the
    most recent error of any kind, kept after recovery. ``dead_letter_count`` is the number of
    records in the dead-letter file, which writers may share.
    """

    queue_depth: int = 0
    spooled_points: int = 0
    dead_letter_count: int = 0
    points_written: int = 0
    points_dropped: int = 0
    connected: bool = True
    problem: ServerProblem | None = None
    spool_error: str | None = None
    last_error: str | None = None
    # Points of spool segments whose body did not match their name, moved aside unreplayed.
    damaged_points: int = 0


class WriterHealth:
    """The counters and states a writer's :class:`WriterStats` show, and who hears of them.

    ``on_change`` gets the new stats when they changed, at most every ``stats_interval``
    seconds of the timer, and at once on an ``urgent`` change (connection, spool, dropping).
    """

    def __init__(
        self,
        spool: Spool,
        dead_letters: DeadLetterFile,
        memory_points: Callable[[], int],
        *,
        database: str,
        reachable: bool,
        timer: Timer,
        stats_interval: float,
        on_change: StatsListener | None,
    ) -> None:
        self._spool = spool
        self._dead_letters = dead_letters
        self._memory_points = memory_points
        self._database = database
        self._timer = timer
        self._stats_interval = stats_interval
        self._on_change = on_change
        self.points_written = 0
        self.points_dropped = 0
        self.damaged_points = 0
        self.connected = reachable
        self.problem: ServerProblem | None = None if reachable else ServerProblem.CANNOT_CONNECT
        self.spool_error: str | None = None
        self.last_error: str | None = None
        self._spool_retry_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending_notice: asyncio.Task[None] | None = None
        self._last_notified: WriterStats | None = None

    @property
    def stats(self) -> WriterStats:
        return WriterStats(
            queue_depth=self._memory_points(),
            spooled_points=self._spool.points,
            dead_letter_count=self._dead_letters.count,
            points_written=self.points_written,
            points_dropped=self.points_dropped,
            connected=self.connected,
            problem=self.problem,
            spool_error=self.spool_error,
            last_error=self.last_error,
            damaged_points=self.damaged_points,
        )

    def server_failed(self, problem: ServerProblem, err: Exception) -> None:
        self.last_error = f"{problem}: {err}"
        if self.connected or self.problem is not problem:
            # Debug only: the integration logs an outage once per config entry, however many
            # writers it has (quality scale: log-when-unavailable).
            _LOGGER.debug(
                "InfluxDB database %s is unavailable (%s: %s); buffering points until it is back",
                self._database,
                problem,
                err,
            )
            self.connected = False
            self.problem = problem
            self.changed(urgent=True)

    def server_ok(self) -> None:
        if not self.connected:
            self.connected = True
            self.problem = None
            _LOGGER.debug(
                "InfluxDB database %s is available again; replaying %d spooled points",
                self._database,
                self._spool.points,
            )
            self.changed(urgent=True)

    def spool_failed(self, err: SpoolError) -> None:
        self._spool_retry_at = self._timer.monotonic() + SPOOL_RETRY_SECONDS
        message = str(err)
        self.last_error = message
        if self.spool_error is None:
            _LOGGER.warning("%s; keeping points in memory until it works again", message)
        self.spool_error = message
        self.changed(urgent=True)

    def spool_ok(self) -> None:
        if self.spool_error is not None:
            _LOGGER.info("Spool %s works again", self._spool.directory)
            self.spool_error = None
            self.changed(urgent=True)

    def spool_retry_at(self) -> float | None:
        """When to try the failed spool again; None while it works."""
        return None if self.spool_error is None else self._spool_retry_at

    def spool_worth_trying(self) -> bool:
        return self.spool_error is None or self._timer.monotonic() >= self._spool_retry_at

    def encoding_failed(self, failures: list[tuple[str, Exception]]) -> None:
        """Count and log the items that could not become lines (their repr, and why)."""
        for item, err in failures:
            self.points_dropped += 1
            self.last_error = f"cannot encode {item}: {err}"
            # A value line protocol has no encoding for is expected; anything else is a bug.
            expected = isinstance(err, (AttributeError, TypeError, ValueError))
            _LOGGER.error(
                "Dropping a point that cannot be encoded (%s): %s",
                err,
                item,
                exc_info=None if expected else err,
            )

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start notifying (changes before the writer runs are not announced)."""
        self._loop = loop

    def close(self) -> None:
        """Announce the final stats now; nothing is left pending."""
        self.notify()

    def changed(self, *, urgent: bool = False) -> None:
        if self._on_change is None or self._loop is None:
            return
        if urgent:
            self.notify()
        elif self._pending_notice is None:
            self._pending_notice = self._loop.create_task(self._notify_later())

    async def _notify_later(self) -> None:
        await self._timer.sleep(self._stats_interval)
        self._pending_notice = None
        self.notify()

    def notify(self) -> None:
        if self._pending_notice is not None:
            self._pending_notice.cancel()
            self._pending_notice = None
        if self._on_change is None:
            return
        stats = self.stats
        if stats == self._last_notified:
            return
        self._last_notified = stats
        try:
            self._on_change(stats)
        except Exception:
            _LOGGER.exception("Error in the writer's stats listener")
