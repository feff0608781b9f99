"""Service actions: rehearsal data, the migration controls, query translation and rollups."""

import asyncio
from datetime import datetime, timedelta
import math
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.util import dt as dt_util
import voluptuous as vol

from . import IngestorConfigEntry
from .const import DOMAIN
from .engine.generator import MAX_ENTITIES, MAX_EVENTS, GeneratorConfig, Pattern
from .engine.influx import InfluxError
from .engine.influxql import QuerySyntaxError
from .engine.line_protocol import to_time_ns
from .engine.migration.ledger import Layout
from .engine.migration.model import ConfigError, MigrationConfig, Strategy
from .engine.rollups import BuildProgress
from .legacy_catalog import async_read_catalog
from .recording import Ingestion, IngestStats
from .rehearsal import async_fire_live, async_write_history
from .translation.query import QueryTranslator

ATTR_CONFIG_ENTRY_ID = "config_entry_id"

SERVICE_GENERATE_TEST_EVENTS = "generate_test_events"
SERVICE_START_MIGRATION = "start_migration"
SERVICE_PAUSE_MIGRATION = "pause_migration"
SERVICE_RESUME_MIGRATION = "resume_migration"
SERVICE_ROLLBACK = "rollback"
SERVICE_VALIDATE_MIGRATION = "validate_migration"
SERVICE_RUN_CLEANUP = "run_cleanup"
SERVICE_TRANSLATE_QUERY = "translate_query"
SERVICE_REBUILD_ROLLUPS = "rebuild_rollups"

# Live events go through HA's state machine one by one; more than this belongs in history.
MAX_LIVE_EVENTS = 200_000
MAX_HISTORY_DAYS = 3650
# How long a live generation waits for the writers to deliver, to count what they wrote.
LIVE_SETTLE_SECONDS = 10.0
# The service UI's smallest step (about 15 minutes): a shorter span holds no history.
MIN_HISTORY_DAYS = 0.01


# The labels the action forms show, for messages that name a field.
FIELD_LABELS = {
    "count": "Events",
    "entity_count": "Entities",
    "days": "Days of history",
    "seed": "Seed",
    "strategy": "Strategy",
    "start": "From",
    "end": "Until",
    "entities": "Entities",
    "batch_size": "Batch size",
    "concurrent_batches": "Concurrent batches",
    "max_error_rate": "Pause threshold",
    "rollback_threshold": "Rollback threshold",
    "validate_percentage": "Validated share",
    "migration_window_hours": "Migration window",
    "cleanup_delay_hours": "Cleanup delay",
    "delete_legacy_data": "Delete legacy data",
    "keep_target_on_rollback": "Keep migrated data",
}
# Reasons of MigrationConfig's ConfigError that have a message of their own.
_OPTION_REASONS = frozenset(
    {
        "not_an_integer",
        "not_a_number",
        "not_a_boolean",
        "out_of_range",
        "invalid_datetime",
        "naive_datetime",
        "invalid_entity_filter",
        "rollback_threshold_below_max_error_rate",
        "start_not_before_end",
    }
)


def _number(field: str, value: Any, *, whole: bool) -> float | int:
    """A number from a form field, or a translated error naming the field."""
    number: float | None = None
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (OverflowError, TypeError, ValueError):
            number = None
    if number is None or not math.isfinite(number) or (whole and not number.is_integer()):
        raise _invalid(
            "invalid_whole_number" if whole else "invalid_number",
            field=FIELD_LABELS.get(field, field),
            value=value,
        )
    return int(number) if whole else number


def _whole(field: str, value: Any) -> int:
    return int(_number(field, value, whole=True))


_ENTRY: dict[vol.Marker, Any] = {vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string}

GENERATE_SCHEMA = vol.Schema(
    {
        **_ENTRY,
        vol.Optional("mode", default="history"): cv.string,
        # Numbers are checked by the action, so a bad one gets a message naming its field.
        vol.Required("count"): object,
        vol.Optional("pattern", default=Pattern.MIXED.value): cv.string,
        vol.Optional("entity_count"): object,
        vol.Optional("days", default=30): object,
        vol.Optional("seed", default=42): object,
        vol.Optional("high_cardinality", default=False): cv.boolean,
        vol.Optional("database"): cv.string,
    }
)

START_SCHEMA = vol.Schema(
    {
        **_ENTRY,
        vol.Optional("strategy"): cv.string,
        vol.Optional("start_time"): cv.datetime,
        vol.Optional("end_time"): cv.datetime,
        vol.Optional("entities"): vol.All(cv.ensure_list, [cv.string]),
        vol.Optional("batch_size"): object,
        vol.Optional("concurrent_batches"): object,
        vol.Optional("max_error_rate"): object,
        vol.Optional("rollback_threshold"): object,
        vol.Optional("validate_percentage"): object,
        vol.Optional("migration_window_hours"): object,
        vol.Optional("cleanup_delay_hours"): object,
        vol.Optional("delete_legacy_data"): cv.boolean,
        vol.Optional("dry_run", default=False): cv.boolean,
    }
)

ROLLBACK_SCHEMA = vol.Schema(
    {
        **_ENTRY,
        vol.Optional("keep_target_data", default=False): cv.boolean,
        vol.Optional("reason", default="Requested by the user"): cv.string,
    }
)

ENTRY_ONLY_SCHEMA = vol.Schema(_ENTRY)

RUN_CLEANUP_SCHEMA = vol.Schema({**_ENTRY, vol.Optional("delete_legacy_data"): cv.boolean})

TRANSLATE_SCHEMA = vol.Schema(
    {
        **_ENTRY,
        vol.Required("query"): cv.string,
        vol.Optional("use_database", default=True): cv.boolean,
        vol.Optional("entity_variables", default=[]): vol.All(cv.ensure_list, [cv.string]),
    }
)


REBUILD_ROLLUPS_SCHEMA = vol.Schema(
    {**_ENTRY, vol.Optional("start"): cv.datetime, vol.Optional("end"): cv.datetime}
)
# The whole history: InfluxDB's time range, well inside what InfluxQL accepts.
_ALL_OF_TIME = (-(2**62), 2**62)


def _entry(hass: HomeAssistant, call: ServiceCall) -> IngestorConfigEntry:
    """The loaded config entry the call is about (the only one when none is named)."""
    entry_id = call.data.get(ATTR_CONFIG_ENTRY_ID)
    if entry_id is None:
        loaded = [
            entry
            for entry in hass.config_entries.async_entries(DOMAIN)
            if entry.state is ConfigEntryState.LOADED
        ]
        if len(loaded) != 1:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="entry_required" if loaded else "no_entry_loaded",
            )
        return loaded[0]
    entry = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_found",
            translation_placeholders={"entry_id": entry_id},
        )
    if entry.state is not ConfigEntryState.LOADED:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_loaded",
            translation_placeholders={"title": entry.title},
        )
    return entry


def _invalid(key: str, **placeholders: Any) -> ServiceValidationError:
    return ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders={k: str(v) for k, v in placeholders.items()},
    )


async def _async_generate(call: ServiceCall) -> ServiceResponse:
    hass = call.hass
    entry = _entry(hass, call)
    data = call.data
    mode = data["mode"]
    if mode not in ("live", "history"):
        raise _invalid("invalid_mode", mode=mode)
    try:
        pattern = Pattern(data["pattern"])
    except ValueError:
        raise _invalid(
            "invalid_pattern", pattern=data["pattern"], choices=", ".join(Pattern)
        ) from None
    count = _whole("count", data["count"])
    limit = MAX_LIVE_EVENTS if mode == "live" else MAX_EVENTS
    if count < 1:
        raise _invalid("invalid_count_low", count=count)
    if count > limit:
        raise _invalid("invalid_count", count=count, limit=f"{limit:,}", mode=mode)
    entity_count = data.get("entity_count")
    if entity_count is not None:
        entity_count = _whole("entity_count", entity_count)
        if not 0 < entity_count <= MAX_ENTITIES:
            raise _invalid("invalid_entity_count", entity_count=entity_count, limit=MAX_ENTITIES)
    days = _number("days", data["days"], whole=False)
    if not MIN_HISTORY_DAYS <= days <= MAX_HISTORY_DAYS:
        raise _invalid("invalid_days", days=days, minimum=MIN_HISTORY_DAYS, limit=MAX_HISTORY_DAYS)

    now = dt_util.utcnow()
    start = now - timedelta(days=days) if mode == "history" else now - timedelta(hours=1)
    try:
        config = GeneratorConfig(
            count=count,
            pattern=pattern,
            entity_count=entity_count,
            start=start,
            end=now,
            seed=_whole("seed", data["seed"]),
            high_cardinality=data["high_cardinality"],
        )
    except ValueError as err:
        raise _invalid("invalid_generator_request", error=err) from err

    runtime = entry.runtime_data
    if mode == "live":
        before = runtime.ingestion.stats
        result = await async_fire_live(hass, config)
        after = await _async_settled(runtime.ingestion)
        response = result.as_response() | {
            # Points the live writers wrote for these events (one per layout recorded),
            # and what they still hold: in the spool while InfluxDB is down.
            "points_written": after.points_written - before.points_written,
            "points_spooled": max(after.spooled_points - before.spooled_points, 0),
            "points_in_memory": after.queue_depth,
            "layouts_recorded": len(runtime.ingestion.recordings),
        }
    else:
        database = data.get("database") or runtime.client.database
        try:
            if not await runtime.client.database_exists(database):
                await runtime.client.create_database(database)
            result = await async_write_history(
                runtime.client, runtime.ingestion.legacy_layout, config, database
            )
        except InfluxError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="write_failed",
                translation_placeholders={"error": str(err)},
            ) from err
        response = result.as_response() | {
            "database": database,
            "start": start.isoformat(),
            "end": now.isoformat(),
        }
    return response | {"mode": mode, "pattern": pattern.value}


async def _async_settled(ingestion: Ingestion, within: float = LIVE_SETTLE_SECONDS) -> IngestStats:
    """The writers' figures once they hold nothing in memory (or after ``within`` s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    # Polled: the writers' figures change in many places and this waits once per call.
    while (stats := ingestion.stats).queue_depth and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    return stats


def _migration_config(entry: IngestorConfigEntry, data: dict[str, Any]) -> MigrationConfig:
    overrides: dict[str, Any] = {
        key: value
        for key, value in data.items()
        if key not in (ATTR_CONFIG_ENTRY_ID, "start_time", "end_time", "dry_run")
    }
    for key in _NUMERIC_OPTIONS & overrides.keys():
        overrides[key] = _number(key, overrides[key], whole=False)
    if "strategy" in overrides:
        try:
            overrides["strategy"] = Strategy(overrides["strategy"])
        except ValueError:
            raise _invalid(
                "invalid_strategy", strategy=overrides["strategy"], choices=", ".join(Strategy)
            ) from None
    if "entities" in overrides:
        overrides["entities"] = tuple(overrides["entities"])
    for key, name in (("start_time", "start"), ("end_time", "end")):
        if (moment := data.get(key)) is not None:
            overrides[name] = _aware(moment)
    overrides["dry_run"] = data.get("dry_run", False)
    try:
        return entry.runtime_data.migration.default_config().with_overrides(**overrides)
    except ConfigError as err:
        label = FIELD_LABELS.get(err.field, err.field)
        if err.reason in _OPTION_REASONS:
            raise _invalid(
                f"option_{err.reason}",
                **{"value": "", **err.placeholders, "field": label},
            ) from err
        raise _invalid("invalid_migration_option", field=label, error=str(err)) from err


_NUMERIC_OPTIONS = frozenset(
    {
        "batch_size",
        "concurrent_batches",
        "max_error_rate",
        "rollback_threshold",
        "validate_percentage",
        "migration_window_hours",
        "cleanup_delay_hours",
    }
)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt_util.get_default_time_zone())


async def _async_start(call: ServiceCall) -> ServiceResponse:
    entry = _entry(call.hass, call)
    config = _migration_config(entry, dict(call.data))
    return await entry.runtime_data.migration.async_start(config)


async def _async_pause(call: ServiceCall) -> ServiceResponse:
    entry = _entry(call.hass, call)
    return await entry.runtime_data.migration.async_pause()


async def _async_resume(call: ServiceCall) -> ServiceResponse:
    entry = _entry(call.hass, call)
    return await entry.runtime_data.migration.async_resume()


async def _async_rollback(call: ServiceCall) -> ServiceResponse:
    entry = _entry(call.hass, call)
    return await entry.runtime_data.migration.async_rollback(
        reason=call.data["reason"], keep_target=call.data["keep_target_data"]
    )


async def _async_run_cleanup(call: ServiceCall) -> ServiceResponse:
    entry = _entry(call.hass, call)
    return await entry.runtime_data.migration.async_run_cleanup_now(
        delete_legacy_data=call.data.get("delete_legacy_data"), strict=True
    )


async def _async_validate(call: ServiceCall) -> ServiceResponse:
    entry = _entry(call.hass, call)
    return await entry.runtime_data.migration.async_validate()


async def _async_translate(call: ServiceCall) -> ServiceResponse:
    entry = _entry(call.hass, call)
    catalog = None
    if call.data["use_database"]:
        try:
            catalog = await async_read_catalog(entry.runtime_data.client)
        except InfluxError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="catalog_failed",
                translation_placeholders={"error": str(err)},
            ) from err
    options = entry.runtime_data.options
    translator = QueryTranslator(
        options.legacy,
        options.optimized,
        catalog,
        entity_variables=[name.lstrip("$") for name in call.data["entity_variables"]],
    )
    try:
        translation = translator.translate(call.data["query"])
    except QuerySyntaxError as err:
        raise _invalid("invalid_query", error=err) from err
    return translation.as_dict()


def _optimized_database(entry: IngestorConfigEntry) -> str:
    """Where the entry's optimized layout is: the live optimized writer's database (during a
    migration, its target), else the configured one."""
    runtime = entry.runtime_data
    for recording in sorted(runtime.ingestion.recordings):
        if recording.layout is Layout.OPTIMIZED:
            return recording.database
    return runtime.options.optimized_database or runtime.client.database


def _rebuild_response(
    progress: BuildProgress, start: datetime | None, end: datetime | None
) -> dict[str, Any]:
    return {
        "database": progress.database,
        "start": start.isoformat() if start else None,
        "end": end.isoformat() if end else None,
        "domains": list(progress.domains),
        "hours_read": progress.hours_done,
        "rollup_points_written": progress.points_written,
    }


async def _async_rebuild_rollups(call: ServiceCall) -> ServiceResponse:
    entry = _entry(call.hass, call)
    job = entry.runtime_data.ingestion.rollups
    if job is None:
        raise _invalid("rollups_off", title=entry.title)
    if (running := job.rebuilding) is not None:
        raise _invalid(
            "rollups_rebuild_running",
            database=running.database,
            percent=f"{100 * running.fraction:.0f}",
        )
    start = _aware(call.data["start"]) if "start" in call.data else None
    end = _aware(call.data["end"]) if "end" in call.data else None
    if start is not None and end is not None and start >= end:
        raise _invalid("option_start_not_before_end", start=start.isoformat(), end=end.isoformat())
    start_ns = to_time_ns(start) if start else _ALL_OF_TIME[0]
    end_ns = to_time_ns(end) if end else _ALL_OF_TIME[1]
    database = _optimized_database(entry)
    try:
        progress = await job.rebuild(database, start_ns, end_ns)
    except InfluxError as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="rollups_rebuild_failed",
            translation_placeholders={"database": database, "error": str(err)},
        ) from err
    if not progress.domains:
        raise _invalid("rollups_no_history", database=database)
    return _rebuild_response(progress, start, end)


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register every service action of the integration."""
    for name, handler, schema, response in (
        (SERVICE_GENERATE_TEST_EVENTS, _async_generate, GENERATE_SCHEMA, SupportsResponse.OPTIONAL),
        (SERVICE_START_MIGRATION, _async_start, START_SCHEMA, SupportsResponse.OPTIONAL),
        (SERVICE_PAUSE_MIGRATION, _async_pause, ENTRY_ONLY_SCHEMA, SupportsResponse.OPTIONAL),
        (SERVICE_RESUME_MIGRATION, _async_resume, ENTRY_ONLY_SCHEMA, SupportsResponse.OPTIONAL),
        (SERVICE_ROLLBACK, _async_rollback, ROLLBACK_SCHEMA, SupportsResponse.OPTIONAL),
        (SERVICE_VALIDATE_MIGRATION, _async_validate, ENTRY_ONLY_SCHEMA, SupportsResponse.OPTIONAL),
        (SERVICE_RUN_CLEANUP, _async_run_cleanup, RUN_CLEANUP_SCHEMA, SupportsResponse.OPTIONAL),
        (SERVICE_TRANSLATE_QUERY, _async_translate, TRANSLATE_SCHEMA, SupportsResponse.ONLY),
        (
            SERVICE_REBUILD_ROLLUPS,
            _async_rebuild_rollups,
            REBUILD_ROLLUPS_SCHEMA,
            SupportsResponse.OPTIONAL,
        ),
    ):
        hass.services.async_register(
            DOMAIN, name, handler, schema=schema, supports_response=response
        )
