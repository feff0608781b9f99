"""Reading streamed HTTP answers line by line."""

from collections.abc import AsyncIterator

import aiohttp


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
