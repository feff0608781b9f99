"""The HTTP side both clients share: reading streamed answers, and what a failed request means."""

from collections.abc import AsyncIterator, Iterator
import contextlib

import aiohttp

from .errors import connection_error


@contextlib.contextmanager
def reaching_server() -> Iterator[None]:
    """Turn aiohttp's and timeout errors inside into the CannotConnect they mean."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as err:
        raise connection_error(err) from err


async def iter_lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Split a chunked answer into lines (blank ones included) without aiohttp's line limit."""
    parts: list[bytes] = []
    async for block in content.iter_any():
        start = 0
        while (end := block.find(b"\n", start)) >= 0:
            parts.append(block[start:end])
            line = b"".join(parts)
            parts.clear()
            yield line
            start = end + 1
        parts.append(block[start:])
    if parts and (line := b"".join(parts)):
        yield line
