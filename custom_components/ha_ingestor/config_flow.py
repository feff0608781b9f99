"""Config, reauth, reconfigure and options flows for ha_ingestor."""

from collections.abc import Mapping
import copy
import logging
from typing import Any, Final

from homeassistant.config_entries import (
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.core import callback
from homeassistant.data_entry_flow import section
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.selector import (
    BooleanSelector,
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    ObjectSelector,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
import voluptuous as vol
from yarl import URL

from . import IngestorConfigEntry
from .connection import async_create_influx_client, unique_id
from .const import (
    CONF_API_VERSION,
    CONF_ATTRIBUTE_ALLOWLIST,
    CONF_BATCH_SIZE,
    CONF_BUCKET,
    CONF_CLEANUP_DELAY_HOURS,
    CONF_COMPONENT_CONFIG,
    CONF_COMPONENT_CONFIG_DOMAIN,
    CONF_COMPONENT_CONFIG_GLOB,
    CONF_CONCURRENT_BATCHES,
    CONF_DATABASE,
    CONF_DEFAULT_MEASUREMENT,
    CONF_DELETE_LEGACY_DATA,
    CONF_EXCLUDE_DOMAINS,
    CONF_EXCLUDE_ENTITIES,
    CONF_EXCLUDE_GLOBS,
    CONF_IGNORE_ATTRIBUTES,
    CONF_INCLUDE_DOMAINS,
    CONF_INCLUDE_ENTITIES,
    CONF_INCLUDE_GLOBS,
    CONF_MAX_ERROR_RATE,
    CONF_MEASUREMENT_ATTR,
    CONF_MIGRATION_WINDOW_HOURS,
    CONF_OPTIMIZED_DATABASE,
    CONF_ORGANIZATION,
    CONF_OVERRIDE_MEASUREMENT,
    CONF_PASSWORD,
    CONF_ROLLBACK_THRESHOLD,
    CONF_ROLLUPS,
    CONF_TAGS,
    CONF_TAGS_ATTRIBUTES,
    CONF_TARGET_DATABASE,
    CONF_TOKEN,
    CONF_URL,
    CONF_USERNAME,
    CONF_VALIDATE_PERCENTAGE,
    CONF_VERIFY_SSL,
    CONF_WRITE_MODE,
    DOMAIN,
    MEASUREMENT_ATTR_CHOICES,
    MEASUREMENT_ATTR_DOMAIN_DEVICE_CLASS,
    MEASUREMENT_ATTR_UNIT,
    SECTION_INGESTION,
    SECTION_LEGACY,
    SECTION_MIGRATION,
    WriteMode,
)
from .core_influxdb import CoreConfig, async_find_core_config
from .engine.influx import (
    ApiVersion,
    CannotConnect,
    DatabaseNotFound,
    InvalidAuth,
    NotInfluxDB,
    TlsMismatch,
    WrongApiVersion,
)
from .engine.migration.model import INT_LIMITS, ConfigError, MigrationConfig
from .layouts.legacy import LegacyOptions
from .layouts.optimized import DEFAULT_ALLOWED_ATTRIBUTES, RESERVED_NAMES
from .options import EntryOptions, allowed_attributes

_LOGGER = logging.getLogger(__name__)

# The form shows each option of a translated selector under its translation key, which may not
# hold "__" (hassfest's key rule); the options store core's own value for it.
_MEASUREMENT_ATTR_FORM_KEYS: Final = {MEASUREMENT_ATTR_DOMAIN_DEVICE_CLASS: "domain_device_class"}
_MEASUREMENT_ATTR_VALUES: Final = {key: value for value, key in _MEASUREMENT_ATTR_FORM_KEYS.items()}

# The migration settings' defaults are MigrationConfig's own.
_MIGRATION_DEFAULTS: Final = MigrationConfig()

_PASSWORD = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
_URL = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))
_TEXT = TextSelector()
_TEXT_LIST = TextSelector(TextSelectorConfig(multiple=True))

DEFAULT_V1_URL = "http://localhost:8086"


def _v1_schema(defaults: Mapping[str, Any]) -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_URL, default=defaults.get(CONF_URL, DEFAULT_V1_URL)): _URL,
            vol.Optional(
                CONF_USERNAME, description={"suggested_value": defaults.get(CONF_USERNAME)}
            ): _TEXT,
            vol.Optional(
                CONF_PASSWORD, description={"suggested_value": defaults.get(CONF_PASSWORD)}
            ): _PASSWORD,
            vol.Required(CONF_DATABASE, default=defaults.get(CONF_DATABASE, "home_assistant")): (
                _TEXT
            ),
            vol.Required(CONF_VERIFY_SSL, default=defaults.get(CONF_VERIFY_SSL, True)): (
                BooleanSelector()
            ),
        }
    )


def _v2_schema(defaults: Mapping[str, Any], *, secrets_optional: bool = False) -> vol.Schema:
    token = vol.Optional if secrets_optional else vol.Required
    return vol.Schema(
        {
            vol.Required(CONF_URL, default=defaults.get(CONF_URL, DEFAULT_V1_URL)): _URL,
            token(CONF_TOKEN, description={"suggested_value": defaults.get(CONF_TOKEN)}): (
                _PASSWORD
            ),
            vol.Required(
                CONF_ORGANIZATION, description={"suggested_value": defaults.get(CONF_ORGANIZATION)}
            ): _TEXT,
            # HA core's influxdb integration's default bucket.
            vol.Required(CONF_BUCKET, default=defaults.get(CONF_BUCKET, "Home Assistant")): _TEXT,
            vol.Required(CONF_VERIFY_SSL, default=defaults.get(CONF_VERIFY_SSL, True)): (
                BooleanSelector()
            ),
        }
    )


def _schema_for(
    api_version: ApiVersion, defaults: Mapping[str, Any], *, secrets_optional: bool = False
) -> vol.Schema:
    if api_version is ApiVersion.V1:
        return _v1_schema(defaults)
    return _v2_schema(defaults, secrets_optional=secrets_optional)


async def _async_validate_connection(flow: ConfigFlow, data: Mapping[str, Any]) -> dict[str, str]:
    """Try the server with these settings; return form errors (empty when it works)."""
    try:
        url = URL(str(data[CONF_URL]).strip())
        port = url.port
    except ValueError:
        return {CONF_URL: "invalid_url"}
    # Credentials belong in their own fields: in the URL they would be logged and clash with
    # the Authorization header.
    if url.scheme not in ("http", "https") or not url.host or port is None:
        return {CONF_URL: "invalid_url"}
    if url.user or url.password:
        return {CONF_URL: "invalid_url"}
    is_v1 = data[CONF_API_VERSION] == ApiVersion.V1
    client = async_create_influx_client(flow.hass, data)
    try:
        await client.ping()
        await client.validate()
    except TlsMismatch as err:
        _LOGGER.debug("TLS problem with %s: %s", data[CONF_URL], err)
        return {CONF_URL: "tls_certificate" if err.certificate else "tls_mismatch"}
    except NotInfluxDB as err:
        _LOGGER.debug("%s is not InfluxDB: %s", data[CONF_URL], err)
        return {CONF_URL: "not_influxdb"}
    except CannotConnect as err:
        _LOGGER.debug("Cannot connect to InfluxDB at %s: %s", data[CONF_URL], err)
        return {"base": "cannot_connect"}
    except WrongApiVersion:
        return {"base": "wrong_api_version_v1" if not is_v1 else "wrong_api_version_v2"}
    except InvalidAuth:
        if is_v1 and not data.get(CONF_USERNAME):
            return {CONF_USERNAME: "username_required"}
        return {"base": "invalid_auth"}
    except DatabaseNotFound:
        if is_v1:
            return {CONF_DATABASE: "database_not_found"}
        return {CONF_BUCKET: "bucket_not_found"}
    except Exception:
        _LOGGER.exception("Unexpected error while testing the InfluxDB connection")
        return {"base": "unknown"}
    return {}


def _clean(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Strip whitespace a user pasted around text fields and the URL's trailing slash."""
    cleaned = {
        key: value.strip() if isinstance(value, str) and key != CONF_PASSWORD else value
        for key, value in user_input.items()
    }
    cleaned[CONF_URL] = cleaned[CONF_URL].rstrip("/")
    return cleaned


def _title(data: Mapping[str, Any]) -> str:
    host = URL(data[CONF_URL]).host or data[CONF_URL]
    name = data.get(CONF_DATABASE) or data.get(CONF_BUCKET)
    return f"{name} on {host}"


class HaIngestorConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up a connection to one InfluxDB database or bucket."""

    VERSION = 1
    MINOR_VERSION = 1

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: IngestorConfigEntry) -> OptionsFlow:
        """Options: layouts, filters, migration thresholds."""
        return HaIngestorOptionsFlow()

    _core: CoreConfig | None = None
    # A checked connection waiting for the choice of what to record (core writes there too).
    _pending: dict[str, Any] | None = None

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask which InfluxDB version the server runs, or to copy core's influxdb settings."""
        self._core = await async_find_core_config(self.hass)
        options = ["influxdb_v1", "influxdb_v2"]
        if self._core is not None:
            options.insert(0, "import_core")
        return self.async_show_menu(step_id="user", menu_options=options)

    async def async_step_import_core(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Copy the connection, layout options and filters of core's influxdb integration."""
        core = self._core
        if core is None:
            return self.async_abort(reason="core_not_configured")
        errors: dict[str, str] = {}
        if user_input is not None:
            data = dict(core.data)
            errors = await _async_validate_connection(self, data)
            if not errors:
                await self.async_set_unique_id(unique_id(data))
                self._abort_if_unique_id_configured()
                options = copy.deepcopy(dict(core.options))
                options[SECTION_INGESTION][CONF_WRITE_MODE] = user_input[CONF_WRITE_MODE]
                return self.async_create_entry(title=_title(data), data=data, options=options)
        return self.async_show_form(
            step_id="import_core",
            data_schema=_write_mode_schema(WriteMode.OPTIMIZED),
            errors=errors,
            description_placeholders=_core_placeholders(core),
        )

    async def async_step_core_database(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Core's influxdb integration writes this database: choose what to record first."""
        data = self._pending
        core = self._core
        if data is None or core is None:
            return self.async_abort(reason="core_not_configured")
        if user_input is not None:
            # Its history was written with core's options: they are what reads it back.
            options = copy.deepcopy(dict(core.options))
            options[SECTION_INGESTION][CONF_WRITE_MODE] = user_input[CONF_WRITE_MODE]
            return self.async_create_entry(title=_title(data), data=data, options=options)
        return self.async_show_form(
            step_id="core_database",
            data_schema=_write_mode_schema(WriteMode.OPTIMIZED),
            description_placeholders=_core_placeholders(core),
        )

    async def async_step_influxdb_v1(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Connection to an InfluxDB 1.x server."""
        return await self._async_connection_step(ApiVersion.V1, "influxdb_v1", user_input)

    async def async_step_influxdb_v2(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Connection to an InfluxDB 2.x or Cloud server."""
        return await self._async_connection_step(ApiVersion.V2, "influxdb_v2", user_input)

    async def _async_connection_step(
        self, api_version: ApiVersion, step_id: str, user_input: dict[str, Any] | None
    ) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            data = _clean(user_input) | {CONF_API_VERSION: api_version.value}
            errors = await _async_validate_connection(self, data)
            if not errors:
                await self.async_set_unique_id(unique_id(data))
                self._abort_if_unique_id_configured()
                if self._core is None:
                    self._core = await async_find_core_config(self.hass)
                if self._core is not None and self._core.writes(data):
                    # Recording the legacy layout there too would write every point twice.
                    self._pending = data
                    return await self.async_step_core_database()
                return self.async_create_entry(title=_title(data), data=data)
        return self.async_show_form(
            step_id=step_id,
            data_schema=_schema_for(api_version, user_input or {}),
            errors=errors,
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """The server rejected the stored credentials."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for new credentials (1.x) or a new token (2.x)."""
        entry = self._get_reauth_entry()
        is_v1 = entry.data[CONF_API_VERSION] == ApiVersion.V1
        errors: dict[str, str] = {}
        if user_input is not None:
            data = {**entry.data, **user_input}
            errors = await _async_validate_connection(self, data)
            if not errors:
                return self.async_update_reload_and_abort(entry, data_updates=user_input)
        if is_v1:
            schema = vol.Schema(
                {
                    vol.Optional(
                        CONF_USERNAME,
                        description={"suggested_value": entry.data.get(CONF_USERNAME)},
                    ): _TEXT,
                    vol.Optional(CONF_PASSWORD): _PASSWORD,
                }
            )
        else:
            schema = vol.Schema({vol.Required(CONF_TOKEN): _PASSWORD})
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=schema,
            errors=errors,
            description_placeholders={"title": entry.title},
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change where the entry connects (server moved, database renamed)."""
        entry = self._get_reconfigure_entry()
        api_version = ApiVersion(entry.data[CONF_API_VERSION])
        errors: dict[str, str] = {}
        if user_input is not None:
            data = _clean(user_input) | {CONF_API_VERSION: api_version.value}
            # Secrets are not shown again; left empty, the stored one stays.
            for secret in (CONF_PASSWORD, CONF_TOKEN):
                if not data.get(secret) and entry.data.get(secret):
                    data[secret] = entry.data[secret]
            errors = await _async_validate_connection(self, data)
            if not errors:
                new_id = unique_id(data)
                if any(
                    other.unique_id == new_id and other.entry_id != entry.entry_id
                    for other in self._async_current_entries(include_ignore=False)
                ):
                    return self.async_abort(reason="already_configured")
                return self.async_update_reload_and_abort(
                    entry, unique_id=new_id, title=_title(data), data=data
                )
        return self.async_show_form(
            step_id=f"reconfigure_{'v1' if api_version is ApiVersion.V1 else 'v2'}",
            data_schema=_schema_for(
                api_version,
                {
                    key: value
                    for key, value in (user_input or entry.data).items()
                    if key not in (CONF_PASSWORD, CONF_TOKEN)
                },
                secrets_optional=True,
            ),
            errors=errors,
        )

    async def async_step_reconfigure_v1(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Reconfigure form of a 1.x entry."""
        return await self.async_step_reconfigure(user_input)

    async def async_step_reconfigure_v2(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Reconfigure form of a 2.x entry."""
        return await self.async_step_reconfigure(user_input)


def _write_mode_schema(default: WriteMode) -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_WRITE_MODE, default=default.value): SelectSelector(
                SelectSelectorConfig(
                    options=[mode.value for mode in WriteMode], translation_key=CONF_WRITE_MODE
                )
            )
        }
    )


def _core_placeholders(core: CoreConfig) -> dict[str, str]:
    """What the import copies, as text for the form."""
    legacy = core.options.get(SECTION_LEGACY, {})
    ingestion = core.options.get(SECTION_INGESTION, {})

    def listed(values: Mapping[str, Any]) -> str:
        return "\n".join(f"- {key}: {_shown(value)}" for key, value in values.items()) or "- —"

    return {
        "url": str(core.data.get(CONF_URL, "")),
        "database": core.database,
        "source": core.source,
        "layout": listed(legacy),
        "filters": listed(ingestion),
        "not_copied": ", ".join(core.not_copied) or "—",
    }


def _shown(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{key} ({_shown(item)})" for key, item in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _parse_tags(lines: list[str]) -> dict[str, str] | None:
    """``key=value`` lines → dict; None when a line is malformed."""
    tags: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or not value.strip():
            return None
        tags[key.strip()] = value.strip()
    return tags


def _measurement_attr_form_key(value: str) -> str:
    return _MEASUREMENT_ATTR_FORM_KEYS.get(value, value)


def _options_schema(options: Mapping[str, Any]) -> vol.Schema:
    legacy = options.get(SECTION_LEGACY, {})
    ingestion = options.get(SECTION_INGESTION, {})
    migration = options.get(SECTION_MIGRATION, {})

    def suggested(values: Mapping[str, Any], key: str, default: Any = None) -> dict[str, Any]:
        return {"suggested_value": values.get(key, default)}

    def number(
        minimum: float, maximum: float, step: float, unit: str | None = None
    ) -> NumberSelector:
        config = NumberSelectorConfig(
            min=minimum, max=maximum, step=step, mode=NumberSelectorMode.BOX
        )
        if unit is not None:
            config["unit_of_measurement"] = unit
        return NumberSelector(config)

    def percent(key: str) -> float:
        # Shown in percent, like the sensors; stored as a share (MigrationConfig's unit).
        return round(float(migration.get(key, getattr(_MIGRATION_DEFAULTS, key))) * 100, 4)

    def setting(key: str) -> vol.Required:
        return vol.Required(key, default=migration.get(key, getattr(_MIGRATION_DEFAULTS, key)))

    def whole_number(key: str) -> vol.All:
        low, high = INT_LIMITS[key]
        return vol.All(number(low, high, 1), vol.Coerce(int))

    # Core's YAML form, pasted as it is: {key: {override_measurement, ignore_attributes}}.
    overrides: dict[vol.Marker, ObjectSelector] = {
        vol.Optional(key, description=suggested(legacy, key)): ObjectSelector()
        for key in _OVERRIDE_KEYS
    }
    return vol.Schema(
        {
            vol.Required(SECTION_LEGACY): section(
                vol.Schema(
                    {
                        vol.Required(
                            CONF_MEASUREMENT_ATTR,
                            default=_measurement_attr_form_key(
                                legacy.get(CONF_MEASUREMENT_ATTR, MEASUREMENT_ATTR_UNIT)
                            ),
                        ): SelectSelector(
                            SelectSelectorConfig(
                                options=[
                                    _measurement_attr_form_key(value)
                                    for value in MEASUREMENT_ATTR_CHOICES
                                ],
                                custom_value=True,
                                mode=SelectSelectorMode.DROPDOWN,
                                translation_key=CONF_MEASUREMENT_ATTR,
                            )
                        ),
                        vol.Optional(
                            CONF_DEFAULT_MEASUREMENT,
                            description=suggested(legacy, CONF_DEFAULT_MEASUREMENT),
                        ): _TEXT,
                        vol.Optional(
                            CONF_OVERRIDE_MEASUREMENT,
                            description=suggested(legacy, CONF_OVERRIDE_MEASUREMENT),
                        ): _TEXT,
                        vol.Optional(
                            CONF_TAGS,
                            description={
                                "suggested_value": [
                                    f"{k}={v}" for k, v in legacy.get(CONF_TAGS, {}).items()
                                ]
                            },
                        ): _TEXT_LIST,
                        vol.Optional(
                            CONF_TAGS_ATTRIBUTES,
                            description=suggested(legacy, CONF_TAGS_ATTRIBUTES, []),
                        ): _TEXT_LIST,
                        vol.Optional(
                            CONF_IGNORE_ATTRIBUTES,
                            description=suggested(legacy, CONF_IGNORE_ATTRIBUTES, []),
                        ): _TEXT_LIST,
                        **overrides,
                    }
                ),
                {"collapsed": True},
            ),
            vol.Required(SECTION_INGESTION): section(
                vol.Schema(
                    {
                        vol.Required(
                            CONF_WRITE_MODE,
                            default=ingestion.get(CONF_WRITE_MODE, WriteMode.LEGACY.value),
                        ): SelectSelector(
                            SelectSelectorConfig(
                                options=[mode.value for mode in WriteMode],
                                translation_key=CONF_WRITE_MODE,
                            )
                        ),
                        vol.Optional(
                            CONF_OPTIMIZED_DATABASE,
                            description=suggested(ingestion, CONF_OPTIMIZED_DATABASE),
                        ): _TEXT,
                        vol.Optional(
                            CONF_ATTRIBUTE_ALLOWLIST,
                            description=suggested(
                                ingestion,
                                CONF_ATTRIBUTE_ALLOWLIST,
                                list(DEFAULT_ALLOWED_ATTRIBUTES),
                            ),
                        ): _TEXT_LIST,
                        vol.Optional(
                            CONF_INCLUDE_ENTITIES,
                            description=suggested(ingestion, CONF_INCLUDE_ENTITIES, []),
                        ): EntitySelector(EntitySelectorConfig(multiple=True)),
                        vol.Optional(
                            CONF_EXCLUDE_ENTITIES,
                            description=suggested(ingestion, CONF_EXCLUDE_ENTITIES, []),
                        ): EntitySelector(EntitySelectorConfig(multiple=True)),
                        vol.Optional(
                            CONF_INCLUDE_DOMAINS,
                            description=suggested(ingestion, CONF_INCLUDE_DOMAINS, []),
                        ): _TEXT_LIST,
                        vol.Optional(
                            CONF_EXCLUDE_DOMAINS,
                            description=suggested(ingestion, CONF_EXCLUDE_DOMAINS, []),
                        ): _TEXT_LIST,
                        vol.Optional(
                            CONF_INCLUDE_GLOBS,
                            description=suggested(ingestion, CONF_INCLUDE_GLOBS, []),
                        ): _TEXT_LIST,
                        vol.Optional(
                            CONF_EXCLUDE_GLOBS,
                            description=suggested(ingestion, CONF_EXCLUDE_GLOBS, []),
                        ): _TEXT_LIST,
                        vol.Required(
                            CONF_ROLLUPS, default=ingestion.get(CONF_ROLLUPS, False)
                        ): BooleanSelector(),
                    }
                ),
                {"collapsed": True},
            ),
            vol.Required(SECTION_MIGRATION): section(
                vol.Schema(
                    {
                        vol.Optional(
                            CONF_TARGET_DATABASE,
                            description=suggested(migration, CONF_TARGET_DATABASE),
                        ): _TEXT,
                        setting(CONF_BATCH_SIZE): whole_number(CONF_BATCH_SIZE),
                        setting(CONF_CONCURRENT_BATCHES): whole_number(CONF_CONCURRENT_BATCHES),
                        vol.Required(
                            CONF_MAX_ERROR_RATE, default=percent(CONF_MAX_ERROR_RATE)
                        ): number(0, 100, 0.1, "%"),
                        vol.Required(
                            CONF_ROLLBACK_THRESHOLD, default=percent(CONF_ROLLBACK_THRESHOLD)
                        ): number(0, 100, 0.1, "%"),
                        vol.Required(
                            CONF_VALIDATE_PERCENTAGE, default=percent(CONF_VALIDATE_PERCENTAGE)
                        ): number(0.1, 100, 0.1, "%"),
                        setting(CONF_MIGRATION_WINDOW_HOURS): whole_number(
                            CONF_MIGRATION_WINDOW_HOURS
                        ),
                        setting(CONF_CLEANUP_DELAY_HOURS): whole_number(CONF_CLEANUP_DELAY_HOURS),
                        setting(CONF_DELETE_LEGACY_DATA): BooleanSelector(),
                    }
                ),
                {"collapsed": True},
            ),
        }
    )


_OVERRIDE_KEYS: Final = (
    CONF_COMPONENT_CONFIG,
    CONF_COMPONENT_CONFIG_DOMAIN,
    CONF_COMPONENT_CONFIG_GLOB,
)
# The key a row of an override list names its entity, domain or glob with (the object
# selector's list form on newer Home Assistant releases).
_ROW_KEYS: Final = ("entity_id", "domain", "entity_glob", "glob", "key")


def _overrides(value: Any) -> dict[str, Any]:
    """An override section as core's YAML holds it: key → {override_measurement, …}.

    Accepts that mapping, or a list of rows each naming its key. Raises ``vol.Invalid``.
    """
    if isinstance(value, Mapping):
        return {str(key).strip(): item if item is not None else {} for key, item in value.items()}
    if isinstance(value, list):
        found: dict[str, Any] = {}
        for row in value:
            if not isinstance(row, Mapping):
                raise vol.Invalid(f"{row!r} is not a mapping")
            named = [key for key in _ROW_KEYS if row.get(key)]
            if len(named) != 1:
                raise vol.Invalid(f"{dict(row)!r} names no entity, domain or glob")
            found[str(row[named[0]]).strip()] = {
                key: item for key, item in row.items() if key != named[0]
            }
        return found
    raise vol.Invalid(f"{value!r} is not a mapping of overrides")


def _validate_overrides(legacy: dict[str, Any]) -> tuple[str, str] | None:
    """Normalize the three override sections in place; (error key, problem) when invalid."""
    for key in _OVERRIDE_KEYS:
        value = legacy.get(key)
        if value in (None, "", [], {}):
            legacy.pop(key, None)
            continue
        try:
            overrides = _overrides(value)
            LegacyOptions.from_options({key: overrides})
        except vol.Invalid as err:
            return f"invalid_{key}", str(err)
        if not all(overrides):
            return f"invalid_{key}", "an entry without a name"
        legacy[key] = overrides
    return None


def _validate_options(
    user_input: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """Turn the options form into stored options, or return per-field errors (and the text
    their messages show)."""
    errors: dict[str, str] = {}
    placeholders = {"problem": ""}
    legacy = dict(user_input.get(SECTION_LEGACY, {}))
    ingestion = dict(user_input.get(SECTION_INGESTION, {}))
    migration = dict(user_input.get(SECTION_MIGRATION, {}))

    if CONF_MEASUREMENT_ATTR in legacy:
        chosen = legacy[CONF_MEASUREMENT_ATTR]
        legacy[CONF_MEASUREMENT_ATTR] = _MEASUREMENT_ATTR_VALUES.get(chosen, chosen)
    tags = _parse_tags([line for line in legacy.get(CONF_TAGS, []) if line.strip()])
    if tags is None:
        errors[SECTION_LEGACY] = "invalid_tags"
    else:
        legacy[CONF_TAGS] = tags
    if (problem := _validate_overrides(legacy)) is not None:
        errors[SECTION_LEGACY], placeholders["problem"] = problem

    for key in (CONF_INCLUDE_DOMAINS, CONF_EXCLUDE_DOMAINS):
        domains = [d.strip() for d in ingestion.get(key, []) if d.strip()]
        try:
            ingestion[key] = [cv.slug(d) for d in domains]
        except vol.Invalid:
            errors[SECTION_INGESTION] = "invalid_domain"
    for key in (CONF_INCLUDE_GLOBS, CONF_EXCLUDE_GLOBS):
        ingestion[key] = [g.strip() for g in ingestion.get(key, []) if g.strip()]
    allowlist = [a.strip() for a in ingestion.get(CONF_ATTRIBUTE_ALLOWLIST, []) if a.strip()]
    ingestion[CONF_ATTRIBUTE_ALLOWLIST] = allowlist
    # The optimized layout's own fields and tags: an attribute of that name would collide.
    if reserved := sorted(set(allowed_attributes(allowlist)) & RESERVED_NAMES):
        errors[SECTION_INGESTION] = "reserved_attribute"
        placeholders["problem"] = ", ".join(reserved)

    for key in (CONF_MAX_ERROR_RATE, CONF_ROLLBACK_THRESHOLD, CONF_VALIDATE_PERCENTAGE):
        if key in migration:
            migration[key] = float(migration[key]) / 100
    if migration[CONF_MAX_ERROR_RATE] > migration[CONF_ROLLBACK_THRESHOLD]:
        errors[SECTION_MIGRATION] = "threshold_order"
    else:
        try:
            MigrationConfig.from_options(migration)
        except ConfigError:
            # NaN slips through the number selectors; the model's checks catch it.
            errors[SECTION_MIGRATION] = "invalid_threshold"
    optimized_database = (ingestion.get(CONF_OPTIMIZED_DATABASE) or "").strip()
    if optimized_database:
        ingestion[CONF_OPTIMIZED_DATABASE] = optimized_database
    else:
        ingestion.pop(CONF_OPTIMIZED_DATABASE, None)
    target = (migration.get(CONF_TARGET_DATABASE) or "").strip()
    if target:
        migration[CONF_TARGET_DATABASE] = target
    else:
        migration.pop(CONF_TARGET_DATABASE, None)

    options = {SECTION_LEGACY: legacy, SECTION_INGESTION: ingestion, SECTION_MIGRATION: migration}
    if not errors:
        # What setting up the entry parses: stored options must never fail it.
        try:
            EntryOptions.parse(options)
        except (vol.Invalid, ValueError) as err:
            errors["base"] = "invalid_layout_options"
            placeholders["problem"] = str(err)
    return options, errors, placeholders


class HaIngestorOptionsFlow(OptionsFlow):
    """Legacy layout, ingestion filters and migration thresholds."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """One form, in collapsible sections."""
        errors: dict[str, str] = {}
        placeholders = {"problem": ""}
        if user_input is not None:
            options, errors, placeholders = _validate_options(user_input)
            if not errors:
                return self.async_create_entry(data=options)
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(
                _options_schema(self.config_entry.options), user_input or {}
            ),
            errors=errors,
            description_placeholders=placeholders,
        )
