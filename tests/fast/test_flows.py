"""The config flow's answers for each way a server can fail, and the options round trip."""

from typing import Any

from homeassistant import config_entries
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest

from custom_components.ha_ingestor.const import DOMAIN

from ..fake_influx import FakeInfluxServer
from .conftest import DATABASE, entry_data, fake_entry, set_up, until


async def start_flow(hass: HomeAssistant, step: str = "influxdb_v1") -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["influxdb_v1", "influxdb_v2"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": step}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == step
    return str(result["flow_id"])


def v1_input(server: FakeInfluxServer, **overrides: Any) -> dict[str, Any]:
    data = entry_data(server, **overrides)
    del data["api_version"]
    return data


async def test_the_flow_creates_an_entry_for_a_server_that_answers(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    flow_id = await start_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, v1_input(influx, url=f"  {influx.url}/ ")
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"{DATABASE} on influxdb.fake"
    assert result["data"] == entry_data(influx)
    entry = result["result"]
    assert entry.unique_id == f"{influx.url}/{DATABASE}"
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        ({"password": "wrong"}, {"base": "invalid_auth"}),
        ({"username": "", "password": ""}, {"username": "username_required"}),
        ({"database": "no_such_database"}, {"database": "database_not_found"}),
        ({"url": "http://nothing-listens.fake:8086"}, {"base": "cannot_connect"}),
    ],
)
async def test_the_flow_says_what_is_wrong_and_accepts_the_corrected_input(
    hass: HomeAssistant,
    influx: FakeInfluxServer,
    overrides: dict[str, Any],
    errors: dict[str, str],
) -> None:
    flow_id = await start_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, v1_input(influx, **overrides))
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors
    assert hass.config_entries.async_entries(DOMAIN) == []

    result = await hass.config_entries.flow.async_configure(flow_id, v1_input(influx))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_the_flow_reports_a_server_that_is_down_until_it_is_back(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    influx.stop()
    flow_id = await start_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, v1_input(influx))
    assert result["errors"] == {"base": "cannot_connect"}
    influx.start()
    result = await hass.config_entries.flow.async_configure(flow_id, v1_input(influx))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_the_2x_form_at_a_1x_server_says_to_choose_1x(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    flow_id = await start_flow(hass, "influxdb_v2")
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {
            "url": influx.url,
            "token": "a-token",
            "organization": "home",
            "bucket": DATABASE,
            "verify_ssl": True,
        },
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "wrong_api_version_v1"}


async def test_the_same_server_and_database_is_configured_once(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    fake_entry(influx).add_to_hass(hass)
    flow_id = await start_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, v1_input(influx))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


def options_input() -> dict[str, Any]:
    return {
        "legacy_layout": {
            "measurement_attr": "unit_of_measurement",
            "tags": ["instance=main"],
        },
        "ingestion": {"write_mode": "both", "include_domains": ["sensor"]},
        "migration": {
            "batch_size": 2000,
            "concurrent_batches": 2,
            # Shown in percent, stored as shares.
            "max_error_rate": 2,
            "rollback_threshold": 10,
            "validate_percentage": 50,
            "migration_window_hours": 12,
            "cleanup_delay_hours": 0,
            "delete_legacy_data": False,
        },
    }


async def test_options_are_stored_shown_again_and_recorded_with(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    entry = await set_up(hass, fake_entry(influx))
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.options.async_configure(result["flow_id"], options_input())
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.options["legacy_layout"]["tags"] == {"instance": "main"}
    assert entry.options["ingestion"]["include_domains"] == ["sensor"]
    assert entry.options["migration"]["max_error_rate"] == 0.02
    assert entry.options["migration"]["batch_size"] == 2000

    # The form shows what is stored.
    result = await hass.config_entries.options.async_init(entry.entry_id)
    shown = {
        str(key): key.default()
        for key in result["data_schema"].schema["migration"].schema.schema
        if callable(getattr(key, "default", None))
    }
    assert shown["rollback_threshold"] == 10
    assert shown["batch_size"] == 2000
    hass.config_entries.options.async_abort(result["flow_id"])

    # The entry was reloaded with them: both layouts, only sensors, the global tag.
    assert entry.state is ConfigEntryState.LOADED
    hass.states.async_set("sensor.power", "120", {"unit_of_measurement": "W"})
    hass.states.async_set("light.hall", "on")
    await until(hass, lambda: len(influx.points(DATABASE)) == 2)
    assert {
        (p.measurement, p.tags["entity_id"], p.tags.get("instance"))
        for p in influx.points(DATABASE)
    } == {("W", "power", "main"), ("sensor", "sensor.power", "main")}
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_inconsistent_options_are_refused_and_nothing_is_stored(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    entry = await set_up(hass, fake_entry(influx))
    result = await hass.config_entries.options.async_init(entry.entry_id)
    bad = options_input()
    bad["migration"] |= {"max_error_rate": 20, "rollback_threshold": 10}
    result = await hass.config_entries.options.async_configure(result["flow_id"], bad)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"migration": "threshold_order"}
    assert entry.options == {}
    assert await hass.config_entries.async_unload(entry.entry_id)
