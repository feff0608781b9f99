"""Sustained-load benchmark: a steady stream of state changes into a real influxd, both layouts.

Runs an in-process Home Assistant (pytest-homeassistant-custom-component's test instance),
loads ha_ingestor with write_mode "both" against a throwaway influxd on a loopback port, fires
``--rate`` state changes per second for ``--seconds`` seconds and reports:

- events fired, and the points each layout holds in InfluxDB afterwards (they must be equal);
- the deepest write queue (points held in memory) seen, sampled every 10 ms;
- the event loop's worst lag: a task sleeps 10 ms in a loop and records how late it wakes.

With ``--with-backfill POINTS`` it first writes POINTS generated legacy history events, starts a
dual-write migration and fires the load while the backfill copies that history; it then waits
for the migration to end and also reports how long the backfill ran, its outcome, and whether
the optimized layout holds exactly one point per legacy history point the transform keeps
(counted by reading both layouts back in full).

    .venv/bin/python -m benchmarks.load --rate 2000 --seconds 60
    .venv/bin/python -m benchmarks.load --rate 2000 --seconds 60 --with-backfill 1500000

Exits non-zero when an event is missing from either layout or a point was dropped, or when the
backfill did not end complete and exact. When the migration switches over during the load,
legacy writes stop there: the legacy layout must then hold every event up to it, without a gap.
"""

import argparse
import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
import functools
import gc
from pathlib import Path
import statistics
import sys
import tempfile
import time
from unittest.mock import patch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Ours first, so pytest-homeassistant-custom-component's own custom_components can't shadow it.
from aiohttp.resolver import AsyncResolver  # noqa: E402
from homeassistant import loader  # noqa: E402
from homeassistant.const import EVENT_STATE_CHANGED  # noqa: E402
from homeassistant.core import Event, HomeAssistant, callback  # noqa: E402
from pytest_homeassistant_custom_component.common import (  # noqa: E402
    MockConfigEntry,
    async_test_home_assistant,
)

import custom_components.ha_ingestor  # noqa: E402, F401
from custom_components.ha_ingestor.const import DOMAIN  # noqa: E402
from custom_components.ha_ingestor.engine.migration.discovery import is_optimized_series  # noqa: E402
from custom_components.ha_ingestor.layouts.legacy import LegacyOptions  # noqa: E402
from custom_components.ha_ingestor.layouts.optimized import (  # noqa: E402
    OptimizedOptions,
    to_optimized,
)
from custom_components.ha_ingestor.migration import (  # noqa: E402
    EVENT_MIGRATION,
    MigrationController,
)
from custom_components.ha_ingestor.recording import Ingestion  # noqa: E402
from tests.influx_server import (  # noqa: E402
    ADMIN_PASSWORD,
    ADMIN_USER,
    InfluxServer,
    running_influxd,
)

DATABASE = "load"
ENTITY_PREFIX = "sensor.bench_power_"
TICK = 0.010


@dataclass
class Figures:
    """What the run measured."""

    events: int = 0
    lags: list[float] = field(default_factory=list)
    max_queue: int = 0
    max_spooled: int = 0
    fire_seconds: float = 0.0
    drain_seconds: float = 0.0
    # Where loop time went: our event-bus callback, garbage collection.
    callback_seconds: float = 0.0
    callback_worst: float = 0.0
    gc_worst: float = 0.0
    gc_seconds: float = 0.0
    # The migration's phases as they happened: (seconds since the load started, phase).
    phases: list[tuple[float, str]] = field(default_factory=list)
    load_started: float = 0.0
    # Events fired when the switchover (end of legacy writes) was announced during the load.
    switched_at_event: int | None = None


@dataclass
class HistoryCounts:
    """Points of the generated history (not the load's sensors) in each layout."""

    legacy: int = 0
    optimized: int = 0
    expected_optimized: int = 0  # legacy points the transform keeps: one optimized point each


class Timed:
    """Wraps a method so the time spent in it is added to two fields of ``figures``."""

    def __init__(self, figures: Figures, total: str, worst: str) -> None:
        self.figures, self.total, self.worst = figures, total, worst

    def __call__[**P, R](self, method: Callable[P, R]) -> Callable[P, R]:
        figures, total, worst = self.figures, self.total, self.worst

        @functools.wraps(method)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                setattr(figures, total, getattr(figures, total) + spent)
                setattr(figures, worst, max(getattr(figures, worst), spent))

        return timed


def watch_gc(figures: Figures) -> Callable[[str, dict[str, int]], None]:
    started = 0.0

    def on_gc(phase: str, _info: dict[str, int]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            spent = time.perf_counter() - started
            figures.gc_seconds += spent
            figures.gc_worst = max(figures.gc_worst, spent)

    return on_gc


async def watch_loop(hass: HomeAssistant, figures: Figures, stop: asyncio.Event) -> None:
    """Sleep TICK in a loop; record how late each wake-up is and the queue depth then."""
    ingestion = None
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(TICK)
        figures.lags.append(time.perf_counter() - before - TICK)
        if ingestion is None:
            entries = hass.config_entries.async_entries(DOMAIN)
            if entries and getattr(entries[0], "runtime_data", None) is not None:
                ingestion = entries[0].runtime_data.ingestion
            continue
        stats = ingestion.stats
        figures.max_queue = max(figures.max_queue, stats.queue_depth)
        figures.max_spooled = max(figures.max_spooled, stats.spooled_points)


async def produce(
    hass: HomeAssistant, rate: int, seconds: float, entities: int, figures: Figures
) -> None:
    """Fire state changes at a steady rate: each tick, as many as are due by then."""
    total = int(rate * seconds)
    fired = 0
    start = time.perf_counter()
    set_state = hass.states.async_set
    attributes = {"unit_of_measurement": "W", "device_class": "power"}
    while fired < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while fired < due:
            # The running number as the state: every change of an entity is a new value.
            set_state(f"{ENTITY_PREFIX}{fired % entities}", str(fired), attributes)
            fired += 1
        await asyncio.sleep(0.002)
    figures.fire_seconds = time.perf_counter() - start


def stored(server: InfluxServer, measurement: str) -> tuple[int, int]:
    """Points of the load's sensors in a measurement (history may share it), and the highest
    running number among them (each event's state is its number: count == highest + 1 means
    no gap)."""
    prefix = ENTITY_PREFIX.removeprefix("sensor.") if measurement == "W" else ENTITY_PREFIX
    pattern = prefix.replace(".", r"\.")
    series = server.series(
        f'SELECT COUNT("value"), MAX("value") FROM "{measurement}" WHERE entity_id =~ /^{pattern}/',
        DATABASE,
    )
    if not series:
        return 0, -1
    row = series[0]["values"][0]  # type: ignore[index]
    return int(row[1]), int(row[2])


async def count_history(hass: HomeAssistant, entry: MockConfigEntry) -> HistoryCounts:
    """Read the whole database back: history points per layout, and what the backfill owes."""
    client = entry.runtime_data.client
    legacy_options, optimized_options = LegacyOptions(), OptimizedOptions()
    counts = HistoryCounts()
    for measurement in await client.measurements():
        async for point in client.read_points(measurement, -(2**62), 2**62):
            entity_id = point.tags.get("entity_id", "")
            if is_optimized_series(measurement, entity_id):
                counts.optimized += not entity_id.startswith(ENTITY_PREFIX)
            elif not f"sensor.{entity_id}".startswith(ENTITY_PREFIX):
                counts.legacy += 1
                if to_optimized(point, legacy_options, optimized_options) is not None:
                    counts.expected_optimized += 1
    return counts


async def run(
    server: InfluxServer,
    rate: int,
    seconds: float,
    entities: int,
    *,
    backfill_points: int = 0,
    backfill_settings: dict[str, int] | None = None,
) -> int:
    figures = Figures()
    # As phcc does for every test: HA's shared aiohttp session would otherwise resolve names
    # through zeroconf, which needs the network integration (nothing to resolve here anyway).
    resolver = patch(
        "homeassistant.helpers.aiohttp_client._async_make_resolver",
        new=lambda _hass: AsyncResolver(),
    )
    on_event = patch.object(
        Ingestion,
        "_async_state_changed",
        Timed(figures, "callback_seconds", "callback_worst")(Ingestion._async_state_changed),
    )
    on_gc = watch_gc(figures)
    with (
        tempfile.TemporaryDirectory(prefix="ha-ingestor-load-") as config_dir,
        resolver,
        on_event,
    ):
        async with async_test_home_assistant(config_dir=config_dir) as hass:
            hass.data.pop(loader.DATA_CUSTOM_COMPONENTS)  # let HA load custom integrations

            @callback
            def _count(event: Event) -> None:
                if event.data["entity_id"].startswith(ENTITY_PREFIX):
                    figures.events += 1

            hass.bus.async_listen(EVENT_STATE_CHANGED, _count)
            entry = MockConfigEntry(
                domain=DOMAIN,
                title="Load benchmark",
                data={
                    "api_version": "1",
                    "url": server.url,
                    "username": ADMIN_USER,
                    "password": ADMIN_PASSWORD,
                    "database": DATABASE,
                    "verify_ssl": True,
                },
                options={"ingestion": {"write_mode": "both"}},
            )
            entry.add_to_hass(hass)
            assert await hass.config_entries.async_setup(entry.entry_id)
            await hass.async_block_till_done()
            if backfill_points:
                await start_backfill(hass, entry, figures, backfill_points, backfill_settings or {})

            stop = asyncio.Event()
            watcher = asyncio.create_task(watch_loop(hass, figures, stop))
            gc.callbacks.append(on_gc)
            try:
                await produce(hass, rate, seconds, entities, figures)
            finally:
                gc.callbacks.remove(on_gc)
            drain_start = time.perf_counter()
            ingestion = entry.runtime_data.ingestion
            # Polls the figures: the writers offer no event to wait on.
            while ingestion.stats.queue_depth or ingestion.stats.spooled_points:  # noqa: ASYNC110
                await asyncio.sleep(TICK)
            figures.drain_seconds = time.perf_counter() - drain_start
            stop.set()
            await watcher
            stats = ingestion.stats
            history: HistoryCounts | None = None
            if backfill_points:
                migration = entry.runtime_data.migration
                while migration.running:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                history = await count_history(hass, entry)
            assert await hass.config_entries.async_unload(entry.entry_id)
            await hass.async_stop(force=True)

    legacy, legacy_last = await asyncio.to_thread(stored, server, "W")
    optimized, _ = await asyncio.to_thread(stored, server, "sensor")
    lags_ms = sorted(lag * 1000 for lag in figures.lags)
    p99 = lags_ms[int(len(lags_ms) * 0.99)] if lags_ms else 0.0
    print(f"target rate           {rate} events/s for {seconds:g} s, {entities} entities")
    print(
        f"events fired          {figures.events} in {figures.fire_seconds:.1f} s "
        f"({figures.events / figures.fire_seconds:.0f}/s)"
    )
    print(f"legacy points         {legacy}  (measurement W)")
    print(f"optimized points      {optimized}  (measurement sensor)")
    print(f"points written        {stats.points_written}, dropped {stats.points_dropped}")
    print(f"max write queue       {figures.max_queue} points in memory")
    print(f"max spooled           {figures.max_spooled} points")
    print(f"drain after last event {figures.drain_seconds:.2f} s")
    print(
        f"event loop lag        worst {lags_ms[-1]:.1f} ms, p99 {p99:.1f} ms, "
        f"median {statistics.median(lags_ms):.2f} ms "
        f"({len(lags_ms)} samples of {TICK * 1000:.0f} ms sleeps)"
    )
    per_event_us = figures.callback_seconds / max(figures.events, 1) * 1e6
    print(
        f"our event callback    {per_event_us:.1f} µs per event, "
        f"worst {figures.callback_worst * 1000:.1f} ms, "
        f"{figures.callback_seconds / figures.fire_seconds:.1%} of the loop"
    )
    print(
        f"garbage collection    worst pause {figures.gc_worst * 1000:.1f} ms, "
        f"{figures.gc_seconds / figures.fire_seconds:.1%} of the loop"
    )
    ok = legacy == optimized == figures.events and stats.points_dropped == 0
    if figures.switched_at_event is not None:
        # Legacy writes stop at the switchover: legacy must hold every event up to it, no gap.
        ok = (
            optimized == figures.events
            and legacy == legacy_last + 1 >= figures.switched_at_event
            and stats.points_dropped == 0
        )
        print(
            f"switchover during load legacy holds events 0..{legacy_last} without a gap "
            f"(switchover announced after event {figures.switched_at_event})"
        )
    if history is not None:
        ok = report_backfill(figures, history, migration) and ok
    print("RESULT                " + ("OK: every event in its layouts" if ok else "FAILED"))
    return 0 if ok else 1


async def start_backfill(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    figures: Figures,
    points: int,
    settings: dict[str, int],
) -> None:
    """Write ``points`` events of legacy history, start a migration, return once it backfills."""
    started = time.perf_counter()
    history = await hass.services.async_call(
        DOMAIN,
        "generate_test_events",
        {"mode": "history", "count": points, "days": 30},
        blocking=True,
        return_response=True,
    )
    assert history is not None
    print(
        f"history written       {history['events']} events in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )

    @callback
    def _phase(event: Event) -> None:
        phase = event.data["to_phase"]
        if not figures.phases or figures.phases[-1][1] != phase:
            figures.phases.append((time.perf_counter() - figures.load_started, phase))
        if phase == "switchover" and figures.fire_seconds == 0.0:
            figures.switched_at_event = figures.events

    hass.bus.async_listen(EVENT_MIGRATION, _phase)
    figures.load_started = time.perf_counter()
    await hass.services.async_call(
        DOMAIN,
        "start_migration",
        {"strategy": "dual_write", "cleanup_delay_hours": 0, **settings},
        blocking=True,
    )
    migration = entry.runtime_data.migration
    deadline = time.perf_counter() + 120
    while migration.phase.value != "backfill":
        if not migration.running or time.perf_counter() > deadline:
            raise RuntimeError(
                f"the migration did not reach the backfill: phase {migration.phase.value}, "
                f"diagnostics {migration.diagnostics()}"
            )
        await asyncio.sleep(0.05)
    figures.load_started = time.perf_counter()
    figures.phases = [(0.0, "backfill")]


def report_backfill(
    figures: Figures, history: HistoryCounts, migration: MigrationController
) -> bool:
    """Print what the backfill did alongside the load; whether it ended complete and exact."""
    state = migration.state
    assert state is not None
    ended = next((at for at, phase in figures.phases if phase != "backfill"), None)
    print(
        f"backfill              {state.records_read} legacy points read, "
        f"{state.records_migrated} written, {state.records_failed} failed; "
        + (f"ran {ended:.1f} s" if ended is not None else "never ended")
        + f" (the load lasted {figures.fire_seconds:.1f} s)"
    )
    print(f"migration phases      {' → '.join(f'{p} at {at:.1f} s' for at, p in figures.phases)}")
    integrity = state.validation.integrity_score if state.validation else None
    print(f"migration outcome     {state.phase.value}, integrity {integrity}")
    exact = (
        history.optimized == history.expected_optimized == state.records_migrated
        and state.records_read == history.legacy
        and state.records_failed == 0
    )
    print(
        f"history in layouts    legacy {history.legacy}, optimized {history.optimized}, "
        f"expected optimized {history.expected_optimized}: " + ("exact" if exact else "MISMATCH")
    )
    if ended is not None and ended < figures.fire_seconds:
        print(
            f"overlap               the backfill ran during the first {ended:.1f} s of the "
            f"{figures.fire_seconds:.1f} s load (more POINTS make it last longer)"
        )
    return exact and state.phase.value == "complete" and integrity == 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=2000, help="state changes per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to sustain it")
    parser.add_argument("--entities", type=int, default=500, help="distinct sensors")
    parser.add_argument(
        "--with-backfill",
        type=int,
        default=0,
        metavar="POINTS",
        help="write POINTS history events first and backfill them during the load",
    )
    parser.add_argument("--backfill-batch-size", type=int, help="start_migration batch_size")
    parser.add_argument(
        "--backfill-concurrency", type=int, help="start_migration concurrent_batches"
    )
    args = parser.parse_args()
    settings = {
        key: value
        for key, value in (
            ("batch_size", args.backfill_batch_size),
            ("concurrent_batches", args.backfill_concurrency),
        )
        if value is not None
    }
    with running_influxd(auth=True) as server:
        server.create_database(DATABASE)
        return asyncio.run(
            run(
                server,
                args.rate,
                args.seconds,
                args.entities,
                backfill_points=args.with_backfill,
                backfill_settings=settings,
            )
        )


if __name__ == "__main__":
    sys.exit(main())
