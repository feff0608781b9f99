"""Long-range benchmark: dashboard queries over 1, 30 and 365 days, legacy raw vs optimized raw
vs optimized rollups, side by side on one throwaway influxd.

A year of a few numeric sensors at one point a minute (smooth daily curves with noise), written
the way HA core writes them (states through LegacyLayout) and through the one transform
(``to_optimized``) into the optimized layout; then the rollups are built from the optimized
raw points with the integration's own code (``build_rollups``), everything is compacted
(as in ``benchmarks.storage``), and each panel query is run ``--repeats`` times per layout
(after one warm-up run); the table shows the median wall time of the HTTP query.

Besides the rollups as the integration keeps them (``<domain>_5m``/``_1h`` in the default
retention policy, weekly shard groups), two layouts are measured that it does not keep, to
show where the time goes: the same rollups copied into a retention policy with 52-week shard
groups (``"rollups_52w"."sensor_1h"``), and a daily tier ``sensor_1d`` in that policy, built
from the raw points with the same aggregation code.

    .venv/bin/python -m benchmarks.long_range                    # 4 sensors, 365 days, 60 s
    .venv/bin/python -m benchmarks.long_range --step 300 --repeats 9
"""

import argparse
import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import json
import math
import os
from pathlib import Path
import platform
import random
import statistics
import sys
import time
from typing import Any
import urllib.parse
import urllib.request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from homeassistant.core import State  # noqa: E402

from benchmarks.storage import (  # noqa: E402
    COMPACTING_ENVIRONMENT,
    _compacted,
    disk_bytes,
    tsm_bytes,
)
from custom_components.ha_ingestor.engine.influx import (  # noqa: E402
    ApiVersion,
    ServerSettings,
    create_client,
)
from custom_components.ha_ingestor.engine.line_protocol import encode  # noqa: E402
from custom_components.ha_ingestor.engine.rollups import (  # noqa: E402
    DAY_NS,
    Resolution,
    RollupBuilder,
    build_rollups,
)
from custom_components.ha_ingestor.layouts.legacy import LegacyLayout, LegacyOptions  # noqa: E402
from custom_components.ha_ingestor.layouts.optimized import (  # noqa: E402
    OptimizedOptions,
    to_optimized,
)
from tests.influx_server import InfluxServer, running_influxd  # noqa: E402

END = datetime(2025, 1, 1, tzinfo=UTC)
DAY = 86_400
LINES_PER_WRITE = 10_000


@dataclass(frozen=True)
class Sensor:
    """One generated sensor: a daily curve around ``base`` with ``swing`` and noise."""

    object_id: str
    unit: str
    device_class: str
    base: float
    swing: float
    noise: float


SENSORS = (
    Sensor("living_temperature", "°C", "temperature", 21.0, 1.5, 0.1),
    Sensor("outdoor_temperature", "°C", "temperature", 10.0, 6.0, 0.3),
    Sensor("living_humidity", "%", "humidity", 45.0, 8.0, 1.0),
    Sensor("house_power", "W", "power", 400.0, 250.0, 120.0),
)


def _states(days: int, step: int, sensors: int, seed: int) -> Iterator[tuple[State, datetime]]:
    rand = random.Random(seed)
    start = END - timedelta(days=days)
    for sensor in SENSORS[:sensors]:
        attributes = {
            "unit_of_measurement": sensor.unit,
            "device_class": sensor.device_class,
            "state_class": "measurement",
            "friendly_name": sensor.object_id.replace("_", " ").title(),
        }
        entity_id = f"sensor.{sensor.object_id}"
        for second in range(0, days * DAY, step):
            # The daily curve, a slower seasonal one, and noise; rounded as sensors report.
            phase = 2 * math.pi * second / DAY
            season = math.sin(2 * math.pi * second / (365 * DAY))
            value = (
                sensor.base
                + sensor.swing * math.sin(phase)
                + sensor.swing * 0.5 * season
                + rand.gauss(0, sensor.noise)
            )
            yield State(entity_id, f"{value:.2f}", attributes), start + timedelta(seconds=second)


def _request(server: InfluxServer, path: str, params: dict[str, str], body: bytes = b"") -> bytes:
    url = f"{server.url}{path}?{urllib.parse.urlencode(params)}"
    # The benchmark's own influxd on a loopback http:// URL.
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=600) as resp:  # noqa: S310
        return bytes(resp.read())


def query(server: InfluxServer, statement: str, database: str) -> list[dict[str, Any]]:
    answer = json.loads(_request(server, "/query", {"db": database, "q": statement}, b""))
    result = answer["results"][0]
    if "error" in result:
        raise RuntimeError(f"{statement}: {result['error']}")
    return list(result.get("series", []))


def write_history(server: InfluxServer, days: int, step: int, sensors: int, seed: int) -> int:
    """Write the legacy history and its optimized copy; points per layout."""
    legacy_options = LegacyOptions()
    layout = LegacyLayout(legacy_options)
    options = OptimizedOptions()
    batches: dict[str, list[str]] = {"legacy": [], "optimized": []}
    points = 0

    def flush(database: str) -> None:
        _request(
            server,
            "/write",
            {"db": database, "precision": "ns"},
            "\n".join(batches[database]).encode(),
        )
        batches[database].clear()

    for state, time_fired in _states(days, step, sensors, seed):
        legacy = layout.point(state, time_fired)
        if legacy is None:
            continue
        optimized = to_optimized(legacy, legacy_options, options)
        for database, point in (("legacy", legacy), ("optimized", optimized)):
            if point is not None and (line := encode(point)) is not None:
                batches[database].append(line)
                if len(batches[database]) >= LINES_PER_WRITE:
                    flush(database)
        points += 1
    for database, lines in batches.items():
        if lines:
            flush(database)
    return points


async def build(server: InfluxServer, days: int) -> tuple[int, float]:
    """Build the rollups of the optimized database with the integration's code."""
    settings = ServerSettings(api_version=ApiVersion.V1, url=server.url, database="optimized")
    start_ns = int((END - timedelta(days=days)).timestamp()) * 10**9
    end_ns = int(END.timestamp()) * 10**9
    async with aiohttp.ClientSession() as session:
        client = create_client(session, settings)
        started = time.perf_counter()
        written = await build_rollups(client, "optimized", start_ns, end_ns)
        return written, time.perf_counter() - started


# A retention policy with year-long shard groups (a year of rollups in one or two shards).
LONG_SHARDS_RP = "rollups_52w"
DAILY = Resolution("1d", DAY_NS)


def copy_to_long_shards(server: InfluxServer) -> None:
    """The integration's rollups, copied as they are into ``LONG_SHARDS_RP``."""
    query(
        server,
        f'CREATE RETENTION POLICY "{LONG_SHARDS_RP}" ON "optimized" DURATION INF '
        "REPLICATION 1 SHARD DURATION 52w",
        "optimized",
    )
    for measurement in ("sensor_5m", "sensor_1h"):
        query(
            server,
            f'SELECT * INTO "optimized"."{LONG_SHARDS_RP}"."{measurement}" '
            f'FROM "optimized"."autogen"."{measurement}" GROUP BY *',
            "optimized",
        )


async def build_daily(server: InfluxServer, days: int) -> int:
    """A daily tier (``sensor_1d``) of the raw points, into ``LONG_SHARDS_RP``."""
    settings = ServerSettings(api_version=ApiVersion.V1, url=server.url, database="optimized")
    start_ns = int((END - timedelta(days=days)).timestamp()) * 10**9
    end_ns = int(END.timestamp()) * 10**9
    builder = RollupBuilder((DAILY,))
    async with aiohttp.ClientSession() as session:
        client = create_client(session, settings)
        async for block in client.read_series("sensor", start_ns, end_ns, fields=("value",)):
            column = block.fields.index("value") + 1
            for row in block.rows:
                if row[column] is not None:
                    builder.add(block.measurement, block.tags, int(row[0]), float(row[column]))
    lines = [line for point in builder.points() if (line := encode(point)) is not None]
    _request(
        server,
        "/write",
        {"db": "optimized", "rp": LONG_SHARDS_RP, "precision": "ns"},
        "\n".join(lines).encode(),
    )
    return len(lines)


def wait_for_compaction(root: Path, databases: tuple[str, ...], timeout: float = 1800.0) -> float:
    started = time.monotonic()
    last: tuple[int, ...] = ()
    while time.monotonic() - started < timeout:
        if all(_compacted(root, name) for name in databases):
            sizes = tuple(disk_bytes(root, name) for name in databases)
            if sizes == last:
                return time.monotonic() - started
            last = sizes
        time.sleep(2)
    raise RuntimeError("influxd did not finish compacting in time")


@dataclass(frozen=True)
class Panel:
    """One dashboard query in its forms ({where} is the entity and time condition): legacy
    raw, optimized raw, the integration's rollups, the same rollups in ``LONG_SHARDS_RP``, and
    a daily tier there (None where a daily tier cannot answer the panel)."""

    name: str
    legacy: str
    optimized: str
    rollup: str
    long_shards: str
    daily: str | None


def panels(days: int) -> list[Panel]:
    """The panels of a range: the interval a ~300-point graph asks for, and the rollup that
    has at least that resolution."""
    interval = {1: "5m", 30: "3h"}.get(days, "1d")
    rollup = "sensor_5m" if days <= 1 else "sensor_1h"
    long_rollup = f'"{LONG_SHARDS_RP}"."{rollup}"'
    daily = f'"{LONG_SHARDS_RP}"."sensor_1d"'
    # On a daily tier, a group of a day holds one window: its mean is the exact mean.
    daily_mean = (
        f'SELECT mean("mean") FROM {daily} WHERE {{optimized}} GROUP BY time(1d) fill(null)'
        if interval == "1d"
        else None
    )
    exact = 'SELECT sum("sum") / sum("count") AS "mean" FROM {rollup} WHERE {{optimized}} '
    of_means = 'SELECT mean("mean") FROM {rollup} WHERE {{optimized}} '
    per = f"GROUP BY time({interval}) fill(null)"
    maximum = 'SELECT max("max") FROM {rollup} WHERE {{optimized}} GROUP BY time(1d) fill(null)'
    last = 'SELECT last("last") FROM {rollup} WHERE {{optimized}}'
    return [
        Panel(
            f"mean per {interval}",
            f'SELECT mean("value") FROM "°C" WHERE {{legacy}} {per}',
            f'SELECT mean("value") FROM "sensor" WHERE {{optimized}} {per}',
            exact.format(rollup=f'"{rollup}"') + per,
            exact.format(rollup=long_rollup) + per,
            daily_mean,
        ),
        Panel(
            f"mean per {interval}, mean of means",
            f'SELECT mean("value") FROM "°C" WHERE {{legacy}} {per}',
            f'SELECT mean("value") FROM "sensor" WHERE {{optimized}} {per}',
            of_means.format(rollup=f'"{rollup}"') + per,
            of_means.format(rollup=long_rollup) + per,
            daily_mean,
        ),
        Panel(
            "max per day",
            'SELECT max("value") FROM "°C" WHERE {legacy} GROUP BY time(1d) fill(null)',
            'SELECT max("value") FROM "sensor" WHERE {optimized} GROUP BY time(1d) fill(null)',
            maximum.format(rollup='"sensor_1h"'),
            maximum.format(rollup=f'"{LONG_SHARDS_RP}"."sensor_1h"'),
            maximum.format(rollup=daily),
        ),
        Panel(
            "last value",
            'SELECT last("value") FROM "°C" WHERE {legacy}',
            'SELECT last("value") FROM "sensor" WHERE {optimized}',
            last.format(rollup='"sensor_5m"'),
            last.format(rollup=f'"{LONG_SHARDS_RP}"."sensor_5m"'),
            None,
        ),
    ]


def timed(server: InfluxServer, statement: str, database: str, repeats: int) -> tuple[float, Any]:
    """Median milliseconds over ``repeats`` runs after a warm-up, and the answer."""
    answer = query(server, statement, database)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        query(server, statement, database)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), answer


def _values(series: list[dict[str, Any]]) -> list[float | None]:
    return [row[1] for row in series[0]["values"]] if series else []


def _check_equal(name: str, form: str, raw: Any, rolled: Any) -> None:
    """A rollup answer must be the raw answer (the mean up to rounding)."""
    for a, b in zip(_values(raw), _values(rolled), strict=True):
        if (a is None) != (b is None) or (
            a is not None and b is not None and not math.isclose(a, b, rel_tol=1e-9)
        ):
            raise AssertionError(f"{name} ({form}): raw {a} but rollup {b}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--step", type=int, default=60, help="seconds between points")
    parser.add_argument("--sensors", type=int, default=len(SENSORS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    arguments = parser.parse_args()

    os.environ.update(COMPACTING_ENVIRONMENT)
    with running_influxd(auth=False) as server:
        for database in ("legacy", "optimized", "rollups"):
            server.create_database(database)
        started = time.monotonic()
        points = write_history(
            server, arguments.days, arguments.step, arguments.sensors, arguments.seed
        )
        print(
            f"wrote {points:,} points per layout ({arguments.sensors} sensors, one every "
            f"{arguments.step} s, {arguments.days} days) in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        rollup_points, seconds = asyncio.run(build(server, arguments.days))
        print(
            f"built {rollup_points:,} rollup points in {seconds:.1f} s "
            f"({points / seconds:,.0f} raw points/s)",
            flush=True,
        )
        # A copy of the rollups alone, to measure what they cost on disk.
        query(
            server,
            'SELECT * INTO "rollups".."sensor_5m" FROM "optimized".."sensor_5m" GROUP BY *',
            "optimized",
        )
        query(
            server,
            'SELECT * INTO "rollups".."sensor_1h" FROM "optimized".."sensor_1h" GROUP BY *',
            "optimized",
        )
        waited = wait_for_compaction(server.root, ("legacy", "optimized", "rollups"))
        print(f"compacted after {waited:.0f} s\n")
        sizes = {name: tsm_bytes(server.root, name) for name in ("legacy", "optimized", "rollups")}
        print(
            f"TSM bytes: legacy {sizes['legacy'] / 1e6:.2f} MB, optimized raw "
            f"{(sizes['optimized'] - sizes['rollups']) / 1e6:.2f} MB, rollups "
            f"{sizes['rollups'] / 1e6:.2f} MB ({rollup_points:,} points, "
            f"{sizes['rollups'] / rollup_points:.1f} bytes each; "
            f"{sizes['rollups'] / (sizes['optimized'] - sizes['rollups']):.0%} of the raw)\n"
        )

        # After the sizes: these copies are for query times only.
        copy_to_long_shards(server)
        daily_points = asyncio.run(build_daily(server, arguments.days))
        waited = wait_for_compaction(server.root, ("optimized",))
        print(
            f"copied the rollups into {LONG_SHARDS_RP} and built {daily_points:,} daily points "
            f"there; compacted after {waited:.0f} s\n"
        )
        end_ns = int(END.timestamp()) * 10**9
        sensor = SENSORS[0]
        print(
            f"{platform.node()} · {os.cpu_count()} CPUs · {platform.python_version()} · "
            f"{datetime.now(UTC):%Y-%m-%d} · median of {arguments.repeats} runs, ms\n"
        )
        print(
            "| Range | Panel | Legacy raw | Optimized raw | Rollup (as kept) | Legacy ÷ rollup "
            f"| Rollup, {LONG_SHARDS_RP} | Legacy ÷ that | Daily tier, {LONG_SHARDS_RP} "
            "| Legacy ÷ daily |"
        )
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for days in (1, 30, 365):
            if days > arguments.days:
                continue
            start_ns = end_ns - days * DAY * 10**9
            when = f"time >= {start_ns} AND time < {end_ns}"
            conditions = {
                "legacy": f"\"entity_id\" = '{sensor.object_id}' AND {when}",
                "optimized": f"\"entity_id\" = 'sensor.{sensor.object_id}' AND {when}",
            }
            for panel in panels(days):
                legacy_ms, _ = timed(
                    server, panel.legacy.format(**conditions), "legacy", arguments.repeats
                )
                raw_ms, raw = timed(
                    server, panel.optimized.format(**conditions), "optimized", arguments.repeats
                )
                cells = []
                for form in (panel.rollup, panel.long_shards, panel.daily):
                    if form is None:
                        cells.append("— | —")
                        continue
                    rollup_ms, rolled = timed(
                        server, form.format(**conditions), "optimized", arguments.repeats
                    )
                    _check_equal(panel.name, form, raw, rolled)
                    cells.append(f"{rollup_ms:.1f} | **{legacy_ms / rollup_ms:.1f}x**")
                print(
                    f"| {days} d | {panel.name} | {legacy_ms:.1f} | {raw_ms:.1f} | "
                    f"{' | '.join(cells)} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
