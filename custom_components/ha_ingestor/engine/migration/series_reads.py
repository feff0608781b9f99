"""Reading chosen entities' stored points from both layouts, as the backfill copies them and
the validation compares them. No Home Assistant in here.
"""

from collections.abc import AsyncIterator, Callable, Collection, Iterable

from ..influx import InfluxClient, SeriesBlock, TagFilter
from ..line_protocol import Point
from .discovery import legacy_entity_id


async def legacy_blocks(
    client: InfluxClient,
    measurement: str,
    start_ns: int,
    end_ns: int,
    database: str,
    *,
    selects: Callable[[str], bool] | None = None,
    fields: Collection[str] | None = None,
    where: TagFilter | None = None,
) -> AsyncIterator[tuple[str, SeriesBlock]]:
    """The blocks of one legacy measurement's series in [start, end), with their full entity
    ids; series of the optimized layout (in a shared database) and entities ``selects``
    turns down never come up."""
    async for block in client.read_series(
        measurement, start_ns, end_ns, database, fields=fields, where=where
    ):
        entity_id = legacy_entity_id(block.tags)
        if entity_id is None or (selects is not None and not selects(entity_id)):
            continue
        yield entity_id, block


async def optimized_points(
    client: InfluxClient, entities: Iterable[str], start_ns: int, end_ns: int, database: str
) -> AsyncIterator[Point]:
    """Every optimized point of ``entities`` in [start, end): one query per domain."""
    by_domain: dict[str, set[str]] = {}
    for entity in entities:
        by_domain.setdefault(entity.partition(".")[0], set()).add(entity)
    for domain, ids in sorted(by_domain.items()):
        async for point in client.read_points(
            domain, start_ns, end_ns, database, where={"entity_id": ids}
        ):
            yield point
