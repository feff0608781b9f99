"""Read what a legacy database holds (domains and entities per measurement) for translations."""

import asyncio

from .engine.influx import InfluxClient
from .translation.query import DOMAIN, ENTITY_ID, LegacyCatalog, looks_like_entity_id

# SHOW TAG VALUES queries in flight at once.
CONCURRENT_READS = 4


async def async_read_catalog(client: InfluxClient, database: str | None = None) -> LegacyCatalog:
    """The domains and object ids of every legacy measurement that may hold several entities.

    Entity id measurements (``sensor.kitchen``) are left out: their name says their domain.
    Measurements without a ``domain`` tag (not written in the legacy layout) are left out.
    Raises the client's InfluxError when the server cannot be read.
    """
    names = [name for name in await client.measurements(database) if not looks_like_entity_id(name)]
    slots = asyncio.Semaphore(CONCURRENT_READS)

    async def read(name: str) -> tuple[str, list[str], list[str]]:
        async with slots:
            domains = await client.tag_values(DOMAIN, name, database)
            object_ids = await client.tag_values(ENTITY_ID, name, database) if domains else []
        return name, domains, object_ids

    found = await asyncio.gather(*(read(name) for name in names))
    return LegacyCatalog.from_tag_values(
        {name: domains for name, domains, _ in found if domains},
        {name: object_ids for name, domains, object_ids in found if domains},
    )
