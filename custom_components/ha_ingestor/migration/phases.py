"""The phase runner: one background task runs a migration's phases in the strategy's order."""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
import logging
import time
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.util import dt as dt_util

from ..const import DOMAIN
from ..engine.influx import InfluxClient
from ..engine.line_protocol import to_time_ns
from ..engine.migration.backfill import Backfill, BackfillOutcome
from ..engine.migration.discovery import DiscoveredSource, discover
from ..engine.migration.ledger import Layout, Recording
from ..engine.migration.model import MigrationState, Phase, error_rate
from ..engine.migration.removal import inventory_optimized
from ..recording import Ingestion
from .cleanup import MigrationCleanup
from .figures import MigrationFigures
from .issues import MigrationIssues
from .options import MigrationOptions
from .phase_changes import PhaseChanges
from .record import MigrationRecord
from .rollback import MigrationRollback

_LOGGER = logging.getLogger(__name__)

# How often the entities are refreshed while a backfill runs (throughput decays, ETA moves).
_REFRESH_INTERVAL = timedelta(seconds=5)


class MigrationPhases:
    """Runs the phases of one entry's migration until it completes, pauses or stops."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry,
        *,
        client: InfluxClient,
        ingestion: Ingestion,
        record: MigrationRecord,
        figures: MigrationFigures,
        issues: MigrationIssues,
        changes: PhaseChanges,
        options: MigrationOptions,
        rollback: MigrationRollback,
        backfill: type[Backfill],
        notify: Callable[[], None],
    ) -> None:
        self._hass = hass
        self._entry = entry
        self._client = client
        self._ingestion = ingestion
        self._record = record
        self._figures = figures
        self._issues = issues
        self._changes = changes
        self._options = options
        self._rollback = rollback
        self._backfill_type = backfill
        self._notify = notify
        self.cleanup = MigrationCleanup(
            hass,
            client=client,
            record=record,
            issues=issues,
            changes=changes,
            options=options,
            validate=self.async_validate_now,
            notify=notify,
        )
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        # What preparation discovered; after a restart the backfill discovers it again.
        self._source: DiscoveredSource | None = None

    @property
    def task_running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = self._entry.async_create_background_task(
            self._hass, self._async_run(), f"{DOMAIN} migration {self._entry.entry_id}"
        )

    async def async_cancel(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _async_run(self) -> None:
        steps: dict[Phase, Callable[[], Awaitable[None]]] = {
            Phase.PREPARATION: self._async_prepare,
            Phase.DUAL_WRITE: self._changes.async_next,
            Phase.BACKFILL: self._async_backfill,
            Phase.VALIDATION: self._async_validation,
            Phase.SWITCHOVER: self._changes.async_next,
            Phase.CLEANUP: self.cleanup.async_run,
        }
        record = self._record
        try:
            while record.state is not None and record.state.is_running:
                phase = record.state.phase
                await steps[phase]()
                if record.state is not None and record.state.phase is phase:
                    # A step that neither advanced nor stopped would spin; treat it as done.
                    break
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self.last_error = str(err)
            _LOGGER.exception("Migration step failed")
            if record.state is not None and record.state.is_running:
                await self._changes.async_transition(Phase.FAILED, f"{type(err).__name__}: {err}")
                self._issues.raise_issue(
                    "migration_failed",
                    ir.IssueSeverity.ERROR,
                    error=f"{type(err).__name__}: {err}",
                )

    async def _async_prepare(self) -> None:
        state = self._record.require_state()
        ledger = self._record.ledger()
        await self._client.ping()
        await self._client.validate()
        target = ledger.target_database
        if not await self._client.database_exists(target):
            # Recorded before it is created: only a database this migration made may be
            # dropped by its rollback, and one it made must not be left behind.
            ledger.created_target = True
            await self._record.async_save()
            await self._client.create_database(target)
        # What the target already holds stays out of a rollback's reach: let the live writers
        # deliver what they hold for it first, then count it.
        now_ns = to_time_ns(dt_util.utcnow())
        await self._ingestion.async_flushed(Recording(Layout.OPTIMIZED, target), now_ns)
        ledger.preexisting = await inventory_optimized(self._client, target, before_ns=now_ns)
        ledger.inventoried_ns = now_ns
        summary = await discover(self._client, self._client.database, state.config)
        self._source = summary
        state.estimated_total_points = sum(series.point_count for series in summary.series)
        await self._record.async_save()
        await self._record.audit(
            {
                "event": "discovered",
                "measurements": sorted({s.measurement for s in summary.series}),
                "entities": len({s.entity_id for s in summary.series}),
                "estimated_points": state.estimated_total_points,
                "target_created": ledger.created_target,
                "target_entities_before": len(ledger.preexisting),
            }
        )
        await self._changes.async_next("source discovered, target ready")

    async def _async_backfill(self) -> None:
        state = self._record.require_state()
        ledger = self._record.ledger()
        source = self._source
        legacy = Recording(Layout.LEGACY, ledger.source_database)
        if (
            not state.checkpoints
            and state.cutover_ns is not None
            and self._ingestion.holds_before(legacy, state.cutover_ns)
        ):
            # Plan only once the legacy writers delivered what they held from before the
            # cutover (a spool from an outage, say): those points are the backfill's, and
            # what preparation discovered does not know them.
            await self._ingestion.async_flushed(legacy, state.cutover_ns)
            source = None
        backfill = self._backfill_type(
            self._client,
            state,
            transform=self._options.transform(),
            source_database=ledger.source_database,
            target_database=ledger.target_database,
            save=self._record.async_save_state,
            on_progress=self._progress,
            on_connection=self._reaches_server,
            dead_letter_path=self._record.dead_letter_path,
            source=source,
            rollups=self._options.rollups_enabled,
        )
        self._figures.backfill = backfill
        self._figures.restart_throughput()
        started = time.monotonic()
        copied_before = state.records_migrated
        # Throughput and ETA are computed when shown: refresh them while nothing else pushes.
        refresh = async_track_time_interval(self._hass, self._refresh, _REFRESH_INTERVAL)
        try:
            outcome = await backfill.run()
        finally:
            refresh()
            self._figures.backfill = None
            elapsed = time.monotonic() - started
            if (copied := state.records_migrated - copied_before) > 0 and elapsed > 1:
                self._record.measured_rate = copied / elapsed
            # Only a running backfill has something to say about the server.
            self._reaches_server(True)
            self._notify()
        if outcome is BackfillOutcome.STOPPED:
            return
        if outcome is BackfillOutcome.PAUSE:
            await self._issues.async_auto_pause()
        elif outcome is BackfillOutcome.ROLLBACK:
            await self._rollback.async_rollback(
                f"error rate {error_rate(state):.2%} is above the rollback threshold "
                f"{state.config.rollback_threshold:.2%}",
                keep_target=state.config.keep_target_on_rollback,
                automatic=True,
            )
        else:
            await self._changes.async_next("backfill finished")

    async def _async_validation(self) -> None:
        state = self._record.require_state()
        await self.async_validate_now()
        result = state.validation
        assert result is not None
        if result.integrity_score < 1.0 - state.config.max_error_rate:
            await self._issues.async_auto_pause(
                f"validation integrity {result.integrity_score:.2%} is too low"
            )
            return
        await self._changes.async_next("validation passed")

    async def async_validate_now(self) -> dict[str, Any]:
        """Validate, keep the result, and note in the ledger which entities were proven."""
        state = self._record.require_state()
        ledger = self._record.ledger()
        validator = self._options.validator(state, ledger)
        result = await validator.run()
        state.validation = result
        span = validator.migrated_range()
        ledger.verified = {
            entity: span
            for entity in validator.compared_entities
            if entity not in result.mismatches and entity not in ledger.dead_lettered
        }
        await self._record.audit(
            {"event": "validated", "proven_entities": len(ledger.verified), **result.as_dict()}
        )
        return result.as_dict()

    @callback
    def _progress(self, _state: MigrationState) -> None:
        self._figures.count_progress()
        self._notify()

    @callback
    def _reaches_server(self, reachable: bool) -> None:
        if reachable != self._figures.server_reachable:
            self._figures.server_reachable = reachable
            self._notify()

    @callback
    def _refresh(self, _now: datetime) -> None:
        self._notify()
