"""Rolling a migration back: recording as before, and removing what the migration wrote.

The removal deletes only what the ledger says the migration wrote; one that fails is retried
later on an HA timer until it is done, across restarts.
"""

import asyncio
from datetime import datetime, timedelta
import logging

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.helpers.event import async_call_later
from homeassistant.util import dt as dt_util

from ..const import DOMAIN
from ..engine.influx import InfluxClient, InfluxError
from ..engine.line_protocol import to_time_ns
from ..engine.migration.ledger import Layout, Recording
from ..engine.migration.model import Phase
from ..engine.migration.removal import remove_migrated
from ..recording import Ingestion
from .figures import MigrationFigures
from .issues import MigrationIssues
from .phase_changes import PhaseChanges
from .record import MigrationRecord

_LOGGER = logging.getLogger(__name__)

# How long a rollback waits for the retired optimized writer to deliver what it held, so its
# points are removed too (the server is up: it answered a ping just before).
_DRAIN_SECONDS = 30.0
# Live points of the dual-write period are removed up to this long after the rollback.
_LIVE_MARGIN = timedelta(minutes=1)


class MigrationRollback:
    """The rollback of one entry's migration, and the removal of what it wrote."""

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
        retry_seconds: float,
    ) -> None:
        self._hass = hass
        self._entry = entry
        self._client = client
        self._ingestion = ingestion
        self._record = record
        self._figures = figures
        self._issues = issues
        self._changes = changes
        # A removal that failed is retried in the background, this often at most.
        self._retry_seconds = retry_seconds
        self._removal: asyncio.Task[None] | None = None
        self._retry: CALLBACK_TYPE | None = None

    async def async_rollback(self, reason: str, *, keep_target: bool, automatic: bool) -> int:
        """Record the rollback, go back to the recording from before, remove what was written.

        The rollback is saved before anything is removed, so a failure during the removal
        (or a restart) leaves a rolled-back migration whose removal is retried, never a
        half-undone one that resumes.
        """
        ledger = self._record.ledger()
        ledger.removal_pending = not keep_target
        self._figures.restart_throughput()
        self._issues.clear("migration_paused", "cleanup_paused", "migration_failed")
        await self._changes.async_transition(Phase.ROLLED_BACK, reason)
        if automatic:
            self._issues.raise_issue(
                "migration_rolled_back",
                ir.IssueSeverity.ERROR,
                reason=reason,
                report=str(self._record.report_path()),
            )
        removed = 0
        failure: Exception | None = None
        if ledger.removal_pending:
            try:
                removed = await self._async_remove(attempts=3)
            except InfluxError as err:
                failure = err
                self.start_removal()
        await self._record.audit(
            {"event": "rolled_back", "points_removed": removed, "kept": keep_target}
        )
        await self._record.async_write_report()
        if failure is not None:
            self._issues.raise_issue(
                "rollback_incomplete", ir.IssueSeverity.WARNING, error=str(failure)
            )
            if not automatic:
                raise _removal_failed(failure) from failure
        return removed

    async def async_remove_or_raise(self) -> int:
        """Finish the removal of a recorded rollback now; retried later if it fails."""
        try:
            return await self._async_remove(attempts=3)
        except InfluxError as err:
            self.start_removal()
            raise _removal_failed(err) from err

    def start_removal(self) -> None:
        """Remove what the rolled-back migration wrote, in the background, until done."""
        if self._retry is not None or (self._removal is not None and not self._removal.done()):
            return
        self._removal = self._entry.async_create_background_task(
            self._hass,
            self._async_remove_once(),
            f"{DOMAIN} rollback removal {self._entry.entry_id}",
        )

    async def async_stop(self) -> None:
        """Stop the background removal; a restart takes it up again (it is in the ledger)."""
        retry, self._retry = self._retry, None
        if retry is not None:
            retry()
        removal, self._removal = self._removal, None
        if removal is not None and not removal.done():
            removal.cancel()
            await asyncio.gather(removal, return_exceptions=True)

    async def _async_remove_once(self) -> None:
        try:
            await self._async_remove(attempts=None)
        except InfluxError as err:
            _LOGGER.warning("Removing the rolled-back data failed (%s); retrying", err)
            self._retry = async_call_later(self._hass, self._retry_seconds, self._retry_due)

    @callback
    def _retry_due(self, _now: datetime) -> None:
        self._retry = None
        self.start_removal()

    async def _async_remove(self, *, attempts: int | None) -> int:
        """Remove what the ledger says this migration wrote to the target; points removed."""
        state = self._record.require_state()
        ledger = self._record.ledger()
        target = ledger.target_database
        # What the retired optimized writer still holds lands first, so it is removed too.
        await self._ingestion.async_drained(Recording(Layout.OPTIMIZED, target), _DRAIN_SECONDS)
        removal = await remove_migrated(
            self._client,
            state,
            until_ns=to_time_ns(dt_util.utcnow() + _LIVE_MARGIN),
            # Only entities this Home Assistant knows: another writer's series stay.
            known_entities=(
                set(self._hass.states.async_entity_ids())
                | set(er.async_get(self._hass).entities)
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
        await self._record.async_save()
        self._issues.clear("rollback_incomplete")
        await self._record.audit(
            {
                "event": "rollback_removed",
                "points": removal.points,
                "rollup_points": removal.rollup_points,
                "dropped_database": removal.dropped_database,
                "deletions": removal.deletions,
            }
        )
        return removal.points


def _removal_failed(err: Exception) -> HomeAssistantError:
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key="rollback_removal_failed",
        translation_placeholders={"error": str(err)},
    )
