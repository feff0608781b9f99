"""What is kept of an entry's migration: its state in HA's Store, the audit log, the report."""

from collections.abc import Mapping
from datetime import datetime
import logging
from pathlib import Path
import shutil
from typing import Any

import aiofiles
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.json import json_dumps
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util

from ..const import DOMAIN
from ..engine.migration.ledger import MigrationLedger, Recording
from ..engine.migration.model import MigrationState, Phase, error_rate

_LOGGER = logging.getLogger(__name__)

STORE_VERSION = 1
AUDIT_FILE = "audit.jsonl"


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


class MigrationRecord:
    """One entry's saved migration, so a restart resumes where it stopped, and its files:
    the audit log of every phase change and the report a finished run leaves."""

    def __init__(
        self, hass: HomeAssistant, entry: ConfigEntry, *, storage_dir: Path, source_database: str
    ) -> None:
        self._hass = hass
        self._entry = entry
        self._storage_dir = storage_dir
        self._source_database = source_database
        self._store: Store[dict[str, Any]] = Store(
            hass, STORE_VERSION, f"{DOMAIN}.{entry.entry_id}.migration"
        )
        self.state: MigrationState | None = None
        self.target_database: str | None = None
        # When the cleanup runs; saved, so a restart keeps the time the user was shown.
        self.cleanup_due: datetime | None = None
        # Points per second of this entry's last backfill (saved), for dry-run estimates.
        self.measured_rate: float | None = None

    def require_state(self) -> MigrationState:
        if self.state is None:
            raise ServiceValidationError(translation_domain=DOMAIN, translation_key="no_migration")
        return self.state

    def ledger(self) -> MigrationLedger:
        ledger = self.require_state().ledger
        if ledger is None:  # pragma: no cover - every started migration has one
            raise HomeAssistantError(translation_domain=DOMAIN, translation_key="no_migration")
        return ledger

    @property
    def dead_letter_path(self) -> Path:
        return self._storage_dir / "migration_dead_letter.jsonl"

    def report_path(self) -> Path:
        state = self.require_state()
        return self._storage_dir / f"migration_report_{state.migration_id}.json"

    async def async_load(self, recorded_before: frozenset[Recording]) -> None:
        """Restore the last migration from storage; a record that does not parse is set aside.

        ``recorded_before`` is what a migration saved without a ledger is taken to have
        found recorded.
        """
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
        self.cleanup_due = cleanup_due
        rate = data.get("measured_points_per_second")
        self.measured_rate = float(rate) if isinstance(rate, int | float) and rate > 0 else None
        if state.ledger is None and state.phase is not Phase.IDLE:
            # Saved by a version without a ledger: nothing is known about what the target
            # held, so nothing in it is ever deleted (see MigrationLedger.protected_spans).
            state.ledger = MigrationLedger(
                source_database=self._source_database,
                target_database=target or self._source_database,
                recorded_before=tuple(sorted(recorded_before)),
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
            await self._hass.async_add_executor_job(copy_aside)
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
            self._hass,
            DOMAIN,
            f"migration_state_unreadable_{self._entry.entry_id}",
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="migration_state_unreadable",
            translation_placeholders={"error": str(err), "path": str(kept)},
        )

    async def async_save_state(self, state: MigrationState) -> None:
        self.state = state
        await self.async_save()

    async def async_save(self) -> None:
        if self.state is None:
            return
        await self._store.async_save(
            {
                "state": self.state.to_dict(),
                "target_database": self.target_database,
                "cleanup_due": self.cleanup_due.isoformat() if self.cleanup_due else None,
                "measured_points_per_second": self.measured_rate,
            }
        )

    async def audit(self, record: dict[str, Any]) -> None:
        line = json_dumps({"time": dt_util.utcnow().isoformat(), **record}) + "\n"
        try:
            async with aiofiles.open(self._storage_dir / AUDIT_FILE, "a") as file:
                await file.write(line)
        except OSError as err:
            _LOGGER.error("Cannot append to the migration audit log: %s", err)

    async def async_write_report(self) -> None:
        state = self.require_state()
        started = state.started_at
        ledger = state.ledger
        report = {
            "migration_id": state.migration_id,
            "strategy": state.strategy.value,
            "phase": state.phase.value,
            "source_database": self._source_database,
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
            async with aiofiles.open(self.report_path(), "w") as file:
                await file.write(json_dumps(report))
        except OSError as err:
            _LOGGER.error("Cannot write the migration report: %s", err)
