"""write_halving: the one send that isolates refused lines, for the writer and the backfill."""

from collections import deque

import pytest

from custom_components.ha_ingestor.engine.delivery import Chunk, write_halving
from custom_components.ha_ingestor.engine.influx.errors import CannotConnect, PointsRejected
from custom_components.ha_ingestor.engine.line_protocol import split_lines

from .helpers import run_in_own_loop


class Server:
    """Refuses every write holding a line with "bad" (storing the rest, as InfluxDB does)."""

    def __init__(self) -> None:
        self.stored: set[bytes] = set()
        self.writes = 0
        self.down_after: int | None = None

    async def write(self, body: bytes) -> None:
        self.writes += 1
        if self.down_after is not None and self.writes > self.down_after:
            raise CannotConnect("gone")
        lines = split_lines(body)
        self.stored.update(line for line in lines if b"bad" not in line)
        if refused := [line for line in lines if b"bad" in line]:
            raise PointsRejected(f"partial write: dropped={len(refused)}")


LINES = [b"m v=1 1", b"m v=2 2", b"bad v=3 3", b"m v=4 4", b"m v=5 5", b"bad v=6 6", b"m v=7 7"]


def send(server: Server, chunks: deque[Chunk]) -> tuple[list[Chunk], list[Chunk]]:
    written: list[Chunk] = []
    refused: list[Chunk] = []

    async def note_refused(chunk: Chunk, _err: PointsRejected) -> None:
        refused.append(chunk)

    run_in_own_loop(
        write_halving(chunks, server.write, written=written.append, refused=note_refused)
    )
    return written, refused


def test_each_refused_line_ends_up_alone_with_its_index() -> None:
    server = Server()
    written, refused = send(server, deque([Chunk.of(LINES)]))
    assert [(chunk.start, list(chunk.lines or ())) for chunk in refused] == [
        (2, [b"bad v=3 3"]),
        (5, [b"bad v=6 6"]),
    ]
    assert sum(chunk.points for chunk in written) == 5
    assert server.stored == {line for line in LINES if b"bad" not in line}


def test_a_body_without_its_lines_is_split_only_when_refused() -> None:
    server = Server()
    body = b"\n".join(LINES)
    written, refused = send(server, deque([Chunk(body, len(LINES))]))
    assert [chunk.start for chunk in refused] == [2, 5]
    assert sum(chunk.points for chunk in written) == 5


def test_a_write_that_all_of_it_is_refused_is_not_halved() -> None:
    server = Server()
    _, refused = send(server, deque([Chunk.of([b"bad a=1 1", b"bad a=2 2"])]))
    assert server.writes == 1
    assert [chunk.points for chunk in refused] == [2]


def test_an_unreachable_server_leaves_exactly_what_is_still_to_send() -> None:
    server = Server()
    server.down_after = 3
    chunks = deque([Chunk.of(LINES)])
    with pytest.raises(CannotConnect):
        send(server, chunks)
    # Written: all 7 (refused), 0-2 (refused), 0 alone (stored); 1-2 met the outage.
    assert [(chunk.start, list(chunk.lines or ())) for chunk in chunks] == [
        (1, LINES[1:3]),
        (3, LINES[3:]),
    ]
    server.down_after = None
    _, refused = send(server, chunks)
    assert [chunk.start for chunk in refused] == [2, 5]
    assert server.stored == {line for line in LINES if b"bad" not in line}
