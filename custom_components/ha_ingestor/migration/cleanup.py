"""The cleanup phase: the wait for its due time (an HA timer), then the legacy deletion.

Until the due time a rollback restores everything; the due time is saved, so a restart waits
for the same moment.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
import logging
from typing import Any

from homeassistant.core import HomeAssistant, ServiceResponse, callback
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_track_point_in_utc_time
from homeassistant.util import dt as dt_util

from ..const import DOMAIN
from ..engine.influx import InfluxClient, InfluxError
from ..engine.migration.model import Phase
from ..engine.migration.removal import clean_legacy
from .issues import MigrationIssues
from .options import MigrationOptions
from .phase_changes import PhaseChanges
from .record import MigrationRecord

_LOGGER = logging.getLogger(__name__)


class MigrationCleanup:
    """Waits for the cleanup's due time, then deletes what a fresh validation proves copied
    (when asked to) and completes the migration."""

    def __init__(
        self,
        hass: HomeAssistant,
        *,
        client: InfluxClient,
        record: MigrationRecord,
        issues: MigrationIssues,
        changes: PhaseChanges,
        options: MigrationOptions,
        validate: Callable[[], Awaitable[dict[str, Any]]],
        notify: Callable[[], None],
    ) -> None:
        self._hass = hass
        self._client = client
        self._record = record
        self._issues = issues
        self._changes = changes
        self._options = options
        self._validate = validate
        self._notify = notify
        # Resolved when the wait ends: at the due time, or sooner when asked.
        self._wait_ended: asyncio.Future[None] | None = None

    async def async_run(self) -> None:
        """The cleanup phase, from its wait to the completed migration."""
        state = self._record.require_state()
        if self._record.cleanup_due is None:
            self._record.cleanup_due = dt_util.utcnow() + timedelta(
                hours=state.config.cleanup_delay_hours
            )
            await self._record.async_save()
        self._notify()
        await self._async_wait_until(self._record.cleanup_due)
        if state.config.delete_legacy_data and not await self._async_delete_legacy():
            return
        await self._changes.async_next("cleanup finished")
        await self._record.async_write_report()
        await self._options.async_apply_completion(self._record.ledger(), self._record.async_save)

    async def async_run_now(
        self, *, delete_legacy_data: bool | None = None, strict: bool = False
    ) -> ServiceResponse:
        """End the cleanup wait now, deleting legacy history as asked (or as configured).

        Outside the cleanup this does nothing, or raises a translated error when ``strict``.
        """
        state = self._record.state
        if state is None or state.phase is not Phase.CLEANUP:
            if strict:
                raise ServiceValidationError(
                    translation_domain=DOMAIN,
                    translation_key="not_in_cleanup" if state else "no_migration",
                    translation_placeholders={
                        "phase": state.phase.value if state else Phase.IDLE.value
                    },
                )
            return None
        if delete_legacy_data is not None and delete_legacy_data != state.config.delete_legacy_data:
            state.config = state.config.with_overrides(delete_legacy_data=delete_legacy_data)
            await self._record.audit(
                {"event": "cleanup_setting", "delete_legacy_data": delete_legacy_data}
            )
        due = self._record.cleanup_due = dt_util.utcnow()
        self._end_wait()
        await self._record.async_save()
        self._notify()
        return {
            "phase": state.phase.value,
            "delete_legacy_data": state.config.delete_legacy_data,
            "cleanup_due": due.isoformat(),
        }

    async def _async_wait_until(self, due: datetime) -> None:
        """Return at ``due`` (an HA timer, cancelled with the task), or once the wait is ended."""
        ended: asyncio.Future[None] = self._hass.loop.create_future()
        self._wait_ended = ended

        @callback
        def due_now(_now: datetime) -> None:
            if not ended.done():
                ended.set_result(None)

        cancel = async_track_point_in_utc_time(self._hass, due_now, due)
        try:
            await ended
        finally:
            cancel()
            self._wait_ended = None

    def _end_wait(self) -> None:
        if self._wait_ended is not None and not self._wait_ended.done():
            self._wait_ended.set_result(None)

    async def _async_delete_legacy(self) -> bool:
        """Delete the legacy history a fresh validation proves copied; False when paused."""
        state = self._record.require_state()
        ledger = self._record.ledger()
        try:
            # Proven again right before anything is deleted: the copy must still be there.
            await self._validate()
            await self._record.async_save()
            deleted, deletions = await clean_legacy(
                self._client, state, save=self._record.async_save_state
            )
        except InfluxError as err:
            _LOGGER.warning("Cleanup stopped (%s); it continues when resumed", err)
            await self._changes.async_transition(Phase.PAUSED, f"cleanup failed: {err}")
            self._issues.raise_issue(
                "cleanup_paused", ir.IssueSeverity.WARNING, error=str(err) or type(err).__name__
            )
            return False
        kept = sorted((set(ledger.copied) - set(ledger.verified)) | ledger.dead_lettered)
        await self._record.audit(
            {
                "event": "legacy_deleted",
                "points": deleted,
                "series": deletions,
                "entities_kept": len(kept),
                "kept_examples": kept[:20],
            }
        )
        return True
