"""Redis Cluster: 2 workers on a cluster of 3 masters of the test's own (free ports, created with
`redis-cli --cluster create`): chat across workers with recovery, chat traffic spread over the
nodes, presence, the credential limit and the scheduler (its job store on MariaDB)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from datetime import datetime

import httpx
import pytest
from websockets.asyncio.client import connect

from app.keyspace import Keyspace
from tests.e2e.dependencies import own_redis_cluster, redis_cli
from tests.e2e.server import (
    add_tick_job,
    assert_presence_and_credential_limit,
    prepare_deployment,
    run_server,
)
from tests.e2e.test_websockets import opened_by_worker, recv_json, ws_url
from tests.waiting import eventually, poll_for

ADMIN = ("root", "cluster-admin-password")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with own_redis_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture(scope="module")
def server(cluster, tmp_path_factory):
    env = prepare_deployment(
        tmp_path_factory.mktemp("cluster-setup"),
        "cluster",
        ADMIN,
        REDIS_CLUSTER_NODES=cluster.node_addresses,
        SCHEDULER_ENABLED="true",
        SCHEDULER_LEASE_SECONDS="3",
        AUTH_RATE_LIMIT="5/minute",
    )
    with run_server(tmp_path_factory.mktemp("cluster-server"), env, workers=2) as running:
        yield running


def test_chat_across_workers_with_recovery_spread_over_the_nodes(server, cluster) -> None:
    """Clients on both workers in 8 rooms; every message reaches every member; a client that
    left gets exactly what it missed on rejoining with `since`. The rooms' traffic runs on
    more than one node, and every node holds some of the hub's subscribed shards."""
    marker = f"cluster-{time.monotonic_ns()}"
    httpx.get(f"{server.base_url}/api/v1/tag", headers={"X-Request-ID": marker})
    rooms = [f"room{i}" for i in range(8)]
    before = _calls_per_node(cluster, "evalsha")

    async def scenario() -> None:
        clients = []
        try:
            while len(clients) < 4 or len(opened_by_worker(server.log(), marker)) < 2:
                assert len(clients) < 100, "every connection landed on one worker"
                clients.append(await connect(ws_url(server, "/ws/chat")))
            for room in rooms:
                for i, ws in enumerate(clients):
                    await join_room(ws, room, f"c{i}")
                await clients[0].send(
                    json.dumps({"event": "message", "room": room, "text": f"to {room}"})
                )
                for ws in clients:
                    while (frame := await recv_json(ws))["event"] != "message":
                        pass
                    assert frame["text"] == f"to {room}"
            # Recovery: the last client leaves room0, misses 3 messages, rejoins with since.
            last = clients[-1]
            await last.send(json.dumps({"event": "leave", "room": "room0"}))
            while (await recv_json(last))["event"] != "left":
                pass
            for n in range(3):
                text = f"missed {n}"
                await clients[0].send(
                    json.dumps({"event": "message", "room": "room0", "text": text})
                )
            while (frame := await recv_json(clients[0])).get("text") != "missed 2":
                pass
            position = (frame["epoch"], frame["offset"])
            await last.send(
                json.dumps(
                    {
                        "event": "join",
                        "room": "room0",
                        "nickname": f"c{len(clients) - 1}",
                        "since": {"epoch": position[0], "offset": position[1] - 3},
                    }
                )
            )
            while (frame := await recv_json(last))["event"] != "history":
                pass
            assert frame["recovered"] is True
            assert [m["text"] for m in frame["messages"]] == ["missed 0", "missed 1", "missed 2"]
        finally:
            for ws in clients:
                await ws.close()

    asyncio.run(scenario())
    after = _calls_per_node(cluster, "evalsha")
    busy = [port for port in after if after[port] > before.get(port, 0)]
    assert len(busy) >= 2, (before, after)  # the rooms' publishes ran on several nodes
    channels = Keyspace().channels()
    subscribed = {node.port: _shard_subscribers(node.port, channels) for node in cluster.nodes}
    assert all(count >= 2 for count in subscribed.values()), subscribed  # both workers, each node


async def join_room(ws, room: str, nickname: str) -> None:
    """Join `room` and read until its `history`; frames of the client's other rooms (a batched
    `presence_diff` of a room joined before) may come first."""
    await ws.send(json.dumps({"event": "join", "room": room, "nickname": nickname}))
    while True:
        frame = await recv_json(ws)
        if frame.get("room") == room and frame["event"] == "history":
            return
        assert frame["event"] != "error", frame


def _calls_per_node(cluster, command: str) -> dict[int, int]:
    calls = {}
    for node in cluster.nodes:
        stats = redis_cli(node.port, "info", "commandstats")
        found = re.search(rf"cmdstat_{command}:calls=(\d+)", stats)
        calls[node.port] = int(found.group(1)) if found else 0
    return calls


def _shard_subscribers(port: int, channels: list[str]) -> int:
    """Subscribers of the hub's shard channels that this node holds (SHARDNUMSUB answers only
    for channels of its own slots)."""
    total = 0
    for channel in channels:
        try:
            reply = redis_cli(port, "pubsub", "shardnumsub", channel).split()
        except Exception:  # MOVED: another node's channel
            continue
        if len(reply) == 2 and reply[1].isdigit():
            total += int(reply[1])
    return total


def test_presence_and_the_credential_limit_on_the_cluster(server) -> None:
    assert_presence_and_credential_limit(server.base_url, ADMIN)


def test_the_scheduler_runs_each_tick_once_on_the_cluster(server) -> None:
    add_tick_job(server.base_url, ADMIN, "cluster-tick")

    def ticks() -> list[datetime]:
        runs = httpx.get(f"{server.base_url}/scheduler/jobs/cluster-tick/runs", auth=ADMIN)
        return [
            datetime.fromisoformat(run["scheduled_time"])
            for run in runs.json()
            if run["outcome"] == "success"
        ]

    seen = poll_for(ticks, lambda times: len(times) >= 4, timeout=30)
    assert max(Counter(seen).values()) == 1
    info = httpx.get(f"{server.base_url}/scheduler", auth=ADMIN).json()
    assert info["leader"]


def test_a_fresh_worker_subscribes_before_any_command(cluster) -> None:
    """A worker's first use of the cluster may be its subscription: the shards' nodes come from
    the slot map, which the broker fills first (without it: SlotNotCoveredError forever)."""
    from app.realtime.broker import RedisBroker
    from app.redis_client import create_redis
    from tests.conftest import make_settings

    async def scenario() -> list:
        settings = make_settings("sqlite://", redis_cluster_nodes=cluster.node_addresses)
        listening, publishing = create_redis(settings), create_redis(settings)
        received: list = []
        broker = RedisBroker(listening, Keyspace(prefix="fresh:"))
        try:
            await broker.start(received.append)
            sender = RedisBroker(publishing, Keyspace(prefix="fresh:"))
            for room in ("a", "b", "c", "d"):
                await sender.publish(
                    {"to": {"kind": "room", "room": room}, "frame": room, "skip": None}
                )

            async def all_arrived() -> bool:
                return len(received) == 4

            await eventually(all_arrived, timeout=10)
        finally:
            await broker.close()
            await listening.aclose()
            await publishing.aclose()
        return received

    assert sorted(message["frame"] for message in asyncio.run(scenario())) == ["a", "b", "c", "d"]
