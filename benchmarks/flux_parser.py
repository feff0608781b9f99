"""Flux annotated-CSV parsing: the 2.x client's incremental parser vs influxdb-client's.

Both read the same answer bytes: several tables of _time, _value, _field, _measurement and
entity_id, as /api/v2/query writes them. Ours runs as the client runs it (chunks split into
lines by ``iter_lines``, rows typed); the library's ``FluxCsvParser`` runs in stream mode
(FluxRecords one by one, like ``query_stream``; tables mode, what ``query`` returns, keeps every
record) over a file-like object, as its sync API reads a urllib3 response. Time is the best of
``--repeat`` runs without tracing; peak memory is tracemalloc's peak above the answer itself.

    .venv/bin/python -m benchmarks.flux_parser                  # 100,000 and 1,000,000 rows
    .venv/bin/python -m benchmarks.flux_parser --rows 20000 --repeat 1
"""

import argparse
import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from datetime import UTC, datetime
import io
from pathlib import Path
import sys
import time
import tracemalloc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import influxdb_client  # noqa: E402
from influxdb_client.client.flux_csv_parser import (  # noqa: E402
    FluxCsvParser,
    FluxSerializationMode,
)

from custom_components.ha_ingestor.engine.influx._stream import iter_lines  # noqa: E402
from custom_components.ha_ingestor.engine.influx.v2 import _AnnotatedCsv, rfc3339  # noqa: E402

TABLES = 8
CHUNK = 65_536
START_NS = 1_735_689_600_000_000_000


def answer(rows: int) -> bytes:
    """An annotated-CSV answer of ``rows`` records over TABLES tables (one series each)."""
    out = io.StringIO()
    start, stop = rfc3339(START_NS), rfc3339(START_NS + 365 * 86_400 * 10**9)
    per_table = rows // TABLES
    for table in range(TABLES):
        field, kind = ("value", "double") if table % 2 == 0 else ("count", "long")
        entity = f"sensor.room_{table // 2}_temperature"
        out.write(
            f"#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,{kind},"
            "string,string,string\r\n"
            "#group,false,false,true,true,false,false,true,true,true\r\n"
            "#default,_result,,,,,,,,\r\n"
            ",result,table,_start,_stop,_time,_value,_field,_measurement,entity_id\r\n"
        )
        for i in range(per_table):
            time_ns = START_NS + i * 30_000_000_123
            value = f"{20 + (i % 1000) / 7:.6g}" if kind == "double" else str(i)
            out.write(
                f",,{table},{start},{stop},{rfc3339(time_ns)},{value},{field},°C,{entity}\r\n"
            )
        out.write("\r\n")
    return out.getvalue().encode()


class _Chunks:
    """aiohttp's StreamReader as the client sees it: the answer in network-sized chunks."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def iter_any(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._body), CHUNK):
            yield self._body[start : start + CHUNK]


def ours(body: bytes) -> int:
    async def run() -> int:
        parser = _AnnotatedCsv(typed=True)
        count = 0
        async with aclosing(iter_lines(_Chunks(body))) as lines:  # type: ignore[arg-type]
            async for line in lines:
                if parser.feed(line.decode()) is not None:
                    count += 1
        return count

    return asyncio.run(run())


def library_stream(body: bytes) -> int:
    parser = FluxCsvParser(io.BytesIO(body), FluxSerializationMode.stream)
    return sum(1 for _ in parser.generator())


def library_tables(body: bytes) -> int:
    parser = FluxCsvParser(io.BytesIO(body), FluxSerializationMode.tables)
    for _ in parser.generator():
        pass
    return sum(len(table.records) for table in parser.tables)


def measure(parse: Callable[[bytes], int], body: bytes, repeat: int) -> tuple[float, int, int]:
    """Best wall time, rows parsed, and peak traced memory above the answer (bytes)."""
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        rows = parse(body)
        best = min(best, time.perf_counter() - began)
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    parse(body)
    peak = tracemalloc.get_traced_memory()[1] - baseline
    tracemalloc.stop()
    return best, rows, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {sys.version.split()[0]}, "
        f"influxdb-client {influxdb_client.__version__}, {TABLES} tables, best of {args.repeat}"
    )
    contenders = {
        "ours (typed rows)": ours,
        "library stream": library_stream,
        "library tables": library_tables,
    }
    for rows in args.rows:
        body = answer(rows)
        print(f"\n{rows:,} rows, {len(body) / 2**20:.1f} MiB of annotated CSV")
        results = {name: measure(parse, body, args.repeat) for name, parse in contenders.items()}
        base_time, _, base_peak = results["ours (typed rows)"]
        for name, (seconds, parsed, peak) in results.items():
            print(
                f"  {name:<18} {parsed / seconds:>11,.0f} rows/s  {seconds:7.2f} s  "
                f"peak {peak / 2**20:8.1f} MiB  "
                f"(time x{seconds / base_time:.2f}, memory x{peak / max(base_peak, 1):.1f} of ours)"
            )


if __name__ == "__main__":
    main()
