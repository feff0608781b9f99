"""Runs a migration inside Home Assistant: phases, persistence, audit, events, repair issues.

The work itself lives in the hass-free ``engine.migration`` (``discovery``, ``backfill``,
``validation``, ``removal``); the rules (phases, thresholds, arithmetic) in its ``model``, and
what every destructive step may touch in its ``ledger``. This module drives them, keeps
the state in HA's ``Store`` so a restart resumes where it stopped, and tells users what happens
through entities, bus events and repair issues.

What is recorded live follows the phase. From the cutover until the cleanup has finished, both
layouts are recorded (on top of what the options ask for), so a rollback at any point before
the cleanup loses nothing: the legacy layout holds every state change. Only a completed
migration stops recording the legacy layout.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
import copy
from datetime import datetime, timedelta
import logging
from pathlib import Path
import shutil
import time
from typing import Any

import aiofiles
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, ServiceResponse, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.json import json_dumps
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util, ulid as ulid_util

from .const import (
    CONF_OPTIMIZED_DATABASE,
    CONF_WRITE_MODE,
    DOMAIN,
    SECTION_INGESTION,
    WriteMode,
)
from .engine.influx import CannotConnect, InfluxClient, InfluxError
from .engine.line_protocol import to_time_ns
from .engine.migration.backfill import Backfill, BackfillOutcome
from .engine.migration.discovery import DiscoveredSource, discover, measure_read_rate
from .engine.migration.ledger import Layout, MigrationLedger, Recording
from .engine.migration.model import (
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
from .engine.migration.removal import clean_legacy, inventory_optimized, remove_migrated
from .engine.migration.validation import Validator
from .engine.spool import DeadLetterFile
from .layouts.optimized import LegacyTransform
from .options import EntryOptions
from .recording import Ingestion, area_lookup
from .repairs import FIX_ACTIONS

_LOGGER = logging.getLogger(__name__)

STORE_VERSION = 1
EVENT_MIGRATION = f"{DOMAIN}_migration_event"
AUDIT_FILE = "audit.jsonl"

# From the cutover until the cleanup has finished, both layouts are recorded.
_BOTH_LAYOUT_PHASES = frozenset(
    {Phase.DUAL_WRITE, Phase.BACKFILL, Phase.VALIDATION, Phase.SWITCHOVER, Phase.CLEANUP}
)
# How long a rollback waits for the retired optimized writer to deliver what it held, so its
# points are removed too (the server is up: it answered a ping just before).
_DRAIN_SECONDS = 30.0
# Live points of the dual-write period are removed up to this long after the rollback.
_LIVE_MARGIN = timedelta(minutes=1)
# A rollback's removal that failed is retried in the background, this often at most.
_REMOVAL_RETRY_SECONDS = 60.0
# How often the entities are refreshed while a backfill runs (throughput decays, ETA moves).
_REFRESH_INTERVAL = timedelta(seconds=5)
# The backfill reached about half the raw read rate on the reference machine (README): a
# dry run without an earlier backfill estimates from a read measured on the user's server.
_BACKFILL_SHARE_OF_READ = 0.5
# How many entity ids a dry-run answer lists.
_LISTED = 20

_ISSUES = (
    "migration_paused",
    "migration_rolled_back",
    "migration_failed",
    "cleanup_paused",
    "rollback_incomplete",
)


def _duration_text(seconds: int) -> str:
    """A duration the way a person says it: under a minute, 12 minutes, 3.5 hours."""
    if seconds < 60:
        return "under a minute"
    if seconds < 5_400:
        return f"{round(seconds / 60)} minutes"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86_400:.1f} days"


def _parse_record(data: Any) -> tuple[MigrationState, str | None, datetime | None]:
    """The migration state, target database and cleanup time of a stored record."""
    if not isinstance(data, Mapping) or "state" not in data:
        raise TypeError("the record holds no migration state")
    state = MigrationState.from_dict(data["state"])
    target = data.get("target_database")
    if target is not None and not isinstance(target, str):
        raise TypeError("target_database is not text")
    due = data.get("cleanup_due")
    return state, target, dt_util.parse_datetime(due) if due else None


class MigrationController:
    """One config entry's migration: at most one at a time, resumable across restarts."""

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
        self._entry = entry
        self._client = client
        self._options = options
        self._ingestion = ingestion
        self._storage_dir = storage_dir
        self._on_change = on_change
        self._store: Store[dict[str, Any]] = Store(
            hass, STORE_VERSION, f"{DOMAIN}.{entry.entry_id}.migration"
        )
        self.state: MigrationState | None = None
        self.target_database: str | None = None
        self._cleanup_due: datetime | None = None
        self._cleanup_now = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._removal: asyncio.Task[None] | None = None
        # The backfill running now: its counters move with every batch, the state's with
        # every recorded window.
        self._backfill: Backfill | None = None
        self._throughput = ThroughputWindow()
        # Points per second of this entry's last backfill (saved), for dry-run estimates.
        self._measured_rate: float | None = None
        self._last_error: str | None = None
        # The options a completed migration wrote, until the update listener sees them.
        self._own_options: dict[str, Any] | None = None
        # False while a running backfill cannot reach InfluxDB (it waits for it).
        self.server_reachable = True
        # What preparation discovered; after a restart the backfill discovers it again.
        self._source: DiscoveredSource | None = None

    # What the entities show. A rolled-back run's figures describe data that is gone, so
    # after a rollback they read as before any migration.

    @property
    def _run(self) -> MigrationState | None:
        state = self.state
        return None if state is None or state.phase is Phase.ROLLED_BACK else state

    @property
    def phase(self) -> Phase:
        """Current phase (idle before the first migration)."""
        return self.state.phase if self.state else Phase.IDLE

    @property
    def running(self) -> bool:
        """Whether migration work is under way right now."""
        return self.state is not None and self.state.is_running

    def _counts(self) -> tuple[int, int, int]:
        """Points read, migrated and failed: the running backfill's live figures, if any."""
        run = self._run
        if run is None:
            return 0, 0, 0
        if self._backfill is not None and self._backfill.state is run:
            return self._backfill.live_counts
        return run.records_read, run.records_migrated, run.records_failed

    @property
    def progress(self) -> float:
        """Percent of the backfill's points copied (0 without a migration)."""
        run = self._run
        return round(progress_percent(run, self._counts()[0]), 2) if run else 0.0

    @property
    def records_migrated(self) -> int:
        """Points written to the optimized layout by the backfill."""
        return self._counts()[1]

    @property
    def records_failed(self) -> int:
        """Points the server refused (they are in the dead-letter file)."""
        return self._counts()[2]

    @property
    def error_rate_percent(self) -> float:
        """Failed share of processed points, in percent."""
        _, migrated, failed = self._counts()
        processed = migrated + failed
        return round(failed / processed * 100, 4) if processed else 0.0

    @property
    def records_total(self) -> int | None:
        """The points the backfill copies, counted before it started (None: not yet)."""
        return self._run.estimated_total_points if self._run else None

    @property
    def integrity_percent(self) -> float | None:
        """Share of compared points that match exactly, after a validation."""
        run = self._run
        if run is None or run.validation is None:
            return None
        return round(run.validation.integrity_score * 100, 4)

    @property
    def _points_per_second(self) -> float | None:
        if self._backfill is None:
            return None
        return self._throughput.points_per_second(time.monotonic())

    @property
    def throughput(self) -> float | None:
        """Backfill points per second over the last minute; unknown when none runs."""
        rate = self._points_per_second
        return None if rate is None else round(rate, 1)

    @property
    def eta(self) -> datetime | None:
        """When the backfill should finish at the current throughput (never in the past)."""
        if self._run is None:
            return None
        return eta(self._run, self._points_per_second, dt_util.utcnow(), self._counts()[0])

    @property
    def cleanup_due(self) -> datetime | None:
        """When the cleanup runs, while the migration waits for it."""
        state = self._run
        if state is None or state.recording_phase is not Phase.CLEANUP:
            return None
        return self._cleanup_due

    @property
    def query_time_improvement(self) -> float | None:
        """Measured speed-up of the dashboard queries, in percent of the legacy time."""
        run = self._run
        if run is None or run.validation is None:
            return None
        improvement = run.validation.query_time_improvement_percent
        return round(improvement, 2) if improvement is not None else None

    @property
    def wanted_recordings(self) -> frozenset[Recording]:
        """What the live writers must record in the current phase."""
        configured = self._ingestion.configured_recordings
        state = self.state
        if state is None or state.ledger is None:
            return configured
        ledger = state.ledger
        phase = state.recording_phase
        if phase in _BOTH_LAYOUT_PHASES:
            return configured | {
                Recording(Layout.LEGACY, ledger.source_database),
                Recording(Layout.OPTIMIZED, ledger.target_database),
            }
        if phase is Phase.COMPLETE and not ledger.options_applied:
            return frozenset({Recording(Layout.OPTIMIZED, ledger.target_database)})
        return configured

    def owns_options(self, options: Mapping[str, Any]) -> bool:
        """Whether ``options`` are the ones this migration just wrote (once per write)."""
        mine, self._own_options = self._own_options, None
        return mine is not None and dict(options) == mine

    def use_options(self, options: EntryOptions) -> None:
        """Take options changed without a reload (the ones a completed migration wrote)."""
        self._options = options

    def default_config(self) -> MigrationConfig:
        """The migration options of the entry, before per-call overrides."""
        return self._options.migration

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
        """Restore the last migration from storage; a record that does not parse is set aside."""
        # Whatever is in the file, recording must start: a record that does not load or parse
        # is kept aside for the user.
        data: Any = None
        try:
            data = await self._store.async_load()
            if not data:
                return
            state, target, cleanup_due = _parse_record(data)
        except Exception as err:
            await self._async_set_aside(err, data)
            return
        self.state = state
        self.target_database = target
        self._cleanup_due = cleanup_due
        rate = data.get("measured_points_per_second")
        self._measured_rate = float(rate) if isinstance(rate, int | float) and rate > 0 else None
        if state.ledger is None and state.phase is not Phase.IDLE:
            # Saved by a version without a ledger: nothing is known about what the target
            # held, so nothing in it is ever deleted (see MigrationLedger.protected_spans).
            state.ledger = MigrationLedger(
                source_database=self._client.database,
                target_database=target or self._client.database,
                recorded_before=tuple(sorted(self._ingestion.configured_recordings)),
            )

    async def _async_set_aside(self, err: Exception, data: Any) -> None:
        """Keep an unreadable migration record for the user, and start without it."""
        stamp = dt_util.utcnow().strftime("%Y%m%dT%H%M%S")
        kept = self._storage_dir / f"unreadable_migration_state_{stamp}.json"
        source = Path(self._store.path)

        def copy_aside() -> None:
            self._storage_dir.mkdir(parents=True, exist_ok=True)
            if source.exists():
                shutil.copyfile(source, kept)
            else:  # only what was loaded is known
                kept.write_text(json_dumps(data), encoding="utf-8")

        try:
            await self.hass.async_add_executor_job(copy_aside)
            await self._store.async_remove()
        except (OSError, TypeError, ValueError) as copy_err:
            _LOGGER.error("Cannot set the unreadable migration record aside: %s", copy_err)
        _LOGGER.error(
            "The stored migration state of %s cannot be read (%s); it was kept as %s and "
            "recording starts without it",
            self._entry.title,
            err,
            kept,
        )
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            f"migration_state_unreadable_{self._entry.entry_id}",
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="migration_state_unreadable",
            translation_placeholders={"error": str(err), "path": str(kept)},
        )

    @callback
    def async_resume_after_restart(self) -> None:
        """Continue a migration that was running when Home Assistant stopped."""
        state = self.state
        if state is None:
            return
        if state.is_running:
            _LOGGER.info("Resuming migration %s in phase %s", state.migration_id, state.phase)
            self._start_task()
        elif state.ledger is not None and state.ledger.removal_pending:
            self._start_removal()

    async def async_shutdown(self) -> None:
        """Stop the task; the state saved at the last checkpoint is where it resumes."""
        await self._cancel_task()
        removal, self._removal = self._removal, None
        if removal is not None and not removal.done():
            removal.cancel()
            await asyncio.gather(removal, return_exceptions=True)
        if self.state is not None:
            await self._async_save()

    async def async_apply_layouts(self) -> None:
        """Record the layouts the current phase needs."""
        await self._ingestion.async_set_recordings(self.wanted_recordings)

    # Service actions.

    async def async_start(self, config: MigrationConfig) -> ServiceResponse:
        """Start a migration, or return its plan for a dry run."""
        if self.state is not None and not can_start_migration(self.state):
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="migration_already_running",
                translation_placeholders={"phase": self.state.phase.value},
            )
        target = self._target_for(config.strategy)
        if config.dry_run:
            return await self._guard(self._async_dry_run(config, target))
        now = dt_util.utcnow()
        state = start_migration(config, migration_id=ulid_util.ulid_now(), now=now)
        state.ledger = MigrationLedger(
            source_database=self._client.database,
            target_database=target,
            recorded_before=tuple(sorted(self._ingestion.recordings)),
        )
        self.state = state
        self.target_database = target
        self._cleanup_due = None
        self._throughput = ThroughputWindow()
        for issue in _ISSUES:
            ir.async_delete_issue(self.hass, DOMAIN, f"{issue}_{self._entry.entry_id}")
        await self._async_record("started", Phase.IDLE, Phase.PREPARATION, "started")
        self._start_task()
        return {
            "migration_id": state.migration_id,
            "strategy": config.strategy.value,
            "phase": state.phase.value,
            "target_database": target,
        }

    async def _async_dry_run(self, config: MigrationConfig, target: str) -> ServiceResponse:
        """The plan, summary first, with a time estimate from a measured rate."""
        summary = await discover(self._client, self._client.database, config)
        rate, basis = self._measured_rate, "last_backfill"
        if rate is None:
            read_rate = await measure_read_rate(self._client, self._client.database, summary)
            if read_rate is not None:
                rate, basis = read_rate * _BACKFILL_SHARE_OF_READ, "read_measured_now"
        details = plan(config, summary, points_per_second=rate).as_dict()
        entity_ids: list[str] = details.pop("entity_ids")
        seconds = details.pop("estimated_backfill_seconds")
        rounded = None if seconds is None else round(seconds)
        estimate = "an unknown time" if rounded is None else _duration_text(rounded)
        return {
            "summary": (
                f"{details['estimated_points']:,} points of {len(entity_ids):,} entities in "
                f"{len(details['measurements']):,} measurements would be copied into "
                f"{target}; the backfill would take about {estimate}."
            ),
            "dry_run": True,
            "estimated_points": details.pop("estimated_points"),
            "estimated_backfill_seconds": rounded,
            "points_per_second": None if rate is None else round(rate),
            "rate_basis": basis if rate is not None else None,
            "entities": len(entity_ids),
            "target_database": target,
            "separate_target": target != self._client.database,
            **details,
            "entity_ids": entity_ids[:_LISTED],
            "more_entities": max(len(entity_ids) - _LISTED, 0),
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
        for issue in ("migration_paused", "cleanup_paused"):
            ir.async_delete_issue(self.hass, DOMAIN, f"{issue}_{self._entry.entry_id}")
        await self._async_transition(state.phase_before_pause, "resumed by the user")
        self._start_task()
        return {"phase": self.phase.value}

    async def async_rollback(self, *, reason: str, keep_target: bool) -> ServiceResponse:
        """Undo the migration: recording goes back to what it was, migrated data is removed.

        A rollback already recorded whose removal is unfinished is finished instead. Refused
        once the cleanup has deleted legacy history: the optimized layout is then the only
        copy of it.
        """
        state = self._require_state()
        ledger = state.ledger
        if state.phase is Phase.ROLLED_BACK and ledger is not None and ledger.removal_pending:
            removed = await self._async_remove_or_raise()
            return {"phase": self.phase.value, "points_removed": removed, "reason": reason}
        if not (state.is_active or state.phase is Phase.FAILED):
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="migration_not_rollbackable",
                translation_placeholders={"phase": state.phase.value},
            )
        if ledger is not None and ledger.cleaned_entities:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="rollback_after_cleanup",
                translation_placeholders={
                    "entities": str(ledger.cleaned_entities),
                    "database": ledger.target_database,
                },
            )
        if not keep_target:
            # Removing what the migration wrote needs the server; find out before anything
            # changes, so a refused rollback leaves the migration as it was.
            await self._guard(self._client.ping())
        await self._cancel_task()
        removed = await self._async_rollback(reason, keep_target=keep_target, automatic=False)
        return {
            "phase": self.phase.value,
            "points_removed": removed,
            "kept_target_data": keep_target,
            "reason": reason,
        }

    async def async_validate(self) -> ServiceResponse:
        """Compare both layouts now and store the result (only once the backfill is done)."""
        state = self._require_state()
        if state.phase is Phase.ROLLED_BACK or not state.backfill_done:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="validation_needs_backfill",
                translation_placeholders={"phase": state.phase.value},
            )
        result = await self._guard(self._async_validate_now())
        await self._async_save()
        self._notify()
        return result

    async def async_run_cleanup_now(
        self, *, delete_legacy_data: bool | None = None, strict: bool = False
    ) -> ServiceResponse:
        """End the cleanup wait now, deleting legacy history as asked (or as configured).

        Outside the cleanup this does nothing, or raises a translated error when ``strict``.
        """
        state = self.state
        if state is None or state.phase is not Phase.CLEANUP:
            if strict:
                raise ServiceValidationError(
                    translation_domain=DOMAIN,
                    translation_key="not_in_cleanup" if state else "no_migration",
                    translation_placeholders={"phase": self.phase.value},
                )
            return None
        if delete_legacy_data is not None and delete_legacy_data != state.config.delete_legacy_data:
            state.config = state.config.with_overrides(delete_legacy_data=delete_legacy_data)
            await self._audit(
                {"event": "cleanup_setting", "delete_legacy_data": delete_legacy_data}
            )
        self._cleanup_due = dt_util.utcnow()
        self._cleanup_now.set()
        await self._async_save()
        self._notify()
        return {
            "phase": state.phase.value,
            "delete_legacy_data": state.config.delete_legacy_data,
            "cleanup_due": self._cleanup_due.isoformat(),
        }

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
                self._raise_issue(
                    "migration_failed",
                    ir.IssueSeverity.ERROR,
                    error=f"{type(err).__name__}: {err}",
                )

    async def _async_next(self, reason: str = "phase finished") -> None:
        state = self._require_state()
        phases = state.strategy.phases
        await self._async_transition(phases[phases.index(state.phase) + 1], reason)

    async def _async_prepare(self) -> None:
        state = self._require_state()
        ledger = self._ledger()
        await self._client.ping()
        await self._client.validate()
        target = ledger.target_database
        if not await self._client.database_exists(target):
            # Recorded before it is created: only a database this migration made may be
            # dropped by its rollback, and one it made must not be left behind.
            ledger.created_target = True
            await self._async_save()
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
        await self._async_save()
        await self._audit(
            {
                "event": "discovered",
                "measurements": sorted({s.measurement for s in summary.series}),
                "entities": len({s.entity_id for s in summary.series}),
                "estimated_points": state.estimated_total_points,
                "target_created": ledger.created_target,
                "target_entities_before": len(ledger.preexisting),
            }
        )
        await self._async_next("source discovered, target ready")

    async def _async_backfill(self) -> None:
        state = self._require_state()
        ledger = self._ledger()
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
        backfill = Backfill(
            self._client,
            state,
            transform=self._transform(),
            source_database=ledger.source_database,
            target_database=ledger.target_database,
            save=self._async_save_state,
            on_progress=self._progress,
            on_connection=self._backfill_reaches_server,
            dead_letter_path=self._dead_letter_path,
            source=source,
            rollups=self._rollups_enabled,
        )
        self._backfill = backfill
        self._throughput = ThroughputWindow()
        started = time.monotonic()
        copied_before = state.records_migrated
        # Throughput and ETA are computed when shown: refresh them while nothing else pushes.
        refresh = async_track_time_interval(self.hass, self._refresh, _REFRESH_INTERVAL)
        try:
            outcome = await backfill.run()
        finally:
            refresh()
            self._backfill = None
            elapsed = time.monotonic() - started
            if (copied := state.records_migrated - copied_before) > 0 and elapsed > 1:
                self._measured_rate = copied / elapsed
            # Only a running backfill has something to say about the server.
            self._backfill_reaches_server(True)
            self._notify()
        if outcome is BackfillOutcome.STOPPED:
            return
        if outcome is BackfillOutcome.PAUSE:
            await self._async_auto_pause()
        elif outcome is BackfillOutcome.ROLLBACK:
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
        await self._async_validate_now()
        result = state.validation
        assert result is not None
        if result.integrity_score < 1.0 - state.config.max_error_rate:
            await self._async_auto_pause(
                f"validation integrity {result.integrity_score:.2%} is too low"
            )
            return
        await self._async_next("validation passed")

    async def _async_validate_now(self) -> dict[str, Any]:
        """Validate, keep the result, and note in the ledger which entities were proven."""
        state = self._require_state()
        ledger = self._ledger()
        validator = self._validator()
        result = await validator.run()
        state.validation = result
        span = validator.migrated_range()
        ledger.verified = {
            entity: span
            for entity in validator.compared_entities
            if entity not in result.mismatches and entity not in ledger.dead_lettered
        }
        await self._audit(
            {"event": "validated", "proven_entities": len(ledger.verified), **result.as_dict()}
        )
        return result.as_dict()

    async def _async_cleanup(self) -> None:
        state = self._require_state()
        if self._cleanup_due is None:
            self._cleanup_due = dt_util.utcnow() + timedelta(hours=state.config.cleanup_delay_hours)
            await self._async_save()
        self._notify()
        self._cleanup_now.clear()
        while (delay := (self._cleanup_due - dt_util.utcnow()).total_seconds()) > 0:
            try:
                async with asyncio.timeout(delay):
                    await self._cleanup_now.wait()
            except TimeoutError:
                pass
            self._cleanup_now.clear()
        if state.config.delete_legacy_data and not await self._async_delete_legacy():
            return
        await self._async_next("cleanup finished")
        await self._async_write_report()
        await self._async_apply_completion_options()

    async def _async_delete_legacy(self) -> bool:
        """Delete the legacy history a fresh validation proves copied; False when paused."""
        state = self._require_state()
        ledger = self._ledger()
        try:
            # Proven again right before anything is deleted: the copy must still be there.
            await self._async_validate_now()
            await self._async_save()
            deleted, deletions = await clean_legacy(
                self._client, state, save=self._async_save_state
            )
        except InfluxError as err:
            _LOGGER.warning("Cleanup stopped (%s); it continues when resumed", err)
            await self._async_transition(Phase.PAUSED, f"cleanup failed: {err}")
            self._raise_issue(
                "cleanup_paused", ir.IssueSeverity.WARNING, error=str(err) or type(err).__name__
            )
            return False
        kept = sorted((set(ledger.copied) - set(ledger.verified)) | ledger.dead_lettered)
        await self._audit(
            {
                "event": "legacy_deleted",
                "points": deleted,
                "series": deletions,
                "entities_kept": len(kept),
                "kept_examples": kept[:20],
            }
        )
        return True

    async def _async_apply_completion_options(self) -> None:
        """Make the options say what a completed migration leaves recorded: the optimized
        layout, into the database it migrated to."""
        ledger = self._ledger()
        if ledger.options_applied:
            return
        options = copy.deepcopy(dict(self._entry.options))
        ingestion = dict(options.get(SECTION_INGESTION, {}))
        ingestion[CONF_WRITE_MODE] = WriteMode.OPTIMIZED.value
        if ledger.separate_target:
            ingestion[CONF_OPTIMIZED_DATABASE] = ledger.target_database
        else:
            ingestion.pop(CONF_OPTIMIZED_DATABASE, None)
        options[SECTION_INGESTION] = ingestion
        # Saved first: the options update reloads the entry, which ends this task. A crash in
        # between leaves the configured recording running, which loses nothing.
        ledger.options_applied = True
        await self._async_save()
        if options != dict(self._entry.options):
            self._own_options = options
            self.hass.config_entries.async_update_entry(self._entry, options=options)

    # Outcomes.

    async def _async_auto_pause(self, why: str | None = None) -> None:
        state = self._require_state()
        reason = why or (
            f"error rate {error_rate(state):.2%} is above the pause threshold "
            f"{state.config.max_error_rate:.2%}"
        )
        # Raised before the phase changes: whoever sees "paused" also finds the repair issue.
        self._raise_issue(
            "migration_paused",
            ir.IssueSeverity.WARNING,
            cause=reason,
            failed=f"{state.records_failed:,}",
            example=await self._pause_example(state.phase),
            error_rate=f"{error_rate(state):.2%}",
            threshold=f"{state.config.max_error_rate:.2%}",
        )
        try:
            await self._async_transition(Phase.PAUSED, reason)
        except BaseException:
            ir.async_delete_issue(self.hass, DOMAIN, f"migration_paused_{self._entry.entry_id}")
            raise

    async def _pause_example(self, pausing: Phase) -> str:
        """One example of what went wrong in the phase being paused: a mismatching entity
        (validation), or a refused point."""
        state = self._require_state()
        if pausing is Phase.VALIDATION and state.validation is not None:
            for entity, mismatch in state.validation.mismatches.items():
                return (
                    f"{entity}: {mismatch.legacy_points:,} legacy points, "
                    f"{mismatch.optimized_points:,} optimized, "
                    f"{mismatch.mismatched_records:,} sampled points differ"
                )
        letter = await DeadLetterFile(self._dead_letter_path).last()
        if letter is None:
            return "-"
        return f"{letter.reason[:300]} (point: {letter.line[:120]})"

    @property
    def _dead_letter_path(self) -> Path:
        return self._storage_dir / "migration_dead_letter.jsonl"

    async def _async_rollback(self, reason: str, *, keep_target: bool, automatic: bool) -> int:
        """Record the rollback, go back to the recording from before, remove what was written.

        The rollback is saved before anything is removed, so a failure during the removal
        (or a restart) leaves a rolled-back migration whose removal is retried, never a
        half-undone one that resumes.
        """
        ledger = self._ledger()
        ledger.removal_pending = not keep_target
        self._throughput = ThroughputWindow()
        for issue in ("migration_paused", "cleanup_paused", "migration_failed"):
            ir.async_delete_issue(self.hass, DOMAIN, f"{issue}_{self._entry.entry_id}")
        await self._async_transition(Phase.ROLLED_BACK, reason)
        if automatic:
            self._raise_issue(
                "migration_rolled_back",
                ir.IssueSeverity.ERROR,
                reason=reason,
                report=str(self._report_path()),
            )
        removed = 0
        failure: Exception | None = None
        if ledger.removal_pending:
            try:
                removed = await self._async_remove(attempts=3)
            except InfluxError as err:
                failure = err
                self._start_removal()
        await self._audit({"event": "rolled_back", "points_removed": removed, "kept": keep_target})
        await self._async_write_report()
        if failure is not None:
            self._raise_issue("rollback_incomplete", ir.IssueSeverity.WARNING, error=str(failure))
            if not automatic:
                raise HomeAssistantError(
                    translation_domain=DOMAIN,
                    translation_key="rollback_removal_failed",
                    translation_placeholders={"error": str(failure)},
                ) from failure
        return removed

    async def _async_remove_or_raise(self) -> int:
        try:
            return await self._async_remove(attempts=3)
        except InfluxError as err:
            self._start_removal()
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="rollback_removal_failed",
                translation_placeholders={"error": str(err)},
            ) from err

    async def _async_remove(self, *, attempts: int | None) -> int:
        """Remove what the ledger says this migration wrote to the target; points removed."""
        state = self._require_state()
        ledger = self._ledger()
        target = ledger.target_database
        # What the retired optimized writer still holds lands first, so it is removed too.
        await self._ingestion.async_drained(Recording(Layout.OPTIMIZED, target), _DRAIN_SECONDS)
        removal = await remove_migrated(
            self._client,
            state,
            until_ns=to_time_ns(dt_util.utcnow() + _LIVE_MARGIN),
            # Only entities this Home Assistant knows: another writer's series stay.
            known_entities=(
                set(self.hass.states.async_entity_ids())
                | set(er.async_get(self.hass).entities)
                | set(ledger.copied)
            ),
            attempts=attempts,
        )
        if removal.dropped_database is not None and (
            discarded := await self._ingestion.async_discard(removal.dropped_database)
        ):
            _LOGGER.info(
                "Discarded %d spooled points for the dropped database %s (the legacy layout "
                "has them)",
                discarded,
                removal.dropped_database,
            )
        ledger.removal_pending = False
        await self._async_save()
        ir.async_delete_issue(self.hass, DOMAIN, f"rollback_incomplete_{self._entry.entry_id}")
        await self._audit(
            {
                "event": "rollback_removed",
                "points": removal.points,
                "rollup_points": removal.rollup_points,
                "dropped_database": removal.dropped_database,
                "deletions": removal.deletions,
            }
        )
        return removal.points

    def _start_removal(self) -> None:
        if self._removal is not None and not self._removal.done():
            return

        async def retry_until_done() -> None:
            while True:
                try:
                    await self._async_remove(attempts=None)
                except InfluxError as err:
                    _LOGGER.warning("Removing the rolled-back data failed (%s); retrying", err)
                    await asyncio.sleep(_REMOVAL_RETRY_SECONDS)
                else:
                    return

        self._removal = self._entry.async_create_background_task(
            self.hass, retry_until_done(), f"{DOMAIN} rollback removal {self._entry.entry_id}"
        )

    # Helpers.

    def _target_for(self, strategy: Strategy) -> str:
        configured = self._options.target_database
        source = self._client.database
        if strategy.separate_target:
            return configured if configured and configured != source else f"{source}_optimized"
        return configured or source

    def _transform(self) -> LegacyTransform:
        return LegacyTransform(
            self._options.legacy,
            self._options.optimized,
            area_lookup(self.hass),
        )

    def _validator(self) -> "Validator":
        state = self._require_state()
        ledger = self._ledger()
        return Validator(
            self._client,
            state,
            transform=self._transform(),
            source_database=ledger.source_database,
            target_database=ledger.target_database,
            rollups=state.rollups_filled,
        )

    @property
    def _rollups_enabled(self) -> bool:
        return self._options.rollups

    def _require_state(self) -> MigrationState:
        if self.state is None:
            raise ServiceValidationError(translation_domain=DOMAIN, translation_key="no_migration")
        return self.state

    def _ledger(self) -> MigrationLedger:
        ledger = self._require_state().ledger
        if ledger is None:  # pragma: no cover - every started migration has one
            raise HomeAssistantError(translation_domain=DOMAIN, translation_key="no_migration")
        return ledger

    def _raise_issue(self, key: str, severity: ir.IssueSeverity, **placeholders: str) -> None:
        ledger = self.state.ledger if self.state else None
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            f"{key}_{self._entry.entry_id}",
            is_fixable=key in FIX_ACTIONS,
            data={"key": key, "entry_id": self._entry.entry_id},
            severity=severity,
            translation_key=key,
            translation_placeholders={
                "database": self._client.database,
                "target": ledger.target_database if ledger else self._client.database,
                **placeholders,
            },
        )

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
        _, migrated, failed = self._counts()
        self._throughput.add(time.monotonic(), migrated + failed)
        self._notify()

    @callback
    def _backfill_reaches_server(self, reachable: bool) -> None:
        if reachable != self.server_reachable:
            self.server_reachable = reachable
            self._notify()

    @callback
    def _refresh(self, _now: datetime) -> None:
        self._notify()

    @callback
    def _notify(self) -> None:
        self._on_change()

    async def _async_transition(self, to: Phase, reason: str) -> None:
        state = self._require_state()
        previous = state.phase
        # Writers the new phase needs start first, so that no state change falls between the
        # moment the transition records (the cutover) and the writer that records it.
        ahead = transition(state, to, reason=reason, now=dt_util.utcnow())
        current = self._ingestion.recordings
        needed = self._recordings_for(ahead)
        if not needed <= current:
            await self._ingestion.async_set_recordings(current | needed)
        self.state = transition(state, to, reason=reason, now=dt_util.utcnow())
        await self._async_record("transition", previous, to, reason)
        await self.async_apply_layouts()

    def _recordings_for(self, state: MigrationState) -> frozenset[Recording]:
        saved, self.state = self.state, state
        try:
            return self.wanted_recordings
        finally:
            self.state = saved

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
                "measured_points_per_second": self._measured_rate,
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
        ledger = state.ledger
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
            "ledger": ledger.as_dict() if ledger else None,
        }
        try:
            async with aiofiles.open(self._report_path(), "w") as file:
                await file.write(json_dumps(report))
        except OSError as err:
            _LOGGER.error("Cannot write the migration report: %s", err)
