"""HA core's own ``influxdb`` integration, as the config flow finds it and copies it.

Core is configured in YAML (``influxdb:`` in configuration.yaml) on the releases this runs on,
and through a config entry on newer ones (connection in its data, layout options and filters
in its options, or still in YAML). :func:`async_find_core_config` reads whichever is there;
:func:`from_core_config` turns it into this integration's entry data and options: the
connection, every option that shapes the legacy layout, and the include/exclude filters.
"""

from collections.abc import Mapping
from dataclasses import dataclass
import logging
from typing import Any, Final

from homeassistant.core import HomeAssistant
from homeassistant.helpers.reload import async_integration_yaml_config
from yarl import URL

from .const import (
    CONF_API_VERSION,
    CONF_BUCKET,
    CONF_COMPONENT_CONFIG,
    CONF_COMPONENT_CONFIG_DOMAIN,
    CONF_COMPONENT_CONFIG_GLOB,
    CONF_DATABASE,
    CONF_DEFAULT_MEASUREMENT,
    CONF_EXCLUDE_DOMAINS,
    CONF_EXCLUDE_ENTITIES,
    CONF_EXCLUDE_GLOBS,
    CONF_IGNORE_ATTRIBUTES,
    CONF_INCLUDE_DOMAINS,
    CONF_INCLUDE_ENTITIES,
    CONF_INCLUDE_GLOBS,
    CONF_MEASUREMENT_ATTR,
    CONF_ORGANIZATION,
    CONF_OVERRIDE_MEASUREMENT,
    CONF_PASSWORD,
    CONF_TAGS,
    CONF_TAGS_ATTRIBUTES,
    CONF_TOKEN,
    CONF_URL,
    CONF_USERNAME,
    CONF_VERIFY_SSL,
    SECTION_INGESTION,
    SECTION_LEGACY,
)
from .engine.influx import ApiVersion

_LOGGER = logging.getLogger(__name__)

CORE_DOMAIN: Final = "influxdb"

# Core's defaults (homeassistant/components/influxdb/const.py).
_DEFAULT_HOST: Final = "localhost"
_DEFAULT_PORT: Final = 8086
_DEFAULT_DATABASE: Final = "home_assistant"
_DEFAULT_BUCKET: Final = "Home Assistant"
_DEFAULT_V2_URL: Final = "https://us-west-2-1.aws.cloud2.influxdata.com"

_LAYOUT_KEYS: Final = (
    CONF_MEASUREMENT_ATTR,
    CONF_DEFAULT_MEASUREMENT,
    CONF_OVERRIDE_MEASUREMENT,
    CONF_TAGS,
    CONF_TAGS_ATTRIBUTES,
    CONF_IGNORE_ATTRIBUTES,
    CONF_COMPONENT_CONFIG,
    CONF_COMPONENT_CONFIG_DOMAIN,
    CONF_COMPONENT_CONFIG_GLOB,
)
# Core's filter (include/exclude → domains, entities, entity_globs) → our ingestion keys.
_FILTER_KEYS: Final = {
    ("include", "domains"): CONF_INCLUDE_DOMAINS,
    ("include", "entities"): CONF_INCLUDE_ENTITIES,
    ("include", "entity_globs"): CONF_INCLUDE_GLOBS,
    ("exclude", "domains"): CONF_EXCLUDE_DOMAINS,
    ("exclude", "entities"): CONF_EXCLUDE_ENTITIES,
    ("exclude", "entity_globs"): CONF_EXCLUDE_GLOBS,
}
# Core options this integration does not take over, and why they matter.
_NOT_COPIED: Final = ("precision", "ssl_ca_cert", "max_retries")


@dataclass(frozen=True, kw_only=True)
class CoreConfig:
    """What core's influxdb integration is configured with, as this integration's entry."""

    # Where it was found: "yaml", "config_entry" or both ("config_entry+yaml").
    source: str
    data: Mapping[str, Any]
    options: Mapping[str, Any]
    # Core options that are set but have no equivalent here.
    not_copied: tuple[str, ...] = ()

    @property
    def database(self) -> str:
        """The database (1.x) or bucket (2.x) core writes."""
        key = CONF_DATABASE if self.data[CONF_API_VERSION] == ApiVersion.V1 else CONF_BUCKET
        return str(self.data[key])

    def writes(self, data: Mapping[str, Any]) -> bool:
        """Whether core writes the database (or bucket) a connection of ours points at."""
        if str(data.get(CONF_API_VERSION)) != self.data[CONF_API_VERSION]:
            return False
        key = CONF_DATABASE if self.data[CONF_API_VERSION] == ApiVersion.V1 else CONF_BUCKET
        return _same_server(str(data.get(CONF_URL, "")), self.data[CONF_URL]) and data.get(
            key
        ) == self.data.get(key)


def _same_server(first: str, second: str) -> bool:
    def where(url: str) -> tuple[str, int | None, str]:
        try:
            parsed = URL(url.strip())
        except ValueError:
            return url, None, ""
        host = (parsed.host or "").lower()
        # Two names for this machine are one server.
        if host in ("localhost", "127.0.0.1", "::1"):
            host = "localhost"
        return host, parsed.port, parsed.path.rstrip("/")

    return where(first) == where(second)


def from_core_config(conf: Mapping[str, Any], source: str) -> CoreConfig:
    """Our entry data and options for core's (validated) influxdb configuration."""
    api_version = ApiVersion(str(conf.get(CONF_API_VERSION, ApiVersion.V1)))
    data: dict[str, Any] = {
        CONF_API_VERSION: api_version.value,
        CONF_VERIFY_SSL: bool(conf.get(CONF_VERIFY_SSL, True)),
    }
    if api_version is ApiVersion.V1:
        scheme = "https" if conf.get("ssl") else "http"
        host = conf.get("host") or _DEFAULT_HOST
        port = conf.get("port") or _DEFAULT_PORT
        path = (conf.get("path") or "").rstrip("/")
        data[CONF_URL] = f"{scheme}://{host}:{port}{path}"
        data[CONF_DATABASE] = conf.get(CONF_DATABASE) or _DEFAULT_DATABASE
        for key in (CONF_USERNAME, CONF_PASSWORD):
            if conf.get(key):
                data[key] = conf[key]
    else:
        # Core's YAML schema builds "url" from host/ssl/port/path; its entry stores it.
        data[CONF_URL] = str(conf.get(CONF_URL) or _DEFAULT_V2_URL).rstrip("/")
        data[CONF_BUCKET] = conf.get(CONF_BUCKET) or _DEFAULT_BUCKET
        data[CONF_TOKEN] = conf.get(CONF_TOKEN, "")
        data[CONF_ORGANIZATION] = conf.get(CONF_ORGANIZATION, "")

    legacy: dict[str, Any] = {}
    for key in _LAYOUT_KEYS:
        value = conf.get(key)
        if value not in (None, "", [], {}):
            legacy[key] = _plain(value)
    ingestion: dict[str, Any] = {}
    for (kind, name), key in _FILTER_KEYS.items():
        values = (conf.get(kind) or {}).get(name) or []
        if values:
            ingestion[key] = [str(value) for value in values]
    not_copied = tuple(key for key in _NOT_COPIED if conf.get(key) not in (None, 0, ""))
    return CoreConfig(
        source=source,
        data=data,
        options={SECTION_LEGACY: legacy, SECTION_INGESTION: ingestion},
        not_copied=not_copied,
    )


def _plain(value: Any) -> Any:
    """A validated YAML value as plain JSON-safe data (an entry stores it)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    return value


async def async_find_core_config(hass: HomeAssistant) -> CoreConfig | None:
    """Core's influxdb configuration, or ``None`` when core's integration is not set up.

    Its config entry (on releases that have one) wins for the connection and, where it holds
    them, the options; configuration.yaml supplies the rest.
    """
    conf: dict[str, Any] = {}
    sources = []
    entries = hass.config_entries.async_entries(CORE_DOMAIN)
    # Core's YAML is only read when core is set up: reading it loads core's module, which
    # needs its client libraries, installed only for a configured integration.
    found = None
    if CORE_DOMAIN in hass.config.components or entries:
        try:
            found = await async_integration_yaml_config(hass, CORE_DOMAIN)
        except Exception:  # a broken YAML must not break our config flow
            _LOGGER.debug("Could not read core's influxdb YAML configuration", exc_info=True)
    if found and isinstance(yaml_conf := found.get(CORE_DOMAIN), Mapping):
        conf.update(yaml_conf)
        sources.append("yaml")
    for entry in entries:
        conf.update(entry.data)
        conf.update(entry.options)
        sources.insert(0, "config_entry")
        break
    if not sources:
        return None
    return from_core_config(conf, "+".join(sources))
