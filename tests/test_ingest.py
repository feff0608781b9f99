"""Live recording: state changes land in the real InfluxDB in the chosen layouts."""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
import threading

from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import area_registry as ar, entity_registry as er
import pytest

from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.engine.line_protocol import (
    Point,
    sanitize_name,
    stored_by_influxdb_v1,
)
from custom_components.ha_ingestor.layouts.legacy import LegacyLayout, LegacyOptions
from custom_components.ha_ingestor.layouts.optimized import OptimizedLayout, OptimizedOptions

from .helpers import count, entry_for, eventually, ingest_options, setup_entry, stored_points
from .influx_server import InfluxServer, running_influxd

HOSTILE = 'Küche "Ofen", Tür=zu\nzweite Zeile \\ 🔥'


async def read_all(influxd: InfluxServer, database: str) -> list[Point]:
    return [
        point for points in (await stored_points(influxd, database)).values() for point in points
    ]


def set_states(hass: HomeAssistant) -> list[State]:
    hass.states.async_set(
        "sensor.kitchen_temperature",
        "21.5",
        {"unit_of_measurement": "°C", "device_class": "temperature", "friendly_name": "Kitchen"},
    )
    hass.states.async_set(
        "light.living_room", "on", {"brightness": 180, "friendly_name": "Living room"}
    )
    hass.states.async_set(
        "sensor.weird_values",
        "12.5 %",
        {"friendly_name": HOSTILE, "note": "a,b c=d", "nan": float("nan"), "big": "x" * 50_000},
    )
    hass.states.async_set("binary_sensor.door", "unavailable")
    return [
        hass.states.get(entity_id)
        for entity_id in (
            "sensor.kitchen_temperature",
            "light.living_room",
            "sensor.weird_values",
        )
    ]


def normalized(point: Point) -> tuple:
    """What a point looks like after a trip through InfluxDB (names sanitized)."""
    return (
        sanitize_name(point.measurement),
        tuple(sorted((sanitize_name(k), sanitize_name(v)) for k, v in point.tags.items() if v)),
        tuple(
            sorted(
                (sanitize_name(k), v)
                for k, v in point.fields.items()
                if not (isinstance(v, float) and v != v)
            )
        ),
        point.time_ns,
    )


@pytest.mark.parametrize("mode", ["legacy", "both", "optimized"])
async def test_state_changes_land_in_the_chosen_layouts(
    hass: HomeAssistant, influxd: InfluxServer, database: str, mode: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database, ingest_options(mode)))
    states = set_states(hass)
    assert await hass.config_entries.async_unload(entry.entry_id)

    expected = []
    if mode in ("legacy", "both"):
        # Written as core's client writes it, so the names are what the server keeps of that.
        layout = LegacyLayout(LegacyOptions())
        expected += [
            stored_by_influxdb_v1(p) for s in states if (p := layout.point(s, s.last_updated))
        ]
    if mode in ("optimized", "both"):
        optimized = OptimizedLayout(OptimizedOptions())
        expected += [optimized.point(s, s.last_updated) for s in states]
    stored = await read_all(influxd, database)
    assert sorted(map(normalized, stored)) == sorted(normalized(p) for p in expected if p)


async def test_recorded_time_is_the_event_time(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    before = datetime.now(UTC)
    hass.states.async_set("sensor.timed", "1", {"unit_of_measurement": "W"})
    after = datetime.now(UTC)
    assert await hass.config_entries.async_unload(entry.entry_id)
    (point,) = await read_all(influxd, database)
    assert before.timestamp() * 1e9 <= point.time_ns <= after.timestamp() * 1e9


async def test_filters_choose_what_is_recorded(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    options = ingest_options(
        "legacy",
        include_domains=["sensor"],
        exclude_entity_globs=["sensor.noisy_*"],
        exclude_entities=["sensor.secret"],
    )
    entry = await setup_entry(hass, entry_for(influxd, database, options))
    for entity_id in ("sensor.kept", "sensor.noisy_one", "sensor.secret", "light.not_sensor"):
        hass.states.async_set(entity_id, "1")
    assert await hass.config_entries.async_unload(entry.entry_id)
    stored = await read_all(influxd, database)
    assert [p.tags["entity_id"] for p in stored] == ["kept"]


async def test_hostile_names_and_values_land_intact(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    hass.states.async_set(
        "sensor.odd_name_9",
        "on fire",
        {"unit_of_measurement": 'm³/h, "q"', "text": HOSTILE, "empty": ""},
    )
    assert await hass.config_entries.async_unload(entry.entry_id)
    (point,) = await read_all(influxd, database)
    assert point.measurement == 'm³/h, "q"'
    assert point.tags == {"domain": "sensor", "entity_id": "odd_name_9"}
    # As core's client stores it: the line break as backslash + n.
    assert point.fields["text_str"] == HOSTILE.replace("\n", "\\n")
    assert point.fields["state"] == "on fire"
    assert point.fields["empty_str"] == ""


@pytest.fixture
def own_influxd() -> Iterator[InfluxServer]:
    with running_influxd(auth=True) as server:
        server.create_database("home")
        yield server


async def test_spool_left_at_shutdown_is_replayed_after_restart(
    hass: HomeAssistant, own_influxd: InfluxServer
) -> None:
    entry = await setup_entry(hass, entry_for(own_influxd, "home"))
    await hass.async_add_executor_job(own_influxd.stop)
    for i in range(300):
        hass.states.async_set("sensor.restart", str(i), {"unit_of_measurement": "kWh"})
    # Home Assistant stops while InfluxDB is still down: the points go to the spool.
    assert await hass.config_entries.async_unload(entry.entry_id)
    spool = Path(hass.config.path("ha_ingestor", entry.entry_id, "spool-legacy-home"))
    assert await hass.async_add_executor_job(lambda: any(spool.iterdir())), (
        "the unsent points must be on disk"
    )
    await hass.async_add_executor_job(own_influxd.start)
    assert count(own_influxd, "home", "kWh") == 0

    assert await hass.config_entries.async_setup(entry.entry_id)
    await eventually(hass, lambda: count(own_influxd, "home", "kWh") == 300, timeout=60)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_the_listener_hands_states_over_and_conversion_runs_off_the_loop(
    hass: HomeAssistant, influxd: InfluxServer, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bus listener only queues the state; points are built in the executor, per batch."""
    threads: list[int] = []

    def recording(original: Callable[..., Point | None]) -> Callable[..., Point | None]:
        def point(self: object, state: State, time_fired: datetime) -> Point | None:
            threads.append(threading.get_ident())
            return original(self, state, time_fired)

        return point

    monkeypatch.setattr(LegacyLayout, "point", recording(LegacyLayout.point))
    monkeypatch.setattr(OptimizedLayout, "point", recording(OptimizedLayout.point))
    entry = await setup_entry(hass, entry_for(influxd, database, ingest_options("both")))
    loop_thread = threading.get_ident()

    for i in range(50):
        hass.states.async_set("sensor.handed_over", str(i), {"unit_of_measurement": "W"})
    assert threads == [], "the listener must not build points"

    assert await hass.config_entries.async_unload(entry.entry_id)
    assert len(threads) == 2 * 50
    assert loop_thread not in threads
    assert count(influxd, database, "W") == 50
    assert count(influxd, database, "sensor") == 50


async def test_our_own_entities_are_not_recorded_even_when_registered_later(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database))
    hass.states.async_set("sensor.becomes_ours", "1", {"unit_of_measurement": "W"})
    hass.states.async_remove("sensor.becomes_ours")
    registered = er.async_get(hass).async_get_or_create(
        "sensor", DOMAIN, "becomes-ours", suggested_object_id="becomes_ours"
    )
    assert registered.entity_id == "sensor.becomes_ours"
    hass.states.async_set("sensor.becomes_ours", "2", {"unit_of_measurement": "W"})
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert [p.fields["value"] for p in await read_all(influxd, database)] == [1.0]


async def test_optimized_points_carry_the_area_at_the_time_of_the_change(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    areas = ar.async_get(hass)
    kitchen, hall = areas.async_create("Kitchen"), areas.async_create("Hall")
    entities = er.async_get(hass)
    entity = entities.async_get_or_create("sensor", "demo", "moving", suggested_object_id="moving")
    entities.async_update_entity(entity.entity_id, area_id=kitchen.id)
    entry = await setup_entry(hass, entry_for(influxd, database, ingest_options("optimized")))

    hass.states.async_set(entity.entity_id, "1")
    entities.async_update_entity(entity.entity_id, area_id=hall.id)
    hass.states.async_set(entity.entity_id, "2")
    areas.async_update(hall.id, name="Hallway")
    hass.states.async_set(entity.entity_id, "3")
    assert await hass.config_entries.async_unload(entry.entry_id)

    stored = sorted(await read_all(influxd, database), key=lambda p: p.time_ns)
    assert [(p.fields["value"], p.tags.get("area")) for p in stored] == [
        (1.0, "Kitchen"),
        (2.0, "Hall"),
        (3.0, "Hallway"),
    ]
