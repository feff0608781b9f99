"""Taking over from HA core's influxdb integration: the options it had, through the flows.

Core's per-entity, per-domain and per-glob overrides are entered in the options flow (as in
its YAML), a reserved allow-list name is refused there rather than failing the entry's setup,
and the config flow copies core's connection, layout options and filters, and asks what to
record when core writes the same database.
"""

from pathlib import Path
from typing import Any

from homeassistant import config_entries
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ha_ingestor.config_flow import HaIngestorConfigFlow
from custom_components.ha_ingestor.const import (
    CONF_API_VERSION,
    DOMAIN,
    SECTION_INGESTION,
    SECTION_LEGACY,
)
from custom_components.ha_ingestor.core_influxdb import from_core_config
from custom_components.ha_ingestor.options import EntryOptions

from .helpers import setup_entry
from .influx_server import ADMIN_PASSWORD, ADMIN_USER, InfluxServer
from .test_config_flow import options_input, v1_entry, v1_input

OVERRIDES = {
    "component_config": {"sensor.living": {"override_measurement": "living_custom"}},
    "component_config_domain": {"light": {"ignore_attributes": ["effect_list", "icon"]}},
    "component_config_glob": {
        "sensor.*_power": {"override_measurement": "power", "ignore_attributes": "friendly_name"}
    },
}


async def open_options(hass: HomeAssistant, entry: MockConfigEntry) -> str:
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    return str(result["flow_id"])


def with_legacy(**legacy: Any) -> dict[str, Any]:
    user_input = options_input()
    user_input[SECTION_LEGACY] = user_input[SECTION_LEGACY] | legacy
    return user_input


# --- Options flow ---


async def test_core_overrides_are_entered_as_in_yaml_and_shape_the_legacy_layout(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = v1_entry(influxd, database)
    flow_id = await open_options(hass, entry)

    result = await hass.config_entries.options.async_configure(flow_id, with_legacy(**OVERRIDES))

    assert result["type"] is FlowResultType.CREATE_ENTRY
    stored = entry.options[SECTION_LEGACY]
    assert stored["component_config"] == OVERRIDES["component_config"]
    assert stored["component_config_glob"]["sensor.*_power"]["override_measurement"] == "power"
    options = EntryOptions.parse(entry.options).legacy
    assert options.customizations.resolve("sensor.living")[0] == "living_custom"
    assert options.customizations.resolve("sensor.plug_power") == (
        "power",
        frozenset({"icon"}) | frozenset({"friendly_name"}),
    )
    assert "effect_list" in options.customizations.resolve("light.hall")[1]


async def test_overrides_as_rows_are_accepted_too(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    """Newer releases' object selector sends a list of rows naming their entity."""
    entry = v1_entry(influxd, database)
    flow_id = await open_options(hass, entry)
    rows = [{"entity_id": "sensor.living", "override_measurement": "living_custom"}]

    result = await hass.config_entries.options.async_configure(
        flow_id, with_legacy(component_config=rows)
    )

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options[SECTION_LEGACY]["component_config"] == OVERRIDES["component_config"]


@pytest.mark.parametrize(
    ("legacy", "error"),
    [
        ({"component_config": {"Not an entity": {}}}, "invalid_component_config"),
        (
            {"component_config": {"sensor.a": {"override_measurment": "typo"}}},
            "invalid_component_config",
        ),
        ({"component_config_domain": ["light"]}, "invalid_component_config_domain"),
        (
            {"component_config": [{"entity_id": "sensor.a", "domain": "sensor"}]},
            "invalid_component_config",
        ),
        (
            {"component_config_domain": {" ": {"override_measurement": "x"}}},
            "invalid_component_config_domain",
        ),
        ({"component_config_glob": "sensor.*"}, "invalid_component_config_glob"),
        (
            {"component_config_glob": {"sensor.*": {"ignore_attributes": [{"a": 1}]}}},
            "invalid_component_config_glob",
        ),
    ],
)
async def test_malformed_overrides_are_form_errors_that_say_what_is_wrong(
    hass: HomeAssistant,
    influxd: InfluxServer,
    database: str,
    legacy: dict[str, Any],
    error: str,
) -> None:
    entry = v1_entry(influxd, database)
    flow_id = await open_options(hass, entry)

    result = await hass.config_entries.options.async_configure(flow_id, with_legacy(**legacy))

    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {SECTION_LEGACY: error}
    assert result["description_placeholders"]["problem"]
    assert entry.options == {}


@pytest.mark.parametrize("name", ["state", "value", "entity_id", "friendly_name:str", "area"])
async def test_a_reserved_allow_list_name_is_refused_before_it_can_break_setup(
    hass: HomeAssistant, influxd: InfluxServer, database: str, name: str
) -> None:
    entry = v1_entry(influxd, database)
    flow_id = await open_options(hass, entry)
    user_input = options_input()
    user_input[SECTION_INGESTION] = user_input[SECTION_INGESTION] | {
        "attribute_allowlist": ["brightness", name]
    }

    result = await hass.config_entries.options.async_configure(flow_id, user_input)

    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {SECTION_INGESTION: "reserved_attribute"}
    assert result["description_placeholders"]["problem"] == name.partition(":")[0]
    assert entry.options == {}


async def test_an_allow_list_entry_with_a_type_but_no_name_is_refused_as_setup_would(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    """ ":str" passes every field check (it is not blank and names nothing reserved), but the
    layout refuses a nameless attribute: the flow asks the layout itself before storing."""
    entry = v1_entry(influxd, database)
    flow_id = await open_options(hass, entry)
    user_input = options_input()
    user_input[SECTION_INGESTION] = user_input[SECTION_INGESTION] | {
        "attribute_allowlist": ["brightness", ":str"]
    }

    result = await hass.config_entries.options.async_configure(flow_id, user_input)

    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_layout_options"}
    assert "Attribute '' cannot be allow-listed" in result["description_placeholders"]["problem"]
    assert entry.options == {}


# --- Finding core's configuration ---


def test_core_yaml_becomes_our_connection_options_and_filters() -> None:
    core = from_core_config(
        {
            "api_version": "1",
            "host": "192.168.1.10",
            "port": 8087,
            "ssl": True,
            "path": "/influx/",
            "username": "ha",
            "password": "secret",
            "database": "home",
            "verify_ssl": False,
            "measurement_attr": "entity_id",
            "tags": {"instance": "main"},
            "tags_attributes": ["friendly_name"],
            "ignore_attributes": [],
            "precision": "s",
            "include": {"domains": ["sensor"], "entities": [], "entity_globs": ["light.*"]},
            "exclude": {"domains": [], "entities": ["sensor.secret"], "entity_globs": []},
            **OVERRIDES,
        },
        "yaml",
    )
    assert core.data == {
        "api_version": "1",
        "url": "https://192.168.1.10:8087/influx",
        "database": "home",
        "username": "ha",
        "password": "secret",
        "verify_ssl": False,
    }
    assert core.options[SECTION_LEGACY] == {
        "measurement_attr": "entity_id",
        "tags": {"instance": "main"},
        "tags_attributes": ["friendly_name"],
        **OVERRIDES,
    }
    assert core.options[SECTION_INGESTION] == {
        "include_domains": ["sensor"],
        "include_entity_globs": ["light.*"],
        "exclude_entities": ["sensor.secret"],
    }
    assert core.not_copied == ("precision",)
    assert core.writes(
        {"api_version": "1", "url": "https://192.168.1.10:8087/influx/", "database": "home"}
    )
    assert not core.writes(
        {"api_version": "1", "url": "https://192.168.1.10:8087", "database": "home"}
    )
    assert not core.writes(
        {"api_version": "1", "url": "https://192.168.1.10:8087/influx", "database": "other"}
    )


def test_core_defaults_are_core_defaults() -> None:
    core = from_core_config({}, "yaml")
    assert core.data == {
        "api_version": "1",
        "url": "http://localhost:8086",
        "database": "home_assistant",
        "verify_ssl": True,
    }
    v2 = from_core_config({"api_version": "2", "token": "t", "organization": "o"}, "yaml")
    assert v2.data == {
        "api_version": "2",
        "url": "https://us-west-2-1.aws.cloud2.influxdata.com",
        "bucket": "Home Assistant",
        "token": "t",
        "organization": "o",
        "verify_ssl": True,
    }


def core_yaml(influxd: InfluxServer, database: str) -> str:
    return f"""
influxdb:
  host: 127.0.0.1
  port: {influxd.http_port}
  username: {ADMIN_USER}
  password: {ADMIN_PASSWORD}
  database: {database}
  tags:
    instance: main
  tags_attributes:
    - friendly_name
  component_config:
    sensor.living:
      override_measurement: living_custom
  component_config_glob:
    "switch.*_power":
      ignore_attributes: [voltage]
  include:
    domains: [sensor, switch]
  exclude:
    entities: [sensor.secret]
"""


def configure_core_in_yaml(hass: HomeAssistant, yaml: str) -> None:
    """configuration.yaml with core's influxdb in it, as loaded at start-up."""
    Path(hass.config.path("configuration.yaml")).write_text(yaml, encoding="utf-8")
    hass.config.components.add("influxdb")


async def test_the_config_flow_copies_core_settings_and_shows_them(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    configure_core_in_yaml(hass, core_yaml(influxd, database))
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    assert result["menu_options"] == ["import_core", "influxdb_v1", "influxdb_v2"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "import_core"}
    )
    assert result["type"] is FlowResultType.FORM
    shown = result["description_placeholders"]
    assert shown["database"] == database
    assert shown["url"] == f"http://127.0.0.1:{influxd.http_port}"
    assert shown["source"] == "yaml"
    assert "sensor.living (override_measurement (living_custom))" in shown["layout"]
    assert "- exclude_entities: sensor.secret" in shown["filters"]
    # Core keeps writing there: the legacy layout is not the default.
    assert result["data_schema"]({})["write_mode"] == "optimized"

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"write_mode": "optimized"}
    )

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == v1_input(influxd, database, url=shown["url"]) | {CONF_API_VERSION: "1"}
    options = result["options"]
    assert options[SECTION_INGESTION] == {
        "write_mode": "optimized",
        "include_domains": ["sensor", "switch"],
        "exclude_entities": ["sensor.secret"],
    }
    assert options[SECTION_LEGACY]["component_config_glob"] == {
        "switch.*_power": {"ignore_attributes": ["voltage"]}
    }
    assert options[SECTION_LEGACY]["tags"] == {"instance": "main"}


async def test_an_imported_entry_records_only_what_core_recorded(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    core = from_core_config(
        {
            "host": "127.0.0.1",
            "port": influxd.http_port,
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
            "database": database,
            "include": {"domains": ["sensor"]},
            "exclude": {"entities": ["sensor.secret"]},
        },
        "yaml",
    )
    options = {
        **core.options,
        SECTION_INGESTION: {**core.options[SECTION_INGESTION], "write_mode": "legacy"},
    }
    entry = MockConfigEntry(domain=DOMAIN, data=dict(core.data), options=options)
    await setup_entry(hass, entry)
    for entity_id in ("sensor.kept", "sensor.secret", "light.hall"):
        hass.states.async_set(entity_id, "1")
    assert await hass.config_entries.async_unload(entry.entry_id)
    stored = influxd.series('SELECT * FROM /.*/ GROUP BY "entity_id"', database)
    assert [series["tags"]["entity_id"] for series in stored] == ["kept"]  # type: ignore[index]


async def test_a_connection_to_the_database_core_writes_asks_what_to_record(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    configure_core_in_yaml(hass, core_yaml(influxd, database))
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "influxdb_v1"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], v1_input(influxd, database)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "core_database"
    assert result["description_placeholders"]["database"] == database

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"write_mode": "optimized"}
    )

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["options"][SECTION_INGESTION]["write_mode"] == "optimized"
    assert result["options"][SECTION_LEGACY]["component_config"] == OVERRIDES["component_config"]


async def test_another_database_on_the_same_server_is_set_up_directly(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    configure_core_in_yaml(hass, core_yaml(influxd, "core_db"))
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "influxdb_v1"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], v1_input(influxd, database)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["options"] == {}


async def test_core_config_entry_is_found_on_releases_that_have_one(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    MockConfigEntry(
        domain="influxdb",
        data={
            "api_version": "1",
            "host": "127.0.0.1",
            "port": influxd.http_port,
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
            "database": database,
            "ssl": False,
            "path": "",
            "verify_ssl": True,
        },
        options={"measurement_attr": "entity_id", "include": {"domains": ["sensor"]}},
    ).add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "import_core"}
    )
    assert result["description_placeholders"]["source"] == "config_entry"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"write_mode": "both"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["options"][SECTION_LEGACY] == {"measurement_attr": "entity_id"}
    assert result["options"][SECTION_INGESTION] == {
        "write_mode": "both",
        "include_domains": ["sensor"],
    }


async def test_the_core_steps_abort_when_core_is_not_configured(hass: HomeAssistant) -> None:
    """Reached only through a stale or hand-made request: they say what is missing."""
    for step in ("import_core", "core_database"):
        flow = HaIngestorConfigFlow()
        flow.hass = hass
        result = await getattr(flow, f"async_step_{step}")()
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "core_not_configured"


async def test_without_core_there_is_nothing_to_import(hass: HomeAssistant) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    assert result["menu_options"] == ["influxdb_v1", "influxdb_v2"]
