"""Backfill benchmark: our end-to-end migration rate against what the server itself can do.

Generates legacy history (the generator's states through LegacyLayout, as HA core writes
them) into a throwaway influxd, then measures in one run, on that same data:

- the raw write ceiling: pre-encoded optimized line protocol, 10,000-line batches, 2 writers;
- the server-side copy rate: ``SELECT * INTO … GROUP BY *`` (no transform, no HTTP);
- our backfill (discover, then Backfill.run with the real to_optimized), end to end,
  in a fresh child process so its peak memory (RSS high-water mark above the baseline
  taken just before the run) is its own;

and prints the rates and their ratios per history size.

    .venv/bin/python -m benchmarks.backfill                  # 1M and 4M points
    .venv/bin/python -m benchmarks.backfill --sizes 200000   # a quick run
"""

import argparse
import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time
from typing import Any
import urllib.parse
import urllib.request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from homeassistant.core import State  # noqa: E402

from custom_components.ha_ingestor.engine.generator import (  # noqa: E402
    GeneratorConfig,
    Pattern,
    generate,
)
from custom_components.ha_ingestor.engine.influx import (  # noqa: E402
    ApiVersion,
    ServerSettings,
    create_client,
)
from custom_components.ha_ingestor.engine.line_protocol import (  # noqa: E402
    encode,
    to_time_ns,
)
from custom_components.ha_ingestor.engine.migration.backfill import Backfill  # noqa: E402
from custom_components.ha_ingestor.engine.migration.discovery import discover  # noqa: E402
from custom_components.ha_ingestor.engine.migration.model import (  # noqa: E402
    MigrationConfig,
    MigrationState,
    Phase,
)
from custom_components.ha_ingestor.layouts.legacy import LegacyLayout, LegacyOptions  # noqa: E402
from custom_components.ha_ingestor.layouts.optimized import (  # noqa: E402
    LegacyTransform,
    OptimizedOptions,
)
from tests.influx_server import running_influxd  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=UTC)
LEGACY, CEILING, COPY, TARGET = "legacy", "ceiling", "select_into", "optimized"
LINES_PER_WRITE = 10_000
# The ceiling is a rate: measured on (up to) this many of the history's optimized lines.
CEILING_POINTS = 1_000_000

TRANSFORM = LegacyTransform(LegacyOptions(), OptimizedOptions())


def history(points: int, days: int, seed: int) -> Iterator[tuple[str, str | None]]:
    """(legacy line, optimized line) for every state core would have written."""
    config = GeneratorConfig(
        count=points,
        pattern=Pattern.MIXED,
        entity_count=None,
        start=START,
        end=START + timedelta(days=days),
        seed=seed,
    )
    layout = LegacyLayout(LegacyOptions())
    for generated in generate(config):
        state = State(generated.entity_id, generated.state, generated.attributes)
        point = layout.point(state, generated.time_fired)
        if point is None or (line := encode(point)) is None:
            continue
        optimized = TRANSFORM(point)
        yield line, None if optimized is None else encode(optimized)


def query(url: str, q: str, db: str | None = None) -> dict[str, Any]:
    params = {"q": q} | ({"db": db} if db else {})
    data = urllib.parse.urlencode(params).encode()
    # The benchmark's own influxd on a loopback http:// URL.
    request = urllib.request.Request(f"{url}/query", data=data)  # noqa: S310
    with urllib.request.urlopen(request, timeout=3600) as resp:  # noqa: S310
        return json.loads(resp.read())  # type: ignore[no-any-return]


async def write_all(url: str, database: str, bodies: Iterator[bytes], writers: int) -> None:
    """Write the bodies with ``writers`` requests in flight."""
    async with aiohttp.ClientSession() as session:
        client = create_client(
            session, ServerSettings(api_version=ApiVersion.V1, url=url, database=database)
        )
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=writers * 2)

        async def writer() -> None:
            while (body := await queue.get()) is not None:
                await client.write(body)

        tasks = [asyncio.create_task(writer()) for _ in range(writers)]
        for body in bodies:
            await queue.put(body)
        for _ in tasks:
            await queue.put(None)
        await asyncio.gather(*tasks)


def load(url: str, points: int, days: int, seed: int) -> tuple[int, list[bytes], float]:
    """Write the legacy history; return its point count and the ceiling's pre-encoded bodies."""
    ceiling: list[bytes] = []
    optimized: list[str] = []
    count = 0

    def bodies() -> Iterator[bytes]:
        nonlocal count
        lines: list[str] = []
        for line, optimized_line in history(points, days, seed):
            lines.append(line)
            count += 1
            if optimized_line is not None and len(ceiling) * LINES_PER_WRITE < CEILING_POINTS:
                optimized.append(optimized_line)
                if len(optimized) == LINES_PER_WRITE:
                    ceiling.append("\n".join(optimized).encode())
                    optimized.clear()
            if len(lines) == LINES_PER_WRITE:
                yield "\n".join(lines).encode()
                lines.clear()
        if lines:
            yield "\n".join(lines).encode()

    started = time.perf_counter()
    asyncio.run(write_all(url, LEGACY, bodies(), writers=2))
    return count, ceiling, time.perf_counter() - started


def measure_ceiling(url: str, bodies: list[bytes], server_pid: int) -> tuple[float, float]:
    """Points per second, and influxd CPU µs per point, of the raw writes."""
    server_cpu = _cpu_seconds(server_pid)
    started = time.perf_counter()
    asyncio.run(write_all(url, CEILING, iter(bodies), writers=2))
    elapsed = time.perf_counter() - started
    points = len(bodies) * LINES_PER_WRITE
    return points / elapsed, (_cpu_seconds(server_pid) - server_cpu) / points * 1e6


async def read_all(url: str, readers: int) -> int:
    """Stream every legacy point the backfill reads (its fields), converting nothing."""
    async with aiohttp.ClientSession() as session:
        client = create_client(
            session, ServerSettings(api_version=ApiVersion.V1, url=url, database=LEGACY)
        )
        todo = await client.measurements()
        read = 0

        async def reader() -> None:
            nonlocal read
            while todo:
                measurement = todo.pop()
                async for block in client.read_series(
                    measurement, -(2**62), 2**62, fields=TRANSFORM.fields_read
                ):
                    read += len(block.rows)

        await asyncio.gather(*(reader() for _ in range(readers)))
        return read


def measure_read(url: str, points: int, server_pid: int) -> tuple[float, float]:
    """Points per second, and influxd CPU µs per point, of reading what the backfill reads."""
    server_cpu = _cpu_seconds(server_pid)
    started = time.perf_counter()
    read = asyncio.run(read_all(url, readers=2))
    elapsed = time.perf_counter() - started
    if read != points:
        raise RuntimeError(f"read {read} of {points} points")
    return points / elapsed, (_cpu_seconds(server_pid) - server_cpu) / points * 1e6


def measure_select_into(url: str, points: int) -> float:
    started = time.perf_counter()
    answer = query(
        url,
        f'SELECT * INTO "{COPY}"."autogen".:MEASUREMENT FROM "{LEGACY}"."autogen"./.*/ GROUP BY *',
    )
    elapsed = time.perf_counter() - started
    written = sum(
        row[1]
        for result in answer.get("results", [])
        for series in result.get("series", [])
        for row in series.get("values", [])
    )
    if written != points:
        raise RuntimeError(f"SELECT INTO wrote {written} of {points} points")
    return points / elapsed


def _status(field: str) -> int:
    """A /proc/self/status memory figure in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _cpu_seconds(pid: int | None = None) -> float:
    fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_backfill(args: argparse.Namespace) -> dict[str, Any]:
    """The child process: discover and backfill, measuring time, CPU and memory."""
    async with aiohttp.ClientSession() as session:
        client = create_client(
            session, ServerSettings(api_version=ApiVersion.V1, url=args.url, database=LEGACY)
        )
        started = time.perf_counter()
        source = await discover(client, LEGACY)
        discovered = time.perf_counter() - started
        await client.create_database(TARGET)
        state = MigrationState(
            migration_id="benchmark",
            config=MigrationConfig(batch_size=args.batch_size, concurrent_batches=args.concurrency),
            phase=Phase.BACKFILL,
            cutover_ns=to_time_ns(START + timedelta(days=args.days)),
        )

        async def save(_: MigrationState) -> None:
            return None

        with tempfile.TemporaryDirectory() as tmp:
            backfill = Backfill(
                client,
                state,
                transform=TRANSFORM,
                save=save,
                dead_letter_path=Path(tmp) / "dead_letter.jsonl",
                target_database=TARGET,
                source=source,
            )
            baseline = _status("VmRSS")
            cpu = _cpu_seconds()
            server_cpu = _cpu_seconds(args.server_pid)
            started = time.perf_counter()
            outcome = await backfill.run()
            elapsed = time.perf_counter() - started
            return {
                "outcome": str(outcome),
                "discover_seconds": discovered,
                "seconds": elapsed,
                "read": state.records_read,
                "migrated": state.records_migrated,
                "failed": state.records_failed,
                "rate": state.records_read / elapsed,
                "cpu_us_per_point": (_cpu_seconds() - cpu) / state.records_read * 1e6,
                "server_cpu_seconds": _cpu_seconds(args.server_pid) - server_cpu,
                "rss_baseline": baseline,
                "rss_peak": _status("VmHWM"),
            }


def measure_backfill(url: str, server_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    # This very script, with arguments built here.
    child = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "benchmarks.backfill",
            "--child",
            "--url",
            url,
            "--server-pid",
            str(server_pid),
            "--days",
            str(args.days),
            "--batch-size",
            str(args.batch_size),
            "--concurrency",
            str(args.concurrency),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(child.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def bench(points: int, args: argparse.Namespace) -> dict[str, Any]:
    with running_influxd(auth=False) as server:
        for database in (LEGACY, CEILING, COPY):
            server.create_database(database)
        print(f"[{points:,}] generating and loading legacy history …", file=sys.stderr)
        count, ceiling_bodies, load_seconds = load(server.url, points, args.days, args.seed)
        assert server.process is not None
        pid = server.process.pid
        print(f"[{points:,}] raw write ceiling …", file=sys.stderr)
        ceiling, write_cpu = measure_ceiling(server.url, ceiling_bodies, pid)
        del ceiling_bodies
        print(f"[{points:,}] read ceiling …", file=sys.stderr)
        read_rate, read_cpu = measure_read(server.url, count, pid)
        print(f"[{points:,}] SELECT INTO …", file=sys.stderr)
        select_into = measure_select_into(server.url, count)
        query(server.url, f'DROP DATABASE "{COPY}"')
        print(f"[{points:,}] backfill …", file=sys.stderr)
        backfill = measure_backfill(server.url, pid, args)
        if backfill["read"] != count or backfill["failed"]:
            raise RuntimeError(f"backfill read {backfill['read']} of {count} points: {backfill}")
        return {
            "points": count,
            "load_seconds": load_seconds,
            "ceiling": ceiling,
            "write_cpu_us": write_cpu,
            "read_rate": read_rate,
            "read_cpu_us": read_cpu,
            "select_into": select_into,
            **backfill,
        }


def server_bound(row: dict[str, Any]) -> float:
    """Points per second at which influxd alone fills every CPU with the backfill's work:
    reading each point as the backfill reads it, and writing it as the ceiling writes it."""
    return (os.cpu_count() or 1) * 1e6 / (row["read_cpu_us"] + row["write_cpu_us"])


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'points':>10} {'raw write':>11} {'read':>11} {'SELECT INTO':>12} {'bound':>10} "
        f"{'backfill':>10} {'÷ raw':>6} {'÷ bound':>7} {'÷ S.INTO':>8} {'peak mem':>9}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        peak = (row["rss_peak"] - row["rss_baseline"]) / 2**20
        bound = server_bound(row)
        lines.append(
            f"{row['points']:>10,} {row['ceiling']:>9,.0f}/s {row['read_rate']:>9,.0f}/s "
            f"{row['select_into']:>10,.0f}/s {bound:>8,.0f}/s {row['rate']:>8,.0f}/s "
            f"{row['rate'] / row['ceiling']:>6.0%} {row['rate'] / bound:>7.0%} "
            f"{row['rate'] / row['select_into']:>8.0%} {peak:>6.0f} MB"
        )
    head = (
        f"\n{'points':>10} {'influxd µs/pt: write':>21} {'read':>6} {'backfill':>9} "
        f"{'backfill process µs/pt':>23}"
    )
    lines += [head, "-" * len(head)]
    for row in rows:
        lines.append(
            f"{row['points']:>10,} {row['write_cpu_us']:>21.1f} {row['read_cpu_us']:>6.1f} "
            f"{row['server_cpu_seconds'] / row['read'] * 1e6:>9.1f} "
            f"{row['cpu_us_per_point']:>23.1f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000], help="history sizes"
    )
    parser.add_argument("--days", type=int, default=365, help="days the history spans")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--batch-size", type=int, default=LINES_PER_WRITE, help="backfill lines per write"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="backfill writes in flight")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(run_backfill(args))))
        return
    rows = []
    for points in args.sizes:
        rows.append(bench(points, args))
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(
        f"\nbackfill: batch_size {args.batch_size}, concurrent_batches {args.concurrency}; "
        f"history over {args.days} days; {os.cpu_count()} CPUs\n"
    )
    print(table(rows))
    print(
        "\nraw write: pre-encoded optimized lines, 10,000-line batches, 2 writers "
        f"(first {CEILING_POINTS:,} points). read: the fields the backfill reads, streamed\n"
        "and decoded, nothing converted (2 readers). SELECT INTO: server-side copy, GROUP BY *.\n"
        "bound: CPUs x 1e6 ÷ (influxd µs/pt to read + to write): the rate at which influxd\n"
        "alone would fill every CPU doing the backfill's reads and writes.\n"
        "backfill: discover excluded; read + to_optimized + encode + write, end to end.\n"
        "peak mem: the backfill process's RSS high-water mark above its baseline."
    )


if __name__ == "__main__":
    main()
