"""The entry's push coordinator: one immutable snapshot of recording and the migration.

Nothing is polled. The writers and the migration call :meth:`IngestorCoordinator.async_publish`
whenever a figure changes; it takes a snapshot, hands it to the entities, and turns what the
snapshot says about the server into a reauth flow, repair issues and one log line per outage.
"""

from dataclasses import dataclass
from datetime import datetime
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator

from .const import DOMAIN
from .engine.influx import InfluxClient
from .engine.migration.model import Phase
from .engine.writer import ServerProblem
from .recording import Ingestion, IngestStats

if TYPE_CHECKING:
    from .migration import MigrationController

_LOGGER = logging.getLogger(__package__)


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestorSnapshot:
    """Everything the entities show, taken at one moment."""

    recording: IngestStats
    # The live writers and a running backfill each find out on their own.
    connected: bool
    phase: Phase
    running: bool
    progress: float
    records_migrated: int
    records_total: int | None
    records_failed: int
    error_rate_percent: float
    integrity_percent: float | None
    throughput: float | None
    eta: datetime | None
    cleanup_due: datetime | None
    query_time_improvement: float | None

    @classmethod
    def take(cls, recording: Ingestion, migration: "MigrationController") -> "IngestorSnapshot":
        """Read the figures now."""
        stats = recording.stats
        return cls(
            recording=stats,
            connected=stats.connected and migration.server_reachable,
            phase=migration.phase,
            running=migration.running,
            progress=migration.progress,
            records_migrated=migration.records_migrated,
            records_total=migration.records_total,
            records_failed=migration.records_failed,
            error_rate_percent=migration.error_rate_percent,
            integrity_percent=migration.integrity_percent,
            throughput=migration.throughput,
            eta=migration.eta,
            cleanup_due=migration.cleanup_due,
            query_time_improvement=migration.query_time_improvement,
        )


class IngestorCoordinator(DataUpdateCoordinator[IngestorSnapshot]):
    """Publishes a snapshot whenever recording or the migration reports a change."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry,
        *,
        client: InfluxClient,
        storage_dir: Path,
        reachable: bool,
    ) -> None:
        """``reachable``: whether setup found the server up (its outage is already logged)."""
        # No update interval: nothing is polled, every snapshot is pushed.
        super().__init__(hass, _LOGGER, config_entry=entry, name=f"{DOMAIN} {entry.title}")
        self._entry = entry
        self._client = client
        self._storage_dir = storage_dir
        self._available = reachable
        self._sources: tuple[Ingestion, MigrationController] | None = None

    def watch(self, recording: Ingestion, migration: "MigrationController") -> None:
        """Start publishing what these two show; the first snapshot is taken now."""
        self._sources = (recording, migration)
        self.async_publish()

    @callback
    def async_publish(self) -> None:
        """Take a snapshot, push it to the entities and act on the server's health."""
        if self._sources is None:
            return  # the writers report while setup is still building the controller
        snapshot = IngestorSnapshot.take(*self._sources)
        self.async_set_updated_data(snapshot)
        self._async_act_on_health(snapshot)

    async def _async_update_data(self) -> IngestorSnapshot:
        """A requested refresh (homeassistant.update_entity) reads the figures again."""
        if self._sources is None:
            raise RuntimeError("the coordinator publishes only once it watches its sources")
        return IngestorSnapshot.take(*self._sources)

    @callback
    def _async_act_on_health(self, snapshot: IngestorSnapshot) -> None:
        """Turn writer problems into a reauth flow or a repair issue, and clear them when
        fixed; log an outage and its end once each."""
        stats = snapshot.recording
        if snapshot.connected != self._available:
            self._available = snapshot.connected
            if snapshot.connected:
                _LOGGER.info(
                    "InfluxDB at %s is available again; replaying %d spooled points",
                    self._client.settings.url,
                    stats.spooled_points,
                )
            else:
                log_unavailable(self._client, stats.last_error or "the backfill cannot reach it")
        entry_id = self._entry.entry_id
        if ServerProblem.INVALID_AUTH in stats.problems:
            self._entry.async_start_reauth(self.hass)
        issue_id = f"database_missing_{entry_id}"
        if stats.missing_databases:
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                issue_id,
                is_fixable=False,
                severity=ir.IssueSeverity.ERROR,
                translation_key="database_missing",
                translation_placeholders={"database": ", ".join(stats.missing_databases)},
            )
        else:
            ir.async_delete_issue(self.hass, DOMAIN, issue_id)
        damaged_id = f"spool_damaged_{entry_id}"
        if stats.damaged_points:
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                damaged_id,
                is_fixable=False,
                severity=ir.IssueSeverity.WARNING,
                translation_key="spool_damaged",
                translation_placeholders={
                    "points": str(stats.damaged_points),
                    "path": str(self._storage_dir),
                },
            )


def log_unavailable(client: InfluxClient, error: str) -> None:
    """One info line when the server goes away (setup's check or a writer finds out)."""
    _LOGGER.info(
        "InfluxDB at %s is unavailable (%s); recording to the spool until it is back",
        client.settings.url,
        error,
    )
