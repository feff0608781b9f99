"""The backfill's windows in flight: what each has read and landed, and when it is recorded
in the migration state. No Home Assistant in here.
"""

from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
import logging
from typing import Final

from ...influx import SeriesBlock
from ..model import MigrationState, decide_on_error_rate
from .server_link import StopRequest

_LOGGER = logging.getLogger(__name__)

_SEVERITY: Final = {"continue": 0, "pause": 1, "rollback": 2}


@dataclass(slots=True, eq=False)
class CopyWindow:
    """One time window of one measurement on its way to the target."""

    measurement: str
    end_ns: int
    read: int = 0
    skipped: int = 0
    migrated: int = 0
    failed: int = 0
    # Batches holding some of its lines that have not landed yet.
    pending: int = 0
    # Read to its end (or abandoned after a failed read): no more lines will come.
    closed: bool = False
    # A read that failed half-way: its lines are written anyway, but a fresh read of the
    # window is what counts.
    abandoned: bool = False


# A block of a window's points, or (window, None) once the window was read to its end.
type BlockItem = tuple[CopyWindow, SeriesBlock | None]


@dataclass(slots=True)
class LineBatch:
    """Lines on their way to the target in one write."""

    lines: list[str] = field(default_factory=list)
    # (window, index of its first line): the lines of one window are contiguous.
    segments: list[tuple[CopyWindow, int]] = field(default_factory=list)

    def join(self, window: CopyWindow) -> None:
        """Make the batch's next lines count for ``window``."""
        if not self.segments or self.segments[-1][0] is not window:
            self.segments.append((window, len(self.lines)))
            window.pending += 1


class WindowQueue:
    """The windows read and not yet recorded, in the order they were read.

    A window is recorded in the state (its checkpoint moves) once it was read to its end and
    all of its lines landed, and only after the windows read before it. After every recorded
    window the error rate is judged; above a threshold the run is stopped with that decision.
    """

    def __init__(
        self, state: MigrationState, stop: StopRequest, on_recorded: Callable[[], None]
    ) -> None:
        self._state = state
        self._stop = stop
        self._on_recorded = on_recorded
        self._pending: deque[CopyWindow] = deque()
        self.decision = "continue"

    @property
    def live_counts(self) -> tuple[int, int, int]:
        """Points read, migrated and failed so far, windows not yet recorded included."""
        state = self._state
        pending = [window for window in self._pending if not window.abandoned]
        return (
            state.records_read + sum(window.read for window in pending),
            state.records_migrated + sum(window.migrated for window in pending),
            state.records_failed + sum(window.failed for window in pending),
        )

    def open(self, measurement: str, end_ns: int) -> CopyWindow:
        """A window about to be read, queued behind the ones read before it."""
        window = CopyWindow(measurement, end_ns)
        self._pending.append(window)
        return window

    def close(self, window: CopyWindow) -> None:
        """No more lines will come for ``window``."""
        window.closed = True
        self.commit()

    def land(self, batch: LineBatch, failed: list[int]) -> None:
        """Count a written batch towards its windows and record the windows now complete;
        ``failed`` are the (sorted) indexes of the lines the server refused."""
        segments = batch.segments
        total = len(batch.lines)
        for index, (window, first) in enumerate(segments):
            last = segments[index + 1][1] if index + 1 < len(segments) else total
            refused = bisect_left(failed, last) - bisect_left(failed, first)
            window.failed += refused
            window.migrated += last - first - refused
            window.pending -= 1
        self.commit()

    def commit(self) -> None:
        """Record the finished windows at the head of the queue, in the order they were read."""
        state = self._state
        pending = self._pending
        recorded = False
        while pending and pending[0].closed and pending[0].pending == 0:
            window = pending.popleft()
            if window.abandoned:
                continue
            state.record_window(
                window.measurement,
                window.end_ns,
                read=window.read,
                migrated=window.migrated,
                failed=window.failed,
                skipped=window.skipped,
            )
            recorded = True
            decision = decide_on_error_rate(state.config, state)
            if _SEVERITY[decision] > _SEVERITY[self.decision]:
                self.decision = decision
                _LOGGER.warning(
                    "Backfill error rate is too high (%s of %s points failed): %s",
                    state.records_failed,
                    state.records_migrated + state.records_failed,
                    decision,
                )
                self._stop.set()
        if recorded:
            self._on_recorded()
