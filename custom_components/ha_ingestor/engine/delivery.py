"""Writing line protocol so that refused points are found: the one halving rule at work.

The live writer sends its batches through :func:`write_halving`; it knows nothing of retries,
so each caller wraps ``write`` in its own (the backfill in ``engine.retry.call_with_retry``).
"""

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Self

from .influx.errors import PointsRejected
from .line_protocol import split_lines

type Write = Callable[[bytes], Awaitable[None]]


@dataclass(slots=True)
class Chunk:
    """Lines that go to the server in one write.

    ``lines`` is None when only the body is known (a segment read from the spool): it is
    split into lines only if the server refuses it. ``start`` is the index of the first line
    in what the caller wrote, so a caller can tell which of its lines a refused chunk holds.
    """

    body: bytes
    points: int
    lines: Sequence[bytes] | None = None
    start: int = 0

    @classmethod
    def of(cls, lines: Sequence[bytes], start: int = 0) -> Self:
        return cls(b"\n".join(lines), len(lines), lines, start)


async def _split(body: bytes) -> Sequence[bytes]:
    return split_lines(body)


async def write_halving(
    chunks: deque[Chunk],
    write: Write,
    *,
    written: Callable[[Chunk], object],
    refused: Callable[[Chunk, PointsRejected], Awaitable[object]],
    lines_of: Callable[[bytes], Awaitable[Sequence[bytes]]] = _split,
) -> None:
    """Write ``chunks`` front to back, one write each.

    A chunk the server refuses is replaced by its halves (:meth:`PointsRejected.halves`) until
    the refused lines stand alone; ``refused`` then gets each chunk all of whose lines were
    refused (with its ``lines``), ``written`` each chunk that went in. The valid points of a
    refused write are stored anyway, so sending them again in a half is harmless.

    A chunk leaves ``chunks`` once it is written or refused: when ``write`` raises anything
    but PointsRejected, the error propagates and ``chunks`` holds exactly what is left to send.
    ``lines_of`` splits a body whose lines are not known (by default on the spot).
    """
    while chunks:
        chunk = chunks[0]
        try:
            await write(chunk.body)
        except PointsRejected as err:
            lines = chunk.lines
            if lines is None:
                lines = await lines_of(chunk.body)
            chunks.popleft()
            if (halves := err.halves(lines)) is None:
                await refused(Chunk(chunk.body, chunk.points, lines, chunk.start), err)
                continue
            first, second = halves
            chunks.appendleft(Chunk.of(second, chunk.start + len(first)))
            chunks.appendleft(Chunk.of(first, chunk.start))
            continue
        chunks.popleft()
        written(chunk)
