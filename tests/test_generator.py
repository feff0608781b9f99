"""Behaviour of the test-data generator: a realistic, reproducible, streamable simulated home."""

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
import itertools
import json
import statistics
import time
import tracemalloc

from homeassistant.core import valid_entity_id
from hypothesis import given, settings, strategies as st
import pytest

from custom_components.ha_ingestor.engine.generator import (
    MAX_ENTITIES,
    MAX_EVENTS,
    MIN_ENTITY_GAP,
    EntityKind,
    GeneratedState,
    GeneratorConfig,
    Pattern,
    entity_catalog,
    generate,
    summarize,
)

START = datetime(2024, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def _config(
    count: int = 20_000,
    pattern: Pattern | str = Pattern.MIXED,
    entity_count: int | None = None,
    start: datetime = START,
    end: datetime = START + DAY,
    seed: int = 7,
    *,
    high_cardinality: bool = False,
) -> GeneratorConfig:
    # Text patterns are passed through unchanged: the config must accept or reject them.
    return GeneratorConfig(
        count,
        pattern,  # type: ignore[arg-type]
        entity_count,
        start,
        end,
        seed,
        high_cardinality=high_cardinality,
    )


@cache
def _events(
    pattern: Pattern = Pattern.MIXED,
    count: int = 20_000,
    period: timedelta = DAY,
    seed: int = 7,
    *,
    high_cardinality: bool = False,
) -> tuple[GeneratedState, ...]:
    config = _config(
        count, pattern, end=START + period, seed=seed, high_cardinality=high_cardinality
    )
    return tuple(generate(config))


def _by_entity(events: tuple[GeneratedState, ...]) -> dict[str, list[GeneratedState]]:
    grouped: dict[str, list[GeneratedState]] = defaultdict(list)
    for event in events:
        grouped[event.entity_id].append(event)
    return grouped


def _gaps(events: list[GeneratedState]) -> list[float]:
    times = [event.time_fired.timestamp() for event in events]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def _gap_variation(events: list[GeneratedState]) -> float:
    """Coefficient of variation of one entity's inter-arrival times."""
    gaps = _gaps(events)
    return statistics.pstdev(gaps) / statistics.mean(gaps)


def _bucket_counts(
    events: tuple[GeneratedState, ...], period: timedelta = DAY, buckets: int = 100
) -> list[int]:
    counts = [0] * buckets
    for event in events:
        counts[min(buckets - 1, int((event.time_fired - START) / period * buckets))] += 1
    return counts


def _kinds(config: GeneratorConfig) -> dict[str, EntityKind]:
    return {spec.entity_id: spec.kind for spec in entity_catalog(config)}


def _reported(events: Iterable[GeneratedState]) -> list[GeneratedState]:
    """The events where the entity was available and known."""
    return [event for event in events if event.state not in {"unknown", "unavailable"}]


def _numeric(events: list[GeneratedState]) -> list[float]:
    return [float(event.state) for event in _reported(events)]


# --- Counts, order and timestamps -----------------------------------------------------------


@pytest.mark.parametrize("pattern", list(Pattern))
def test_generates_exactly_the_requested_number_of_events(pattern: Pattern) -> None:
    assert len(_events(pattern)) == 20_000


@pytest.mark.parametrize("pattern", list(Pattern))
def test_events_are_in_time_order_within_the_period(pattern: Pattern) -> None:
    times = [event.time_fired for event in _events(pattern)]

    assert times == sorted(times)
    assert times[0] >= START
    assert times[-1] <= START + DAY


@pytest.mark.parametrize("pattern", list(Pattern))
def test_events_of_one_entity_are_at_least_a_millisecond_apart(pattern: Pattern) -> None:
    # A shared timestamp would make InfluxDB overwrite one point with the other.
    for events in _by_entity(_events(pattern)).values():
        gaps = [b.time_fired - a.time_fired for a, b in itertools.pairwise(events)]
        assert all(gap >= MIN_ENTITY_GAP for gap in gaps)


def test_busy_entities_in_a_short_period_still_get_distinct_timestamps() -> None:
    config = _config(50_000, Pattern.BURST, entity_count=20, end=START + timedelta(minutes=5))

    for events in _by_entity(tuple(generate(config))).values():
        times = [event.time_fired for event in events]
        assert len(set(times)) == len(times)


def test_timestamps_have_sub_second_resolution() -> None:
    microseconds = {event.time_fired.microsecond for event in _events()}

    assert len(microseconds) > 1000


def test_time_fired_is_utc_whatever_the_zone_of_start() -> None:
    amsterdam = timezone(timedelta(hours=1))
    start = START.astimezone(amsterdam)
    config = _config(100, start=start, end=start + DAY)

    events = list(generate(config))

    assert all(event.time_fired.tzinfo is UTC for event in events)
    assert events[0].time_fired >= START


# --- Timing per pattern ---------------------------------------------------------------------


def test_high_frequency_spreads_events_evenly_over_time() -> None:
    counts = _bucket_counts(_events(Pattern.HIGH_FREQUENCY))

    assert statistics.pstdev(counts) / statistics.mean(counts) < 0.1
    assert min(counts) > 0.8 * statistics.mean(counts)


def test_high_frequency_keeps_every_entity_equally_busy() -> None:
    per_entity = Counter(event.entity_id for event in _events(Pattern.HIGH_FREQUENCY))

    assert len(per_entity) == 300
    assert max(per_entity.values()) - min(per_entity.values()) <= 1


def test_periodic_entities_report_at_nearly_fixed_intervals() -> None:
    variations = [
        _gap_variation(events)
        for events in _by_entity(_events(Pattern.PERIODIC)).values()
        if len(events) >= 5
    ]

    assert len(variations) > 250
    assert max(variations) < 0.05


def test_periodic_entities_each_have_their_own_interval() -> None:
    intervals = {
        round(statistics.mean(_gaps(events)))
        for events in _by_entity(_events(Pattern.PERIODIC)).values()
        if len(events) >= 5
    }

    assert len(intervals) >= 5


def test_burst_puts_most_events_in_a_small_share_of_the_time() -> None:
    counts = sorted(_bucket_counts(_events(Pattern.BURST)), reverse=True)

    assert sum(counts[:10]) > 0.6 * sum(counts)
    assert sum(counts[50:]) < 0.1 * sum(counts)


def test_sparse_gaps_are_long_and_irregular() -> None:
    week = timedelta(days=7)
    by_entity = _by_entity(_events(Pattern.SPARSE, count=3_000, period=week))
    variations = [_gap_variation(events) for events in by_entity.values() if len(events) >= 5]

    assert statistics.median(len(events) for events in by_entity.values()) <= 15
    # Exponential inter-arrival times have a coefficient of variation around 1.
    assert 0.7 < statistics.median(variations) < 1.3
    assert min(max(_gaps(e)) for e in by_entity.values() if len(e) > 2) > 3600


def test_mixed_times_each_kind_of_entity_its_own_way() -> None:
    kinds = _kinds(_config())
    variation: dict[EntityKind, list[float]] = defaultdict(list)
    for entity_id, events in _by_entity(_events(Pattern.MIXED)).items():
        if len(events) >= 5:
            variation[kinds[entity_id]].append(_gap_variation(events))

    assert statistics.median(variation[EntityKind.TEMPERATURE]) < 0.05
    assert statistics.median(variation[EntityKind.DEVICE_TRACKER]) > 0.6
    assert statistics.median(variation[EntityKind.LIGHT]) > 1.5


# --- The simulated home ---------------------------------------------------------------------


def test_default_home_has_a_realistic_mix_of_about_300_entities() -> None:
    domains = Counter(spec.domain for spec in entity_catalog(_config()))

    assert sum(domains.values()) == 300
    assert domains["light"] >= 50
    assert domains["sensor"] >= 100
    assert domains["binary_sensor"] >= 30
    assert domains["climate"] >= 5
    assert domains["automation"] >= 10
    assert domains["script"] >= 5
    assert domains["device_tracker"] >= 5


def test_sensors_cover_the_common_device_classes_and_units() -> None:
    sensors = [spec.attributes for spec in entity_catalog(_config()) if spec.domain == "sensor"]
    classes = Counter((a["device_class"], a["unit_of_measurement"]) for a in sensors)

    assert set(classes) == {
        ("temperature", "°C"),
        ("temperature", "°F"),
        ("humidity", "%"),
        ("power", "W"),
        ("energy", "kWh"),
        ("illuminance", "lx"),
        ("gas", "m³"),
        ("battery", "%"),
        ("pressure", "hPa"),
    }
    assert all(a["friendly_name"] for a in sensors)


def test_energy_and_gas_sensors_are_total_increasing() -> None:
    state_classes = {
        spec.attributes["device_class"]: spec.attributes["state_class"]
        for spec in entity_catalog(_config())
        if spec.domain == "sensor"
    }

    assert state_classes["energy"] == "total_increasing"
    assert state_classes["gas"] == "total_increasing"
    assert state_classes["temperature"] == "measurement"


def test_binary_sensors_are_doors_motion_and_windows() -> None:
    classes = {
        spec.attributes["device_class"]
        for spec in entity_catalog(_config())
        if spec.domain == "binary_sensor"
    }

    assert classes == {"door", "motion", "window"}


def test_some_entities_have_an_icon_and_most_do_not() -> None:
    catalog = entity_catalog(_config())
    with_icon = [spec for spec in catalog if "icon" in spec.attributes]

    assert 0 < len(with_icon) < len(catalog) / 2


def test_entity_ids_are_valid_and_unique() -> None:
    config = _config(entity_count=MAX_ENTITIES, high_cardinality=True)
    entity_ids = [spec.entity_id for spec in entity_catalog(config)]

    assert len(set(entity_ids)) == len(entity_ids) == MAX_ENTITIES
    assert all(valid_entity_id(entity_id) for entity_id in entity_ids)


def test_entity_count_scales_the_home() -> None:
    small = Counter(spec.domain for spec in entity_catalog(_config(entity_count=40)))
    large = Counter(spec.domain for spec in entity_catalog(_config(entity_count=3_000)))

    assert sum(small.values()) == 40
    assert set(small) == set(large)
    assert sum(large.values()) == 3_000
    assert large["light"] == 600


def test_high_cardinality_mode_adds_over_1000_dynamic_entities() -> None:
    events = _events(Pattern.HIGH_FREQUENCY, high_cardinality=True)
    entity_ids = {event.entity_id for event in events}

    assert len(entity_ids) > 1_000
    assert "sensor.dynamic_0001" in entity_ids
    assert "sensor.dynamic_1000" in entity_ids


def test_the_home_is_the_same_for_every_seed_count_and_pattern() -> None:
    one = entity_catalog(_config(100, Pattern.BURST, seed=1))
    other = entity_catalog(_config(5_000, Pattern.PERIODIC, seed=2))

    assert one == other


# --- Plausible states -----------------------------------------------------------------------


def test_lights_report_brightness_and_color_temp_only_while_on() -> None:
    lights = [event for event in _events() if event.entity_id.startswith("light.")]
    on = [event.attributes for event in lights if event.state == "on"]
    off = [event.attributes for event in lights if event.state == "off"]

    assert on
    assert off
    assert all(1 <= a["brightness"] <= 255 for a in on)
    assert all(153 <= a["color_temp"] <= 500 for a in on if a["color_mode"] == "color_temp")
    assert any(a["color_mode"] == "color_temp" for a in on)
    assert all(a["brightness"] is None for a in off)


def test_lights_switch_on_and_off() -> None:
    for events in _by_entity(_events()).values():
        if events[0].entity_id.startswith("light.") and len(events) > 10:
            assert {event.state for event in events} >= {"on", "off"}


def test_temperatures_wander_within_a_realistic_range() -> None:
    by_unit: dict[str, list[float]] = defaultdict(list)
    for events in _by_entity(_events()).values():
        if events[0].attributes.get("device_class") == "temperature":
            values = _numeric(events)
            by_unit[events[0].attributes["unit_of_measurement"]].extend(values)
            steps = [abs(b - a) for a, b in itertools.pairwise(values)]
            assert max(steps) <= 1.0

    assert 15 <= min(by_unit["°C"]) <= max(by_unit["°C"]) <= 30
    assert 59 <= min(by_unit["°F"]) <= max(by_unit["°F"]) <= 86


def test_energy_and_gas_meters_only_go_up() -> None:
    meters = 0
    for events in _by_entity(_events()).values():
        if events[0].attributes.get("state_class") == "total_increasing":
            values = _numeric(events)
            assert values == sorted(values)
            meters += 1

    assert meters == 25


def test_binary_sensors_alternate_between_on_and_off() -> None:
    for events in _by_entity(_events()).values():
        if events[0].entity_id.startswith("binary_sensor."):
            states = [event.state for event in _reported(events)]
            assert set(states) <= {"on", "off"}
            assert all(a != b for a, b in itertools.pairwise(states))


def test_climate_entities_report_hvac_mode_action_and_temperatures() -> None:
    climate = _reported(e for e in _events() if e.entity_id.startswith("climate."))
    actions = {"heat": {"heating", "idle"}, "cool": {"cooling", "idle"}, "off": {"off"}}

    assert {event.state for event in climate} == {"heat", "cool", "auto", "off"}
    for event in climate:
        attributes = event.attributes
        assert attributes["hvac_modes"] == ["off", "heat", "cool", "auto"]
        assert 10 <= attributes["current_temperature"] <= 32
        if event.state == "auto":
            assert attributes["target_temp_low"] < attributes["target_temp_high"]
        else:
            assert attributes["hvac_action"] in actions[event.state]
            assert 7 <= attributes["temperature"] <= 35


def test_automations_and_scripts_record_when_they_last_triggered() -> None:
    triggered = [
        event
        for event in _events()
        if event.entity_id.split(".")[0] in {"automation", "script"}
        and event.attributes.get("last_triggered")
    ]

    assert len({event.entity_id.split(".")[0] for event in triggered}) == 2
    for event in triggered:
        assert event.state in {"on", "off"}
        assert datetime.fromisoformat(event.attributes["last_triggered"]) <= event.time_fired


def test_device_trackers_are_home_or_not_home_with_source_details() -> None:
    trackers = _reported(e for e in _events() if e.entity_id.startswith("device_tracker."))

    assert {event.state for event in trackers} == {"home", "not_home"}
    for event in trackers:
        attributes = event.attributes
        if attributes["source_type"] == "gps":
            assert 0 < attributes["gps_accuracy"] <= 100
            assert -90 <= attributes["latitude"] <= 90
            assert 0 <= attributes["battery_level"] <= 100
        else:
            assert attributes["source_type"] == "router"
            assert attributes["ip"]


def test_unknown_and_unavailable_states_are_present_but_rare() -> None:
    states = Counter(event.state for event in _events())
    share = (states["unknown"] + states["unavailable"]) / states.total()

    assert states["unknown"] > 0
    assert states["unavailable"] > 0
    assert 0.002 < share < 0.03


def test_attributes_are_plain_json_values() -> None:
    for event in _events()[:5_000]:
        assert json.loads(json.dumps(event.attributes)) == event.attributes


def test_changing_an_events_attributes_leaves_other_events_alone() -> None:
    config = _config(200, entity_count=1)
    first, *rest = generate(config)
    first.attributes["friendly_name"] = "changed"  # type: ignore[index]

    assert all(event.attributes["friendly_name"] != "changed" for event in rest)
    assert entity_catalog(config)[0].attributes["friendly_name"] != "changed"


# --- Determinism ----------------------------------------------------------------------------


def test_the_same_seed_gives_identical_events() -> None:
    assert list(generate(_config(5_000, seed=99))) == list(generate(_config(5_000, seed=99)))


def test_a_different_seed_gives_different_events() -> None:
    one = list(generate(_config(5_000, seed=1)))
    other = list(generate(_config(5_000, seed=2)))

    assert [e.time_fired for e in one] != [e.time_fired for e in other]
    assert [e.state for e in one] != [e.state for e in other]


# --- Configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"count": 0}, "count must be between 1 and"),
        ({"count": MAX_EVENTS + 1}, "count must be between 1 and"),
        ({"entity_count": 0}, "entity_count must be between 1 and"),
        ({"entity_count": MAX_ENTITIES + 1}, "entity_count must be between 1 and"),
        ({"end": START - timedelta(seconds=1)}, "is before start"),
        ({"start": datetime(2024, 3, 1)}, "start must be timezone-aware"),  # noqa: DTZ001
        ({"pattern": "chaotic"}, "unknown pattern 'chaotic'"),
        ({"entity_count": 500, "high_cardinality": True}, "needs at least 1,000 entities"),
        (
            {"count": 100_000, "entity_count": 10, "end": START + timedelta(seconds=1)},
            "too short for 100,000 events",
        ),
    ],
    ids=[
        "no-events",
        "too-many-events",
        "no-entities",
        "too-many-entities",
        "end-before-start",
        "naive-start",
        "unknown-pattern",
        "high-cardinality-too-small",
        "period-too-short",
    ],
)
def test_invalid_configuration_is_rejected(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _config(**overrides)  # type: ignore[arg-type]


def test_pattern_may_be_given_as_text() -> None:
    assert _config(pattern="burst").pattern is Pattern.BURST


def test_a_zero_length_period_is_fine_while_no_entity_needs_two_events() -> None:
    now = START
    config = _config(300, Pattern.HIGH_FREQUENCY, start=now, end=now)

    events = list(generate(config))

    assert {event.time_fired for event in events} == {now}
    assert len({event.entity_id for event in events}) == 300


# --- Streaming ------------------------------------------------------------------------------


def test_a_five_million_event_run_streams_its_first_events_at_once() -> None:
    config = _config(MAX_EVENTS, Pattern.HIGH_FREQUENCY, end=START + timedelta(days=30))
    began = time.perf_counter()

    first = list(itertools.islice(generate(config), 10_000))

    assert len(first) == 10_000
    assert time.perf_counter() - began < 2


def test_memory_does_not_grow_with_the_number_of_events() -> None:
    tracemalloc.start()
    try:
        for _ in generate(_config(50_000)):
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # 50,000 events kept in memory would take well over 20 MB.
    assert peak < 3_000_000


def test_summarize_counts_events_per_domain() -> None:
    events = _events()

    summary = summarize(events)

    assert list(summary) == sorted(summary)
    assert sum(summary.values()) == len(events)
    assert summary["light"] == sum(e.entity_id.startswith("light.") for e in events)


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(1, 3_000),
    pattern=st.sampled_from(Pattern),
    entity_count=st.one_of(st.none(), st.integers(1, 400)),
    seconds=st.integers(3_600, 90 * 86_400),
    seed=st.integers(0, 2**32),
)
def test_any_valid_configuration_gives_ordered_distinct_events_in_the_period(
    count: int, pattern: Pattern, entity_count: int | None, seconds: int, seed: int
) -> None:
    end = START + timedelta(seconds=seconds)
    config = _config(count, pattern, entity_count, end=end, seed=seed)

    events = list(generate(config))

    assert len(events) == count
    assert all(a.time_fired <= b.time_fired for a, b in itertools.pairwise(events))
    assert events[0].time_fired >= START
    assert events[-1].time_fired <= end
    assert len({(e.entity_id, e.time_fired) for e in events}) == count
