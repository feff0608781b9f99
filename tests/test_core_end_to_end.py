"""HA core's influxdb integration and ha_ingestor in one Home Assistant, on the real influxd.

Core writes database A. One ha_ingestor entry records the same state changes live, the
legacy layout into D and the optimized layout into B, configured through the options flow
with core's per-entity, per-domain and per-glob overrides. A second entry, imported from
core's settings by the config flow, migrates A into C. Then, point by point (measurement,
tags, fields and their types, time): D equals A (the legacy writer stores what core stores)
and C equals B (the backfill of core's history, and the states recorded during the
migration, equal what the live writer records). Validation compares the states recorded in
both layouts during the migration, and reports a wrong option with examples.
"""

import asyncio
import json
from pathlib import Path
import time
from typing import Any

from homeassistant import config_entries
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest

from custom_components.ha_ingestor.const import DOMAIN, SECTION_LEGACY
from custom_components.ha_ingestor.engine.line_protocol import Point
from custom_components.ha_ingestor.engine.migration import validation

from .helpers import entry_for, setup_entry, stored_points
from .influx_server import ADMIN_PASSWORD, ADMIN_USER, InfluxServer
from .test_config_flow import options_input
from .test_migration_services import call, wait_for_phase

# Core's options, as in its YAML: every option that shapes the legacy layout.
LAYOUT: dict[str, Any] = {
    "tags": {"instance": "home\\one"},
    "tags_attributes": ["folder"],
    "ignore_attributes": ["icon"],
    "component_config": {"sensor.t_living": {"override_measurement": "living_custom"}},
    "component_config_domain": {"light": {"ignore_attributes": ["effect"]}},
    "component_config_glob": {
        "switch.t_*_power": {"override_measurement": "power", "ignore_attributes": ["voltage"]}
    },
}
FILTERS = {"include": {"entity_globs": ["sensor.t_*", "light.t_*", "switch.t_*"]}}
# Allow-listed attributes include names with a backslash, a line break and a tab.
ALLOWLIST = ["brightness", "hvac_mode:str", "a\\b", "line\nkey:str", "tab\tkey"]


def tricky_states(round_: int) -> list[tuple[str, str, dict[str, Any]]]:
    """State changes with every character core's client escapes (a round gives new values)."""
    n = str(round_)
    return [
        ("sensor.t_note", f"first\nsecond {n}", {"friendly_name": "Line one\nLine two"}),
        ("sensor.t_typed", f"first\\nsecond {n}", {"friendly_name": "Line one\\nLine two"}),
        (
            "sensor.t_path",
            f"C:\\Users\\fid{n}",
            {"unit_of_measurement": "x\\y", "folder": "C:\\Users\\fid", "friendly_name": "a\\b"},
        ),
        ("sensor.t_level", f"1{n}.5", {"unit_of_measurement": "m\nx", "friendly_name": "U\nb"}),
        ("sensor.t_tabbed", f"a\tb{n}", {"unit_of_measurement": "m\tx", "friendly_name": "T\tN"}),
        ("sensor.t_quoted", f'say "hi" {n}', {"friendly_name": 'The "best"', "note": "a,b c=d"}),
        ("sensor.t_commas", n, {"unit_of_measurement": "a,b=c d", "friendly_name": "x=y, z"}),
        ("sensor.t_unicode", f"☀️ {n}", {"unit_of_measurement": "°C", "friendly_name": "Küche 🌡"}),
        (
            "sensor.t_keys",
            "on" if round_ % 2 else "off",
            {"a\\b": 1 + round_, "line\nkey": f"x{n}", "tab\tkey": 2, "sp ace": "y", "icon": "z"},
        ),
        ("sensor.t_living", f"2{n}.5", {"unit_of_measurement": "°C", "friendly_name": "Living"}),
        (
            "light.t_hall",
            "on",
            {"brightness": 100 + round_, "friendly_name": "Hall", "effect": "x", "hvac_mode": "a"},
        ),
        ("switch.t_plug_power", "off", {"current": 0.5 + round_, "voltage": 230}),
    ]


def set_states(hass: HomeAssistant, round_: int) -> int:
    for entity_id, state, attributes in tricky_states(round_):
        hass.states.async_set(entity_id, state, attributes)
    return len(tricky_states(round_))


def options_form(**extra: Any) -> dict[str, Any]:
    """The options flow's form, filled with core's settings."""
    form = options_input(cleanup_delay_hours=168)
    form[SECTION_LEGACY] = {
        "measurement_attr": "unit_of_measurement",
        "tags": [f"{key}={value}" for key, value in LAYOUT["tags"].items()],
        "tags_attributes": LAYOUT["tags_attributes"],
        "ignore_attributes": LAYOUT["ignore_attributes"],
        "component_config": LAYOUT["component_config"],
        "component_config_domain": LAYOUT["component_config_domain"],
        "component_config_glob": LAYOUT["component_config_glob"],
    }
    form["ingestion"] = {
        "write_mode": "both",
        "attribute_allowlist": ALLOWLIST,
        "include_entity_globs": FILTERS["include"]["entity_globs"],
    }
    form["migration"].pop("target_database")
    for section, values in extra.items():
        form[section] = form[section] | values
    return form


async def set_options(hass: HomeAssistant, entry_id: str, form: dict[str, Any]) -> None:
    result = await hass.config_entries.options.async_init(entry_id)
    result = await hass.config_entries.options.async_configure(result["flow_id"], form)
    assert result["type"] == "create_entry", result
    await hass.async_block_till_done()


def key(point: Point) -> tuple[Any, ...]:
    # Types matter: a float field stays a float, a string a string.
    fields = tuple(sorted((k, type(v).__name__, v) for k, v in point.fields.items()))
    return point.measurement, tuple(sorted(point.tags.items())), fields, point.time_ns


async def points(influxd: InfluxServer, database: str) -> list[tuple[Any, ...]]:
    return sorted(
        key(p) for found in (await stored_points(influxd, database)).values() for p in found
    )


def legacy_only(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The legacy-layout points: their entity_id tag is an object id."""
    return [row for row in rows if "." not in dict(row[1]).get("entity_id", ".")]


@pytest.fixture
def databases(influxd: InfluxServer, database: str) -> dict[str, str]:
    names = {name: f"{database}_{name.lower()}" for name in "ABCD"}
    for name in (names["A"], names["B"], names["D"]):
        influxd.create_database(name)
    return names


async def start_core(hass: HomeAssistant, influxd: InfluxServer, database: str) -> None:
    """Core's influxdb integration from YAML, as configuration.yaml has it."""
    conf = {
        "host": "127.0.0.1",
        "port": influxd.http_port,
        "username": ADMIN_USER,
        "password": ADMIN_PASSWORD,
        "database": database,
        **LAYOUT,
        **FILTERS,
    }
    # JSON is YAML: the simplest exact way to write it (the import flow reads it back).
    yaml = f"influxdb: {json.dumps(conf)}\n"
    Path(hass.config.path("configuration.yaml")).write_text(yaml, encoding="utf-8")
    assert await async_setup_component(hass, "influxdb", {"influxdb": conf})
    await hass.async_block_till_done()


async def settled(
    influxd: InfluxServer, databases: dict[str, str], recorded: int, names: str
) -> list[list[tuple[Any, ...]]]:
    """The points of each database once every recorded state reached the named ones."""
    deadline = time.monotonic() + 30
    while True:
        found = {name: await points(influxd, databases[name]) for name in "ABCD"}
        if all(len(legacy_only(found[n]) if n == "A" else found[n]) >= recorded for n in names):
            return [found[name] for name in "ABCD"]
        if time.monotonic() > deadline:
            return [found[name] for name in "ABCD"]
        await asyncio.sleep(0.2)


async def core_flushed(hass: HomeAssistant) -> None:
    await hass.async_add_executor_job(hass.data["influxdb"].block_till_done)


async def import_from_core(hass: HomeAssistant, write_mode: str) -> config_entries.ConfigEntry:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    assert "import_core" in result["menu_options"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "import_core"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"write_mode": write_mode}
    )
    assert result["type"] == "create_entry", result
    await hass.async_block_till_done()
    return result["result"]


async def run_migration_into(
    hass: HomeAssistant,
    influxd: InfluxServer,
    databases: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    migrating_form: dict[str, Any] | None = None,
) -> tuple[config_entries.ConfigEntry, int]:
    """Record history with core and ha_ingestor, migrate A into C, record more states while
    the migration waits for its cleanup; the migrating entry and the states recorded."""
    # Points become pairs to validate as soon as they are both written.
    monkeypatch.setattr(validation, "LIVE_SETTLE_NS", 0)
    await start_core(hass, influxd, databases["A"])
    recorder = await setup_entry(hass, entry_for(influxd, databases["D"]))
    await set_options(
        hass,
        recorder.entry_id,
        options_form(ingestion={"optimized_database": databases["B"]}),
    )
    migrating = await import_from_core(hass, "legacy")
    await set_options(
        hass,
        migrating.entry_id,
        migrating_form or options_form(migration={"target_database": databases["C"]}),
    )
    recorded = 0
    for round_ in range(3):
        recorded += set_states(hass, round_)
        await hass.async_block_till_done()
    await core_flushed(hass)
    await settled(influxd, databases, recorded, "ABD")

    await call(hass, "start_migration", config_entry_id=migrating.entry_id)
    assert await wait_for_phase(hass, migrating.entry_id, {"cleanup", "paused", "failed"}) == (
        "cleanup"
    )
    # Recorded in both layouts by the migration, while core keeps writing A.
    for round_ in range(3, 5):
        recorded += set_states(hass, round_)
        await hass.async_block_till_done()
    await core_flushed(hass)
    return migrating, recorded


async def test_backfilled_history_and_live_data_equal_what_core_and_the_live_writer_store(
    hass: HomeAssistant,
    influxd: InfluxServer,
    databases: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    migrating, recorded = await run_migration_into(hass, influxd, databases, monkeypatch)
    a, b, c, d = await settled(influxd, databases, recorded, "ABCD")

    # The legacy writer stores exactly what core stores (A also holds the migrating entry's
    # own legacy writes: the same bytes, so the same points).
    assert d == legacy_only(a)
    # The backfill of core's history plus the migration's live points equal the live writer's.
    assert c == b
    assert len(b) == recorded
    # The tricky inputs are really in there, in the one form both sides agree on.
    tags = {dict(row[1])["entity_id"]: dict(row[1]) for row in c}
    assert tags["sensor.t_note"]["friendly_name"] == "Line one\\nLine two"
    assert tags["sensor.t_typed"]["friendly_name"] == "Line one\\nLine two"
    assert tags["sensor.t_path"]["unit_of_measurement"] == "x\\y"
    assert tags["sensor.t_level"]["unit_of_measurement"] == "m\\nx"
    assert tags["sensor.t_living"]["unit_of_measurement"] == "°C"
    assert {row[0] for row in d} >= {"x\\\\y", "living_custom", "power", "m\\nx", "a,b=c d"}

    result = await call(hass, "validate_migration", config_entry_id=migrating.entry_id)
    assert result["integrity_score"] == 1.0
    assert result["mismatches"] == {}
    assert result["live_pairs_compared"] == 2 * len(tricky_states(0))


async def test_validation_reports_an_override_the_entry_lacks_with_examples(
    hass: HomeAssistant,
    influxd: InfluxServer,
    databases: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The issue's case: core wrote sensor.t_living under "living_custom", the migrating
    entry does not know: its backfill tags the unit "living_custom", the live writer "°C"."""
    form = options_form(migration={"target_database": databases["C"]})
    form[SECTION_LEGACY] = form[SECTION_LEGACY] | {"component_config": {}}
    migrating, recorded = await run_migration_into(hass, influxd, databases, monkeypatch, form)
    await settled(influxd, databases, recorded, "BC")

    result = await call(hass, "validate_migration", config_entry_id=migrating.entry_id)

    # Two of the about 57 compared (day counts, sampled records, 24 live pairs) differ.
    assert 0.9 < result["integrity_score"] < 1.0
    assert set(result["mismatches"]) == {"sensor.t_living"}
    assert result["mismatches"]["sensor.t_living"]["mismatched_live_pairs"] == 2
    example = result["examples"][0]
    assert example["entity_id"] == "sensor.t_living"
    assert example["source"] == "live_pair"
    assert example["differences"]["tag unit_of_measurement"] == ["living_custom", "°C"]
    ledger = migrating.runtime_data.migration.state.ledger
    assert "sensor.t_living" not in ledger.verified
