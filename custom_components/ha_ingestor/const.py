"""The names of ha_ingestor's settings, each written once (no Home Assistant imports)."""

from enum import StrEnum
from typing import Final

DOMAIN: Final = "ha_ingestor"

# Connection (config entry data).
CONF_API_VERSION: Final = "api_version"
CONF_URL: Final = "url"
CONF_USERNAME: Final = "username"
CONF_PASSWORD: Final = "password"  # noqa: S105 - a config key, not a secret
CONF_DATABASE: Final = "database"
CONF_TOKEN: Final = "token"  # noqa: S105 - a config key, not a secret
CONF_ORGANIZATION: Final = "organization"
CONF_BUCKET: Final = "bucket"
CONF_VERIFY_SSL: Final = "verify_ssl"

# Legacy layout options: the same names HA core's influxdb integration uses.
CONF_MEASUREMENT_ATTR: Final = "measurement_attr"
CONF_DEFAULT_MEASUREMENT: Final = "default_measurement"
CONF_OVERRIDE_MEASUREMENT: Final = "override_measurement"
CONF_TAGS: Final = "tags"
CONF_TAGS_ATTRIBUTES: Final = "tags_attributes"
CONF_IGNORE_ATTRIBUTES: Final = "ignore_attributes"
CONF_COMPONENT_CONFIG: Final = "component_config"
CONF_COMPONENT_CONFIG_DOMAIN: Final = "component_config_domain"
CONF_COMPONENT_CONFIG_GLOB: Final = "component_config_glob"

# The values of measurement_attr that core's YAML schema offers (core's code takes any name).
MEASUREMENT_ATTR_UNIT: Final = "unit_of_measurement"
MEASUREMENT_ATTR_DOMAIN_DEVICE_CLASS: Final = "domain__device_class"
MEASUREMENT_ATTR_ENTITY_ID: Final = "entity_id"
MEASUREMENT_ATTR_CHOICES: Final = (
    MEASUREMENT_ATTR_UNIT,
    MEASUREMENT_ATTR_DOMAIN_DEVICE_CLASS,
    MEASUREMENT_ATTR_ENTITY_ID,
)

# Ingestion options.
CONF_WRITE_MODE: Final = "write_mode"
# Where the optimized layout is recorded (empty: the connection's database); a completed
# migration sets it to the database it migrated into.
CONF_OPTIMIZED_DATABASE: Final = "optimized_database"
CONF_ATTRIBUTE_ALLOWLIST: Final = "attribute_allowlist"
CONF_INCLUDE_ENTITIES: Final = "include_entities"
CONF_EXCLUDE_ENTITIES: Final = "exclude_entities"
CONF_INCLUDE_DOMAINS: Final = "include_domains"
CONF_EXCLUDE_DOMAINS: Final = "exclude_domains"
CONF_INCLUDE_GLOBS: Final = "include_entity_globs"
CONF_EXCLUDE_GLOBS: Final = "exclude_entity_globs"
# Per-entity 5 min / 1 h aggregates of numeric values, kept live and filled by the backfill.
CONF_ROLLUPS: Final = "rollups"

# Migration options (their defaults and ranges: engine.migration.model.MigrationConfig).
CONF_TARGET_DATABASE: Final = "target_database"
CONF_BATCH_SIZE: Final = "batch_size"
CONF_CONCURRENT_BATCHES: Final = "concurrent_batches"
CONF_MAX_ERROR_RATE: Final = "max_error_rate"
CONF_ROLLBACK_THRESHOLD: Final = "rollback_threshold"
CONF_VALIDATE_PERCENTAGE: Final = "validate_percentage"
CONF_MIGRATION_WINDOW_HOURS: Final = "migration_window_hours"
CONF_CLEANUP_DELAY_HOURS: Final = "cleanup_delay_hours"
CONF_DELETE_LEGACY_DATA: Final = "delete_legacy_data"

SECTION_LEGACY: Final = "legacy_layout"
SECTION_INGESTION: Final = "ingestion"
SECTION_MIGRATION: Final = "migration"


class WriteMode(StrEnum):
    """Which layouts the live writer produces."""

    LEGACY = "legacy"
    BOTH = "both"
    OPTIMIZED = "optimized"
