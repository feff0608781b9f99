"""Validation checks the transform on the user's own data: the states recorded live in both
layouts since the cutover.

The backfill sample can only show that the backfill wrote what the transform gives. Here the
legacy points of the dual-write window come from a writer with the options the history was
really written with (core's, say), the optimized points from the live optimized writer; a
transform built with a wrong option must show up as a lower integrity, with examples, and
keep its entities from being proven.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from homeassistant.core import State
import pytest

from custom_components.ha_ingestor.engine.influx import InfluxClient
from custom_components.ha_ingestor.engine.line_protocol import (
    encode,
    encode_like_core_v1,
    to_time_ns,
)
from custom_components.ha_ingestor.engine.migration.model import (
    MigrationConfig,
    MigrationState,
    Phase,
)
from custom_components.ha_ingestor.engine.migration.validation import LIVE_SETTLE_NS, Validator
from custom_components.ha_ingestor.layouts.legacy import LegacyLayout, LegacyOptions
from custom_components.ha_ingestor.layouts.optimized import (
    LegacyTransform,
    OptimizedLayout,
    OptimizedOptions,
)

from .helpers import admin_client
from .influx_server import InfluxServer

CUTOVER = datetime(2025, 3, 1, tzinfo=UTC)
# What core's YAML said: the history and the live legacy points were written with it.
CORE_OPTIONS: dict[str, Any] = {
    "component_config": {"sensor.living": {"override_measurement": "living_custom"}},
    "component_config_domain": {"light": {"ignore_attributes": ["brightness"]}},
}


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The engine needs no Home Assistant instance."""


@pytest.fixture
async def client(influxd: InfluxServer, database: str) -> AsyncIterator[InfluxClient]:
    async with aiohttp.ClientSession() as session:
        yield admin_client(session, influxd, database)


def states(count: int) -> list[State]:
    found = []
    for index in range(count):
        found += [
            State("sensor.living", f"{20 + index / 10}", {"unit_of_measurement": "°C"}),
            State("sensor.power", f"{index}", {"unit_of_measurement": "W"}),
            State("light.hall", "on", {"brightness": index, "friendly_name": "Hall\nlamp"}),
        ]
    return found


def record_dual_write(
    influxd: InfluxServer,
    database: str,
    target: str,
    count: int,
    *,
    legacy_options: dict[str, Any],
    entry_options: dict[str, Any],
) -> int:
    """Record states live in both layouts after the cutover: the legacy points as core's
    client writes them with ``legacy_options`` (core keeps writing the source), the optimized
    ones as the live writer does with the entry's options. Returns the number of states."""
    legacy = LegacyLayout(LegacyOptions.from_options(legacy_options))
    optimized = OptimizedLayout(OptimizedOptions.from_options(entry_options))
    legacy_lines, optimized_lines = [], []
    recorded = states(count)
    for index, state in enumerate(recorded):
        fired = CUTOVER + timedelta(minutes=index)
        if (point := legacy.point(state, fired)) and (line := encode_like_core_v1(point)):
            legacy_lines.append(line)
        if (point := optimized.point(state, fired)) and (line := encode(point)):
            optimized_lines.append(line)
    influxd.write("\n".join(legacy_lines), database)
    influxd.write("\n".join(optimized_lines), target)
    return len(recorded)


def dual_write_state() -> MigrationState:
    return MigrationState(
        migration_id="live",
        config=MigrationConfig(),
        phase=Phase.VALIDATION,
        cutover_ns=to_time_ns(CUTOVER),
    )


def validator(
    client: InfluxClient, database: str, target: str, options: dict[str, Any]
) -> Validator:
    return Validator(
        client,
        dual_write_state(),
        transform=LegacyTransform(
            LegacyOptions.from_options(options), OptimizedOptions.from_options(options)
        ),
        source_database=database,
        target_database=target,
        repeats=1,
        live_until_ns=to_time_ns(CUTOVER + timedelta(days=1)),
    )


@pytest.fixture
def target(influxd: InfluxServer, database: str) -> AsyncIterator[str]:
    name = f"{database}_optimized"
    influxd.create_database(name)
    yield name
    influxd.drop_database(name)


async def test_every_state_recorded_in_both_layouts_is_compared(
    client: InfluxClient, influxd: InfluxServer, database: str, target: str
) -> None:
    recorded = record_dual_write(
        influxd, database, target, 20, legacy_options=CORE_OPTIONS, entry_options=CORE_OPTIONS
    )

    result = await validator(client, database, target, CORE_OPTIONS).run()

    assert result.live_pairs_compared == recorded
    assert result.integrity_score == 1.0
    assert result.mismatches == {}
    assert result.examples == ()


async def test_a_transform_with_a_wrong_option_lowers_integrity_and_shows_examples(
    client: InfluxClient, influxd: InfluxServer, database: str, target: str
) -> None:
    """The issue's case: the entry lacks core's per-entity override, so the unit would be
    read from the overridden measurement name."""
    wrong = {"component_config_domain": CORE_OPTIONS["component_config_domain"]}
    record_dual_write(
        influxd, database, target, 20, legacy_options=CORE_OPTIONS, entry_options=wrong
    )

    result = await validator(client, database, target, wrong).run()

    assert result.integrity_score == pytest.approx(40 / 60)
    assert set(result.mismatches) == {"sensor.living"}
    assert result.mismatches["sensor.living"].mismatched_live_pairs == 20
    example = result.examples[0]
    assert example.entity_id == "sensor.living"
    assert example.source == "live_pair"
    assert example.differences == {"tag unit_of_measurement": ("living_custom", "°C")}
    assert len(result.examples) == 10
    assert result.as_dict()["examples"][0]["differences"] == {
        "tag unit_of_measurement": ["living_custom", "°C"]
    }


async def test_a_missing_ignore_attributes_option_is_found_too(
    client: InfluxClient, influxd: InfluxServer, database: str, target: str
) -> None:
    """Core left brightness out of the light's points; the live writer, without the option,
    records it."""
    wrong = {"component_config": CORE_OPTIONS["component_config"]}
    record_dual_write(
        influxd, database, target, 5, legacy_options=CORE_OPTIONS, entry_options=wrong
    )

    result = await validator(client, database, target, wrong).run()

    assert set(result.mismatches) == {"light.hall"}
    assert result.mismatches["light.hall"].mismatched_live_pairs == 5
    assert result.examples[0].differences == {"field brightness": (None, 0.0)}


async def test_states_in_only_one_layout_are_not_pairs(
    client: InfluxClient, influxd: InfluxServer, database: str, target: str
) -> None:
    """A state whose other point is still on its way tells nothing about the transform."""
    legacy = LegacyLayout(LegacyOptions())
    point = legacy.point(State("sensor.late", "1", {"unit_of_measurement": "W"}), CUTOVER)
    assert point is not None
    influxd.write(encode_like_core_v1(point) or "", database)
    influxd.write("sensor,entity_id=sensor.other value=1 1", target)

    result = await validator(client, database, target, {}).run()

    assert result.live_pairs_compared == 0
    assert result.integrity_score == 1.0


async def test_live_pairs_stop_short_of_the_states_that_may_still_be_on_their_way(
    client: InfluxClient, influxd: InfluxServer, database: str, target: str
) -> None:
    """Without an end, pairs are read up to LIVE_SETTLE_NS before the validator's clock."""
    # 60 states, one a minute from the cutover.
    record_dual_write(
        influxd, database, target, 20, legacy_options=CORE_OPTIONS, entry_options=CORE_OPTIONS
    )
    half_an_hour_in = to_time_ns(CUTOVER + timedelta(minutes=30))

    def validator_at(now_ns: int) -> Validator:
        return Validator(
            client,
            dual_write_state(),
            transform=LegacyTransform(
                LegacyOptions.from_options(CORE_OPTIONS),
                OptimizedOptions.from_options(CORE_OPTIONS),
            ),
            source_database=database,
            target_database=target,
            repeats=1,
            clock=lambda: now_ns,
        )

    settled = await validator_at(half_an_hour_in + LIVE_SETTLE_NS).run()
    assert settled.live_pairs_compared == 30
    assert settled.integrity_score == 1.0

    too_early = await validator_at(to_time_ns(CUTOVER) + LIVE_SETTLE_NS).run()
    assert too_early.live_pairs_compared == 0
