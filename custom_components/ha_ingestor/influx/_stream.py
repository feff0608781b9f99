"""Reading streamed HTTP answers line by line."""

from collections.abc import AsyncIterator

import aiohttp


async def iter_lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Split a chunked answer into lines without aiohttp's 128 KiB line limit."""
    parts: list[bytes] = []
    async for block in content.iter_any():
        start = 0
        while (end := block.find(b"\n", start)) >= 0:
            parts.append(block[start:end])
            line = b"".join(parts)
            parts.clear()
            if line.strip():
                yield line
            start = end + 1
        parts.append(block[start:])
    if (line := b"".join(parts)).strip():
        yield line
