"""The compose deployment: `deploy/compose.yaml` is valid against the Compose specification's
JSON schema, and nginx, started from `deploy/nginx/default.conf.template` (rendered as nginx's
image renders it), in front of two real services of 2 workers each sharing MariaDB and Redis,
passes REST, a form login and websockets through, and hands the service the client's real
address (`FORWARDED_ALLOW_HOPS=1`). No Docker engine runs here; nginx is Debian's."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from string import Template

import httpx
import pytest
import yaml
from websockets.asyncio.client import connect

from tests.conftest import REDIS_URL
from tests.e2e.server import PROJECT_ROOT, free_port, prepare_deployment, run_server
from tests.waiting import answers, poll

COMPOSE = PROJECT_ROOT / "deploy" / "compose.yaml"
SITE_TEMPLATE = PROJECT_ROOT / "deploy" / "nginx" / "default.conf.template"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CLIENT_ADDRESS = "127.0.0.5"  # the test's client: not the address nginx connects from
ADMIN = ("proxy-admin", "proxy-admin-password")


def assert_valid_compose(path: Path) -> None:
    """`path` is valid against the Compose specification's JSON schema."""
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", path],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_follows_the_compose_specification() -> None:
    assert_valid_compose(COMPOSE)


SENTINEL_COMPOSE = PROJECT_ROOT / "deploy" / "compose.sentinel.yaml"


def test_the_sentinel_variant_follows_the_specification_and_the_settings() -> None:
    """deploy/compose.sentinel.yaml (an override of compose.yaml): valid Compose; its replicas'
    merged environment is a valid Sentinel configuration of the service; the sentinels watch
    the master the service names, with a majority quorum."""
    assert_valid_compose(SENTINEL_COMPOSE)
    from app.settings import Settings
    from tests.conftest import TEST_SECRET_KEY

    base = yaml.safe_load(COMPOSE.read_text())["services"]
    override = yaml.safe_load(SENTINEL_COMPOSE.read_text())["services"]
    for name in ("app-1", "app-2", "migrate"):
        environment = {**base[name]["environment"], **override[name]["environment"]}
        environment["DATABASE_URL"] = "mysql+aiomysql://quart:pw@mysql:3306/quart"
        settings = Settings(
            **{k.lower(): v for k, v in environment.items()}, secret_key=TEST_SECRET_KEY
        )
        assert not settings.redis_url and settings.redis_configured
    sentinels = [override[f"sentinel-{i}"] for i in (1, 2, 3)]
    hosts = {address.split(":")[0] for address in settings.redis_sentinels}
    assert hosts == {"sentinel-1", "sentinel-2", "sentinel-3"}
    for sentinel in sentinels:
        script = sentinel["command"][-1]
        assert f"sentinel monitor {settings.redis_sentinel_master} redis 6379 2" in script
    assert override["redis-replica"]["command"][-3:] == ["--replicaof", "redis", "6379"]
    for name in ("app-1", "app-2"):
        assert set(override[name]["depends_on"]) == {"sentinel-1", "sentinel-2", "sentinel-3"}


def test_compose_deployment_shape() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    replicas = [services["app-1"], services["app-2"]]
    for replica in replicas:
        assert replica["environment"]["WEB_CONCURRENCY"] == "2"
        assert replica["environment"]["FORWARDED_ALLOW_HOPS"] == "1"
        assert "--migrate" not in replica["command"]  # migrations run once, in `migrate`
        assert replica["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "/readyz" in " ".join(replica["healthcheck"]["test"])
    assert services["migrate"]["command"][-1] == "init-db"
    assert services["mysql"]["image"].startswith("mysql:8")
    assert services["redis"]["image"].startswith("redis:7")
    assert "--appendonly" in services["redis"]["command"]
    proxy = services["proxy"]
    assert {dependency["condition"] for dependency in proxy["depends_on"].values()} == {
        "service_healthy"
    }
    mounted = proxy["volumes"][0].split(":")[0]
    assert (COMPOSE.parent / mounted).resolve() == SITE_TEMPLATE


def render_site(listen: str, backends: list[str]) -> str:
    """What nginx's image does with /etc/nginx/templates: envsubst of the given variables."""
    values = {"PROXY_LISTEN": listen, "BACKEND_1": backends[0], "BACKEND_2": backends[1]}
    return Template(SITE_TEMPLATE.read_text()).safe_substitute(values)


def start_nginx(workdir: Path, site: str) -> subprocess.Popen:
    (workdir / "site.conf").write_text(site)
    user = "user root;" if os.geteuid() == 0 else ""  # the test's files are private to it
    temp = " ".join(
        f"{kind}_temp_path {workdir}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (workdir / "nginx.conf").write_text(
        f"{user}\nworker_processes 1;\npid {workdir}/nginx.pid;\n"
        f"error_log {workdir}/error.log warn;\ndaemon off;\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log {workdir}/access.log; {temp} include {workdir}/site.conf; }}\n"
    )
    check = subprocess.run(
        [NGINX, "-t", "-p", workdir, "-c", workdir / "nginx.conf"], capture_output=True
    )
    assert check.returncode == 0, check.stderr.decode()
    return subprocess.Popen(
        [NGINX, "-p", workdir, "-c", workdir / "nginx.conf"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def deployment(tmp_path):
    # The test's proxy speaks plain HTTP, so the session cookie may not be Secure here; in a
    # deployment TLS ends at (or before) the proxy and the production default stays on.
    env = prepare_deployment(
        tmp_path,
        "proxy",
        ADMIN,
        REDIS_URL=REDIS_URL,
        FORWARDED_ALLOW_HOPS="1",
        SESSION_COOKIE_SECURE="false",
    )
    first_dir, second_dir, proxy_dir = (tmp_path / name for name in ("app-1", "app-2", "nginx"))
    for folder in (first_dir, second_dir, proxy_dir):
        folder.mkdir()
    with (
        run_server(first_dir, env, workers=2) as first,
        run_server(second_dir, env, workers=2) as second,
    ):
        port = free_port()
        backends = [server.base_url.removeprefix("http://") for server in (first, second)]
        nginx = start_nginx(proxy_dir, render_site(f"127.0.0.1:{port}", backends))
        try:
            poll(lambda: answers(f"http://127.0.0.1:{port}/healthz"), timeout=10)
            yield f"http://127.0.0.1:{port}", (first, second), proxy_dir
        finally:
            nginx.terminate()
            nginx.wait(10)


def test_rest_login_and_websockets_through_nginx(deployment) -> None:
    base, (first, second), proxy_dir = deployment
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS)
    with httpx.Client(base_url=base, transport=transport, timeout=10) as client:
        created = client.post("/api/v1/tag", json={"name": "proxied"}, auth=ADMIN)
        assert created.status_code == 200, created.text
        for _ in range(6):  # round robin: both replicas answer
            assert client.get("/api/v1/tag").json()["data"][0]["name"] == "proxied"
        spoofed = client.get("/api/v1/tag", headers={"X-Forwarded-For": "203.0.113.9"})
        assert spoofed.status_code == 200

        login = client.post(
            "/login", json={"name": ADMIN[0], "password": ADMIN[1]}, headers={"Origin": base}
        )
        assert login.status_code == 200, login.text
        me = client.get("/api/v1/me")
        assert me.status_code == 200 and me.json()["data"]["name"] == ADMIN[0]
        logout = client.post("/logout", headers={"Origin": base})
        assert logout.status_code in (200, 204, 302, 303)
        assert client.get("/api/v1/me").status_code == 401

    # The real client address reached the service, on both replicas; a spoofed one did not.
    logs = first.log() + second.log()
    for server in (first, second):
        assert f"client={CLIENT_ADDRESS}" in server.log()
    assert "client=203.0.113.9" not in logs
    # Every proxied request (the readiness probes came directly, from 127.0.0.1).
    proxied = re.findall(rf"(GET|POST) /api/v1/tag \d+ .* client={CLIENT_ADDRESS}\n", logs)
    assert sorted(proxied) == ["GET"] * 7 + ["POST"]

    async def chat() -> None:
        url = base.replace("http://", "ws://") + "/ws/chat"
        local = {"local_addr": (CLIENT_ADDRESS, 0)}
        async with connect(url, **local) as ann, connect(url, **local) as bob:
            for ws, name in ((ann, "ann"), (bob, "bob")):
                await ws.send(json.dumps({"event": "join", "room": "proxy", "nickname": name}))
                assert await expect(ws, "presence_state")
                assert await expect(ws, "history")
            await bob.send(json.dumps({"event": "message", "room": "proxy", "text": "via nginx"}))
            message = await expect(ann, "message")
            assert message["text"] == "via nginx" and message["from"] == "bob"

    asyncio.run(chat())
    # nginx alternates replicas: the two websockets were served by different services.
    opened = [server.log().count("websocket /ws/chat opened") for server in (first, second)]
    assert opened == [1, 1], opened
    upgrades = (proxy_dir / "access.log").read_text().count('"GET /ws/chat HTTP/1.1" 101')
    assert upgrades == 2


def test_a_replica_that_goes_away_is_skipped(deployment) -> None:
    base, (first, second), _ = deployment
    assert second.stop() == 0
    with httpx.Client(base_url=base, timeout=10) as client:
        statuses = [client.get("/api/v1/tag").status_code for _ in range(10)]
    assert statuses == [200] * 10  # retried on, then routed to, the replica that is up


async def expect(ws, event: str, timeout: float = 5) -> dict:
    """The next frame of type `event`, skipping presence updates."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame.get("event") == event:
            return frame
        assert frame.get("event") in ("presence_diff", "presence_state"), frame
