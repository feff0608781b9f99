"""Diagnostics: connection (secrets redacted), recording figures and the migration state."""

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from . import IngestorConfigEntry
from .const import CONF_PASSWORD, CONF_TOKEN

TO_REDACT = {CONF_PASSWORD, CONF_TOKEN}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: IngestorConfigEntry
) -> dict[str, Any]:
    """What a bug report needs, without credentials."""
    data = entry.runtime_data
    return {
        "entry": {
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": dict(entry.options),
        },
        "ingestion": {
            "layouts": sorted(data.ingestion.writers),
            "stats": asdict(data.ingestion.stats),
        },
        "migration": data.migration.diagnostics(),
    }
