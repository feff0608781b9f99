"""ha_ingestor: ingest Home Assistant state changes into InfluxDB and migrate their history."""

from dataclasses import dataclass
import logging
from pathlib import Path
import shutil

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryError
from homeassistant.helpers import config_validation as cv, issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.storage import Store
from homeassistant.helpers.typing import ConfigType

from .connection import async_create_influx_client
from .const import DOMAIN
from .engine.influx import CannotConnect, DatabaseNotFound, InfluxClient, InvalidAuth
from .migration import STORE_VERSION, MigrationController
from .recording import Ingestion

_LOGGER = logging.getLogger(__name__)

PLATFORMS = [Platform.BINARY_SENSOR, Platform.SENSOR]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


@dataclass(kw_only=True)
class IngestorData:
    """Everything one config entry runs, kept in ``entry.runtime_data``."""

    client: InfluxClient
    ingestion: Ingestion
    migration: MigrationController
    storage_dir: Path
    signal: str
    # Whether InfluxDB was reachable when last looked at: an outage and its end are logged
    # once for the entry, whichever writer or backfill noticed it.
    available: bool = True


type IngestorConfigEntry = ConfigEntry[IngestorData]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the services once; they act on a config entry chosen in the call."""
    from .services import async_setup_services  # noqa: PLC0415 - avoids an import cycle

    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: IngestorConfigEntry) -> bool:
    """Check the server, then start recording and resume any unfinished migration."""
    client = async_create_influx_client(hass, entry.data)
    placeholders = {"url": client.settings.url, "database": client.database}
    reachable = True
    try:
        await client.ping()
        await client.validate()
    except InvalidAuth as err:
        raise ConfigEntryAuthFailed(
            translation_domain=DOMAIN,
            translation_key="invalid_auth",
            translation_placeholders=placeholders,
        ) from err
    except DatabaseNotFound as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="database_not_found",
            translation_placeholders=placeholders,
        ) from err
    except CannotConnect as err:
        # Recording must not stop because the server is down: the writers spool to disk and
        # replay when it is back, so set up anyway (the connectivity sensor shows it).
        reachable = False
        _log_unavailable(client, str(err))

    storage_dir = Path(hass.config.path(DOMAIN, entry.entry_id))
    try:
        await hass.async_add_executor_job(lambda: storage_dir.mkdir(parents=True, exist_ok=True))
    except OSError as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="storage_unavailable",
            translation_placeholders={"path": str(storage_dir), "error": str(err)},
        ) from err
    signal = f"{DOMAIN}_{entry.entry_id}_update"
    ingestion = Ingestion(hass, client, entry.options, storage_dir, signal)
    migration = MigrationController(
        hass,
        entry,
        client=client,
        ingestion=ingestion,
        storage_dir=storage_dir,
        signal=signal,
    )
    entry.runtime_data = IngestorData(
        client=client,
        ingestion=ingestion,
        migration=migration,
        storage_dir=storage_dir,
        signal=signal,
        available=reachable,
    )
    await migration.async_load()
    await ingestion.async_start(migration.wanted_recordings, reachable=reachable)
    try:
        await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    except Exception:
        # HA does not unload an entry whose setup failed: stop what already runs, or its
        # writers and event listener would go on recording for an entry that is not loaded.
        await migration.async_shutdown()
        await ingestion.async_stop()
        raise

    async def _async_flush_on_stop(_event: Event) -> None:
        await migration.async_shutdown()
        await ingestion.async_stop()

    entry.async_on_unload(
        hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, _async_flush_on_stop)
    )

    @callback
    def _async_updated() -> None:
        _async_check_health(hass, entry)

    entry.async_on_unload(async_dispatcher_connect(hass, signal, _async_updated))
    entry.async_on_unload(entry.add_update_listener(_async_options_updated))
    migration.async_resume_after_restart()
    return True


async def async_unload_entry(hass: HomeAssistant, entry: IngestorConfigEntry) -> bool:
    """Stop the migration task and flush the writers; pending points go to the spool."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        await entry.runtime_data.migration.async_shutdown()
        await entry.runtime_data.ingestion.async_stop()
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: IngestorConfigEntry) -> None:
    """Delete the entry's migration state and its folder, unless points wait in its spool."""
    await Store[dict[str, object]](
        hass, STORE_VERSION, f"{DOMAIN}.{entry.entry_id}.migration"
    ).async_remove()
    storage_dir = Path(hass.config.path(DOMAIN, entry.entry_id))

    def _remove_unless_spooled() -> bool:
        if any(storage_dir.glob("spool-*/*.lp")):
            return False
        shutil.rmtree(storage_dir, ignore_errors=True)
        return True

    if not await hass.async_add_executor_job(_remove_unless_spooled):
        _LOGGER.warning(
            "Kept %s: its spool-* folders hold points never delivered to InfluxDB "
            "(line protocol, one point a line); write them yourself or delete the folder",
            storage_dir,
        )


async def _async_options_updated(hass: HomeAssistant, entry: IngestorConfigEntry) -> None:
    data = entry.runtime_data
    if data.migration.owns_options(entry.options):
        # A completed migration wrote down what it leaves recorded: nothing to restart.
        data.ingestion.use_recording_options(entry.options)
        await data.migration.async_apply_layouts()
        return
    await hass.config_entries.async_reload(entry.entry_id)


def _log_unavailable(client: InfluxClient, error: str) -> None:
    _LOGGER.info(
        "InfluxDB at %s is unavailable (%s); recording to the spool until it is back",
        client.settings.url,
        error,
    )


@callback
def _async_check_health(hass: HomeAssistant, entry: IngestorConfigEntry) -> None:
    """Turn writer problems into a reauth flow or a repair issue, and clear them when fixed;
    log an outage and its end once each."""
    data = entry.runtime_data
    stats = data.ingestion.stats
    available = stats.connected and data.migration.server_reachable
    if available != data.available:
        data.available = available
        if available:
            _LOGGER.info(
                "InfluxDB at %s is available again; replaying %d spooled points",
                data.client.settings.url,
                stats.spooled_points,
            )
        else:
            _log_unavailable(data.client, stats.last_error or "the backfill cannot reach it")
    if "invalid_auth" in stats.problems:
        entry.async_start_reauth(hass)
    issue_id = f"database_missing_{entry.entry_id}"
    if stats.missing_databases:
        ir.async_create_issue(
            hass,
            DOMAIN,
            issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key="database_missing",
            translation_placeholders={"database": ", ".join(stats.missing_databases)},
        )
    else:
        ir.async_delete_issue(hass, DOMAIN, issue_id)
    damaged_id = f"spool_damaged_{entry.entry_id}"
    if stats.damaged_points:
        ir.async_create_issue(
            hass,
            DOMAIN,
            damaged_id,
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="spool_damaged",
            translation_placeholders={
                "points": str(stats.damaged_points),
                "path": str(entry.runtime_data.storage_dir),
            },
        )
