"""Storage benchmark: bytes on disk per point, legacy layout vs optimized layout, after compaction.

Generates history with the project's generator the way ``generate_test_events`` history mode
writes it (states through LegacyLayout), and its optimized copy with the one transform
(``to_optimized``), into two databases of a throwaway influxd. The server is configured to
snapshot its cache and fully compact a shard after one second without writes, and the
benchmark waits until every shard is one TSM file and the WAL is empty, then measures
``data/<database>``: the shards' TSM files, which grow with the points, and the series file
(``_series``, preallocated in segments, so a fixed cost at this size); InfluxDB 1.6's default
in-memory index keeps no index files on disk.

    .venv/bin/python -m benchmarks.storage                          # 1,000,000 events, 365 days
    .venv/bin/python -m benchmarks.storage --events 200000 --days 30
"""

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import json
import os
from pathlib import Path
import sys
import time
from typing import Any
import urllib.parse
import urllib.request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from homeassistant.core import State  # noqa: E402

from custom_components.ha_ingestor.engine.generator import (  # noqa: E402
    GeneratorConfig,
    Pattern,
    generate,
)
from custom_components.ha_ingestor.engine.line_protocol import Point, encode  # noqa: E402
from custom_components.ha_ingestor.layouts.legacy import LegacyLayout, LegacyOptions  # noqa: E402
from custom_components.ha_ingestor.layouts.optimized import (  # noqa: E402
    OptimizedOptions,
    to_optimized,
)
from tests.influx_server import InfluxServer, running_influxd  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=UTC)
LAYOUTS = ("legacy", "optimized")
LINES_PER_WRITE = 10_000
# influxd reads these over its configuration file: snapshot and fully compact a shard soon
# after its last write, instead of after the defaults of 10 minutes and 4 hours.
COMPACTING_ENVIRONMENT = {
    "INFLUXDB_DATA_CACHE_SNAPSHOT_WRITE_COLD_DURATION": "1s",
    "INFLUXDB_DATA_COMPACT_FULL_WRITE_COLD_DURATION": "1s",
}


@dataclass
class Written:
    """What went into one database."""

    points: int = 0
    field_values: int = 0
    bytes_sent: int = 0


def _points(events: int, days: int, seed: int) -> Iterator[tuple[Point, Point | None]]:
    config = GeneratorConfig(
        count=events,
        pattern=Pattern.MIXED,
        entity_count=None,
        start=START,
        end=START + timedelta(days=days),
        seed=seed,
    )
    legacy_options, optimized_options = LegacyOptions(), OptimizedOptions()
    layout = LegacyLayout(legacy_options)
    for generated in generate(config):
        state = State(generated.entity_id, generated.state, generated.attributes)
        if (point := layout.point(state, generated.time_fired)) is not None:
            yield point, to_optimized(point, legacy_options, optimized_options)


def _request(server: InfluxServer, path: str, params: dict[str, str], body: bytes) -> bytes:
    url = f"{server.url}{path}?{urllib.parse.urlencode(params)}"
    # The benchmark's own influxd on a loopback http:// URL.
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=600) as resp:  # noqa: S310
        return bytes(resp.read())


def _query(server: InfluxServer, query: str, database: str) -> list[dict[str, Any]]:
    body = json.loads(_request(server, "/query", {"db": database, "q": query}, b""))
    return list(body["results"][0].get("series", []))


def write_history(server: InfluxServer, events: int, days: int, seed: int) -> dict[str, Written]:
    """Write the legacy history and its optimized copy; what each database received."""
    written = {layout: Written() for layout in LAYOUTS}
    batches: dict[str, list[str]] = {layout: [] for layout in LAYOUTS}

    def flush(layout: str) -> None:
        body = "\n".join(batches[layout]).encode()
        _request(server, "/write", {"db": layout, "precision": "ns"}, body)
        written[layout].bytes_sent += len(body)
        batches[layout].clear()

    for legacy, optimized in _points(events, days, seed):
        for layout, point in (("legacy", legacy), ("optimized", optimized)):
            if point is None or (line := encode(point)) is None:
                continue
            batches[layout].append(line)
            written[layout].points += 1
            written[layout].field_values += len(point.fields)
            if len(batches[layout]) >= LINES_PER_WRITE:
                flush(layout)
    for layout in LAYOUTS:
        if batches[layout]:
            flush(layout)
    return written


def _files(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.is_file()] if directory.exists() else []


def _shards(root: Path, database: str) -> list[Path]:
    """Shard directories (<retention policy>/<shard id>; "_series" is the series file)."""
    return [
        path
        for path in (root / "data" / database).glob("*/*")
        if path.is_dir() and not path.parent.name.startswith("_")
    ]


def _compacted(root: Path, database: str) -> bool:
    """Every shard is one TSM file, nothing is being written, the WAL holds nothing."""
    shards = _shards(root, database)
    if not shards:
        return False
    for shard in shards:
        names = [path.name for path in shard.iterdir()]
        if sum(name.endswith(".tsm") for name in names) != 1:
            return False
        if any(name.endswith(".tmp") for name in names):
            return False
    return all(path.stat().st_size == 0 for path in _files(root / "wal" / database))


def wait_for_compaction(root: Path, timeout: float = 1800.0) -> float:
    """Seconds until both databases are fully compacted and their size holds still."""
    started = time.monotonic()
    last: tuple[int, ...] = ()
    while time.monotonic() - started < timeout:
        if all(_compacted(root, layout) for layout in LAYOUTS):
            sizes = tuple(disk_bytes(root, layout) for layout in LAYOUTS)
            if sizes == last:
                return time.monotonic() - started
            last = sizes
        time.sleep(2)
    raise RuntimeError("influxd did not finish compacting in time")


def disk_bytes(root: Path, database: str) -> int:
    """Bytes of the database's data directory (TSM files and its series file)."""
    return sum(path.stat().st_size for path in _files(root / "data" / database))


def tsm_bytes(root: Path, database: str) -> int:
    """Bytes of the database's shards: the TSM files that grow with the points."""
    return sum(path.stat().st_size for shard in _shards(root, database) for path in _files(shard))


def series_count(server: InfluxServer, database: str) -> int:
    """Distinct series of the database (its index, not the per-shard sum CARDINALITY gives)."""
    return sum(
        len(series.get("values") or ()) for series in _query(server, "SHOW SERIES", database)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=42)
    arguments = parser.parse_args()

    os.environ.update(COMPACTING_ENVIRONMENT)
    with running_influxd(auth=False) as server:
        for layout in LAYOUTS:
            server.create_database(layout)
        started = time.monotonic()
        written = write_history(server, arguments.events, arguments.days, arguments.seed)
        print(
            f"wrote {arguments.events:,} generated events over {arguments.days} days in "
            f"{time.monotonic() - started:.0f} s; waiting for compaction …",
            flush=True,
        )
        waited = wait_for_compaction(server.root)
        shards = len(_shards(server.root, "legacy"))
        print(f"compacted after {waited:.0f} s ({shards} shards of 7 days per database)\n")
        print(
            "| Layout | Points | Series | Field values | Line protocol | TSM on disk "
            "| Bytes/point | Bytes/field value | Series file |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        sizes = {}
        for layout in LAYOUTS:
            stats = written[layout]
            size = sizes[layout] = tsm_bytes(server.root, layout)
            series_file = disk_bytes(server.root, layout) - size
            print(
                f"| {layout} | {stats.points:,} | {series_count(server, layout):,} | "
                f"{stats.field_values:,} | {stats.bytes_sent / 1e6:.1f} MB | {size / 1e6:.2f} MB | "
                f"{size / stats.points:.2f} | {size / stats.field_values:.2f} | "
                f"{series_file / 1e6:.1f} MB |"
            )
        print(f"\noptimized / legacy TSM bytes: {sizes['optimized'] / sizes['legacy']:.2f}")


if __name__ == "__main__":
    main()
