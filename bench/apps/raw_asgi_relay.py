"""The floor of a websocket relay on Hypercorn: a raw ASGI app that publishes each text frame on
a Redis channel and sends every message of that channel to each of its worker's websockets (the
service's topology: several workers, Redis pub/sub between them), with no framework, no queue
and no JSON. Set BENCH_REDIS_URL; the channel is per process group."""

import asyncio
import os

from redis.asyncio import Redis

CHANNEL = f"bench-raw-relay-{os.getpgrp()}"
clients: set = set()
state: dict = {}


async def _listen(redis: Redis) -> None:
    async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(CHANNEL)
        state["subscribed"].set()
        async for message in pubsub.listen():
            text = message["data"].decode()
            for send in list(clients):
                try:
                    await send({"type": "websocket.send", "text": text})
                except Exception:  # a client that left meanwhile
                    clients.discard(send)


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                redis = Redis.from_url(os.environ["BENCH_REDIS_URL"])
                state["redis"] = redis
                state["subscribed"] = asyncio.Event()
                state["listener"] = asyncio.create_task(_listen(redis))
                await state["subscribed"].wait()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                state["listener"].cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    clients.add(send)
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await state["redis"].publish(CHANNEL, message["text"])
    finally:
        clients.discard(send)
