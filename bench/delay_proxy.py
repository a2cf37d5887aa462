"""A TCP proxy that adds latency: every chunk is forwarded `delay / 2` seconds after it arrived,
in each direction, in order, so a round trip through it takes `delay` seconds more (a database
in another zone). The benchmark puts it between a server and MariaDB.

Usage: python -m bench.delay_proxy LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

CHUNK = 65536


async def _forward(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, one_way: float
) -> None:
    """Copy `reader` to `writer`, each chunk `one_way` seconds after it was read."""
    loop = asyncio.get_running_loop()
    pending: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        try:
            while data := await reader.read(CHUNK):
                pending.put_nowait((loop.time() + one_way, data))
        finally:
            pending.put_nowait((loop.time() + one_way, b""))

    reading = asyncio.create_task(read())
    try:
        while True:
            due, data = await pending.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        reading.cancel()
        with contextlib.suppress(Exception):
            writer.close()


async def serve(listen_port: int, target_host: str, target_port: int, delay: float) -> None:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                target_host, target_port
            )
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _forward(reader, upstream_writer, delay / 2),
            _forward(upstream_reader, writer, delay / 2),
            return_exceptions=True,
        )

    server = await asyncio.start_server(connection, "127.0.0.1", listen_port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    port, host, target, delay_ms = sys.argv[1:5]
    asyncio.run(serve(int(port), host, int(target), float(delay_ms) / 1000))
