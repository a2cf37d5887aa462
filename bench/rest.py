"""REST: the service against the Flask original, a bare Quart route and a raw ASGI app, with
the same rows in the same MariaDB; and the service's event-loop lag under that load.

Each route is loaded by wrk for `seconds`, in `runs` rounds that interleave the servers (so a
slow minute of the machine hits every server alike); a figure is the median of its rounds.
"""

from __future__ import annotations

import base64
import secrets
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from bench import http_load
from bench.apps import flask_original
from bench.databases import sync_url
from bench.report import Row, Samples
from bench.servers import ADMIN_NAME, ADMIN_PASSWORD, Server

USERS = 100
BLOGS = 500
BODY_CHARACTERS = 200
TAGS = 10


@dataclass
class RestSetup:
    service: Server
    service_asyncmy: Server  # the same service and database, on the asyncmy driver
    flask: Server
    bare_quart: Server
    raw_asgi: Server
    service_user_id: str
    flask_user_id: str
    token: str


def seed_service(url: str) -> str:
    """The service's rows (the schema is migrated already): 100 users, 10 tags, 500 blogs
    with 2 tags and a 200-character body each; returns the first user's id. Seeded once: a
    second call (another suite of the same run) finds them."""
    from sqlalchemy import select

    from app.models import Blog, Tag, User

    engine = create_engine(sync_url(url))
    with Session(engine) as session:
        seeded = session.scalar(select(User.id).where(User.name == "user0"))
        if seeded is not None:
            engine.dispose()
            return str(seeded)
        users = [User(name=f"user{i}", role=0) for i in range(USERS)]
        tags = [Tag(name=f"tag{i}") for i in range(TAGS)]
        session.add_all([*users, *tags])
        for i in range(BLOGS):
            session.add(
                Blog(
                    title=f"blog {i}",
                    context="x" * BODY_CHARACTERS,
                    owner=users[i % USERS],
                    tags=[tags[i % TAGS], tags[(i + 1) % TAGS]],
                )
            )
        session.commit()
        first = users[0].id
    engine.dispose()
    return first


def seed_flask(url: str) -> str:
    return flask_original.seed(sync_url(url), USERS, BLOGS, BODY_CHARACTERS)


def issue_token(service: Server) -> str:
    basic = base64.b64encode(f"{ADMIN_NAME}:{ADMIN_PASSWORD}".encode()).decode()
    request = urllib.request.Request(
        f"{service.http}/api/v1/tokens", method="POST", headers={"Authorization": f"Basic {basic}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        import json

        return str(json.load(response)["data"]["token"])


def scrape_loop_lag(service: Server) -> dict[float, float]:
    """The service's `event_loop_lag_seconds` histogram: cumulative count per bucket bound."""
    with urllib.request.urlopen(f"{service.http}/metrics", timeout=10) as response:
        body = response.read().decode()
    buckets: dict[float, float] = {}
    for line in body.splitlines():
        if line.startswith("event_loop_lag_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.split()[-1])
    return buckets


def lag_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The smallest bucket bound (seconds) under which a share `q` of the samples taken between
    the two scrapes fell."""
    deltas = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = deltas.get(float("inf"), 0.0)
    if total <= 0:
        return float("nan")
    for bound, count in deltas.items():
        if count >= q * total:
            return bound
    return float("inf")


@dataclass
class Probe:
    """One route of one server under load."""

    key: str
    url: Callable[[RestSetup], str]
    headers: Callable[[RestSetup], dict[str, str]] = lambda _s: {}
    post_user: bool = False
    connections: int | None = None

    def server(self, setup: RestSetup) -> Server | None:
        """The service this probe loads (its loop lag is measured), or None for a baseline."""
        if self.key.endswith("asyncmy"):
            return setup.service_asyncmy
        return setup.service if self.key.startswith("service") else None


def probes() -> list[Probe]:
    def bearer(s: RestSetup) -> dict[str, str]:
        return {"Authorization": f"Bearer {s.token}"}

    return [
        Probe("service user", lambda s: f"{s.service.http}/api/v1/user/{s.service_user_id}"),
        Probe("flask user", lambda s: f"{s.flask.http}/api/v1/user/{s.flask_user_id}"),
        Probe("quart user", lambda s: f"{s.bare_quart.http}/api/v1/user/{s.service_user_id}"),
        Probe("quart db user", lambda s: f"{s.bare_quart.http}/db/user/{s.service_user_id}"),
        Probe(
            "service user bearer",
            lambda s: f"{s.service.http}/api/v1/user/{s.service_user_id}",
            headers=bearer,
        ),
        Probe("service healthz", lambda s: f"{s.service.http}/healthz"),
        Probe("quart healthz", lambda s: f"{s.bare_quart.http}/healthz"),
        Probe("asgi hello", lambda s: f"{s.raw_asgi.http}/"),
        Probe("service blogs", lambda s: f"{s.service.http}/api/v1/blog", connections=16),
        Probe(
            "service blogs asyncmy",
            lambda s: f"{s.service_asyncmy.http}/api/v1/blog",
            connections=16,
        ),
        Probe(
            "service user asyncmy",
            lambda s: f"{s.service_asyncmy.http}/api/v1/user/{s.service_user_id}",
        ),
        Probe("flask blogs", lambda s: f"{s.flask.http}/api/v1/blog", connections=16),
        Probe(
            "service post user",
            lambda s: f"{s.service.http}/api/v1/user",
            headers=bearer,
            post_user=True,
        ),
        Probe("flask post user", lambda s: f"{s.flask.http}/api/v1/user", post_user=True),
    ]


# The REST rows of the table: (workload, probe, reference name, reference probe, target).
# Targets (issue 18): the service's cost on top of its floor on the same server settings.
RATE_ROWS = [
    ("GET user by id", "service user", "bare Quart + 1 Core query", "quart db user", ">= 0.85"),
    ("GET user by id", "service user", "Flask original", "flask user", ""),
    ("GET user by id", "service user", "bare Quart route", "quart user", ""),
    ("GET user by id, asyncmy driver", "service user asyncmy", "Flask original", "flask user", ""),
    ("GET /healthz", "service healthz", "bare Quart route", "quart healthz", ""),
    ("GET /healthz", "service healthz", "raw ASGI hello", "asgi hello", ""),
    (
        "GET user by id, Bearer",
        "service user bearer",
        "same route anonymous",
        "service user",
        ">= 0.9",
    ),
    ("GET blog list (500 rows)", "service blogs", "Flask original", "flask blogs", ""),
    (
        "GET blog list, asyncmy driver",
        "service blogs asyncmy",
        "same, aiomysql (default)",
        "service blogs",
        "",
    ),
    ("POST user (Bearer)", "service post user", "Flask original", "flask post user", ""),
]
LAG_ROWS = [
    ("GET user by id", "service user"),
    ("GET user by id, Bearer", "service user bearer"),
    ("GET /healthz", "service healthz"),
    ("POST user", "service post user"),
    ("GET blog list (500 rows)", "service blogs"),
    ("GET blog list, asyncmy driver", "service blogs asyncmy"),
]


def measure(
    setup: RestSetup, *, runs: int, seconds: float, connections: int, log: Callable[[str], None]
) -> list[Row]:
    """Load every probe `runs` times, interleaved; returns the table's REST rows."""
    samples = {probe.key: Samples() for probe in probes()}
    errors: dict[str, int] = {}
    # Loop-lag histogram deltas of the server under load, summed over the rounds, per probe.
    lag: dict[str, dict[float, float]] = {}
    run_name = secrets.token_hex(3)
    for round_number in range(runs):
        for probe in probes():
            server = probe.server(setup)
            before = scrape_loop_lag(server) if server is not None else {}
            result = http_load.run(
                probe.url(setup),
                seconds=seconds,
                connections=probe.connections or connections,
                headers=probe.headers(setup),
                post_user_run=f"{run_name}r{round_number}" if probe.post_user else None,
            )
            if server is not None:
                after = scrape_loop_lag(server)
                sums = lag.setdefault(probe.key, {})
                for bound, count in after.items():
                    sums[bound] = sums.get(bound, 0.0) + count - before.get(bound, 0.0)
            samples[probe.key].add(result.requests_per_second)
            errors[probe.key] = errors.get(probe.key, 0) + result.errors
            log(
                f"  round {round_number + 1}/{runs} {probe.key:22s} "
                f"{result.requests_per_second:9.1f} req/s  p99 {result.p99_ms:8.1f} ms"
                + (f"  {result.errors} errors" if result.errors else "")
            )
    failed = {key: count for key, count in errors.items() if count}
    if failed:
        raise RuntimeError(f"requests failed under load (non-2xx, socket errors): {failed}")

    rows = [
        Row(
            workload,
            samples[key].median,
            "req/s",
            reference_name,
            samples[reference].median,
            target,
            samples[key].load,
        )
        for workload, key, reference_name, reference, target in RATE_ROWS
    ]
    load = samples["service user"].load
    for label, key in LAG_ROWS:
        rows.append(
            Row(
                f"loop lag p99 under {label}",
                lag_quantile({}, lag[key], 0.99) * 1000,
                "ms (bucket bound)",
                target="<= 20",
                load=samples[key].load,
            )
        )
    whole: dict[float, float] = {}
    for key, sums in lag.items():
        if not key.endswith("asyncmy"):  # the default service only
            for bound, count in sums.items():
                whole[bound] = whole.get(bound, 0.0) + count
    rows += [
        Row(
            "loop lag p99, whole REST load",
            lag_quantile({}, whole, 0.99) * 1000,
            "ms (bucket bound)",
            target="<= 20",
            load=load,
        ),
        Row(
            "loop lag max, whole REST load",
            lag_quantile({}, whole, 1.0) * 1000,
            "ms (bucket bound)",
            load=load,
        ),
    ]
    return rows
