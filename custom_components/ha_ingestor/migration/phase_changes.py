"""How a migration changes phase: the writers it needs first, then saved, audited, announced."""

from collections.abc import Callable

from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util

from ..const import DOMAIN
from ..engine.migration.ledger import Layout, Recording
from ..engine.migration.model import MigrationState, Phase, transition
from ..recording import Ingestion
from .record import MigrationRecord

EVENT_MIGRATION = f"{DOMAIN}_migration_event"

# From the cutover until the cleanup has finished, both layouts are recorded.
_BOTH_LAYOUT_PHASES = frozenset(
    {Phase.DUAL_WRITE, Phase.BACKFILL, Phase.VALIDATION, Phase.SWITCHOVER, Phase.CLEANUP}
)


class PhaseChanges:
    """Every phase change of one entry's migration, and what is recorded live in each phase."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry_id: str,
        *,
        record: MigrationRecord,
        ingestion: Ingestion,
        notify: Callable[[], None],
    ) -> None:
        self._hass = hass
        self._entry_id = entry_id
        self._record = record
        self._ingestion = ingestion
        self._notify = notify

    def recordings_for(self, state: MigrationState | None) -> frozenset[Recording]:
        """What the live writers must record in the phase of ``state``."""
        configured = self._ingestion.configured_recordings
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

    async def async_apply_layouts(self) -> None:
        """Record the layouts the current phase needs."""
        await self._ingestion.async_set_recordings(self.recordings_for(self._record.state))

    async def async_transition(self, to: Phase, reason: str) -> None:
        state = self._record.require_state()
        previous = state.phase
        # Writers the new phase needs start first, so that no state change falls between the
        # moment the transition records (the cutover) and the writer that records it.
        ahead = transition(state, to, reason=reason, now=dt_util.utcnow())
        current = self._ingestion.recordings
        needed = self.recordings_for(ahead)
        if not needed <= current:
            await self._ingestion.async_set_recordings(current | needed)
        self._record.state = transition(state, to, reason=reason, now=dt_util.utcnow())
        await self.async_record("transition", previous, to, reason)
        await self.async_apply_layouts()

    async def async_next(self, reason: str = "phase finished") -> None:
        """On to the strategy's next phase."""
        state = self._record.require_state()
        phases = state.strategy.phases
        await self.async_transition(phases[phases.index(state.phase) + 1], reason)

    async def async_record(self, event: str, previous: Phase, to: Phase, reason: str) -> None:
        """Save the state, and tell the audit log, the event bus and the entities."""
        state = self._record.require_state()
        await self._record.async_save()
        payload = {
            "entry_id": self._entry_id,
            "migration_id": state.migration_id,
            "event": event,
            "from_phase": previous.value,
            "to_phase": to.value,
            "reason": reason,
            "strategy": state.strategy.value,
            "records_migrated": state.records_migrated,
            "records_failed": state.records_failed,
        }
        await self._record.audit(payload)
        self._hass.bus.async_fire(EVENT_MIGRATION, payload)
        self._notify()
