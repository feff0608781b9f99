"""The translate_query action: a config entry's options, its database's catalog, clear errors."""

from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
import pytest

from custom_components.ha_ingestor.const import DOMAIN

from .helpers import entry_for, setup_entry
from .influx_server import InfluxServer

LEGACY_POINTS = "\n".join(
    [
        "°C,domain=sensor,entity_id=kitchen value=21.5 1704067200000000000",
        "%,domain=sensor,entity_id=kitchen_humidity value=48 1704067200000000000",
        "%,domain=input_number,entity_id=fan value=50 1704067200000000000",
        "binary_sensor.front_door,domain=binary_sensor,entity_id=front_door value=1,"
        'state="on" 1704067200000000000',
    ]
)
PANEL = (
    'SELECT mean("value") FROM "°C" WHERE ("entity_id" = \'kitchen\') AND $timeFilter '
    "GROUP BY time($__interval) fill(null)"
)


async def translate(hass: HomeAssistant, **data: Any) -> dict[str, Any]:
    response = await hass.services.async_call(
        DOMAIN, "translate_query", data, blocking=True, return_response=True
    )
    assert response is not None
    return dict(response)


async def test_a_grafana_panel_query_is_translated_with_the_database_catalog(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    influxd.write(LEGACY_POINTS, database)
    await setup_entry(hass, entry_for(influxd, database))
    response = await translate(hass, query=PANEL)
    assert response["exact"]
    assert response["changed"]
    assert response["query"] == (
        'SELECT mean("value") FROM "sensor" WHERE "unit_of_measurement" = \'°C\' AND '
        "(\"entity_id\" = 'sensor.kitchen') AND $timeFilter GROUP BY time($__interval) fill(null)"
    )
    assert response["warnings"] == []
    assert any("comes from the legacy database" in change for change in response["changes"])


async def test_a_measurement_of_several_domains_needs_a_domain_condition(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    influxd.write(LEGACY_POINTS, database)
    await setup_entry(hass, entry_for(influxd, database))
    query = 'SELECT last("value") FROM "%" WHERE $timeFilter'
    response = await translate(hass, query=query)
    assert not response["exact"]
    assert response["query"] == query
    assert "input_number, sensor" in response["warnings"][0]


async def test_without_the_database_the_domain_must_be_in_the_query(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    await setup_entry(hass, entry_for(influxd, database))
    refused = await translate(hass, query=PANEL, use_database=False)
    assert not refused["exact"]
    assert refused["query"] == PANEL
    stated = await translate(
        hass,
        query="SELECT last(value) FROM \"°C\" WHERE domain = 'sensor' AND entity_id = 'kitchen'",
        use_database=False,
    )
    assert stated["exact"]


async def test_the_entry_legacy_options_are_used(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    options = {"legacy_layout": {"measurement_attr": "entity_id"}}
    await setup_entry(hass, entry_for(influxd, database, options))
    response = await translate(hass, query='SELECT mean(value) FROM "sensor.kitchen"')
    assert response["query"] == (
        'SELECT mean(value) FROM "sensor" WHERE "entity_id" = \'sensor.kitchen\''
    )


async def test_entity_variables_are_kept(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    influxd.write(LEGACY_POINTS, database)
    await setup_entry(hass, entry_for(influxd, database))
    query = 'SELECT value FROM "°C" WHERE "entity_id" =~ /^$entity$/ AND $timeFilter'
    refused = await translate(hass, query=query)
    assert "$entity" in refused["warnings"][0]
    kept = await translate(hass, query=query, entity_variables=["$entity"])
    assert kept["exact"]
    assert "/^$entity$/" in kept["query"]


@pytest.mark.parametrize("query", ["SELECT FROM", 'SELECT value FROM "°C" WHERE x = \'open'])
async def test_a_query_that_does_not_parse_is_a_validation_error(
    hass: HomeAssistant, influxd: InfluxServer, database: str, query: str
) -> None:
    await setup_entry(hass, entry_for(influxd, database))
    with pytest.raises(ServiceValidationError) as raised:
        await translate(hass, query=query, use_database=False)
    assert raised.value.translation_key == "invalid_query"
    assert "position" in raised.value.translation_placeholders["error"]
