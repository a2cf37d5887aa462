"""Conditional GETs (issue 33): what a client that polls with If-None-Match saves. The service's
CPU per answer (its process tree, from /proc) for `GET blog` answered 304 against the same GET
answered 200, interleaved over the rounds, under the same wrk load (c16, 2 workers)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable

from bench import http_load, rest
from bench.report import Row, Samples
from bench.servers import Server, service

CONNECTIONS = 16


def cpu_per_answer_us(server: Server, url: str, seconds: float, headers: dict[str, str]) -> float:
    """wrk on `url`; the server tree's CPU microseconds per answer (any status)."""
    before = server.cpu_seconds()
    result = http_load.run(
        url, seconds=seconds, connections=CONNECTIONS, headers=headers, count_statuses=True
    )
    answers = result.ok + result.other + result.shed
    if result.errors and result.ok:  # a 304 is "other" to wrk; a 200 where a 304 was due is not
        raise RuntimeError(f"unexpected answers at {url}: {result}")
    return (server.cpu_seconds() - before) / max(answers, 1) * 1e6


def first_blog(server: Server) -> tuple[str, str]:
    """The id and ETag of the first seeded blog."""
    with urllib.request.urlopen(f"{server.http}/api/v1/blog?limit=1", timeout=10) as listed:
        blog_id = json.load(listed)["data"][0]["id"]
    with urllib.request.urlopen(f"{server.http}/api/v1/blog/{blog_id}", timeout=10) as one:
        return blog_id, one.headers["ETag"]


def run(
    mysql_url: str, redis_url: str, *, runs: int, seconds: float, log: Callable[[str], None]
) -> list[Row]:
    rest.seed_service(mysql_url)
    full, unchanged = Samples(), Samples()
    with service(mysql_url, redis_url) as server:
        blog_id, etag = first_blog(server)
        url = f"{server.http}/api/v1/blog/{blog_id}"
        http_load.run(url, seconds=1, connections=4)  # warm: pools, caches
        for round_number in range(runs):
            full.add(cpu_per_answer_us(server, url, seconds, {}))
            unchanged.add(cpu_per_answer_us(server, url, seconds, {"If-None-Match": etag}))
            log(
                f"  round {round_number + 1}/{runs} GET blog 200 {full.values[-1]:6.0f} us, "
                f"304 {unchanged.values[-1]:6.0f} us per answer"
            )
    return [
        Row(
            "GET blog, If-None-Match current (304): CPU per answer",
            unchanged.median,
            "us",
            "same GET answered 200",
            full.median,
            "<= 0.5",
            unchanged.load,
        )
    ]
