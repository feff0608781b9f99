"""The migration's service actions: each checks that the phase allows it, then acts."""

from collections.abc import Awaitable, Callable

from homeassistant.core import ServiceResponse
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.util import dt as dt_util, ulid as ulid_util

from ..const import DOMAIN
from ..engine.influx import CannotConnect, InfluxClient, InfluxError
from ..engine.migration.discovery import discover, measure_read_rate
from ..engine.migration.ledger import MigrationLedger
from ..engine.migration.model import (
    MigrationConfig,
    Phase,
    can_start_migration,
    plan,
    start_migration,
)
from ..recording import Ingestion
from .figures import MigrationFigures
from .issues import RUN_ISSUES, MigrationIssues
from .options import MigrationOptions
from .phase_changes import PhaseChanges
from .phases import MigrationPhases
from .record import MigrationRecord
from .rollback import MigrationRollback

# The backfill reached about half the raw read rate on the reference machine (README): a
# dry run without an earlier backfill estimates from a read measured on the user's server.
_BACKFILL_SHARE_OF_READ = 0.5
# How many entity ids a dry-run answer lists.
_LISTED = 20


class MigrationActions:
    """Start, dry run, pause, resume, roll back and validate one entry's migration."""

    def __init__(
        self,
        *,
        client: InfluxClient,
        ingestion: Ingestion,
        record: MigrationRecord,
        figures: MigrationFigures,
        issues: MigrationIssues,
        changes: PhaseChanges,
        options: MigrationOptions,
        phases: MigrationPhases,
        rollback: MigrationRollback,
        notify: Callable[[], None],
    ) -> None:
        self._client = client
        self._ingestion = ingestion
        self._record = record
        self._figures = figures
        self._issues = issues
        self._changes = changes
        self._options = options
        self._phases = phases
        self._rollback = rollback
        self._notify = notify

    async def async_start(self, config: MigrationConfig) -> ServiceResponse:
        state = self._record.state
        if state is not None and not can_start_migration(state):
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="migration_already_running",
                translation_placeholders={"phase": state.phase.value},
            )
        target = self._options.target_for(config.strategy)
        if config.dry_run:
            return await _guard(self._async_dry_run(config, target))
        state = start_migration(config, migration_id=ulid_util.ulid_now(), now=dt_util.utcnow())
        state.ledger = MigrationLedger(
            source_database=self._client.database,
            target_database=target,
            recorded_before=tuple(sorted(self._ingestion.recordings)),
        )
        self._record.state = state
        self._record.target_database = target
        self._record.cleanup_due = None
        self._figures.restart_throughput()
        self._issues.clear(*RUN_ISSUES)
        await self._changes.async_record("started", Phase.IDLE, Phase.PREPARATION, "started")
        self._phases.start()
        return {
            "migration_id": state.migration_id,
            "strategy": config.strategy.value,
            "phase": state.phase.value,
            "target_database": target,
        }

    async def _async_dry_run(self, config: MigrationConfig, target: str) -> ServiceResponse:
        """The plan, summary first, with a time estimate from a measured rate."""
        summary = await discover(self._client, self._client.database, config)
        rate, basis = self._record.measured_rate, "last_backfill"
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
        state = self._record.require_state()
        if not state.is_running:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="migration_not_running",
                translation_placeholders={"phase": state.phase.value},
            )
        await self._phases.async_cancel()
        await self._changes.async_transition(Phase.PAUSED, "paused by the user")
        return {"phase": self._record.require_state().phase.value}

    async def async_resume(self) -> ServiceResponse:
        state = self._record.require_state()
        if state.phase is not Phase.PAUSED or state.phase_before_pause is None:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="migration_not_paused",
                translation_placeholders={"phase": state.phase.value},
            )
        self._issues.clear("migration_paused", "cleanup_paused")
        await self._changes.async_transition(state.phase_before_pause, "resumed by the user")
        self._phases.start()
        return {"phase": self._record.require_state().phase.value}

    async def async_rollback(self, *, reason: str, keep_target: bool) -> ServiceResponse:
        state = self._record.require_state()
        ledger = state.ledger
        if state.phase is Phase.ROLLED_BACK and ledger is not None and ledger.removal_pending:
            removed = await self._rollback.async_remove_or_raise()
            return {"phase": state.phase.value, "points_removed": removed, "reason": reason}
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
            await _guard(self._client.ping())
        await self._phases.async_cancel()
        removed = await self._rollback.async_rollback(
            reason, keep_target=keep_target, automatic=False
        )
        return {
            "phase": self._record.require_state().phase.value,
            "points_removed": removed,
            "kept_target_data": keep_target,
            "reason": reason,
        }

    async def async_validate(self) -> ServiceResponse:
        state = self._record.require_state()
        if state.phase is Phase.ROLLED_BACK or not state.backfill_done:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="validation_needs_backfill",
                translation_placeholders={"phase": state.phase.value},
            )
        result = await _guard(self._phases.async_validate_now())
        await self._record.async_save()
        self._notify()
        return result


async def _guard[T](work: Awaitable[T]) -> T:
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


def _duration_text(seconds: int) -> str:
    """A duration the way a person says it: under a minute, 12 minutes, 3.5 hours."""
    if seconds < 60:
        return "under a minute"
    if seconds < 5_400:
        return f"{round(seconds / 60)} minutes"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86_400:.1f} days"
