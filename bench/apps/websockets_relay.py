"""Baseline for the benchmarks: a plain `websockets` server that relays each text frame to every
connected client (no rooms, no JSON, no queues), without compression unless `--deflate` (the
honest floor: per-connection zlib state is a cost, not a feature of the baseline).
Usage: python bench/baseline_server.py PORT [--deflate]"""

import asyncio
import sys

from websockets.asyncio.server import broadcast, serve

CLIENTS = set()


async def handler(websocket) -> None:
    CLIENTS.add(websocket)
    try:
        async for message in websocket:
            broadcast(CLIENTS, message)
    finally:
        CLIENTS.discard(websocket)


async def main(port: int, deflate: bool) -> None:
    compression = "deflate" if deflate else None
    async with serve(handler, "127.0.0.1", port, max_queue=None, compression=compression):
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), "--deflate" in sys.argv[2:]))
