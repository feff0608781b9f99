"""Sustained-load benchmark: a steady stream of state changes into a real influxd, both layouts.

Runs an in-process Home Assistant (pytest-homeassistant-custom-component's test instance),
loads ha_ingestor with write_mode "both" against a throwaway influxd on a loopback port, fires
``--rate`` state changes per second for ``--seconds`` seconds and reports:

- events fired, and the points each layout holds in InfluxDB afterwards (they must be equal);
- the deepest write queue (points held in memory) seen, sampled every 10 ms;
- the event loop's worst lag: a task sleeps 10 ms in a loop and records how late it wakes.

    .venv/bin/python -m benchmarks.load --rate 2000 --seconds 60

Exits non-zero when an event is missing from either layout or a point was dropped.
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
from custom_components.ha_ingestor.ingest import Ingestion  # noqa: E402
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


def stored(server: InfluxServer, measurement: str) -> int:
    series = server.series(f'SELECT COUNT("value") FROM "{measurement}"', DATABASE)
    return int(series[0]["values"][0][1]) if series else 0  # type: ignore[index]


async def run(server: InfluxServer, rate: int, seconds: float, entities: int) -> int:
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
            assert await hass.config_entries.async_unload(entry.entry_id)
            await hass.async_stop(force=True)

    legacy = await asyncio.to_thread(stored, server, "W")
    optimized = await asyncio.to_thread(stored, server, "sensor")
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
    print("RESULT                " + ("OK: every event in both layouts" if ok else "LOST EVENTS"))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=2000, help="state changes per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to sustain it")
    parser.add_argument("--entities", type=int, default=500, help="distinct sensors")
    args = parser.parse_args()
    with running_influxd(auth=True) as server:
        server.create_database(DATABASE)
        return asyncio.run(run(server, args.rate, args.seconds, args.entities))


if __name__ == "__main__":
    sys.exit(main())
