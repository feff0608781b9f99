"""The generate_test_events action: rehearsal data, live or as legacy history."""

from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
import pytest

from custom_components.ha_ingestor.const import DOMAIN

from .helpers import count, entry_for, setup_entry
from .influx_server import InfluxServer


async def generate(hass: HomeAssistant, **data: Any) -> dict[str, Any]:
    response = await hass.services.async_call(
        DOMAIN, "generate_test_events", data, blocking=True, return_response=True
    )
    assert response is not None
    return dict(response)


@pytest.mark.parametrize(
    ("data", "translation_key"),
    [
        ({"count": 0}, "invalid_count_low"),
        ({"count": -5}, "invalid_count_low"),
        ({"count": 5_000_001}, "invalid_count"),
        ({"count": 300_000, "mode": "live"}, "invalid_count"),
        ({"count": 10, "pattern": "chaotic"}, "invalid_pattern"),
        ({"count": 10, "mode": "yesterday"}, "invalid_mode"),
        ({"count": 10, "entity_count": 0}, "invalid_entity_count"),
        ({"count": 10, "entity_count": 10**9}, "invalid_entity_count"),
        ({"count": 10, "days": 0}, "invalid_days"),
        ({"count": 10, "days": 1e-38}, "invalid_days"),
        ({"count": 10, "days": 100_000}, "invalid_days"),
        ({"count": 10, "config_entry_id": "nope"}, "entry_not_found"),
    ],
)
async def test_bad_requests_are_refused_with_a_clear_error(
    hass: HomeAssistant,
    influxd: InfluxServer,
    database: str,
    data: dict[str, Any],
    translation_key: str,
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    with pytest.raises(ServiceValidationError) as raised:
        await generate(hass, **data)
    assert raised.value.translation_key == translation_key
    assert count(influxd, database, "°C") == 0
    await hass.config_entries.async_unload(entry.entry_id)


async def test_without_a_loaded_entry_the_action_says_so(hass: HomeAssistant) -> None:
    assert await __import__("homeassistant.setup").setup.async_setup_component(hass, DOMAIN, {})
    with pytest.raises(ServiceValidationError) as raised:
        await generate(hass, count=10)
    assert raised.value.translation_key == "no_entry_loaded"


async def test_history_lands_in_the_legacy_layout(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    response = await generate(hass, count=20_000, days=10, seed=1)
    assert response["events"] == 20_000
    assert sum(response["per_domain"].values()) == 20_000
    assert {"light", "sensor", "binary_sensor", "climate"} <= set(response["per_domain"])
    assert response["mode"] == "history"
    assert response["pattern"] == "mixed"

    measurements = {
        row[0]
        for s in influxd.series("SHOW MEASUREMENTS", database)
        for row in s["values"]  # type: ignore[union-attr]
    }
    # The legacy layout names measurements after units, or the entity id without one.
    assert {"°C", "%", "W", "kWh"} <= measurements
    total = 0
    for measurement in measurements:
        series = influxd.series(
            f'SELECT COUNT(*) FROM "{measurement}" GROUP BY "entity_id"', database
        )
        total += sum(max(v for v in s["values"][0][1:] if v) for s in series)  # type: ignore[index]
    assert total == response["points_written"]
    # unknown/unavailable states write nothing, as in HA core.
    assert 0.9 * 20_000 < response["points_written"] <= 20_000
    entity_tags = influxd.series('SHOW TAG VALUES FROM "°C" WITH KEY = "entity_id"', database)
    assert all(
        value.startswith("ha_ingestor_test_")
        for _, value in entity_tags[0]["values"]  # type: ignore[index]
    )
    await hass.config_entries.async_unload(entry.entry_id)


async def test_history_can_go_to_its_own_database(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    try:
        response = await generate(hass, count=500, database="rehearsal_db")
        assert response["database"] == "rehearsal_db"
        assert count(influxd, database, "°C") == 0
        assert count(influxd, "rehearsal_db", "°C") > 0
    finally:
        influxd.drop_database("rehearsal_db")
        await hass.config_entries.async_unload(entry.entry_id)


async def test_same_seed_gives_the_same_history(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    first = await generate(hass, count=2_000, seed=5, pattern="burst")
    second = await generate(hass, count=2_000, seed=5, pattern="burst")
    assert first["per_domain"] == second["per_domain"]
    await hass.config_entries.async_unload(entry.entry_id)


async def test_live_events_go_through_home_assistant_and_get_recorded(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    response = await generate(hass, mode="live", count=1_000, pattern="high_frequency")
    assert response["events"] == 1_000
    test_states = [s for s in hass.states.async_all() if "ha_ingestor_test_" in s.entity_id]
    assert len(test_states) == response["entities"]
    await hass.config_entries.async_unload(entry.entry_id)
    recorded = sum(
        count(influxd, database, m)
        for s in influxd.series("SHOW MEASUREMENTS", database)
        for (m,) in s["values"]  # type: ignore[union-attr]
    )
    # Every live state change that is not unknown/unavailable is recorded.
    assert 900 < recorded <= 1_000
