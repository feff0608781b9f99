"""The figures of a migration the entities show: progress, counters, throughput, ETA, integrity."""

from collections.abc import Callable
from datetime import datetime
import time

from homeassistant.util import dt as dt_util

from ..engine.migration.backfill import Backfill
from ..engine.migration.model import MigrationState, Phase, ThroughputWindow, eta, progress_percent
from .record import MigrationRecord


class MigrationFigures:
    """What the entities show of the migration. A rolled-back run's figures describe data
    that is gone, so after a rollback they read as before any migration."""

    def __init__(
        self, record: MigrationRecord, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._record = record
        self._monotonic = monotonic
        # The backfill running now: its counters move with every batch, the state's with
        # every recorded window.
        self.backfill: Backfill | None = None
        self._throughput = ThroughputWindow()
        # False while a running backfill cannot reach InfluxDB (it waits for it).
        self.server_reachable = True

    def restart_throughput(self) -> None:
        """Forget the throughput samples (a new backfill, a rollback)."""
        self._throughput = ThroughputWindow()

    def count_progress(self) -> None:
        """Take a throughput sample of the running backfill."""
        _, migrated, failed = self._counts()
        self._throughput.add(self._monotonic(), migrated + failed)

    @property
    def _run(self) -> MigrationState | None:
        state = self._record.state
        return None if state is None or state.phase is Phase.ROLLED_BACK else state

    def _counts(self) -> tuple[int, int, int]:
        """Points read, migrated and failed: the running backfill's live figures, if any."""
        run = self._run
        if run is None:
            return 0, 0, 0
        if self.backfill is not None and self.backfill.state is run:
            return self.backfill.live_counts
        return run.records_read, run.records_migrated, run.records_failed

    @property
    def progress(self) -> float:
        run = self._run
        return round(progress_percent(run, self._counts()[0]), 2) if run else 0.0

    @property
    def records_migrated(self) -> int:
        return self._counts()[1]

    @property
    def records_failed(self) -> int:
        return self._counts()[2]

    @property
    def error_rate_percent(self) -> float:
        _, migrated, failed = self._counts()
        processed = migrated + failed
        return round(failed / processed * 100, 4) if processed else 0.0

    @property
    def records_total(self) -> int | None:
        return self._run.estimated_total_points if self._run else None

    @property
    def integrity_percent(self) -> float | None:
        run = self._run
        if run is None or run.validation is None:
            return None
        return round(run.validation.integrity_score * 100, 4)

    @property
    def _points_per_second(self) -> float | None:
        if self.backfill is None:
            return None
        return self._throughput.points_per_second(self._monotonic())

    @property
    def throughput(self) -> float | None:
        rate = self._points_per_second
        return None if rate is None else round(rate, 1)

    @property
    def eta(self) -> datetime | None:
        if self._run is None:
            return None
        return eta(self._run, self._points_per_second, dt_util.utcnow(), self._counts()[0])

    @property
    def cleanup_due(self) -> datetime | None:
        state = self._run
        if state is None or state.recording_phase is not Phase.CLEANUP:
            return None
        return self._record.cleanup_due

    @property
    def query_time_improvement(self) -> float | None:
        run = self._run
        if run is None or run.validation is None:
            return None
        improvement = run.validation.query_time_improvement_percent
        return round(improvement, 2) if improvement is not None else None
