"""Spool benchmark: executor hops and wall time per segment written and read back.

Every hop from the event loop to a worker thread and back costs a queue round trip, and on a
busy Home Assistant the default executor's queue is shared with every other integration. The
spool used to make one aiofiles call, so one hop, per file step (open, write, flush, fsync,
close, rename on write; open, read, close on read); now a segment is written, or read and
checked, in one worker job. Both run here side by side, in alternating rounds, on the same
disk: ``StepwiseSpool`` below keeps the earlier code only as the reference.

Hops are counted by wrapping the running loop's ``run_in_executor``, which aiofiles and
``aiofiles.os.wrap`` both go through. Each round appends ``--segments`` segments of
``--lines`` spooled lines (the live writer's batch is 5,000), reads every one back and
removes it, first with an idle executor, then with one kept busy by ``--busy`` tasks that
each keep submitting 1 ms jobs (other work queued ahead of every hop).

    .venv/bin/python -m benchmarks.spool_hops
    .venv/bin/python -m benchmarks.spool_hops --segments 100 --lines 5000 --dir /var/tmp
"""

import argparse
import asyncio
from collections.abc import Callable
import concurrent.futures
import contextlib
from dataclasses import dataclass, field
import os
from pathlib import Path
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

import aiofiles
import aiofiles.os

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from custom_components.ha_ingestor.engine.spool import (  # noqa: E402
    Segment,
    Spool,
    SpoolUnavailable,
    check_body,
)

_fsync = aiofiles.os.wrap(os.fsync)


class StepwiseSpool(Spool):
    """The spool's segment write and read as they were before: one executor hop per step."""

    async def _write(self, segment: Segment, body: bytes) -> None:
        final = self.directory / segment.name
        temp = final.with_name(segment.name + ".tmp")
        try:
            async with aiofiles.open(temp, "wb") as file:
                await file.write(body)
                await file.flush()
                await _fsync(file.fileno())
            await aiofiles.os.replace(temp, final)
        except OSError as err:
            with contextlib.suppress(OSError):
                await aiofiles.os.remove(temp)
            raise SpoolUnavailable(f"cannot write to spool {self.directory}: {err}") from err

    async def read(self, segment: Segment) -> bytes:
        try:
            async with aiofiles.open(self.directory / segment.name, "rb") as file:
                body: bytes = await file.read()
        except OSError as err:
            raise SpoolUnavailable(f"cannot read spool segment {segment.name}: {err}") from err
        if segment.crc is None and len(body) > 1 << 16:
            await asyncio.get_running_loop().run_in_executor(None, check_body, segment, body)
        else:
            check_body(segment, body)
        return body


IMPLEMENTATIONS: dict[str, Callable[[Path], Spool]] = {
    "before (a hop per step)": StepwiseSpool,
    "after (one job per segment)": Spool,
}


@dataclass
class Figures:
    """What one implementation did in one executor condition, over every round."""

    append_s: list[float] = field(default_factory=list)
    read_s: list[float] = field(default_factory=list)
    append_hops: list[int] = field(default_factory=list)
    read_hops: list[int] = field(default_factory=list)


class HopCounter:
    """Counts the running loop's run_in_executor calls made by one task (the measuring one,
    not the tasks keeping the executor busy)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.count = 0
        self._loop = loop
        self._real = loop.run_in_executor
        self._task = asyncio.current_task()

        def counting(executor: Any, func: Callable[..., Any], *args: Any) -> Any:
            if asyncio.current_task() is self._task:
                self.count += 1
            return self._real(executor, func, *args)

        loop.run_in_executor = counting  # type: ignore[method-assign]

    def restore(self) -> None:
        self._loop.run_in_executor = self._real  # type: ignore[method-assign]


def body_of(lines: int, sequence: int) -> bytes:
    stamp = 1_700_000_000_000_000_000 + sequence * lines
    return b"\n".join(
        b'W,domain=sensor,entity_id=power_%d value=%d.5,friendly_name_str="Power %d" %d'
        % (n % 50, n, n % 50, stamp + n)
        for n in range(lines)
    )


async def one_round(
    make: Callable[[Path], Spool],
    directory: Path,
    bodies: list[bytes],
    *,
    lines: int,
    hops: HopCounter,
    figures: Figures,
) -> None:
    spool = make(directory)
    await spool.open()
    written: list[Segment] = []
    for body in bodies:
        before, start = hops.count, time.perf_counter()
        written.append(await spool.append(body, lines))
        figures.append_s.append(time.perf_counter() - start)
        figures.append_hops.append(hops.count - before)
    for segment, body in zip(written, bodies, strict=True):
        before, start = hops.count, time.perf_counter()
        read = await spool.read(segment)
        figures.read_s.append(time.perf_counter() - start)
        figures.read_hops.append(hops.count - before)
        assert read == body
    for segment in written:
        await spool.remove(segment)
    assert not os.listdir(directory)


async def keep_busy(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        await loop.run_in_executor(None, time.sleep, 0.001)


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.2f}"


def p95_ms(values: list[float]) -> str:
    return f"{statistics.quantiles(values, n=20)[-1] * 1000:7.2f}"


async def run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    # Home Assistant's default executor has many more workers; a small pool makes the
    # queueing a busy one shows visible on a two-core machine.
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=args.workers))
    bodies = [body_of(args.lines, n) for n in range(args.segments)]
    root = Path(tempfile.mkdtemp(prefix="spool-hops-", dir=args.dir))
    results: dict[tuple[str, str], Figures] = {}
    for condition, busy in (
        ("idle executor", 0),
        (f"busy executor ({args.busy} tasks)", args.busy),
    ):
        stop = asyncio.Event()
        loaders = [asyncio.create_task(keep_busy(stop)) for _ in range(busy)]
        hops = HopCounter(loop)
        try:
            for number in range(args.rounds):
                # Alternate the order, so neither implementation always runs on a warm cache.
                order = list(IMPLEMENTATIONS.items())
                if number % 2:
                    order.reverse()
                for name, make in order:
                    figures = results.setdefault((condition, name), Figures())
                    directory = root / f"{number}-{condition[:4]}-{name[:5]}"
                    await one_round(
                        make, directory, bodies, lines=args.lines, hops=hops, figures=figures
                    )
        finally:
            stop.set()
            await asyncio.gather(*loaders)
            hops.restore()
    size = len(bodies[0])
    print(
        f"{args.segments} segments of {args.lines} lines ({size / 1024:.0f} KiB) x {args.rounds}"
        f" rounds, executor of {args.workers} workers, spool in {root.parent}"
    )
    print(
        f"{'condition':<26} {'implementation':<28} {'hops/append':>11} {'hops/read':>9}"
        f" {'append ms p50':>13} {'p95':>7} {'read ms p50':>11} {'p95':>7}"
    )
    for (condition, name), figures in results.items():
        print(
            f"{condition:<26} {name:<28} {statistics.mean(figures.append_hops):11.1f}"
            f" {statistics.mean(figures.read_hops):9.1f}"
            f" {median_ms(figures.append_s):>13} {p95_ms(figures.append_s)}"
            f" {median_ms(figures.read_s):>11} {p95_ms(figures.read_s)}"
        )
    await asyncio.to_thread(shutil.rmtree, root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=50)
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--busy", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--dir", default=None, help="where to spool (a real disk: fsync counts)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
