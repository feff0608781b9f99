"""ha_ingestor: ingest Home Assistant state changes into InfluxDB and migrate their history."""

from dataclasses import dataclass
import logging
from pathlib import Path
import shutil

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import Event, HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.storage import Store
from homeassistant.helpers.typing import ConfigType
import voluptuous as vol

from .connection import async_create_influx_client
from .const import DOMAIN
from .coordinator import IngestorCoordinator, log_unavailable
from .engine.influx import CannotConnect, DatabaseNotFound, InfluxClient, InvalidAuth
from .migration import STORE_VERSION, MigrationController
from .options import EntryOptions
from .recording import Ingestion

_LOGGER = logging.getLogger(__name__)

PLATFORMS = [Platform.BINARY_SENSOR, Platform.SENSOR]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


@dataclass(kw_only=True)
class IngestorData:
    """Everything one config entry runs, kept in ``entry.runtime_data``."""

    client: InfluxClient
    options: EntryOptions
    ingestion: Ingestion
    migration: MigrationController
    coordinator: IngestorCoordinator
    storage_dir: Path


type IngestorConfigEntry = ConfigEntry[IngestorData]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the services once; they act on a config entry chosen in the call."""
    from .services import async_setup_services  # noqa: PLC0415 - avoids an import cycle

    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: IngestorConfigEntry) -> bool:
    """Check the server, then start recording and resume any unfinished migration."""
    try:
        options = EntryOptions.parse(entry.options)
    except (vol.Invalid, ValueError) as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="invalid_options",
            translation_placeholders={"error": str(err)},
        ) from err
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
        log_unavailable(client, str(err))

    storage_dir = Path(hass.config.path(DOMAIN, entry.entry_id))
    try:
        await hass.async_add_executor_job(lambda: storage_dir.mkdir(parents=True, exist_ok=True))
    except OSError as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="storage_unavailable",
            translation_placeholders={"path": str(storage_dir), "error": str(err)},
        ) from err
    coordinator = IngestorCoordinator(
        hass, entry, client=client, storage_dir=storage_dir, reachable=reachable
    )
    ingestion = Ingestion(hass, client, options, storage_dir, coordinator.async_publish)
    migration = MigrationController(
        hass,
        entry,
        client=client,
        options=options,
        ingestion=ingestion,
        storage_dir=storage_dir,
        on_change=coordinator.async_publish,
    )
    entry.runtime_data = IngestorData(
        client=client,
        options=options,
        ingestion=ingestion,
        migration=migration,
        coordinator=coordinator,
        storage_dir=storage_dir,
    )
    await migration.async_load()
    await ingestion.async_start(migration.wanted_recordings, reachable=reachable)
    # Only now: with no writer started yet, the figures would say "connected" for a moment.
    coordinator.watch(ingestion, migration)
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
        data.options = EntryOptions.parse(entry.options)
        data.migration.use_options(data.options)
        data.ingestion.use_recording_options(data.options)
        await data.migration.async_apply_layouts()
        return
    await hass.config_entries.async_reload(entry.entry_id)
