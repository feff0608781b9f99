"""Runs a migration inside Home Assistant: phases, persistence, audit, events, repair issues.

The work itself lives in the hass-free ``engine.migration`` (``discovery``, ``backfill``,
``validation``, ``removal``); the rules (phases, thresholds, arithmetic) in its ``model``, and
what every destructive step may touch in its ``ledger``. This package's facade and
its parts (``record``, ``figures``, ``phase_changes``, ``phases``, ``cleanup``, ``rollback``,
``issues``, ``options``, ``actions``) drive them, keep the state in HA's ``Store`` so a
restart resumes where it stopped, and tell users what happens through entities, bus events
and repair issues.

What is recorded live follows the phase. From the cutover until the cleanup has finished, both
layouts are recorded (on top of what the options ask for), so a rollback at any point before
the cleanup loses nothing: the legacy layout holds every state change. Only a completed
migration stops recording the legacy layout.
"""

from collections.abc import Callable, Mapping
from datetime import datetime
import logging
from pathlib import Path
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, ServiceResponse, callback

from ..engine.influx import InfluxClient
from ..engine.migration.backfill import Backfill
from ..engine.migration.ledger import Recording
from ..engine.migration.model import MigrationConfig, MigrationState, Phase
from ..engine.migration.validation import Validator
from ..options import EntryOptions
from ..recording import Ingestion
from .actions import MigrationActions
from .figures import MigrationFigures
from .issues import MigrationIssues
from .options import MigrationOptions
from .phase_changes import EVENT_MIGRATION, PhaseChanges
from .phases import MigrationPhases
from .record import AUDIT_FILE, STORE_VERSION, MigrationRecord
from .rollback import MigrationRollback

_LOGGER = logging.getLogger(__name__)

__all__ = [
    "AUDIT_FILE",
    "EVENT_MIGRATION",
    "STORE_VERSION",
    "Backfill",
    "MigrationController",
    "Validator",
]

# A rollback's removal that failed is retried in the background, this often at most.
_REMOVAL_RETRY_SECONDS = 60.0


class MigrationController:
    """One config entry's migration: at most one at a time, resumable across restarts.

    What the rest of the integration talks to; the work is in its parts: the saved record,
    the figures, the phase changes, the phase runner with its cleanup, the rollback, the
    repair issues, the entry's options and the service actions.
    """

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry,
        *,
        client: InfluxClient,
        options: EntryOptions,
        ingestion: Ingestion,
        storage_dir: Path,
        on_change: Callable[[], None],
    ) -> None:
        """``on_change`` is called (on the loop) whenever a figure the entities show changes."""
        self.hass = hass
        self._ingestion = ingestion
        self._on_change = on_change
        source = client.database
        record = self._record = MigrationRecord(
            hass, entry, storage_dir=storage_dir, source_database=source
        )
        figures = self._figures = MigrationFigures(record)
        changes = self._changes = PhaseChanges(
            hass, entry.entry_id, record=record, ingestion=ingestion, notify=self._notify
        )
        issues = MigrationIssues(
            hass, entry.entry_id, record=record, changes=changes, source_database=source
        )
        settings = self._options = MigrationOptions(
            hass, entry, options, client=client, validator=Validator
        )
        rollback = self._rollback = MigrationRollback(
            hass,
            entry,
            client=client,
            ingestion=ingestion,
            record=record,
            figures=figures,
            issues=issues,
            changes=changes,
            retry_seconds=_REMOVAL_RETRY_SECONDS,
        )
        phases = self._phases = MigrationPhases(
            hass,
            entry,
            client=client,
            ingestion=ingestion,
            record=record,
            figures=figures,
            issues=issues,
            changes=changes,
            options=settings,
            rollback=rollback,
            backfill=Backfill,
            notify=self._notify,
        )
        self._actions = MigrationActions(
            client=client,
            ingestion=ingestion,
            record=record,
            figures=figures,
            issues=issues,
            changes=changes,
            options=settings,
            phases=phases,
            rollback=rollback,
            notify=self._notify,
        )

    @property
    def state(self) -> MigrationState | None:
        """The migration's state (the last one, once it has ended)."""
        return self._record.state

    @property
    def target_database(self) -> str | None:
        """The database the migration writes the optimized layout to."""
        return self._record.target_database

    # What the entities show.

    @property
    def phase(self) -> Phase:
        """Current phase (idle before the first migration)."""
        return self.state.phase if self.state else Phase.IDLE

    @property
    def running(self) -> bool:
        """Whether migration work is under way right now."""
        return self.state is not None and self.state.is_running

    @property
    def progress(self) -> float:
        """Percent of the backfill's points copied (0 without a migration)."""
        return self._figures.progress

    @property
    def records_migrated(self) -> int:
        """Points written to the optimized layout by the backfill."""
        return self._figures.records_migrated

    @property
    def records_failed(self) -> int:
        """Points the server refused (they are in the dead-letter file)."""
        return self._figures.records_failed

    @property
    def error_rate_percent(self) -> float:
        """Failed share of processed points, in percent."""
        return self._figures.error_rate_percent

    @property
    def records_total(self) -> int | None:
        """The points the backfill copies, counted before it started (None: not yet)."""
        return self._figures.records_total

    @property
    def integrity_percent(self) -> float | None:
        """Share of compared points that match exactly, after a validation."""
        return self._figures.integrity_percent

    @property
    def throughput(self) -> float | None:
        """Backfill points per second over the last minute; unknown when none runs."""
        return self._figures.throughput

    @property
    def eta(self) -> datetime | None:
        """When the backfill should finish at the current throughput (never in the past)."""
        return self._figures.eta

    @property
    def cleanup_due(self) -> datetime | None:
        """When the cleanup runs, while the migration waits for it."""
        return self._figures.cleanup_due

    @property
    def query_time_improvement(self) -> float | None:
        """Measured speed-up of the dashboard queries, in percent of the legacy time."""
        return self._figures.query_time_improvement

    @property
    def server_reachable(self) -> bool:
        """False while a running backfill cannot reach InfluxDB (it waits for it)."""
        return self._figures.server_reachable

    @property
    def wanted_recordings(self) -> frozenset[Recording]:
        """What the live writers must record in the current phase."""
        return self._changes.recordings_for(self.state)

    def owns_options(self, options: Mapping[str, Any]) -> bool:
        """Whether ``options`` are the ones this migration just wrote (once per write)."""
        return self._options.owns(options)

    def use_options(self, options: EntryOptions) -> None:
        """Take options changed without a reload (the ones a completed migration wrote)."""
        self._options.use(options)

    def default_config(self) -> MigrationConfig:
        """The migration options of the entry, before per-call overrides."""
        return self._options.default_config()

    def diagnostics(self) -> dict[str, Any]:
        """Migration part of the diagnostics dump."""
        due = self._record.cleanup_due
        return {
            "state": self.state.to_dict() if self.state else None,
            "target_database": self.target_database,
            "cleanup_due": due.isoformat() if due else None,
            "task_running": self._phases.task_running,
            "throughput": self.throughput,
            "last_error": self._phases.last_error,
        }

    # Lifecycle.

    async def async_load(self) -> None:
        """Restore the last migration from storage; a record that does not parse is set aside."""
        await self._record.async_load(self._ingestion.configured_recordings)

    @callback
    def async_resume_after_restart(self) -> None:
        """Continue a migration that was running when Home Assistant stopped."""
        state = self.state
        if state is None:
            return
        if state.is_running:
            _LOGGER.info("Resuming migration %s in phase %s", state.migration_id, state.phase)
            self._phases.start()
        elif state.ledger is not None and state.ledger.removal_pending:
            self._rollback.start_removal()

    async def async_shutdown(self) -> None:
        """Stop the task and the timers; the state saved at the last checkpoint is where it
        resumes (and the cleanup waits for the saved due time)."""
        await self._phases.async_cancel()
        await self._rollback.async_stop()
        await self._record.async_save()

    async def async_apply_layouts(self) -> None:
        """Record the layouts the current phase needs."""
        await self._changes.async_apply_layouts()

    # Service actions.

    async def async_start(self, config: MigrationConfig) -> ServiceResponse:
        """Start a migration, or return its plan for a dry run."""
        return await self._actions.async_start(config)

    async def async_pause(self) -> ServiceResponse:
        """Pause at once; the current window is redone on resume (idempotent)."""
        return await self._actions.async_pause()

    async def async_resume(self) -> ServiceResponse:
        """Continue a paused migration from its last checkpoint."""
        return await self._actions.async_resume()

    async def async_rollback(self, *, reason: str, keep_target: bool) -> ServiceResponse:
        """Undo the migration: recording goes back to what it was, migrated data is removed.

        A rollback already recorded whose removal is unfinished is finished instead. Refused
        once the cleanup has deleted legacy history: the optimized layout is then the only
        copy of it.
        """
        return await self._actions.async_rollback(reason=reason, keep_target=keep_target)

    async def async_validate(self) -> ServiceResponse:
        """Compare both layouts now and store the result (only once the backfill is done)."""
        return await self._actions.async_validate()

    async def async_run_cleanup_now(
        self, *, delete_legacy_data: bool | None = None, strict: bool = False
    ) -> ServiceResponse:
        """End the cleanup wait now, deleting legacy history as asked (or as configured).

        Outside the cleanup this does nothing, or raises a translated error when ``strict``.
        """
        return await self._phases.cleanup.async_run_now(
            delete_legacy_data=delete_legacy_data, strict=strict
        )

    @callback
    def _notify(self) -> None:
        """Tell the entities that a figure or the phase changed: the one place that does."""
        self._on_change()
