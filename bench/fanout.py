"""Fan-out: N receivers in one room, one sender; messages per second delivered and latency.

Runs three servers on loopback, one after the other, from this (second) process:
the baseline (bench/baseline_server.py), the service with one worker (in-process broker), and
the service with two workers and Redis pub/sub. Prints each figure and its ratio to the
baseline. Usage: python bench/fanout.py [--receivers 200] [--messages 200] [--redis URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from websockets.asyncio.client import connect

from bench.common import baseline_server, service


async def run(url: str, receivers: int, messages: int, chat: bool) -> dict[str, float]:
    latencies: list[float] = []
    clients = [await connect(url, max_size=None, max_queue=None) for _ in range(receivers)]
    sender = await connect(url)
    try:
        if chat:
            for i, ws in enumerate([*clients, sender]):
                await ws.send(json.dumps({"event": "join", "room": "bench", "nickname": f"n{i}"}))
                while json.loads(await ws.recv())["event"] != "history":
                    pass
        await asyncio.sleep(0.5)
        for ws in clients:  # drain presence frames
            with __import__("contextlib").suppress(TimeoutError):
                while True:
                    await asyncio.wait_for(ws.recv(), 0.05)

        async def receive(ws) -> None:
            got = 0
            while got < messages:
                raw = await ws.recv()
                text = json.loads(raw)["text"] if chat else raw
                if not text.startswith("t="):
                    continue
                latencies.append(time.perf_counter() - float(text[2:]))
                got += 1

        readers = [asyncio.create_task(receive(ws)) for ws in clients]
        started = time.perf_counter()
        for _ in range(messages):
            text = f"t={time.perf_counter()!r}"
            await sender.send(
                json.dumps({"event": "message", "room": "bench", "text": text}) if chat else text
            )
            await asyncio.sleep(0.002)  # a steady 500 messages/s offered
        await asyncio.wait_for(asyncio.gather(*readers), 120)
        elapsed = time.perf_counter() - started
    finally:
        for ws in [*clients, sender]:
            await ws.close()
    latencies.sort()
    return {
        "delivered_per_s": receivers * messages / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--receivers", type=int, default=200)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()

    results = {}
    with baseline_server() as (port, _):
        results["baseline (websockets relay)"] = asyncio.run(
            run(f"ws://127.0.0.1:{port}", args.receivers, args.messages, chat=False)
        )
    with service(workers=1) as (port, _):
        results["service, 1 worker, in-process"] = asyncio.run(
            run(f"ws://127.0.0.1:{port}/ws/chat", args.receivers, args.messages, chat=True)
        )
    with service(workers=2, redis_url=args.redis) as (port, _):
        results["service, 2 workers, Redis"] = asyncio.run(
            run(f"ws://127.0.0.1:{port}/ws/chat", args.receivers, args.messages, chat=True)
        )

    base = results["baseline (websockets relay)"]["delivered_per_s"]
    print(f"fan-out: {args.receivers} receivers x {args.messages} messages, 500 msg/s offered")
    for name, figures in results.items():
        print(
            f"  {name:32s} {figures['delivered_per_s']:9.0f} delivered/s "
            f"(x{figures['delivered_per_s'] / base:.2f} of baseline)  "
            f"p50 {figures['p50_ms']:7.2f} ms  p99 {figures['p99_ms']:7.2f} ms"
        )


if __name__ == "__main__":
    main()
