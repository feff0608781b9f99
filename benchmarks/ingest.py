"""Benchmark: ha_ingestor's legacy writer against Home Assistant core's ``influxdb`` integration.

Both record the same state changes into a real influxd, with one Home Assistant instance per
integration and a baseline instance running neither. Every run is its own Python process with
its own influxd, so no run inherits another's modules, garbage or server load; the steady runs
are repeated in rounds (the order rotating). CPU figures are each run's least over the rounds,
as ``timeit`` takes the best of its repeats: on a shared machine other load only ever adds CPU
time (the baseline alone moved by 2x between rounds here). Run it from the
repository root: ``python -m benchmarks.ingest [--events N] [--rounds R]``; it prints a
markdown report.
"""

import argparse
import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
import contextlib
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
import gc
import json
import logging
import os
from pathlib import Path
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any
from unittest.mock import patch
import urllib.request

from aiohttp.resolver import AsyncResolver
from homeassistant import loader
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import __version__ as ha_version
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (  # type: ignore[import-untyped]
    MockConfigEntry,
    async_test_home_assistant,
)

from tests.influx_server import InfluxServer, running_influxd

# Neither integration is imported here: each run's process imports only its own (see
# _integration_under_test), so the other's modules do not weigh on its garbage collections.
CORE_DOMAIN = "influxdb"
OURS_DOMAIN = "ha_ingestor"

# The firing loop wakes this often and sets every state change that is due by then.
TICK = 0.01
# Without a rate limit, state changes go out in chunks this big, yielding to the loop between.
UNPACED_CHUNK = 100
POLL_INTERVAL = 0.05
# A run is over when its count stops changing for this long. It must outlast ha_ingestor's
# circuit-breaker cool-down (30 s), after which the writer probes the server and replays.
SETTLE_SECONDS = 45.0
DRAIN_TIMEOUT = 600.0
# Every generated state carries friendly_name, so in the legacy layout every point has a
# friendly_name_str field and its COUNT is the number of points.
COUNT_QUERY = 'SELECT COUNT("friendly_name_str") FROM /.*/'
SKIPPED_STATES = frozenset({"unknown", "unavailable", ""})
CORE_LOGGER = "homeassistant.components.influxdb"
OURS_LOGGER = "custom_components.ha_ingestor"


class Integration(StrEnum):
    """What one Home Assistant instance runs besides the state machine."""

    BASELINE = "baseline"
    CORE = "core influxdb"
    OURS = "ha_ingestor"


@dataclass(frozen=True, slots=True)
class StateChange:
    """One ``hass.states.async_set`` call; each one fires exactly one state_changed event."""

    entity_id: str
    state: str
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What every run shares."""

    rate: float  # state changes per second; 0: as fast as the loop allows
    outage: float  # seconds influxd stays down in the restart runs
    write_mode: str = "legacy"  # ha_ingestor's: "legacy" (like core) or "both" (dual-write)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """What one Home Assistant instance did with the state changes."""

    integration: Integration
    database: str | None
    state_changes: int
    firing_seconds: float  # first to last state change
    async_set_seconds: float  # wall time inside the async_set calls
    loop_cpu_seconds: float  # event-loop thread CPU, first change until all points visible
    process_cpu_seconds: float  # CPU of every thread, same window
    listener_seconds: float | None  # inside the integration's state_changed listener
    lag_p50: float
    lag_p99: float
    lag_max: float
    points: int | None  # final count in the integration's database
    visible_after: float | None  # last state change until all points visible; None: never
    outage_seconds: float | None  # influxd stop until it answered /ping again
    # Garbage collections the event-loop thread ran in the CPU window, by generation.
    gc_collections: tuple[int, int, int] = (0, 0, 0)
    gc_seconds: tuple[float, float, float] = (0.0, 0.0, 0.0)
    influxd_version: str = "unknown"
    log: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "RunResult":
        data = json.loads(text)
        data["integration"] = Integration(data["integration"])
        data["gc_collections"] = tuple(data["gc_collections"])
        data["gc_seconds"] = tuple(data["gc_seconds"])
        return cls(**data)


def state_changes(count: int, seed: int) -> list[StateChange]:
    """A realistic mix from the test-data generator (300 entities, mixed pattern).

    Repeats of an entity's previous state and attributes are skipped: Home Assistant fires no
    state_changed for them, and the expected point count would be wrong.
    """
    from custom_components.ha_ingestor.engine.generator import (  # noqa: PLC0415 (see the imports)
        GeneratorConfig,
        Pattern,
        generate,
    )

    now = datetime.now(UTC)
    config = GeneratorConfig(
        count=count + count // 4 + 1_000,
        pattern=Pattern.MIXED,
        entity_count=None,
        start=now - timedelta(days=30),
        end=now,
        seed=seed,
    )
    previous: dict[str, tuple[str, Mapping[str, Any]]] = {}
    changes: list[StateChange] = []
    for generated in generate(config):
        current = (generated.state, generated.attributes)
        if previous.get(generated.entity_id) == current:
            continue
        previous[generated.entity_id] = current
        changes.append(StateChange(generated.entity_id, generated.state, generated.attributes))
        if len(changes) == count:
            return changes
    raise RuntimeError(f"the generator gave only {len(changes):,} distinct state changes")


def expected_points(changes: Sequence[StateChange]) -> int:
    """Both integrations skip unknown, unavailable and empty states."""
    return sum(change.state not in SKIPPED_STATES for change in changes)


def count_points(server: InfluxServer, database: str) -> int:
    """Points in a database (blocking)."""
    total = 0
    for series in server.series(COUNT_QUERY, database):
        values: list[list[Any]] = series["values"]  # type: ignore[assignment]
        total += int(values[0][1])
    return total


class ListenerTimer:
    """Times an integration's state_changed listener by wrapping the method it registers."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextlib.contextmanager
    def wrapping(self, owner: type, name: str) -> Iterator[None]:
        """Replace ``owner.name`` (a bus callback) while the integration is set up and runs."""
        listener: Callable[[Any, Event[Any]], None] = getattr(owner, name)
        clock = time.perf_counter

        @callback
        def timed(instance: Any, event: Event[Any]) -> None:
            start = clock()
            try:
                listener(instance, event)
            finally:
                self.seconds += clock() - start

        with patch.object(owner, name, timed):
            yield


class GcMeter:
    """The garbage collections one thread runs, by generation: how many and their CPU time.

    A collection runs in whichever thread allocates past the threshold, and its cost depends on
    how many objects are alive then; this shows how much of a thread's CPU it was.
    """

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._thread = threading.get_ident()
        self._began = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if threading.get_ident() != self._thread:
            return
        if phase == "start":
            self._began = time.thread_time()
            return
        generation = info["generation"]
        self.collections[generation] += 1
        self.seconds[generation] += time.thread_time() - self._began

    @contextlib.contextmanager
    def measuring(self) -> Iterator["GcMeter"]:
        """Count the collections this thread runs inside the block."""
        self._thread = threading.get_ident()
        gc.callbacks.append(self._callback)
        try:
            yield self
        finally:
            gc.callbacks.remove(self._callback)


class LagProbe:
    """How late a timer fires: what any other callback in the loop would wait."""

    def __init__(self, interval: float = TICK) -> None:
        self.interval = interval
        self.lags: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            self.lags.append(loop.time() - start - self.interval)

    def quantile(self, share: float) -> float:
        if not self.lags:
            return 0.0
        ordered = sorted(self.lags)
        return max(0.0, ordered[min(len(ordered) - 1, int(share * len(ordered)))])


class LogCapture(logging.Handler):
    """Keeps what the two integrations log at warning level and above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().splitlines()[0][:200]
        self.lines.append(f"{record.levelname} {record.name}: {message}")


@contextlib.contextmanager
def captured_logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    loggers = [logging.getLogger(name) for name in (CORE_LOGGER, OURS_LOGGER)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(capture)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    try:
        yield capture
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(capture)
            logger.setLevel(level)
            logger.propagate = True


class Outage:
    """Stops influxd, waits, starts it again on the same port (in the executor: it blocks)."""

    def __init__(self, server: InfluxServer, seconds: float) -> None:
        self._server = server
        self._seconds = seconds
        self.duration: float | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = time.monotonic()
        await loop.run_in_executor(None, self._server.stop)
        await asyncio.sleep(self._seconds)
        await loop.run_in_executor(None, self._server.start)
        self.duration = time.monotonic() - stopping


async def _set_up_core(hass: HomeAssistant, server: InfluxServer, database: str) -> None:
    config = {CORE_DOMAIN: {"host": "127.0.0.1", "port": server.http_port, "database": database}}
    if not await async_setup_component(hass, CORE_DOMAIN, config):
        raise RuntimeError("core influxdb did not set up")
    await hass.async_block_till_done()
    if CORE_DOMAIN not in hass.data:  # set only once its test write succeeded
        raise RuntimeError("core influxdb could not reach influxd and is retrying its setup")


async def _set_up_ours(
    hass: HomeAssistant, server: InfluxServer, database: str, write_mode: str
) -> None:
    entry = MockConfigEntry(
        domain=OURS_DOMAIN,
        title=f"{database} on 127.0.0.1",
        data={
            "api_version": "1",
            "url": server.url,
            "database": database,
            "verify_ssl": True,
            "username": "",
            "password": "",
        },
        options={"ingestion": {"write_mode": write_mode}},
        unique_id=f"{server.url}/{database}",
    )
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    if entry.state is not ConfigEntryState.LOADED:
        raise RuntimeError(f"ha_ingestor did not set up: {entry.state}")


async def _fire(
    hass: HomeAssistant, changes: Sequence[StateChange], rate: float, outage: Outage | None
) -> tuple[float, float, asyncio.Task[None] | None]:
    """Set every state, paced to ``rate``; returns (elapsed, time inside async_set, outage)."""
    loop = asyncio.get_running_loop()
    async_set = hass.states.async_set
    clock = time.perf_counter
    total = len(changes)
    outage_at = total // 3 if outage is not None else None
    outage_task: asyncio.Task[None] | None = None
    inside = 0.0
    fired = 0
    start = loop.time()
    first = clock()
    while fired < total:
        if rate:
            due = min(total, int((loop.time() - start) * rate) + 1)
        else:
            due = min(total, fired + UNPACED_CHUNK)
        began = clock()
        for index in range(fired, due):
            change = changes[index]
            async_set(change.entity_id, change.state, change.attributes)
        inside += clock() - began
        fired = max(fired, due)
        if outage is not None and outage_task is None and fired >= (outage_at or 0):
            outage_task = loop.create_task(outage.run())
        if fired < total:
            await asyncio.sleep(TICK if rate else 0)
    return clock() - first, inside, outage_task


async def _await_points(
    server: InfluxServer, database: str, expected: int
) -> tuple[int, float | None]:
    """Poll until every point is visible, or the count stops changing.

    Returns the final count and, when all points arrived, the moment (perf_counter) the
    poll that saw them returned.
    """
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    last_count = -1
    last_change = started
    while True:
        try:
            points = await loop.run_in_executor(None, count_points, server, database)
        except OSError:  # influxd is still starting
            points = last_count
        now = time.monotonic()
        if points >= expected:
            return points, time.perf_counter()
        if points != last_count:
            last_count, last_change = points, now
        elif now - last_change >= SETTLE_SECONDS or now - started >= DRAIN_TIMEOUT:
            return points, None
        await asyncio.sleep(POLL_INTERVAL)


async def run_once(
    integration: Integration,
    server: InfluxServer,
    changes: Sequence[StateChange],
    config_dir: Path,
    settings: Settings,
    *,
    restart: bool,
) -> RunResult:
    """One Home Assistant instance: set it up, fire the state changes, wait for the points."""
    suffix = "restart" if restart else "steady"
    database = {
        Integration.BASELINE: None,
        Integration.CORE: f"core_db_{suffix}",
        Integration.OURS: f"ours_db_{suffix}",
    }[integration]
    if database is not None:
        server.create_database(database)
    timer = ListenerTimer()
    listener: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if (under_test := _integration_under_test(integration)) is not None:
        listener = timer.wrapping(*under_test)
    meter = GcMeter()
    outage = Outage(server, settings.outage) if restart else None
    probe = LagProbe()
    expected = expected_points(changes)
    # As phcc does for every test: HA's shared aiohttp session would otherwise resolve names
    # through zeroconf, which needs the network integration (nothing to resolve here anyway).
    resolver = patch(
        "homeassistant.helpers.aiohttp_client._async_make_resolver",
        new=lambda _hass: AsyncResolver(),
    )
    with captured_logs() as logs, listener, resolver:
        async with async_test_home_assistant(config_dir=str(config_dir)) as hass:
            # What phcc's enable_custom_integrations fixture does.
            hass.data.pop(loader.DATA_CUSTOM_COMPONENTS, None)
            try:
                if integration is Integration.CORE and database:
                    await _set_up_core(hass, server, database)
                elif integration is Integration.OURS and database:
                    await _set_up_ours(hass, server, database, settings.write_mode)
                gc.collect()
                probing = asyncio.create_task(probe.run())
                with meter.measuring():
                    loop_cpu, process_cpu = time.thread_time(), time.process_time()
                    elapsed, inside, outage_task = await _fire(hass, changes, settings.rate, outage)
                    last_change = time.perf_counter()
                    probing.cancel()
                    if outage_task is not None:
                        await outage_task
                    points: int | None = None
                    visible_after: float | None = 0.0
                    if database is not None:
                        points, visible_at = await _await_points(server, database, expected)
                        visible_after = None if visible_at is None else visible_at - last_change
                    loop_cpu = time.thread_time() - loop_cpu
                    process_cpu = time.process_time() - process_cpu
            finally:
                await hass.async_stop(force=True)
    return RunResult(
        integration=integration,
        database=database,
        state_changes=len(changes),
        firing_seconds=elapsed,
        async_set_seconds=inside,
        loop_cpu_seconds=loop_cpu,
        process_cpu_seconds=process_cpu,
        listener_seconds=timer.seconds if integration is not Integration.BASELINE else None,
        lag_p50=probe.quantile(0.5),
        lag_p99=probe.quantile(0.99),
        lag_max=max(probe.lags, default=0.0),
        points=points,
        visible_after=visible_after,
        outage_seconds=outage.duration if outage else None,
        gc_collections=(meter.collections[0], meter.collections[1], meter.collections[2]),
        gc_seconds=(meter.seconds[0], meter.seconds[1], meter.seconds[2]),
        log=logs.lines,
    )


def _integration_under_test(integration: Integration) -> tuple[type, str] | None:
    """The class and method an integration registers as its state_changed listener."""
    # Imported here, not at the top: a run's process loads only the integration it runs.
    if integration is Integration.CORE:
        from homeassistant.components.influxdb import InfluxThread  # noqa: PLC0415

        return InfluxThread, "_event_listener"
    if integration is Integration.OURS:
        import custom_components.ha_ingestor  # noqa: PLC0415, F401
        from custom_components.ha_ingestor.recording import Ingestion  # noqa: PLC0415

        return Ingestion, "_async_state_changed"
    return None


def run_isolated(
    integration: Integration,
    changes: Sequence[StateChange],
    settings: Settings,
    *,
    restart: bool = False,
) -> RunResult:
    """One run in this process, with its own influxd, event loop, executor and config dir."""
    with (
        running_influxd(auth=False) as server,
        tempfile.TemporaryDirectory(prefix="ha-ingestor-bench-") as config_dir,
    ):
        result = asyncio.run(
            run_once(integration, server, changes, Path(config_dir), settings, restart=restart)
        )
        return replace(result, influxd_version=_influxd_version(server))


def run_in_process(
    integration: Integration,
    changes_file: Path,
    settings: Settings,
    *,
    restart: bool = False,
) -> RunResult:
    """Run :func:`run_isolated` in a new Python process; it prints its result as JSON."""
    label = f"{integration} ({'influxd restarted mid-run' if restart else 'steady'})"
    print(f"running {label} ...", file=sys.stderr, flush=True)
    command = [
        sys.executable,
        "-m",
        "benchmarks.ingest",
        "--run",
        integration.value,
        "--changes",
        str(changes_file),
        "--rate",
        repr(settings.rate),
        "--outage",
        repr(settings.outage),
        "--write-mode",
        settings.write_mode,
        *(["--restart"] if restart else []),
    ]
    finished = subprocess.run(  # noqa: S603 (our own module, with this interpreter)
        command,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        check=True,
        text=True,
    )
    result = RunResult.from_json(finished.stdout.strip().splitlines()[-1])
    print(
        f"  fired in {result.firing_seconds:.1f} s, points {result.points}, visible after "
        f"{result.visible_after}, loop CPU {result.loop_cpu_seconds:.2f} s, "
        f"gc {result.gc_collections}",
        file=sys.stderr,
        flush=True,
    )
    return result


# The report.


def _us(seconds: float, events: int) -> str:
    return f"{seconds / events * 1e6:,.2f}"


def _ratio(ours: float, core: float) -> str:
    if core <= 0 or ours < 0:
        return "n/a"
    return f"{ours / core:,.2f}x"


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:,.2f} s"


def _machine() -> list[str]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return [
        f"nproc {len(os.sched_getaffinity(0))} ({cpu})",
        f"Python {platform.python_version()} on {platform.platform()}",
        f"Home Assistant {ha_version}",
    ]


def _influxd_version(server: InfluxServer) -> str:
    url = f"{server.url}/ping"  # always http://127.0.0.1
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        return str(response.headers.get("X-Influxdb-Version", "unknown"))


def _gc_total(result: RunResult) -> float:
    return sum(result.gc_seconds)


def _young_gc(result: RunResult) -> float:
    return result.gc_seconds[0] + result.gc_seconds[1]


def _median(values: Iterator[float]) -> float:
    return statistics.median(list(values))


@dataclass(frozen=True, slots=True)
class Rounds:
    """The steady runs, round by round: index i of each list is round i."""

    base: list[RunResult]
    core: list[RunResult]
    ours: list[RunResult]
    orders: list[tuple[Integration, ...]]

    @property
    def events(self) -> int:
        return self.base[0].state_changes

    def above_base(self, runs: list[RunResult], pick: Callable[[RunResult], float]) -> float:
        """The least over the rounds minus the baseline's least, µs per state change."""
        return self.least(runs, pick) - self.least(self.base, pick)

    def least(self, runs: list[RunResult], pick: Callable[[RunResult], float]) -> float:
        """The least over the rounds, µs per state change."""
        return min(pick(run) for run in runs) / self.events * 1e6

    def median(self, runs: list[RunResult], pick: Callable[[RunResult], float]) -> float:
        return _median(pick(run) for run in runs)


def report(
    *,
    rounds: Rounds,
    core_restart: RunResult,
    ours_restart: RunResult,
    expected: int,
    settings: Settings,
) -> str:
    events = rounds.events
    base, core, ours = rounds.base, rounds.core, rounds.ours
    rate = f"{settings.rate:,.0f}/s" if settings.rate else "as fast as the loop allows"
    rows: list[tuple[str, str, str, str, str]] = []

    def us(value: float) -> str:
        return f"{value:,.2f}"

    def add(
        label: str,
        base_text: str,
        core_value: float,
        ours_value: float,
        show: Callable[[float], str] = us,
    ) -> None:
        rows.append(
            (label, base_text, show(core_value), show(ours_value), _ratio(ours_value, core_value))
        )

    def above_base(label: str, pick: Callable[[RunResult], float]) -> None:
        base_text = us(rounds.least(base, pick))
        add(label, base_text, rounds.above_base(core, pick), rounds.above_base(ours, pick))

    def per_run(
        label: str, pick: Callable[[RunResult], float], show: Callable[[float], str]
    ) -> None:
        base_text = show(rounds.median(base, pick))
        add(label, base_text, rounds.median(core, pick), rounds.median(ours, pick), show)

    add(
        "Listener callback, µs per state change",
        "-",
        rounds.least(core, lambda r: r.listener_seconds or 0.0),
        rounds.least(ours, lambda r: r.listener_seconds or 0.0),
    )
    above_base(
        "**Event-loop thread CPU, µs per state change** (minus baseline)",
        lambda r: r.loop_cpu_seconds,
    )
    above_base("… of which garbage collection on the loop thread (minus baseline)", _gc_total)
    above_base("… … young collections, generations 0 and 1", _young_gc)
    above_base("… … full collections, generation 2", lambda r: r.gc_seconds[2])
    above_base(
        "… everything else on the loop thread (minus baseline)",
        lambda r: r.loop_cpu_seconds - _gc_total(r),
    )

    def collections(runs: list[RunResult]) -> str:
        return " / ".join(f"{_median(r.gc_collections[g] for r in runs):g}" for g in range(3))

    rows.append(
        (
            "Collections on the loop thread per run, generation 0 / 1 / 2",
            collections(base),
            collections(core),
            collections(ours),
            "",
        )
    )
    above_base(
        "Wall time inside `async_set`, µs per state change (minus baseline)",
        lambda r: r.async_set_seconds,
    )
    above_base(
        "Process CPU, all threads, µs per state change (minus baseline)",
        lambda r: r.process_cpu_seconds,
    )
    per_run("Event-loop lag while firing, p99, ms", lambda r: r.lag_p99, lambda v: f"{v * 1e3:.1f}")
    per_run("Event-loop lag while firing, max, ms", lambda r: r.lag_max, lambda v: f"{v * 1e3:.1f}")
    rows.append(
        (
            "All points visible after the last state change",
            "-",
            _seconds(rounds.median(core, lambda r: r.visible_after or float("inf"))),
            _seconds(rounds.median(ours, lambda r: r.visible_after or float("inf"))),
            "",
        )
    )
    rows.append(
        (
            "Points in InfluxDB / expected (fewest of the steady runs)",
            "-",
            f"{min(r.points or 0 for r in core):,} / {expected:,}",
            f"{min(r.points or 0 for r in ours):,} / {expected:,}",
            "",
        )
    )

    def lost(result: RunResult) -> str:
        missing = expected - (result.points or 0)
        return f"{missing:,} ({missing / expected:.2%})"

    rows.append(
        (
            "**influxd restarted mid-run: points lost**",
            "-",
            f"**{lost(core_restart)}**",
            f"**{lost(ours_restart)}**",
            "",
        )
    )
    rows.append(
        (
            "… all points visible after the last state change",
            "-",
            _seconds(core_restart.visible_after),
            _seconds(ours_restart.visible_after),
            "",
        )
    )
    rows.append(
        (
            "… influxd down (stop until /ping answers)",
            "-",
            _seconds(core_restart.outage_seconds),
            _seconds(ours_restart.outage_seconds),
            "",
        )
    )

    round_rows = []
    for index, (base_run, core_run, ours_run, order) in enumerate(
        zip(base, core, ours, rounds.orders, strict=True), start=1
    ):
        core_loop = (core_run.loop_cpu_seconds - base_run.loop_cpu_seconds) / events * 1e6
        ours_loop = (ours_run.loop_cpu_seconds - base_run.loop_cpu_seconds) / events * 1e6
        round_rows.append(
            f"| {index} | {', '.join(o.value for o in order)} "
            f"| {_us(base_run.loop_cpu_seconds, events)} | {us(core_loop)} | {us(ours_loop)} "
            f"| {_ratio(ours_loop, core_loop)} |"
        )

    mode = _MODE_LABELS[settings.write_mode]
    lines = [
        f"## Ingest benchmark: ha_ingestor vs core `influxdb`, {events:,} state changes",
        "",
        *(
            f"- {fact}"
            for fact in [*_machine(), f"influxd {base[0].influxd_version} (one per run)"]
        ),
        f"- {events:,} state changes at {rate} ({expected:,} points expected; "
        f"{events - expected:,} unknown/unavailable are skipped by both)",
        f"- {len(base)} rounds of steady runs (baseline, core, ha_ingestor; the order rotates). "
        "CPU and time-per-change rows: each integration's least over the rounds, minus the "
        "baseline's least (each row its own least, so the parts need not add up exactly); "
        "lag, collections and visibility: medians",
        f"- Restart runs (one each): influxd stopped after {events // 3:,} state changes, "
        f"restarted {settings.outage:g} s later",
        "",
        f"| Metric | baseline (neither) | core influxdb | ha_ingestor ({mode}) "
        "| ha_ingestor / core |",
        "|---|---:|---:|---:|---:|",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
        "Event-loop thread CPU by round, µs per state change:",
        "",
        "| Round | Order | baseline | core - baseline | ha_ingestor - baseline | ratio |",
        "|---:|---|---:|---:|---:|---:|",
        *round_rows,
        "",
        "### Method",
        "",
        "- Every run is a new Python process with its own influxd (loopback, temporary "
        "directories) and one Home Assistant instance (`async_test_home_assistant` of "
        "pytest-homeassistant-custom-component), running only core `influxdb` (YAML: host, "
        "port, database; every other option at its default, so `max_retries` 0), only "
        f"ha_ingestor (a 1.x config entry, write mode {settings.write_mode}), or neither "
        "(baseline). A process imports only the integration it runs, so no run's garbage "
        "collections walk the other's modules or an earlier run's leftovers."
        + (
            " In dual-write ha_ingestor writes every state change twice (both layouts); "
            "the counts below are of its legacy points."
            if settings.write_mode == "both"
            else ""
        ),
        "- State changes come from `generator.py` (300 entities, mixed pattern, seed fixed); "
        "repeats of an entity's previous state are left out so each `hass.states.async_set` "
        "fires one `state_changed`. The same list is fired in every run, paced: every "
        f"{TICK * 1e3:g} ms the loop sets all changes due by then.",
        "- *Listener callback*: the integration's bus listener (core "
        "`InfluxThread._event_listener`, ours `Ingestion._async_state_changed`) is wrapped "
        "with `perf_counter`; total ÷ state changes.",
        "- *Event-loop thread CPU*: `time.thread_time()` of the loop thread from the first "
        "state change until all points are visible (baseline: until the last change), minus "
        "the baseline. It covers everything the integration runs in the loop: listener, "
        "batching, HTTP, its own entities, and the garbage collections that run in the loop "
        "thread (timed with `gc.callbacks`; a collection runs in whichever thread allocates "
        "past the threshold). Any `state_changed` listener makes Home Assistant create an "
        "Event whose Context refers back to it, a cycle only the collector frees: most of "
        "the young collections are that, for either integration. ha_ingestor converts "
        "and encodes in HA's executor, core converts, encodes and sends from its own thread: "
        "that work is in *process CPU* only.",
        "- *Wall time inside async_set*: the sum of the firing chunks' durations, minus the "
        "baseline. It adds what CPU time cannot see: the loop waiting for the GIL while "
        "another thread holds it.",
        "- *Event-loop lag*: a 10 ms timer in the loop; how late it fired while firing.",
        f"- *All points visible*: `{COUNT_QUERY}` polled every {POLL_INTERVAL * 1e3:g} ms "
        "(plus the query's own time) from the last state change; the figure is when the "
        "first complete count returned.",
        "- *Points lost*: the same state changes, influxd stopped (SIGTERM, waits for exit) "
        f"after a third of them, started again {settings.outage:g} s later on the same port "
        "while firing goes on; the final count once it stops changing "
        f"for {SETTLE_SECONDS:g} s (longer than ha_ingestor's 30 s circuit-breaker cool-down).",
    ]
    runs = (
        ("core influxdb", "steady runs", [r for run in core for r in run.log]),
        ("ha_ingestor", "steady runs", [r for run in ours for r in run.log]),
        ("core influxdb", "restart run", core_restart.log),
        ("ha_ingestor", "restart run", ours_restart.log),
    )
    for title, run, log in runs:
        if log:
            lines += ["", f"### What {title} logged (warnings and errors) in the {run}", "", "```"]
            lines += _summarize_log(log)
            lines.append("```")
    return "\n".join(lines)


_MODE_LABELS = {"legacy": "legacy", "both": "dual-write"}


def _summarize_log(lines: list[str], limit: int = 12) -> list[str]:
    counts: dict[str, int] = {}
    for line in lines:
        counts[line] = counts.get(line, 0) + 1
    shown = [f"{line}  (x{n})" if n > 1 else line for line, n in counts.items()]
    if len(shown) > limit:
        shown = [*shown[:limit], f"... {len(shown) - limit} more distinct messages"]
    return shown


def _run_one(args: argparse.Namespace, settings: Settings) -> None:
    """The process of one run: read the state changes, run, print the result as JSON."""
    with Path(args.changes).open("rb") as file:
        # Written by the parent process of this benchmark a moment ago.
        rows: list[tuple[str, str, dict[str, Any]]] = pickle.load(file)  # noqa: S301
    changes = [StateChange(*row) for row in rows]
    result = run_isolated(Integration(args.run), changes, settings, restart=args.restart)
    print(result.to_json())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="state changes per run")
    parser.add_argument(
        "--rate", type=float, default=2_000, help="state changes per second (0: unpaced)"
    )
    parser.add_argument("--outage", type=float, default=5.0, help="seconds influxd is down")
    parser.add_argument("--seed", type=int, default=1, help="generator seed")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of steady runs (baseline, core, ours)"
    )
    parser.add_argument(
        "--write-mode",
        choices=sorted(_MODE_LABELS),
        default="legacy",
        help="ha_ingestor's write mode: legacy (like core) or both (dual-write)",
    )
    # Internal: one run in this process (the benchmark starts itself once per run).
    parser.add_argument("--run", choices=[i.value for i in Integration], help=argparse.SUPPRESS)
    parser.add_argument("--changes", help=argparse.SUPPRESS)
    parser.add_argument("--restart", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = Settings(rate=args.rate, outage=args.outage, write_mode=args.write_mode)
    # Keep Home Assistant's own chatter off the report; errors still reach stderr.
    logging.basicConfig(level=logging.ERROR)
    if args.run:
        _run_one(args, settings)
        return
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    changes = state_changes(args.events, args.seed)
    expected = expected_points(changes)
    kinds = (Integration.BASELINE, Integration.CORE, Integration.OURS)
    steady: dict[Integration, list[RunResult]] = {kind: [] for kind in kinds}
    orders: list[tuple[Integration, ...]] = []
    with tempfile.TemporaryDirectory(prefix="ha-ingestor-bench-") as directory:
        changes_file = Path(directory) / "changes.pickle"
        with changes_file.open("wb") as file:
            rows = [(c.entity_id, c.state, dict(c.attributes)) for c in changes]
            pickle.dump(rows, file)
        for index in range(args.rounds):
            order = kinds[index % 3 :] + kinds[: index % 3]
            orders.append(order)
            for kind in order:
                steady[kind].append(run_in_process(kind, changes_file, settings))
        core_restart = run_in_process(Integration.CORE, changes_file, settings, restart=True)
        ours_restart = run_in_process(Integration.OURS, changes_file, settings, restart=True)
    rounds = Rounds(
        base=steady[Integration.BASELINE],
        core=steady[Integration.CORE],
        ours=steady[Integration.OURS],
        orders=orders,
    )
    print(
        report(
            rounds=rounds,
            core_restart=core_restart,
            ours_restart=ours_restart,
            expected=expected,
            settings=settings,
        )
    )


if __name__ == "__main__":
    main()
