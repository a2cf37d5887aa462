"""Traces from a real service (2 Hypercorn workers, MariaDB, Redis) to an OTLP/HTTP receiver of
the test's own (tests/otlp_receiver.py): a request's trace holds its SQL and Redis spans, a chat
message's publish and its deliveries on both workers share one trace, and a `traceparent` sent
inside a frame is continued."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.conftest import REDIS_URL
from tests.e2e.server import prepare_deployment, run_server
from tests.e2e.test_websockets import join, opened_by_worker, recv_json, ws_url
from tests.otlp_receiver import (
    KIND_CONSUMER,
    KIND_PRODUCER,
    KIND_SERVER,
    OtlpReceiver,
    ReceivedSpan,
    otlp_receiver,
)
from tests.waiting import poll_for

ADMIN_PASSWORD = "trace-admin-password"


@pytest.fixture(scope="module")
def receiver():
    with otlp_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def server(receiver, tmp_path_factory):
    env = prepare_deployment(
        tmp_path_factory.mktemp("trace-setup"),
        "tracing",
        ("root", ADMIN_PASSWORD),
        REDIS_URL=REDIS_URL,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",  # export every 0.1 s, not every 5 s
        OTEL_SERVICE_NAME="quart-framework-test",
    )
    with run_server(tmp_path_factory.mktemp("trace"), env, workers=2) as running:
        yield running


def spans_of(receiver: OtlpReceiver, trace_id: str, until) -> list[ReceivedSpan]:
    try:
        return poll_for(lambda: receiver.in_trace(trace_id), until, timeout=20)
    except AssertionError:
        raise AssertionError(
            f"trace {trace_id}: {receiver.in_trace(trace_id)}; "
            f"{len(receiver.snapshot())} spans in all"
        ) from None


def test_a_request_is_one_trace_with_its_sql_and_redis_spans(server, receiver) -> None:
    token = httpx.post(server.base_url + "/api/v1/tokens", auth=("root", ADMIN_PASSWORD)).json()[
        "data"
    ]["token"]
    user_id = httpx.get(server.base_url + "/api/v1/user", params={"name": "root"}).json()["data"][
        0
    ]["id"]
    response = httpx.get(
        f"{server.base_url}/api/v1/user/{user_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    trace_id = response.headers["X-Request-ID"]  # the request id is the trace id
    assert len(trace_id) == 32 and int(trace_id, 16)

    def complete(spans: list[ReceivedSpan]) -> bool:
        kinds = {span.attributes.get("db.system") for span in spans}
        return any(span.kind == KIND_SERVER for span in spans) and {"mysql", "redis"} <= kinds

    spans = spans_of(receiver, trace_id, complete)
    (http,) = [span for span in spans if span.kind == KIND_SERVER]
    assert http.name.startswith("GET") and http.resource["service.name"] == "quart-framework-test"
    sql = [span for span in spans if span.attributes.get("db.system") == "mysql"]
    commands = [span for span in spans if span.attributes.get("db.system") == "redis"]
    assert any("SELECT" in str(span.attributes.get("db.statement")) for span in sql), sql
    assert any(span.name == "GET" for span in commands), [s.name for s in spans]  # the epoch
    by_id = {span.span_id: span for span in spans}
    for child in sql + commands:  # each reaches the request's span through its parents
        parent = child
        while parent.parent_span_id:
            parent = by_id[parent.parent_span_id]
        assert parent is http
    assert f"id={trace_id}" in server.log()  # the access log line names the trace


def test_a_chat_message_is_one_trace_from_frame_to_both_workers(server, receiver) -> None:
    """Clients are opened until both workers hold some; a message sent with a `traceparent`
    inside its frame continues that trace through the publish to a delivery span on each
    worker, and one sent without starts a trace of its own with the same shape."""
    marker = f"trace-spread-{time.monotonic_ns()}"
    httpx.get(f"{server.base_url}/api/v1/tag", headers={"X-Request-ID": marker})
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)

    async def scenario() -> None:
        clients = []
        try:
            while len(clients) < 4 or len(opened_by_worker(server.log(), marker)) < 2:
                assert len(clients) < 200, "every connection landed on one worker"
                clients.append(await connect(ws_url(server, "/ws/chat")))
            for i, ws in enumerate(clients):
                await join(ws, "traced", f"t{i}")
            for text, extra in (
                ("continued", {"traceparent": f"00-{caller_trace}-{caller_span}-01"}),
                ("own trace", {}),
            ):
                frame = {"event": "message", "room": "traced", "text": text, **extra}
                await clients[0].send(json.dumps(frame))
                for ws in clients:
                    while (received := await recv_json(ws))["event"] != "message":
                        pass
                    assert received["text"] == text and "trace" not in received
        finally:
            for ws in clients:
                await ws.close()

    asyncio.run(scenario())

    def delivered_on_both_workers(spans: list[ReceivedSpan]) -> bool:
        deliveries = [span for span in spans if span.kind == KIND_CONSUMER]
        return len({span.resource["service.instance.id"] for span in deliveries}) == 2

    spans = spans_of(receiver, caller_trace, delivered_on_both_workers)
    (frame_span,) = [span for span in spans if span.name == "WEBSOCKET frame /chat"]
    assert frame_span.parent_span_id == caller_span  # the frame's traceparent is continued
    (publish,) = [span for span in spans if span.kind == KIND_PRODUCER]
    assert publish.name == "publish room/traced" and publish.parent_span_id == frame_span.span_id
    assert any(span.attributes.get("db.system") == "redis" for span in spans)  # the Lua script
    deliveries = [span for span in spans if span.kind == KIND_CONSUMER]
    assert len(deliveries) == 2
    for delivery in deliveries:
        assert delivery.name == "deliver room/traced"
        assert delivery.parent_span_id == publish.span_id
        assert delivery.links == [(caller_trace, publish.span_id)]
        assert delivery.attributes["messaging.batch.message_count"] >= 1
    assert sum(span.attributes["messaging.batch.message_count"] for span in deliveries) >= 4

    # The message sent without a traceparent: a trace of its own, rooted at its frame span
    # (told from the joins' traces by its publish, which runs the room's publish script).
    def message_traces() -> list[list[ReceivedSpan]]:
        traces: dict[str, list[ReceivedSpan]] = {}
        for span in receiver.snapshot():
            if span.trace_id != caller_trace:
                traces.setdefault(span.trace_id, []).append(span)
        found = []
        for spans in traces.values():
            publishes = {span.span_id for span in spans if span.kind == KIND_PRODUCER}
            if any(s.name == "EVALSHA" and s.parent_span_id in publishes for s in spans):
                found.append(spans)
        return found

    (own,) = poll_for(
        message_traces, lambda traces: len(traces) == 1 and delivered_on_both_workers(traces[0])
    )
    (root,) = [span for span in own if not span.parent_span_id]
    assert root.name == "WEBSOCKET frame /chat"
    assert [span.name for span in own if span.kind == KIND_PRODUCER] == ["publish room/traced"]


def test_head_sampling_keeps_whole_traces_and_follows_a_sampled_caller(
    receiver, tmp_path_factory
) -> None:
    """At 50% sampling: a request is traced whole (its SQL and Redis spans) or not at all (no
    orphan statement spans); a caller's sampled `traceparent` is always followed; the request
    id is the trace id either way."""
    env = prepare_deployment(
        tmp_path_factory.mktemp("sampled-setup"),
        "tracing_sampled",
        ("root", ADMIN_PASSWORD),
        REDIS_URL=REDIS_URL,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_SERVICE_NAME="quart-framework-sampled",
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0.5",
    )
    with run_server(tmp_path_factory.mktemp("sampled"), env, workers=1) as server:
        auth = ("root", ADMIN_PASSWORD)
        with httpx.Client(base_url=server.base_url, auth=auth) as client:
            request_ids = [client.get("/api/v1/user").headers["X-Request-ID"] for _ in range(40)]
            caller_trace = secrets.token_hex(16)
            followed = client.get(
                "/api/v1/user",
                headers={"traceparent": f"00-{caller_trace}-{secrets.token_hex(8)}-01"},
            )
        assert followed.headers["X-Request-ID"] == caller_trace
        assert all(len(request_id) == 32 for request_id in request_ids)

        def ours() -> list[ReceivedSpan]:
            return [
                span
                for span in receiver.snapshot()
                if span.resource["service.name"] == "quart-framework-sampled"
            ]

        # Wait for the followed caller's server span: it ends after its response is sent, last
        # of every span here (its SQL spans may come in an earlier batch), and spans are
        # exported in the order they end.
        poll_for(
            ours,
            lambda spans: any(s.trace_id == caller_trace and s.kind == KIND_SERVER for s in spans),
        )
        spans = ours()
        servers = {span.trace_id for span in spans if span.kind == KIND_SERVER}
        listed = {span.trace_id for span in spans if span.name == "GET /api/v1/user"}
        assert caller_trace in listed
        sampled = listed - {caller_trace}
        assert sampled <= set(request_ids)
        assert 5 <= len(sampled) <= 35, len(sampled)  # 40 requests at 50%
        # Every span belongs to a request's trace (the readiness polls' too): none is orphaned.
        orphans = [(s.name, s.parent_span_id) for s in spans if s.trace_id not in servers]
        assert not orphans, orphans
        for trace_id in servers:  # each sampled request's statements are in its trace
            kinds = {s.attributes.get("db.system") for s in spans if s.trace_id == trace_id}
            assert "mysql" in kinds, trace_id


def test_the_memory_monitors_frames_are_not_traced_by_default(server, receiver) -> None:
    """`TRACE_MONITOR_FRAMES` is off: a monitor client's ping, even with a traceparent, makes
    no span, while a chat ping on the same worker right after it does (a worker exports its
    spans in the order they end, so the chat's span arriving means the monitor's would have)."""
    monitor_trace, chat_trace = secrets.token_hex(16), secrets.token_hex(16)

    def worker_of(log: str, path: str, marker: str) -> str | None:
        found = re.findall(rf"\[(\d+)\] websocket {path} opened", log.split(marker, 1)[-1])
        return found[-1] if found else None

    async def ping(ws, trace_id: str) -> None:
        traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
        await ws.send(json.dumps({"event": "ping", "traceparent": traceparent}))
        while (await recv_json(ws))["event"] != "pong":
            pass

    async def scenario() -> None:
        marker = f"monitor-{time.monotonic_ns()}"
        async with httpx.AsyncClient() as client:
            await client.get(f"{server.base_url}/api/v1/tag", headers={"X-Request-ID": marker})
        async with connect(ws_url(server, "/ws")) as monitor:
            await ping(monitor, monitor_trace)
            monitor_worker = worker_of(server.log(), "/ws", marker)
            chats = []
            try:
                while True:
                    assert len(chats) < 50, "no chat connection landed on the monitor's worker"
                    chats.append(await connect(ws_url(server, "/ws/chat")))
                    if worker_of(server.log(), "/ws/chat", marker) == monitor_worker:
                        break
                await ping(chats[-1], chat_trace)
            finally:
                for ws in chats:
                    await ws.close()

    asyncio.run(scenario())
    spans_of(receiver, chat_trace, bool)  # the chat's ping was traced and exported
    assert receiver.in_trace(monitor_trace) == []
