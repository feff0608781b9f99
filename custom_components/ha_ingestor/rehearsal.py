"""Rehearsal data for a migration: generated states fired live or written as legacy history.

Generated entity ids get a ``ha_ingestor_test_`` prefix so they can never be mistaken for,
or overwrite, a user's real entities and history.
"""

import asyncio
from collections import Counter
from dataclasses import dataclass
import time
from typing import Any

from homeassistant.core import HomeAssistant, State

from .engine.generator import GeneratedState, GeneratorConfig, generate
from .engine.influx import InfluxClient
from .layouts.legacy import LegacyLayout, core_encoder

TEST_ENTITY_PREFIX = "ha_ingestor_test_"
HISTORY_BATCH = 5_000
HISTORY_WRITERS = 3
# Live events yield to the loop this often, so a big request never stalls Home Assistant.
LIVE_SLICE = 500
_UNRECORDED = frozenset({"unknown", "unavailable", ""})


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationResult:
    """What a generate_test_events call produced."""

    events: int
    points: int
    entities: int
    per_domain: dict[str, int]
    seconds: float
    # Events that give no point: a state that is never recorded (unknown, unavailable,
    # empty: HA core's influxdb integration skips them too), or, live, one the entity has
    # already (Home Assistant fires no state change for it).
    unrecorded: int = 0

    def as_response(self) -> dict[str, Any]:
        """Service response data."""
        return {
            "events": self.events,
            "points_written": self.points,
            # Like HA core's influxdb integration, no point is recorded for an unknown,
            # unavailable or empty state.
            "events_not_written": self.unrecorded,
            "entities": self.entities,
            "per_domain": self.per_domain,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events / self.seconds) if self.seconds else None,
        }


def rehearsal_entity_id(entity_id: str) -> str:
    """The prefixed id under which a generated entity appears."""
    domain, _, object_id = entity_id.partition(".")
    return f"{domain}.{TEST_ENTITY_PREFIX}{object_id}"


async def async_fire_live(hass: HomeAssistant, config: GeneratorConfig) -> GenerationResult:
    """Set generated states through HA's state machine, as real entities would."""
    started = time.perf_counter()
    per_domain: Counter[str] = Counter()
    entities: set[str] = set()
    unrecorded = 0
    for index, generated in enumerate(generate(config), start=1):
        entity_id = rehearsal_entity_id(generated.entity_id)
        attributes = dict(generated.attributes)
        old = hass.states.get(entity_id)
        # Setting a state an entity already has fires no state change: nothing to record.
        unchanged = (
            old is not None and old.state == generated.state and old.attributes == attributes
        )
        hass.states.async_set(entity_id, generated.state, attributes)
        per_domain[entity_id.partition(".")[0]] += 1
        unrecorded += unchanged or generated.state in _UNRECORDED
        entities.add(entity_id)
        if index % LIVE_SLICE == 0:
            await asyncio.sleep(0)
    return GenerationResult(
        events=sum(per_domain.values()),
        points=0,
        entities=len(entities),
        per_domain=dict(sorted(per_domain.items())),
        seconds=time.perf_counter() - started,
        unrecorded=unrecorded,
    )


async def async_write_history(
    client: InfluxClient,
    layout: LegacyLayout,
    config: GeneratorConfig,
    database: str,
) -> GenerationResult:
    """Write generated states straight into ``database`` in the legacy layout."""
    started = time.perf_counter()
    per_domain: Counter[str] = Counter()
    entities: set[str] = set()
    points = 0
    slots = asyncio.Semaphore(HISTORY_WRITERS)
    writes: list[asyncio.Task[None]] = []

    async def _write(body: bytes) -> None:
        try:
            await client.write(body, database=database)
        finally:
            slots.release()

    async def _flush(lines: list[str]) -> None:
        await slots.acquire()
        for task in writes:
            if task.done() and (error := task.exception()) is not None:
                raise error
        writes.append(asyncio.create_task(_write("\n".join(lines).encode())))

    # Written as core's client writes it: the history a migration meets.
    encode = core_encoder(client.settings.api_version)
    lines: list[str] = []
    try:
        for index, generated in enumerate(generate(config), start=1):
            state = _state(generated)
            per_domain[state.domain] += 1
            entities.add(state.entity_id)
            point = layout.point(state, generated.time_fired)
            if point is not None and (line := encode(point)) is not None:
                lines.append(line)
                points += 1
            if len(lines) >= HISTORY_BATCH:
                await _flush(lines)
                lines = []
            elif index % LIVE_SLICE == 0:
                await asyncio.sleep(0)
        if lines:
            await _flush(lines)
        # Surface the first write failure, after every write has finished.
        for result in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
    finally:
        for task in writes:
            task.cancel()
    events = sum(per_domain.values())
    return GenerationResult(
        events=events,
        unrecorded=events - points,
        points=points,
        entities=len(entities),
        per_domain=dict(sorted(per_domain.items())),
        seconds=time.perf_counter() - started,
    )


def _state(generated: GeneratedState) -> State:
    return State(
        rehearsal_entity_id(generated.entity_id),
        generated.state,
        generated.attributes,
        last_changed=generated.time_fired,
        last_updated=generated.time_fired,
        validate_entity_id=False,
    )
