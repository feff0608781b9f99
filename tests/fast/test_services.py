"""Service actions whose answer and effect the fake can hold: rehearsal data and a dry run."""

from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
import pytest

from custom_components.ha_ingestor.const import DOMAIN

from ..fake_influx import FakeInfluxServer
from .conftest import DATABASE, entity_state, fake_entry, set_up, until


async def call(hass: HomeAssistant, service: str, **data: Any) -> dict[str, Any]:
    response = await hass.services.async_call(
        DOMAIN, service, data, blocking=True, return_response=True
    )
    assert response is not None
    return dict(response)


def rehearsal_entities(server: FakeInfluxServer, database: str = DATABASE) -> set[str]:
    return {
        f"{p.tags['domain']}.{p.tags['entity_id']}"
        for p in server.points(database)
        if p.tags.get("entity_id", "").startswith("ha_ingestor_test_")
    }


async def test_generated_history_is_written_in_the_legacy_layout(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    entry = await set_up(hass, fake_entry(influx))
    response = await call(hass, "generate_test_events", count=300, days=1, seed=7, entity_count=6)
    points = influx.points(DATABASE)
    assert response["points_written"] == len(points) > 0
    assert response["events"] == 300
    assert response["database"] == DATABASE
    assert len(rehearsal_entities(influx)) == response["entities"] == 6
    assert all({"domain", "entity_id"} <= p.tags.keys() for p in points)
    assert all("value" in p.fields or "state" in p.fields for p in points)
    assert sum(response["per_domain"].values()) == 300
    # History, not live: none of it went through the state machine.
    assert not any(
        state.entity_id.startswith("sensor.ha_ingestor_test_") for state in hass.states.async_all()
    )
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_generated_history_can_go_to_a_database_of_its_own(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    entry = await set_up(hass, fake_entry(influx))
    response = await call(
        hass, "generate_test_events", count=50, days=1, entity_count=3, database="rehearsal"
    )
    assert response["database"] == "rehearsal"
    assert len(influx.points("rehearsal")) == response["points_written"] > 0
    assert influx.points(DATABASE) == []
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_live_events_go_through_home_assistant_and_are_recorded(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    entry = await set_up(hass, fake_entry(influx))
    response = await call(
        hass, "generate_test_events", mode="live", count=40, entity_count=4, seed=3
    )
    assert response["layouts_recorded"] == 1
    assert response["points_written"] == len(influx.points(DATABASE)) > 0
    assert len(rehearsal_entities(influx)) == 4
    assert all(hass.states.get(entity_id) is not None for entity_id in rehearsal_entities(influx))
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_bad_request_is_refused_before_anything_is_written(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    entry = await set_up(hass, fake_entry(influx))
    with pytest.raises(ServiceValidationError) as raised:
        await call(hass, "generate_test_events", count=0)
    assert raised.value.translation_key == "invalid_count_low"
    assert influx.writes == []
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_dry_run_migration_plans_from_the_history_and_changes_nothing(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    entry = await set_up(hass, fake_entry(influx))
    history = await call(hass, "generate_test_events", count=400, days=2, seed=5, entity_count=8)
    writes = len(influx.writes)

    plan = await call(hass, "start_migration", dry_run=True)
    assert plan["dry_run"] is True
    # Discovery counts every entity's points by the state fields: the history it just wrote.
    assert plan["estimated_points"] == history["points_written"]
    assert plan["entities"] == 8
    assert sorted(plan["entity_ids"]) == sorted(rehearsal_entities(influx))
    assert plan["target_database"] == DATABASE
    assert plan["separate_target"] is False
    assert sorted(plan["measurements"]) == sorted({p.measurement for p in influx.points(DATABASE)})

    assert len(influx.writes) == writes, "a dry run writes nothing"
    assert entity_state(hass, entry, "migration_phase") == "idle"
    assert entity_state(hass, entry, "migration_running") == "off"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_dry_run_without_history_plans_nothing(
    hass: HomeAssistant, influx: FakeInfluxServer
) -> None:
    entry = await set_up(hass, fake_entry(influx))
    plan = await call(hass, "start_migration", dry_run=True)
    assert (plan["estimated_points"], plan["entities"], plan["measurements"]) == (0, 0, [])
    assert await until(hass, lambda: entity_state(hass, entry, "migration_phase") == "idle")
    assert await hass.config_entries.async_unload(entry.entry_id)
