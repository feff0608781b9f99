"""A config entry's options, parsed once into what recording and the migration use.

The options are stored as HA keeps them: three sections of plain values (the legacy layout,
the ingestion, the migration). Setup, the options update listener and the options form's
check parse them here, once each time they change; everything else takes the typed result.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Self

from .const import (
    CONF_ATTRIBUTE_ALLOWLIST,
    CONF_EXCLUDE_DOMAINS,
    CONF_EXCLUDE_ENTITIES,
    CONF_EXCLUDE_GLOBS,
    CONF_INCLUDE_DOMAINS,
    CONF_INCLUDE_ENTITIES,
    CONF_INCLUDE_GLOBS,
    CONF_OPTIMIZED_DATABASE,
    CONF_ROLLUPS,
    CONF_TARGET_DATABASE,
    CONF_WRITE_MODE,
    SECTION_INGESTION,
    SECTION_LEGACY,
    SECTION_MIGRATION,
    WriteMode,
)
from .engine.migration.model import MigrationConfig
from .layouts.legacy import LegacyOptions
from .layouts.optimized import DEFAULT_ALLOWED_ATTRIBUTES, AttributeType, OptimizedOptions

# Allow-list entries are "name" or "name:str" / "name:float"; a bare name keeps the type the
# default allow-list gives it, else float.
_TYPES: dict[str, AttributeType] = {"str": str, "string": str, "float": float, "number": float}


def allowed_attributes(names: list[str] | None) -> dict[str, AttributeType]:
    """The allow-list option as attribute name → field type (absent: the default list)."""
    if not names:
        return dict(DEFAULT_ALLOWED_ATTRIBUTES)
    allowed: dict[str, AttributeType] = {}
    for entry in names:
        name, _, type_name = entry.partition(":")
        name = name.strip()
        default = DEFAULT_ALLOWED_ATTRIBUTES.get(name, float)
        allowed[name] = _TYPES.get(type_name.strip().lower(), default)
    return allowed


@dataclass(frozen=True, slots=True, kw_only=True)
class EntityFilter:
    """Which entities are recorded (HA's include / exclude semantics)."""

    include_domains: tuple[str, ...] = ()
    include_entities: tuple[str, ...] = ()
    exclude_domains: tuple[str, ...] = ()
    exclude_entities: tuple[str, ...] = ()
    include_globs: tuple[str, ...] = ()
    exclude_globs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryOptions:
    """Everything the options of one config entry decide, typed."""

    legacy: LegacyOptions
    optimized: OptimizedOptions
    write_mode: WriteMode = WriteMode.LEGACY
    # The database of the optimized layout; None: the entry's own.
    optimized_database: str | None = None
    rollups: bool = False
    entity_filter: EntityFilter = field(default_factory=EntityFilter)
    migration: MigrationConfig = field(default_factory=MigrationConfig)
    # The migration's target database; None: the strategy decides.
    target_database: str | None = None

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> Self:
        """Read stored options. Raises ``vol.Invalid`` or ``ValueError`` for invalid ones."""
        legacy_section = options.get(SECTION_LEGACY, {})
        ingestion = options.get(SECTION_INGESTION, {})
        migration = options.get(SECTION_MIGRATION, {})
        # Global tags, ignored attributes and per-entity settings apply to both layouts.
        optimized = OptimizedOptions.from_options(legacy_section)
        optimized = replace(
            optimized,
            allowed_attributes=allowed_attributes(ingestion.get(CONF_ATTRIBUTE_ALLOWLIST)),
        )
        return cls(
            legacy=LegacyOptions.from_options(legacy_section),
            optimized=optimized,
            write_mode=WriteMode(ingestion.get(CONF_WRITE_MODE, WriteMode.LEGACY)),
            optimized_database=ingestion.get(CONF_OPTIMIZED_DATABASE) or None,
            rollups=bool(ingestion.get(CONF_ROLLUPS)),
            entity_filter=EntityFilter(
                include_domains=tuple(ingestion.get(CONF_INCLUDE_DOMAINS, ())),
                include_entities=tuple(ingestion.get(CONF_INCLUDE_ENTITIES, ())),
                exclude_domains=tuple(ingestion.get(CONF_EXCLUDE_DOMAINS, ())),
                exclude_entities=tuple(ingestion.get(CONF_EXCLUDE_ENTITIES, ())),
                include_globs=tuple(ingestion.get(CONF_INCLUDE_GLOBS, ())),
                exclude_globs=tuple(ingestion.get(CONF_EXCLUDE_GLOBS, ())),
            ),
            migration=MigrationConfig.from_options(migration),
            target_database=migration.get(CONF_TARGET_DATABASE) or None,
        )
