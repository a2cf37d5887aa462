"""The 17 routes over real HTTP, against Hypercorn with 2 workers sharing the real MariaDB."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.e2e.server import prepare_deployment, run_server

ADMIN_PASSWORD = "e2e-admin-password"


@pytest.fixture(scope="module")
def admin_token(server) -> str:
    """A bearer token of the admin made by `create-admin`, through POST /api/v1/tokens."""
    response = httpx.post(server.base_url + "/api/v1/tokens", auth=("root", ADMIN_PASSWORD))
    assert response.status_code == 200, response.text
    return response.json()["data"]["token"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("rest-e2e")
    env = prepare_deployment(tmp_path, "e2e", ("root", ADMIN_PASSWORD))
    with run_server(tmp_path, env, workers=2) as running:
        yield running
        assert running.stop() == 0


def data(response: httpx.Response, status: int = 200):
    body = response.json()
    assert response.status_code == status, body
    assert body["status"] == "succeed" and body["code"] == 0
    return body["data"]


def error(response: httpx.Response, status: int) -> str:
    body = response.json()
    assert response.status_code == status, body
    assert body["status"] == "failed" and body["code"] == status
    return body["msg"]


def test_all_17_routes(server, admin_token) -> None:
    # No keep-alive: every request is a new connection, so both workers get some of them.
    with httpx.Client(
        base_url=server.base_url + "/api/v1",
        limits=httpx.Limits(max_keepalive_connections=0),
        timeout=10,
        headers={"Authorization": f"Bearer {admin_token}"},
    ) as http:
        alice = data(http.post("/user", json={"name": "alice", "role": 1}))  # 1 POST user
        bob = data(http.post("/user", json={"name": "bob", "role": 0}))
        assert error(http.post("/user", json={"name": "bob", "role": 0}), 409)
        names = [u["name"] for u in data(http.get("/user"))]  # 2 GET users
        assert names == ["root", "alice", "bob"]
        assert data(http.get(f"/user/{bob['id']}")) == bob  # 3 GET user
        bob = data(http.put(f"/user/{bob['id']}", json={"name": "bobby", "role": 0}))  # 4 PUT user
        assert bob["name"] == "bobby"

        python = data(http.post("/tag", json={"name": "pyhton"}))  # 12 POST tag
        python = data(http.put(f"/tag/{python['id']}", json={"name": "python"}))  # 15 PUT tag
        web = data(http.post("/tag", json={"name": "web"}))
        go = data(http.post("/tag", json={"name": "go"}))
        assert data(http.get("/tag")) == [python, web, go]  # 13 GET tags
        assert data(http.get(f"/tag/{web['id']}")) == web  # 14 GET tag

        first = data(
            http.post(
                "/blog",
                json={  # 7 POST blog
                    "title": "Quart",
                    "context": "async",
                    "user_id": alice["id"],
                    "tags": [python["id"], web["id"]],
                },
            )
        )
        assert first["owner"] == alice and first["tags"] == [python, web]
        second = data(
            http.post(
                "/blog",
                json={
                    "title": "Bob's",
                    "context": "hi",
                    "user_id": bob["id"],
                    "tags": [web["id"]],
                },
            )
        )
        assert error(
            http.post(
                "/blog",
                json={
                    "title": "x",
                    "context": "y",
                    "user_id": "no-such-user",
                    "tags": [],
                },
            ),
            400,
        ).startswith("user_id:")
        assert data(http.get("/blog")) == [first, second]  # 8 GET blogs
        assert data(http.get(f"/blog/{first['id']}")) == first  # 9 GET blog

        replaced = data(
            http.put(
                f"/blog/{first['id']}",
                json={  # 10 PUT blog
                    "title": "Quart 2",
                    "context": "more",
                    "tags": [go["id"], python["id"]],
                },
            )
        )
        assert replaced["tags"] == [python, go] and replaced["modify_time"] is not None
        assert data(http.get(f"/blog/{first['id']}")) == replaced

        web_blogs = data(http.get(f"/tag/{web['id']}/blogs"))  # 17 tag blogs
        assert [b["id"] for b in web_blogs["blogs"]] == [second["id"]]
        alice_blogs = data(http.get(f"/user/{alice['id']}/blogs"))  # 6 user blogs
        assert alice_blogs["blogs"] == [replaced]

        assert data(http.delete(f"/tag/{go['id']}")) == "successfully deleted."  # 16 DELETE tag
        assert data(http.get(f"/blog/{first['id']}"))["tags"] == [python]
        assert (
            data(http.delete(f"/blog/{second['id']}")) == "successfully deleted."
        )  # 11 DELETE blog
        assert error(http.get(f"/blog/{second['id']}"), 404) == "Blog's id does not exist."

        assert data(http.delete(f"/user/{alice['id']}")) == "successfully deleted."  # 5 DELETE user
        assert error(http.get(f"/user/{alice['id']}"), 404) == "User's id does not exist."
        assert data(http.get("/blog")) == []  # cascaded
        assert data(http.get(f"/tag/{python['id']}/blogs"))["blogs"] == []
        assert [user["name"] for user in data(http.get("/user"))] == ["root", "bobby"]

        response = http.request("PATCH", "/user")
        assert error(response, 405) and "GET" in response.headers["allow"]


def test_both_workers_serve_requests(server) -> None:
    """Each worker logs its own pid; fresh connections must reach both."""
    import re

    with httpx.Client(
        base_url=server.base_url, limits=httpx.Limits(max_keepalive_connections=0)
    ) as http:
        for _ in range(60):
            assert http.get("/api/v1/tag").status_code == 200
    pids = set(re.findall(r"app\.access \[(\d+)\] GET /api/v1/tag", server.log()))
    assert len(pids) == 2, pids


def test_concurrent_writers_across_workers_keep_names_unique(server, admin_token) -> None:
    """Both workers race to create the same names: exactly one create per name wins."""

    async def race() -> list[int]:
        async with httpx.AsyncClient(
            base_url=server.base_url,
            timeout=10,
            headers={"Authorization": f"Bearer {admin_token}"},
        ) as http:
            responses = await asyncio.gather(
                *[
                    http.post("/api/v1/user", json={"name": f"racer{i % 5}", "role": 0})
                    for i in range(40)
                ]
            )
        return [r.status_code for r in responses]

    statuses = asyncio.run(race())
    assert sorted(set(statuses)) == [200, 409]
    assert statuses.count(200) == 5


def test_websocket_compression_is_off_by_default(server) -> None:
    """WS_COMPRESSION defaults to false: a browser's permessage-deflate offer is declined."""
    from websockets.asyncio.client import connect

    async def extensions() -> str | None:
        url = server.base_url.replace("http://", "ws://") + "/ws/chat"
        async with connect(url, compression="deflate") as ws:  # offers it, as browsers do
            return ws.response.headers.get("Sec-WebSocket-Extensions")

    assert asyncio.run(extensions()) is None
