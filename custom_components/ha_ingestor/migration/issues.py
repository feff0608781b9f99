"""The repair issues a migration raises, and the automatic pause that raises one."""

from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir

from ..const import DOMAIN
from ..engine.migration.model import Phase, error_rate
from ..engine.spool import DeadLetterFile
from ..repairs import FIX_ACTIONS
from .phase_changes import PhaseChanges
from .record import MigrationRecord

# The issues of a run; a new migration starts without any of them.
RUN_ISSUES = (
    "migration_paused",
    "migration_rolled_back",
    "migration_failed",
    "cleanup_paused",
    "rollback_incomplete",
)


class MigrationIssues:
    """One entry's migration issues in HA's repairs, each keyed by issue and entry."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry_id: str,
        *,
        record: MigrationRecord,
        changes: PhaseChanges,
        source_database: str,
    ) -> None:
        self._hass = hass
        self._entry_id = entry_id
        self._record = record
        self._changes = changes
        self._source_database = source_database

    def raise_issue(self, key: str, severity: ir.IssueSeverity, **placeholders: str) -> None:
        state = self._record.state
        ledger = state.ledger if state else None
        ir.async_create_issue(
            self._hass,
            DOMAIN,
            f"{key}_{self._entry_id}",
            is_fixable=key in FIX_ACTIONS,
            data={"key": key, "entry_id": self._entry_id},
            severity=severity,
            translation_key=key,
            translation_placeholders={
                "database": self._source_database,
                "target": ledger.target_database if ledger else self._source_database,
                **placeholders,
            },
        )

    def clear(self, *keys: str) -> None:
        for key in keys:
            ir.async_delete_issue(self._hass, DOMAIN, f"{key}_{self._entry_id}")

    async def async_auto_pause(self, why: str | None = None) -> None:
        """Pause the running phase because something went wrong, with an issue that says what."""
        state = self._record.require_state()
        reason = why or (
            f"error rate {error_rate(state):.2%} is above the pause threshold "
            f"{state.config.max_error_rate:.2%}"
        )
        # Raised before the phase changes: whoever sees "paused" also finds the repair issue.
        self.raise_issue(
            "migration_paused",
            ir.IssueSeverity.WARNING,
            cause=reason,
            failed=f"{state.records_failed:,}",
            example=await self._pause_example(state.phase),
            error_rate=f"{error_rate(state):.2%}",
            threshold=f"{state.config.max_error_rate:.2%}",
        )
        try:
            await self._changes.async_transition(Phase.PAUSED, reason)
        except BaseException:
            self.clear("migration_paused")
            raise

    async def _pause_example(self, pausing: Phase) -> str:
        """One example of what went wrong in the phase being paused: a mismatching entity
        (validation), or a refused point."""
        state = self._record.require_state()
        if pausing is Phase.VALIDATION and state.validation is not None:
            for entity, mismatch in state.validation.mismatches.items():
                return (
                    f"{entity}: {mismatch.legacy_points:,} legacy points, "
                    f"{mismatch.optimized_points:,} optimized, "
                    f"{mismatch.mismatched_records:,} sampled points differ"
                )
        letter = await DeadLetterFile(self._record.dead_letter_path).last()
        if letter is None:
            return "-"
        return f"{letter.reason[:300]} (point: {letter.line[:120]})"
