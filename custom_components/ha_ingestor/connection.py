"""Build the InfluxDB client for a config entry's connection data, on HA's shared session."""

from collections.abc import Mapping
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from .const import (
    CONF_API_VERSION,
    CONF_BUCKET,
    CONF_DATABASE,
    CONF_ORGANIZATION,
    CONF_PASSWORD,
    CONF_TOKEN,
    CONF_URL,
    CONF_USERNAME,
    CONF_VERIFY_SSL,
)
from .engine.influx import ApiVersion, InfluxClient, ServerSettings, create_client


def server_settings(data: Mapping[str, Any]) -> ServerSettings:
    """Connection settings from config entry data (or flow input)."""
    api_version = ApiVersion(data[CONF_API_VERSION])
    return ServerSettings(
        api_version=api_version,
        url=data[CONF_URL],
        database=data[CONF_DATABASE] if api_version is ApiVersion.V1 else data[CONF_BUCKET],
        verify_ssl=data.get(CONF_VERIFY_SSL, True),
        username=data.get(CONF_USERNAME) or None,
        password=data.get(CONF_PASSWORD) or None,
        token=data.get(CONF_TOKEN) or None,
        organization=data.get(CONF_ORGANIZATION) or None,
    )


def async_create_influx_client(hass: HomeAssistant, data: Mapping[str, Any]) -> InfluxClient:
    """An InfluxDB client using HA's shared aiohttp session."""
    settings = server_settings(data)
    return create_client(async_get_clientsession(hass, settings.verify_ssl), settings)


def unique_id(data: Mapping[str, Any]) -> str:
    """One entry per server and database (1.x) or server, organization and bucket (2.x)."""
    settings = server_settings(data)
    url = settings.url.rstrip("/").lower()
    if settings.api_version is ApiVersion.V1:
        return f"{url}/{settings.database}"
    return f"{url}/{settings.organization}/{settings.database}"
