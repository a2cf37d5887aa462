"""`GET /metrics` from a 2-worker service under a little load: one scrape shows every worker
(prometheus-client multi-process mode), with the route templates, websocket, presence,
database pool and scheduler metrics, behind the optional bearer token."""

from __future__ import annotations

import asyncio
import re

import httpx
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.conftest import REDIS_URL
from tests.e2e.server import prepare_deployment, run_server
from tests.waiting import poll_for

ADMIN = ("metrics-admin", "metrics-admin-password")
METRICS_TOKEN = "metrics-token-for-tests"
REQUESTS = 60


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(
        f"{base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample_name, sample_labels), value in samples.items()
        if sample_name == name and labels.items() <= dict(sample_labels).items()
    )


def scrape_until(base_url: str, until, timeout: float = 20):
    """The first scrape for which `until(samples)` holds."""
    return poll_for(lambda: scrape(base_url), until, timeout)


def test_one_scrape_shows_both_workers(tmp_path) -> None:
    env = prepare_deployment(
        tmp_path,
        "metrics",
        ADMIN,
        REDIS_URL=REDIS_URL,
        METRICS_TOKEN=METRICS_TOKEN,
        SCHEDULER_ENABLED="true",
        SCHEDULER_JOBS='[{"id": "tick", "func": "app.scheduler.jobs:print_test", '
        '"args": ["tick"], "trigger": "interval", "seconds": 1}]',
    )
    with run_server(tmp_path, env, workers=2) as server:
        base = server.base_url
        anonymous = httpx.get(f"{base}/metrics")
        assert anonymous.status_code == 401 and "WWW-Authenticate" in anonymous.headers

        token = httpx.post(f"{base}/api/v1/tokens", auth=ADMIN).json()["data"]["token"]
        me = httpx.get(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        user_id = me.json()["data"]["id"]
        before = scrape(base)
        route = "/api/v1/user/<user_id>"
        for _ in range(REQUESTS):  # a new connection each: the kernel spreads them
            assert httpx.get(f"{base}/api/v1/user/{user_id}").status_code == 200
        assert httpx.get(f"{base}/no/such/path").status_code == 404

        async def chat() -> dict:
            url = base.replace("http", "ws") + "/websocket"
            async with connect(url, origin=base) as first, connect(url, origin=base) as second:
                await first.send("hello from the metrics test")
                assert await second.recv() == "hello from the metrics test"
                assert await first.recv() == "hello from the metrics test"
                return await asyncio.to_thread(
                    scrape_until,
                    base,
                    lambda s: total(s, "websocket_connections", endpoint="relay") == 2,
                )

        during_chat = asyncio.run(chat())
        # A scrape between two runs of the 1 s job: a run's claim holds a connection briefly.
        after = scrape_until(
            base,
            lambda s: (
                total(s, "scheduler_job_runs_total", outcome="success") >= 1
                and total(s, "db_pool_connections_in_use") == 0
            ),
        )

    counted = total(after, "http_requests_total", route=route, method="GET", status="200")
    assert counted - total(before, "http_requests_total", route=route) == REQUESTS
    assert total(after, "http_requests_total", route="<unmatched>", status="404") == 1
    assert total(after, "http_request_duration_seconds_count", route=route) >= REQUESTS
    assert total(after, "http_request_duration_seconds_bucket", route=route, le="+Inf") >= (
        REQUESTS
    )
    served_by = set(re.findall(r"\[(\d+)\] GET /api/v1/user/", server.log()))
    assert len(served_by) == 2, "both workers served the load"

    assert total(during_chat, "websocket_messages_total", endpoint="relay", direction="in") >= 1
    assert total(during_chat, "websocket_messages_total", endpoint="relay", direction="out") >= 2
    assert total(after, "websocket_connections", endpoint="relay") == 0
    assert total(after, "online_users") >= 1  # the admin, marked by its bearer request
    assert total(after, "db_pool_connections_in_use") == 0  # idle: every connection back
    leaders = {
        dict(labels)["pid"]: value
        for (name, labels), value in after.items()
        if name == "scheduler_leader"
    }
    assert sorted(leaders.values()) == [0, 1], leaders  # both workers, exactly one leads
