"""Runs a migration inside Home Assistant: phases, persistence, audit, events, repair issues.

The work itself (discovery, backfill, validation, rollback, cleanup) lives in the hass-free
``migration_engine``; the rules (phases, thresholds, arithmetic) in ``migration_model``.
This module drives them, keeps the state in HA's ``Store`` so a restart resumes where it
stopped, and tells users what happens through entities, bus events and repair issues.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
import logging
from pathlib import Path
import time
from typing import Any

import aiofiles
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, ServiceResponse, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.json import json_dumps
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util, ulid as ulid_util

from . import migration_engine as engine
from .const import CONF_TARGET_DATABASE, DOMAIN, SECTION_MIGRATION
from .influx import CannotConnect, InfluxClient, InfluxError
from .ingest import Ingestion, area_lookup, legacy_options, optimized_options
from .migration_model import (
    ConfigError,
    MigrationConfig,
    MigrationState,
    Phase,
    Strategy,
    ThroughputWindow,
    can_start_migration,
    error_rate,
    eta,
    plan,
    progress_percent,
    start_migration,
    transition,
)
from .optimized_layout import LegacyTransform

_LOGGER = logging.getLogger(__name__)

STORE_VERSION = 1
EVENT_MIGRATION = f"{DOMAIN}_migration_event"
AUDIT_FILE = "audit.jsonl"

# Phases after the cutover and before the switchover: both layouts are written.
_DUAL_WRITE_PHASES = frozenset({Phase.DUAL_WRITE, Phase.BACKFILL, Phase.VALIDATION})
# After the switchover the optimized layout is the only one written.
_SWITCHED_PHASES = frozenset({Phase.SWITCHOVER, Phase.CLEANUP, Phase.COMPLETE})


class MigrationController:
    """One config entry's migration: at most one at a time, resumable across restarts."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry,
        *,
        client: InfluxClient,
        ingestion: Ingestion,
        storage_dir: Path,
        signal: str,
    ) -> None:
        self.hass = hass
        self._entry = entry
        self._client = client
        self._ingestion = ingestion
        self._storage_dir = storage_dir
        self._signal = signal
        self._store: Store[dict[str, Any]] = Store(
            hass, STORE_VERSION, f"{DOMAIN}.{entry.entry_id}.migration"
        )
        self.state: MigrationState | None = None
        self.target_database: str | None = None
        self._cleanup_due: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self._throughput = ThroughputWindow()
        self._points_per_second: float | None = None
        self._last_error: str | None = None
        # False while a running backfill cannot reach InfluxDB (it waits for it).
        self.server_reachable = True
        # What preparation discovered; after a restart the backfill discovers it again.
        self._source: engine.DiscoveredSource | None = None

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
    def progress(self) -> float | None:
        """Percent done, or None before any migration."""
        return round(progress_percent(self.state), 2) if self.state else None

    @property
    def records_migrated(self) -> int | None:
        """Points written to the optimized layout by the backfill."""
        return self.state.records_migrated if self.state else None

    @property
    def records_failed(self) -> int | None:
        """Points the server refused (they are in the dead-letter file)."""
        return self.state.records_failed if self.state else None

    @property
    def error_rate_percent(self) -> float | None:
        """Failed share of processed points, in percent."""
        return round(error_rate(self.state) * 100, 4) if self.state else None

    @property
    def integrity_percent(self) -> float | None:
        """Share of compared points that match exactly, after validation."""
        if self.state is None or self.state.validation is None:
            return None
        return round(self.state.validation.integrity_score * 100, 4)

    @property
    def throughput(self) -> float | None:
        """Backfill points per second over the last minute."""
        return round(self._points_per_second, 1) if self._points_per_second is not None else None

    @property
    def eta(self) -> datetime | None:
        """When the backfill should finish at the current throughput."""
        if self.state is None:
            return None
        return eta(self.state, self._points_per_second, dt_util.utcnow())

    @property
    def query_time_improvement(self) -> float | None:
        """Measured speed-up of the dashboard queries, in percent of the legacy time."""
        if self.state is None or self.state.validation is None:
            return None
        improvement = self.state.validation.query_time_improvement_percent
        return round(improvement, 2) if improvement is not None else None

    def default_config(self) -> MigrationConfig:
        """The migration options of the entry, before per-call overrides."""
        return MigrationConfig.from_options(self._entry.options.get(SECTION_MIGRATION, {}))

    def diagnostics(self) -> dict[str, Any]:
        """Migration part of the diagnostics dump."""
        return {
            "state": self.state.to_dict() if self.state else None,
            "target_database": self.target_database,
            "cleanup_due": self._cleanup_due.isoformat() if self._cleanup_due else None,
            "task_running": self._task is not None and not self._task.done(),
            "throughput": self.throughput,
            "last_error": self._last_error,
        }

    # Lifecycle.

    async def async_load(self) -> None:
        """Restore the last migration from storage."""
        data = await self._store.async_load()
        if not data or "state" not in data:
            return
        try:
            self.state = MigrationState.from_dict(data["state"])
        except (ConfigError, KeyError, ValueError, TypeError) as err:
            _LOGGER.error("Stored migration state is unreadable and was ignored: %s", err)
            return
        self.target_database = data.get("target_database")
        due = data.get("cleanup_due")
        self._cleanup_due = dt_util.parse_datetime(due) if due else None

    @callback
    def async_resume_after_restart(self) -> None:
        """Continue a migration that was running when Home Assistant stopped."""
        if self.state is not None and self.state.is_running:
            _LOGGER.info(
                "Resuming migration %s in phase %s", self.state.migration_id, self.state.phase
            )
            self._start_task()

    async def async_shutdown(self) -> None:
        """Stop the task; the state saved at the last checkpoint is where it resumes."""
        await self._cancel_task()
        if self.state is not None:
            await self._async_save()

    async def async_apply_layouts(self) -> None:
        """Write the layouts the current phase needs (both during dual-write, …)."""
        state = self.state
        phase = self.phase
        if state is not None and phase is Phase.PAUSED and state.phase_before_pause:
            phase = state.phase_before_pause
        if phase in _DUAL_WRITE_PHASES:
            await self._ingestion.async_set_layouts(
                legacy=True, optimized=True, optimized_database=self.target_database
            )
        elif phase in _SWITCHED_PHASES:
            await self._ingestion.async_set_layouts(
                legacy=False, optimized=True, optimized_database=self.target_database
            )
        else:
            await self._ingestion.async_set_layouts(
                legacy=self._ingestion.mode.value in ("legacy", "both"),
                optimized=self._ingestion.mode.value in ("optimized", "both"),
            )

    # Service actions.

    async def async_start(self, config: MigrationConfig) -> ServiceResponse:
        """Start a migration, or return its plan for a dry run."""
        if self.state is not None and not can_start_migration(self.state):
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="migration_already_running",
                translation_placeholders={"phase": self.state.phase.value},
            )
        if config.dry_run:
            summary = await self._guard(
                engine.discover(self._client, self._client.database, config)
            )
            return {
                "dry_run": True,
                "target_database": self._target_for(config.strategy),
                **plan(config, summary, points_per_second=self._points_per_second).as_dict(),
            }
        now = dt_util.utcnow()
        self.state = start_migration(config, migration_id=ulid_util.ulid_now(), now=now)
        self.target_database = self._target_for(config.strategy)
        self._cleanup_due = None
        self._points_per_second = None
        self._throughput = ThroughputWindow()
        for issue in ("migration_paused", "migration_rolled_back"):
            ir.async_delete_issue(self.hass, DOMAIN, f"{issue}_{self._entry.entry_id}")
        await self._async_record("started", Phase.IDLE, Phase.PREPARATION, "started")
        self._start_task()
        return {
            "migration_id": self.state.migration_id,
            "strategy": config.strategy.value,
            "phase": self.state.phase.value,
            "target_database": self.target_database,
        }

    async def async_pause(self) -> ServiceResponse:
        """Pause at once; the current window is redone on resume (idempotent)."""
        state = self._require_state()
        if not state.is_running:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="migration_not_running",
                translation_placeholders={"phase": state.phase.value},
            )
        await self._cancel_task()
        await self._async_transition(Phase.PAUSED, "paused by the user")
        return {"phase": self.phase.value}

    async def async_resume(self) -> ServiceResponse:
        """Continue a paused migration from its last checkpoint."""
        state = self._require_state()
        if state.phase is not Phase.PAUSED or state.phase_before_pause is None:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="migration_not_paused",
                translation_placeholders={"phase": state.phase.value},
            )
        ir.async_delete_issue(self.hass, DOMAIN, f"migration_paused_{self._entry.entry_id}")
        await self._async_transition(state.phase_before_pause, "resumed by the user")
        self._start_task()
        return {"phase": self.phase.value}

    async def async_rollback(self, *, reason: str, keep_target: bool) -> ServiceResponse:
        """Undo the migration: legacy writes continue, migrated data is removed (unless kept)."""
        state = self._require_state()
        if not (state.is_active or state.phase is Phase.FAILED):
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="migration_not_rollbackable",
                translation_placeholders={"phase": state.phase.value},
            )
        await self._cancel_task()
        removed = await self._async_rollback(reason, keep_target=keep_target, automatic=False)
        return {"phase": self.phase.value, "removed": removed, "reason": reason}

    async def async_validate(self) -> ServiceResponse:
        """Compare both layouts now and store the result."""
        state = self._require_state()
        result = await self._guard(self._validator().run())
        state.validation = result
        await self._async_save()
        await self._audit({"event": "validated", **result.as_dict()})
        self._notify()
        return result.as_dict()

    # The run loop.

    def _start_task(self) -> None:
        self._task = self._entry.async_create_background_task(
            self.hass, self._async_run(), f"{DOMAIN} migration {self._entry.entry_id}"
        )

    async def _cancel_task(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _async_run(self) -> None:
        steps: dict[Phase, Callable[[], Awaitable[None]]] = {
            Phase.PREPARATION: self._async_prepare,
            Phase.DUAL_WRITE: self._async_next,
            Phase.BACKFILL: self._async_backfill,
            Phase.VALIDATION: self._async_validation,
            Phase.SWITCHOVER: self._async_next,
            Phase.CLEANUP: self._async_cleanup,
        }
        try:
            while self.state is not None and self.state.is_running:
                phase = self.state.phase
                await steps[phase]()
                if self.state is not None and self.state.phase is phase:
                    # A step that neither advanced nor stopped would spin; treat it as done.
                    break
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self._last_error = str(err)
            _LOGGER.exception("Migration step failed")
            if self.state is not None and self.state.is_running:
                await self._async_transition(Phase.FAILED, f"{type(err).__name__}: {err}")

    async def _async_next(self, reason: str = "phase finished") -> None:
        state = self._require_state()
        phases = state.strategy.phases
        await self._async_transition(phases[phases.index(state.phase) + 1], reason)

    async def _async_prepare(self) -> None:
        state = self._require_state()
        await self._client.ping()
        await self._client.validate()
        target = self.target_database or self._client.database
        if not await self._client.database_exists(target):
            await self._client.create_database(target)
        summary = await engine.discover(self._client, self._client.database, state.config)
        self._source = summary
        state.estimated_total_points = sum(series.point_count for series in summary.series)
        await self._audit(
            {
                "event": "discovered",
                "measurements": sorted({s.measurement for s in summary.series}),
                "entities": len({s.entity_id for s in summary.series}),
                "estimated_points": state.estimated_total_points,
            }
        )
        await self._async_next("source discovered, target ready")

    async def _async_backfill(self) -> None:
        state = self._require_state()
        backfill = engine.Backfill(
            self._client,
            state,
            transform=self._transform(),
            source_database=self._client.database,
            target_database=self.target_database or self._client.database,
            save=self._async_save_state,
            on_progress=self._progress,
            on_connection=self._backfill_reaches_server,
            dead_letter_path=self._storage_dir / "migration_dead_letter.jsonl",
            source=self._source,
        )
        try:
            outcome = await backfill.run()
        finally:
            # Only a running backfill has something to say about the server.
            self._backfill_reaches_server(True)
        if outcome is engine.BackfillOutcome.STOPPED:
            return
        if outcome is engine.BackfillOutcome.PAUSE:
            await self._async_auto_pause()
        elif outcome is engine.BackfillOutcome.ROLLBACK:
            await self._async_rollback(
                f"error rate {error_rate(state):.2%} is above the rollback threshold "
                f"{state.config.rollback_threshold:.2%}",
                keep_target=state.config.keep_target_on_rollback,
                automatic=True,
            )
        else:
            await self._async_next("backfill finished")

    async def _async_validation(self) -> None:
        state = self._require_state()
        result = await self._validator().run()
        state.validation = result
        await self._audit({"event": "validated", **result.as_dict()})
        if result.integrity_score < 1.0 - state.config.max_error_rate:
            await self._async_auto_pause(
                f"validation integrity {result.integrity_score:.2%} is too low"
            )
            return
        await self._async_next("validation passed")

    async def _async_cleanup(self) -> None:
        state = self._require_state()
        if self._cleanup_due is None:
            self._cleanup_due = dt_util.utcnow() + timedelta(hours=state.config.cleanup_delay_hours)
            await self._async_save()
        delay = (self._cleanup_due - dt_util.utcnow()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
        if state.config.delete_legacy_data:
            deleted = await engine.cleanup_legacy(self._client, state, self._client.database)
            await self._audit({"event": "legacy_deleted", "series": deleted})
        await self._async_next("cleanup finished")
        await self._async_write_report()

    # Outcomes.

    async def _async_auto_pause(self, why: str | None = None) -> None:
        state = self._require_state()
        reason = why or (
            f"error rate {error_rate(state):.2%} is above the pause threshold "
            f"{state.config.max_error_rate:.2%}"
        )
        await self._async_transition(Phase.PAUSED, reason)
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            f"migration_paused_{self._entry.entry_id}",
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="migration_paused",
            translation_placeholders={
                "database": self._client.database,
                "error_rate": f"{error_rate(state):.2%}",
                "threshold": f"{state.config.max_error_rate:.2%}",
                "dead_letter": str(self._storage_dir / "migration_dead_letter.jsonl"),
            },
        )

    async def _async_rollback(self, reason: str, *, keep_target: bool, automatic: bool) -> int:
        state = self._require_state()
        # Stop optimized writes first, so nothing lands in the target while it is cleaned.
        await self._ingestion.async_set_layouts(
            legacy=True, optimized=self._ingestion.mode.value in ("optimized", "both")
        )
        removed = 0
        if not keep_target:
            removed = await self._guard(
                engine.rollback_target(
                    self._client,
                    state,
                    source_database=self._client.database,
                    target_database=self.target_database or self._client.database,
                )
            )
        if state.phase is Phase.FAILED or state.is_active:
            await self._async_transition(Phase.ROLLED_BACK, reason)
        await self._audit({"event": "rolled_back", "removed": removed, "kept": keep_target})
        await self._async_write_report()
        if automatic:
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                f"migration_rolled_back_{self._entry.entry_id}",
                is_fixable=False,
                severity=ir.IssueSeverity.ERROR,
                translation_key="migration_rolled_back",
                translation_placeholders={
                    "database": self._client.database,
                    "reason": reason,
                    "report": str(self._report_path()),
                },
            )
        return removed

    # Helpers.

    def _target_for(self, strategy: Strategy) -> str:
        configured = self._entry.options.get(SECTION_MIGRATION, {}).get(CONF_TARGET_DATABASE)
        source = self._client.database
        if strategy.separate_target:
            return configured if configured and configured != source else f"{source}_optimized"
        return configured or source

    def _transform(self) -> LegacyTransform:
        return LegacyTransform(
            legacy_options(self._entry.options),
            optimized_options(self._entry.options),
            area_lookup(self.hass),
        )

    def _validator(self) -> "engine.Validator":
        state = self._require_state()
        return engine.Validator(
            self._client,
            state,
            transform=self._transform(),
            source_database=self._client.database,
            target_database=self.target_database or self._client.database,
        )

    def _require_state(self) -> MigrationState:
        if self.state is None:
            raise ServiceValidationError(translation_domain=DOMAIN, translation_key="no_migration")
        return self.state

    async def _guard[T](self, work: Awaitable[T]) -> T:
        """Turn server failures during a service call into translated errors."""
        try:
            return await work
        except CannotConnect as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="server_unavailable",
                translation_placeholders={"error": str(err)},
            ) from err
        except InfluxError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="migration_failed",
                translation_placeholders={"error": str(err)},
            ) from err

    @callback
    def _progress(self, state: MigrationState) -> None:
        self._throughput.add(time.monotonic(), state.records_migrated)
        self._points_per_second = self._throughput.points_per_second(time.monotonic())
        self._notify()

    @callback
    def _backfill_reaches_server(self, reachable: bool) -> None:
        if reachable != self.server_reachable:
            self.server_reachable = reachable
            self._notify()

    @callback
    def _notify(self) -> None:
        async_dispatcher_send(self.hass, self._signal)

    async def _async_transition(self, to: Phase, reason: str) -> None:
        state = self._require_state()
        previous = state.phase
        self.state = transition(state, to, reason=reason, now=dt_util.utcnow())
        await self._async_record("transition", previous, to, reason)
        await self.async_apply_layouts()

    async def _async_record(self, event: str, previous: Phase, to: Phase, reason: str) -> None:
        state = self._require_state()
        await self._async_save()
        payload = {
            "entry_id": self._entry.entry_id,
            "migration_id": state.migration_id,
            "event": event,
            "from_phase": previous.value,
            "to_phase": to.value,
            "reason": reason,
            "strategy": state.strategy.value,
            "records_migrated": state.records_migrated,
            "records_failed": state.records_failed,
        }
        await self._audit(payload)
        self.hass.bus.async_fire(EVENT_MIGRATION, payload)
        self._notify()

    async def _async_save_state(self, state: MigrationState) -> None:
        self.state = state
        await self._async_save()

    async def _async_save(self) -> None:
        if self.state is None:
            return
        await self._store.async_save(
            {
                "state": self.state.to_dict(),
                "target_database": self.target_database,
                "cleanup_due": self._cleanup_due.isoformat() if self._cleanup_due else None,
            }
        )

    async def _audit(self, record: dict[str, Any]) -> None:
        line = json_dumps({"time": dt_util.utcnow().isoformat(), **record}) + "\n"
        try:
            async with aiofiles.open(self._storage_dir / AUDIT_FILE, "a") as file:
                await file.write(line)
        except OSError as err:
            _LOGGER.error("Cannot append to the migration audit log: %s", err)

    def _report_path(self) -> Path:
        state = self._require_state()
        return self._storage_dir / f"migration_report_{state.migration_id}.json"

    async def _async_write_report(self) -> None:
        state = self._require_state()
        started = state.started_at
        report = {
            "migration_id": state.migration_id,
            "strategy": state.strategy.value,
            "phase": state.phase.value,
            "source_database": self._client.database,
            "target_database": self.target_database,
            "started_at": started.isoformat() if started else None,
            "finished_at": dt_util.utcnow().isoformat(),
            "duration_seconds": (dt_util.utcnow() - started).total_seconds() if started else None,
            "records_read": state.records_read,
            "records_migrated": state.records_migrated,
            "records_failed": state.records_failed,
            "records_skipped": state.records_skipped,
            "error_rate": error_rate(state),
            "validation": state.validation.as_dict() if state.validation else None,
            "rollback_reason": state.rollback_reason,
            "transitions": [t.as_dict() for t in state.transitions],
            "config": state.config.as_dict(),
        }
        try:
            async with aiofiles.open(self._report_path(), "w") as file:
                await file.write(json_dumps(report))
        except OSError as err:
            _LOGGER.error("Cannot write the migration report: %s", err)
