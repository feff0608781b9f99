"""Config, reauth, reconfigure and options flows against a real InfluxDB 1.x server."""

import json
from pathlib import Path
from typing import Any
from unittest.mock import patch

from aiohttp import web
from homeassistant import config_entries
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, InvalidData
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

import custom_components.ha_ingestor
from custom_components.ha_ingestor.const import (
    CONF_API_VERSION,
    CONF_BUCKET,
    CONF_DATABASE,
    CONF_ORGANIZATION,
    CONF_PASSWORD,
    CONF_TOKEN,
    CONF_URL,
    CONF_USERNAME,
    CONF_VERIFY_SSL,
    DOMAIN,
    SECTION_INGESTION,
    SECTION_LEGACY,
    SECTION_MIGRATION,
)

from .conftest import V2_ORG, V2_TOKEN
from .influx_server import ADMIN_PASSWORD, ADMIN_USER, InfluxServer, free_port
from .influx_v2_emulator import InfluxV2Emulator


def v1_input(influxd: InfluxServer, db: str, **overrides: Any) -> dict[str, Any]:
    return {
        CONF_URL: influxd.url,
        CONF_USERNAME: ADMIN_USER,
        CONF_PASSWORD: ADMIN_PASSWORD,
        CONF_DATABASE: db,
        CONF_VERIFY_SSL: True,
    } | overrides


async def start_v1_flow(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["influxdb_v1", "influxdb_v2"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "influxdb_v1"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "influxdb_v1"
    return str(result["flow_id"])


def v1_entry(influxd: InfluxServer, db: str, **overrides: Any) -> MockConfigEntry:
    data = v1_input(influxd, db, **overrides) | {CONF_API_VERSION: "1"}
    return MockConfigEntry(
        domain=DOMAIN,
        title=f"{db} on 127.0.0.1",
        data=data,
        unique_id=f"{influxd.url}/{db}",
    )


async def test_v1_flow_creates_entry_after_testing_the_server(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    flow_id = await start_v1_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, v1_input(influxd, database, **{CONF_URL: f"  {influxd.url}/ "})
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"{database} on 127.0.0.1"
    assert result["data"] == v1_input(influxd, database) | {CONF_API_VERSION: "1"}
    assert result["result"].unique_id == f"{influxd.url}/{database}"


@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        ({CONF_PASSWORD: "wrong"}, {"base": "invalid_auth"}),
        ({CONF_USERNAME: "", CONF_PASSWORD: ""}, {CONF_USERNAME: "username_required"}),
        ({CONF_DATABASE: "no_such_database"}, {CONF_DATABASE: "database_not_found"}),
        ({CONF_URL: "not a url"}, {CONF_URL: "invalid_url"}),
        ({CONF_URL: "ftp://127.0.0.1:8086"}, {CONF_URL: "invalid_url"}),
    ],
)
async def test_v1_flow_shows_what_is_wrong_and_recovers(
    hass: HomeAssistant,
    influxd: InfluxServer,
    database: str,
    overrides: dict[str, Any],
    errors: dict[str, str],
) -> None:
    flow_id = await start_v1_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, v1_input(influxd, database, **overrides)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors

    result = await hass.config_entries.flow.async_configure(flow_id, v1_input(influxd, database))
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_the_flow_tells_a_non_influxdb_server_and_a_tls_mismatch_apart(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    """Something else on the port, https to a plain-http server: each says what is wrong."""
    app = web.Application()
    app.router.add_get("/ping", lambda _request: web.Response(text="a web page"))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        flow_id = await start_v1_flow(hass)
        for url, errors in (
            (f"http://127.0.0.1:{port}", {CONF_URL: "not_influxdb"}),
            (influxd.url.replace("http://", "https://"), {CONF_URL: "tls_mismatch"}),
        ):
            result = await hass.config_entries.flow.async_configure(
                flow_id, v1_input(influxd, database, **{CONF_URL: url})
            )
            assert result["type"] is FlowResultType.FORM
            assert result["errors"] == errors
    finally:
        await runner.cleanup()
    result = await hass.config_entries.flow.async_configure(flow_id, v1_input(influxd, database))
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_a_hostname_url_works(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    """Through Home Assistant's aiohttp session and its DNS resolver (aiodns)."""
    flow_id = await start_v1_flow(hass)
    url = influxd.url.replace("127.0.0.1", "localhost")
    result = await hass.config_entries.flow.async_configure(
        flow_id, v1_input(influxd, database, **{CONF_URL: url})
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY, result.get("errors")
    assert result["data"][CONF_URL] == url


async def test_the_2x_form_pointed_at_a_1x_server_says_so(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "influxdb_v2"}
    )
    assert (
        result["data_schema"]({CONF_URL: "http://x:1", CONF_TOKEN: "t", CONF_ORGANIZATION: "o"})[
            CONF_BUCKET
        ]
        == "Home Assistant"
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_URL: influxd.url,
            CONF_TOKEN: "a-token",
            CONF_ORGANIZATION: "home",
            CONF_BUCKET: database,
            CONF_VERIFY_SSL: True,
        },
    )
    assert result["errors"] == {"base": "wrong_api_version_v1"}


async def test_v1_flow_reports_an_unreachable_server(hass: HomeAssistant, database: str) -> None:
    flow_id = await start_v1_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {
            CONF_URL: f"http://127.0.0.1:{free_port()}",
            CONF_DATABASE: database,
            CONF_VERIFY_SSL: True,
        },
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}


async def test_v1_flow_reports_unexpected_errors(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    # An unexpected failure cannot be provoked on a healthy server, so this one is injected.
    flow_id = await start_v1_flow(hass)
    with patch(
        "custom_components.ha_ingestor.engine.influx.v1.InfluxV1Client.validate",
        side_effect=RuntimeError("boom"),
    ):
        result = await hass.config_entries.flow.async_configure(
            flow_id, v1_input(influxd, database)
        )
    assert result["errors"] == {"base": "unknown"}


async def test_same_server_and_database_is_configured_once(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    v1_entry(influxd, database).add_to_hass(hass)
    flow_id = await start_v1_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, v1_input(influxd, database))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_reauth_stores_new_credentials_and_reloads(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = v1_entry(influxd, database, **{CONF_PASSWORD: "outdated"})
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_USERNAME: ADMIN_USER, CONF_PASSWORD: "still wrong"}
    )
    assert result["errors"] == {"base": "invalid_auth"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_USERNAME: ADMIN_USER, CONF_PASSWORD: ADMIN_PASSWORD}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_PASSWORD] == ADMIN_PASSWORD


async def test_reconfigure_moves_the_entry_to_another_database(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = v1_entry(influxd, database)
    entry.add_to_hass(hass)
    influxd.create_database("moved_here")
    try:
        result = await entry.start_reconfigure_flow(hass)
        assert result["step_id"] == "reconfigure_v1"

        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], v1_input(influxd, "missing_db")
        )
        assert result["errors"] == {CONF_DATABASE: "database_not_found"}

        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], v1_input(influxd, "moved_here")
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "reconfigure_successful"
        assert entry.data[CONF_DATABASE] == "moved_here"
        assert entry.unique_id == f"{influxd.url}/moved_here"
    finally:
        influxd.drop_database("moved_here")


async def test_reconfigure_never_shows_the_stored_password_and_keeps_it_when_left_empty(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = v1_entry(influxd, database)
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    for key in result["data_schema"].schema:
        if key == CONF_PASSWORD:
            assert not (key.description or {}).get("suggested_value")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], v1_input(influxd, database, **{CONF_PASSWORD: ""})
    )
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_PASSWORD] == ADMIN_PASSWORD


async def test_reconfigure_refuses_a_database_another_entry_has(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = v1_entry(influxd, database)
    entry.add_to_hass(hass)
    influxd.create_database("taken")
    try:
        v1_entry(influxd, "taken").add_to_hass(hass)
        result = await entry.start_reconfigure_flow(hass)
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], v1_input(influxd, "taken")
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "already_configured"
        assert entry.data[CONF_DATABASE] == database
    finally:
        influxd.drop_database("taken")


def options_input(**migration: Any) -> dict[str, Any]:
    return {
        SECTION_LEGACY: {
            "measurement_attr": "unit_of_measurement",
            "tags": ["instance=main", "site = home"],
            "tags_attributes": ["friendly_name"],
            "ignore_attributes": ["icon"],
        },
        SECTION_INGESTION: {
            "write_mode": "both",
            "attribute_allowlist": ["brightness", " "],
            "include_domains": ["sensor", "light"],
            "exclude_entity_globs": ["sensor.weather_*"],
        },
        SECTION_MIGRATION: {
            "batch_size": 5000,
            "concurrent_batches": 2,
            # The form shows thresholds in percent.
            "max_error_rate": 2,
            "rollback_threshold": 10,
            "validate_percentage": 50,
            "migration_window_hours": 12,
            "cleanup_delay_hours": 0,
            "delete_legacy_data": False,
            "target_database": " ha_optimized ",
        }
        | migration,
    }


async def test_options_flow_stores_validated_options(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = v1_entry(influxd, database)
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.options.async_configure(result["flow_id"], options_input())
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options[SECTION_LEGACY]["tags"] == {"instance": "main", "site": "home"}
    assert entry.options[SECTION_INGESTION]["attribute_allowlist"] == ["brightness"]
    assert entry.options[SECTION_INGESTION]["include_domains"] == ["sensor", "light"]
    assert entry.options[SECTION_MIGRATION]["target_database"] == "ha_optimized"
    assert entry.options[SECTION_MIGRATION]["batch_size"] == 5000
    # Stored as shares, as start_migration takes them.
    assert entry.options[SECTION_MIGRATION]["max_error_rate"] == 0.02
    assert entry.options[SECTION_MIGRATION]["validate_percentage"] == 0.5
    result = await hass.config_entries.options.async_init(entry.entry_id)
    shown = {
        str(key): key.default()
        for key in result["data_schema"].schema[SECTION_MIGRATION].schema.schema
        if hasattr(key, "default") and callable(key.default)
    }
    assert shown["rollback_threshold"] == 10


async def test_options_flow_offers_rollups_off_and_stores_them_on(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = v1_entry(influxd, database)
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    shown = {
        str(key): key.default()
        for key in result["data_schema"].schema[SECTION_INGESTION].schema.schema
        if hasattr(key, "default") and callable(key.default)
    }
    assert shown["rollups"] is False
    user_input = options_input()
    user_input[SECTION_INGESTION]["rollups"] = True
    result = await hass.config_entries.options.async_configure(result["flow_id"], user_input)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options[SECTION_INGESTION]["rollups"] is True


@pytest.mark.parametrize(
    ("options", "errors"),
    [
        (
            {SECTION_MIGRATION: {"max_error_rate": 20, "rollback_threshold": 10}},
            {SECTION_MIGRATION: "threshold_order"},
        ),
        ({SECTION_LEGACY: {"tags": ["no equals sign"]}}, {SECTION_LEGACY: "invalid_tags"}),
        (
            {SECTION_INGESTION: {"include_domains": ["Not A Domain!"]}},
            {SECTION_INGESTION: "invalid_domain"},
        ),
    ],
)
async def test_options_flow_rejects_inconsistent_options(
    hass: HomeAssistant,
    influxd: InfluxServer,
    database: str,
    options: dict[str, dict[str, Any]],
    errors: dict[str, str],
) -> None:
    entry = v1_entry(influxd, database)
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    user_input = options_input()
    for section_key, values in options.items():
        user_input[section_key] = user_input[section_key] | values
    result = await hass.config_entries.options.async_configure(result["flow_id"], user_input)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors
    assert entry.options == {}


async def test_options_flow_refuses_out_of_range_numbers(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = v1_entry(influxd, database)
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    with pytest.raises(InvalidData) as raised:
        await hass.config_entries.options.async_configure(
            result["flow_id"], options_input(batch_size=0)
        )
    assert "batch_size" in str(raised.value.schema_errors)
    assert entry.options == {}


def v2_input(emulator: InfluxV2Emulator, name: str, **overrides: Any) -> dict[str, Any]:
    return {
        CONF_URL: emulator.url,
        CONF_TOKEN: V2_TOKEN,
        CONF_ORGANIZATION: V2_ORG,
        CONF_BUCKET: name,
        CONF_VERIFY_SSL: True,
    } | overrides


async def start_v2_flow(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "influxdb_v2"}
    )
    assert result["step_id"] == "influxdb_v2"
    return str(result["flow_id"])


def v2_entry(emulator: InfluxV2Emulator, name: str, **overrides: Any) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        title=f"{name} on 127.0.0.1",
        data=v2_input(emulator, name, **overrides) | {CONF_API_VERSION: "2"},
        unique_id=f"{emulator.url}/{V2_ORG}/{name}",
    )


async def test_v2_flow_creates_entry_after_testing_the_server(
    hass: HomeAssistant, v2_emulator: InfluxV2Emulator, database: str
) -> None:
    flow_id = await start_v2_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, v2_input(v2_emulator, database)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == v2_input(v2_emulator, database) | {CONF_API_VERSION: "2"}
    assert result["result"].unique_id == f"{v2_emulator.url}/{V2_ORG}/{database}"


@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        ({CONF_TOKEN: "wrong"}, {"base": "invalid_auth"}),
        ({CONF_BUCKET: "no_such_bucket"}, {CONF_BUCKET: "bucket_not_found"}),
        ({CONF_ORGANIZATION: "other_org"}, {CONF_BUCKET: "bucket_not_found"}),
    ],
)
async def test_v2_flow_shows_what_is_wrong_and_recovers(
    hass: HomeAssistant,
    v2_emulator: InfluxV2Emulator,
    database: str,
    overrides: dict[str, Any],
    errors: dict[str, str],
) -> None:
    flow_id = await start_v2_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, v2_input(v2_emulator, database, **overrides)
    )
    assert result["errors"] == errors
    result = await hass.config_entries.flow.async_configure(
        flow_id, v2_input(v2_emulator, database)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_v2_flow_reports_an_unreachable_server(
    hass: HomeAssistant, v2_emulator: InfluxV2Emulator, database: str
) -> None:
    flow_id = await start_v2_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        v2_input(v2_emulator, database, **{CONF_URL: f"http://127.0.0.1:{free_port()}"}),
    )
    assert result["errors"] == {"base": "cannot_connect"}


async def test_v2_reauth_takes_a_new_token(
    hass: HomeAssistant, v2_emulator: InfluxV2Emulator, database: str
) -> None:
    entry = v2_entry(v2_emulator, database, **{CONF_TOKEN: "revoked"})
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"
    assert list(result["data_schema"].schema) == [CONF_TOKEN]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: V2_TOKEN}
    )
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_TOKEN] == V2_TOKEN


async def test_v2_reconfigure_changes_the_bucket(
    hass: HomeAssistant, v2_emulator: InfluxV2Emulator, influxd: InfluxServer, database: str
) -> None:
    entry = v2_entry(v2_emulator, database)
    entry.add_to_hass(hass)
    influxd.create_database("other_bucket")
    try:
        result = await entry.start_reconfigure_flow(hass)
        assert result["step_id"] == "reconfigure_v2"
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], v2_input(v2_emulator, "other_bucket")
        )
        assert result["reason"] == "reconfigure_successful"
        assert entry.data[CONF_BUCKET] == "other_bucket"
    finally:
        influxd.drop_database("other_bucket")


async def test_options_flow_blank_target_means_the_same_database(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = v1_entry(influxd, database)
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], options_input(target_database="   ")
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert "target_database" not in entry.options[SECTION_MIGRATION]


def test_strings_and_english_translation_are_identical() -> None:
    base = Path(custom_components.ha_ingestor.__file__).parent
    strings = json.loads((base / "strings.json").read_text())
    assert strings == json.loads((base / "translations" / "en.json").read_text())
    assert set(strings["config"]["error"]) >= {
        "cannot_connect",
        "invalid_auth",
        "database_not_found",
        "bucket_not_found",
        "invalid_url",
        "unknown",
    }


async def test_options_flow_offers_core_domain_device_class_under_a_valid_key(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    """Core's YAML value ``domain__device_class`` stays the stored option; the form shows it as
    ``domain_device_class`` because a translation key may not hold ``__``."""
    entry = v1_entry(influxd, database)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        entry, options={SECTION_LEGACY: {"measurement_attr": "domain__device_class"}}
    )
    result = await hass.config_entries.options.async_init(entry.entry_id)
    legacy_form = result["data_schema"].schema[SECTION_LEGACY].schema.schema
    (shown,) = (key for key in legacy_form if key.schema == "measurement_attr")
    assert shown.default() == "domain_device_class"

    user_input = options_input()
    user_input[SECTION_LEGACY]["measurement_attr"] = "domain_device_class"
    result = await hass.config_entries.options.async_configure(result["flow_id"], user_input)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options[SECTION_LEGACY]["measurement_attr"] == "domain__device_class"
