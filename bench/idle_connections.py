"""Memory per idle websocket: resident memory of the server before and after N connections.

Baseline: bench/baseline_server.py without compression (the reference of the ratios), and with
permessage-deflate for comparison, measured the same way in the same run.
Usage: python bench/idle_connections.py [--connections 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from websockets.asyncio.client import connect

from bench.common import baseline_server, service, tree_rss


async def hold(url: str, count: int, join: bool, measure) -> int:
    # Warm up: the first connections pay for lazy imports and caches, not for themselves.
    warm = [await connect(url) for _ in range(50)]
    for ws in warm:
        await ws.close()
    await asyncio.sleep(1)
    before = measure()
    clients = []
    for i in range(count):
        ws = await connect(url, open_timeout=60)
        if join:
            await ws.send(
                json.dumps({"event": "join", "room": f"room{i % 50}", "nickname": f"n{i}"})
            )
        clients.append(ws)
    await asyncio.sleep(2)
    after = measure()
    for ws in clients:
        await ws.close()
    return after - before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=2000)
    args = parser.parse_args()
    n = args.connections
    results = {}
    with baseline_server() as (port, process):
        results["baseline (websockets relay)"] = asyncio.run(
            hold(f"ws://127.0.0.1:{port}", n, False, lambda: tree_rss(process))
        )
    with baseline_server(deflate=True) as (port, process):
        results["baseline with permessage-deflate"] = asyncio.run(
            hold(f"ws://127.0.0.1:{port}", n, False, lambda: tree_rss(process))
        )
    with service(workers=1) as (port, process):
        time.sleep(1)
        results["service /ws/chat, joined a room"] = asyncio.run(
            hold(f"ws://127.0.0.1:{port}/ws/chat", n, True, lambda: tree_rss(process))
        )
    base = results["baseline (websockets relay)"] / n
    print(f"idle connections: {n}")
    for name, grown in results.items():
        per = grown / n
        print(f"  {name:34s} {per / 1024:7.1f} KiB per connection (x{per / base:.2f} of baseline)")


if __name__ == "__main__":
    main()
