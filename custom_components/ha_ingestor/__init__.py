"""ha_ingestor: ingest Home Assistant state changes into InfluxDB and migrate their history."""

from dataclasses import dataclass
import logging

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryError, ConfigEntryNotReady

from .connection import async_create_influx_client
from .const import DOMAIN
from .influx import CannotConnect, DatabaseNotFound, InfluxClient, InvalidAuth

_LOGGER = logging.getLogger(__name__)


@dataclass(kw_only=True)
class IngestorData:
    """Everything one config entry runs, kept in ``entry.runtime_data``."""

    client: InfluxClient


type IngestorConfigEntry = ConfigEntry[IngestorData]


async def async_setup_entry(hass: HomeAssistant, entry: IngestorConfigEntry) -> bool:
    """Connect to InfluxDB and start the entry's work."""
    client = async_create_influx_client(hass, entry.data)
    placeholders = {"url": client.settings.url, "database": client.database}
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
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="cannot_connect",
            translation_placeholders=placeholders | {"error": str(err)},
        ) from err
    entry.runtime_data = IngestorData(client=client)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: IngestorConfigEntry) -> bool:
    """Stop the entry's work."""
    return True
