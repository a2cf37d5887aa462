"""`Idempotency-Key` on the write routes, on MariaDB and SQLite (app.api.idempotency; the
end-to-end retries across a MariaDB crash are in tests/e2e/test_safe_retries.py)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.api.idempotency import ANONYMOUS, request_fingerprint
from app.errors import IdempotencyInProgressError
from app.models import Blog, IdempotencyRecord, Tag, utcnow
from app.services.idempotency import Claim, StoredAnswer
from app.state import app_state
from tests.helpers import create_tag, create_user, failed, ok


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def count(app, model) -> int:
    async with app_state(app).database.session() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def set_record(app, key: str, **values) -> None:
    async with app_state(app).database.session() as session:
        await session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.idempotency_key == key)
            .values(**values)
        )
        await session.commit()


@pytest.fixture
async def owner(client) -> dict:
    return await create_user(client, "owner", 0)


async def test_a_retry_gets_the_stored_answer_and_nothing_runs_twice(client, app, owner) -> None:
    body = {"title": "T", "context": "C", "user_id": owner["id"], "tags": []}
    first = await client.post("/api/v1/blog", json=body, headers=keyed("k-1"))
    retry = await client.post("/api/v1/blog", json=body, headers=keyed("k-1"))
    assert first.status_code == retry.status_code == 200
    assert await retry.get_data() == await first.get_data()  # byte for byte
    assert retry.headers["Content-Type"] == first.headers["Content-Type"]
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert await count(app, Blog) == 1
    # Another key is another write.
    other = await ok(await client.post("/api/v1/blog", json=body, headers=keyed("k-2")))
    assert other["id"] != (await first.get_json())["data"]["id"]
    assert await count(app, Blog) == 2


async def test_the_same_key_for_another_request_is_422(client, app, owner) -> None:
    body = {"title": "T", "context": "C", "user_id": owner["id"], "tags": []}
    await ok(await client.post("/api/v1/blog", json=body, headers=keyed("k")))
    other_body = await client.post("/api/v1/blog", json={**body, "title": "U"}, headers=keyed("k"))
    assert (await failed(other_body, 422, "POST", "/api/v1/blog")).startswith(
        "Idempotency-Key: already used"
    )
    other_route = await client.post("/api/v1/tag", json={"name": "t"}, headers=keyed("k"))
    await failed(other_route, 422, "POST", "/api/v1/tag")
    assert await count(app, Blog) == 1 and await count(app, Tag) == 0


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "é", "a\tb"])
async def test_malformed_keys_are_400_naming_the_header(client, app, key) -> None:
    response = await client.post("/api/v1/tag", json={"name": "t"}, headers=keyed(key))
    assert (await failed(response, 400, "POST", "/api/v1/tag")).startswith(
        "Idempotency-Key: must be 1 to 255"
    )
    assert await count(app, Tag) == 0


async def test_keys_of_255_characters_of_the_alphabet_work(client) -> None:
    key = ("Az09-_.:~+/=" * 22)[:255]
    await ok(await client.post("/api/v1/tag", json={"name": "t"}, headers=keyed(key)))
    replay = await client.post("/api/v1/tag", json={"name": "t"}, headers=keyed(key))
    assert replay.headers["Idempotent-Replayed"] == "true"


async def test_an_error_answer_is_not_stored_and_a_retry_runs(client, app) -> None:
    await create_user(client, "alice")
    bob = await create_user(client, "bob")
    rename = {"name": "alice", "role": 0}
    taken = await client.put(f"/api/v1/user/{bob['id']}", json=rename, headers=keyed("r"))
    await failed(taken, 409, "PUT", f"/api/v1/user/{bob['id']}")
    alice_id = next(
        u["id"] for u in await ok(await client.get("/api/v1/user")) if u["name"] == "alice"
    )
    await ok(await client.delete(f"/api/v1/user/{alice_id}"))
    renamed = await client.put(f"/api/v1/user/{bob['id']}", json=rename, headers=keyed("r"))
    assert (await ok(renamed))["name"] == "alice"
    assert "Idempotent-Replayed" not in renamed.headers


async def test_a_retried_delete_gets_its_200_again(client, app) -> None:
    tag = await create_tag(client)
    first = await client.delete(f"/api/v1/tag/{tag['id']}", headers=keyed("d"))
    retry = await client.delete(f"/api/v1/tag/{tag['id']}", headers=keyed("d"))
    assert await ok(first) == await ok(retry) == "successfully deleted."
    assert retry.headers["Idempotent-Replayed"] == "true"
    await failed(
        await client.delete(f"/api/v1/tag/{tag['id']}"), 404, "DELETE", f"/api/v1/tag/{tag['id']}"
    )  # without the key


async def claim_as_the_request_would(app, key: str, path: str, body: dict) -> Claim:
    data = json.dumps(body).encode()
    fingerprint = request_fingerprint("POST", path, b"", data)
    claim = await app_state(app).idempotency.claim(ANONYMOUS, key, fingerprint)
    assert isinstance(claim, Claim)
    return claim


async def post_json(client, path: str, body: dict, key: str):
    return await client.post(
        path,
        data=json.dumps(body),
        headers={**keyed(key), "Content-Type": "application/json"},
    )


async def test_a_key_in_progress_is_409_with_retry_after(client, app) -> None:
    body = {"name": "t"}
    await claim_as_the_request_would(app, "busy", "/api/v1/tag", body)
    response = await post_json(client, "/api/v1/tag", body, "busy")
    assert "running" in await failed(response, 409, "POST", "/api/v1/tag")
    assert response.headers["Retry-After"] == "1"
    assert await count(app, Tag) == 0


async def test_a_lease_that_ran_out_is_taken_over_and_the_first_cannot_store(client, app) -> None:
    body = {"name": "t"}
    first = await claim_as_the_request_would(app, "dead", "/api/v1/tag", body)
    await set_record(app, "dead", locked_until=utcnow() - timedelta(seconds=1))  # its worker died
    response = await post_json(client, "/api/v1/tag", body, "dead")
    assert (await ok(response))["name"] == "t"
    assert "Idempotent-Replayed" not in response.headers
    # The first request, had it lived on, could not store its answer: its write rolls back.
    store = app_state(app).idempotency
    async with app_state(app).database.session() as session:
        session.add(Tag(name="the first request's write"))
        await session.flush()
        with pytest.raises(IdempotencyInProgressError):
            await store.complete(session, first, StoredAnswer(200, [], b"{}"))
        await session.rollback()
    assert await count(app, Tag) == 1
    replay = await post_json(client, "/api/v1/tag", body, "dead")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.get_data() == await response.get_data()


async def test_an_expired_answer_is_not_replayed(client, app) -> None:
    await ok(await client.post("/api/v1/tag", json={"name": "t"}, headers=keyed("old")))
    await set_record(app, "old", expires_at=utcnow() - timedelta(seconds=1))
    again = await client.post("/api/v1/tag", json={"name": "t"}, headers=keyed("old"))
    assert "Idempotent-Replayed" not in again.headers
    assert await count(app, Tag) == 2


async def test_keys_belong_to_their_caller(serve_app) -> None:
    from tests.auth_helpers import basic, make_user

    async with serve_app(api_auth="required") as app:
        await make_user(app, "alice", password="alice-password")
        await make_user(app, "bob", password="bob-password")
        client = app.test_client()
        as_alice = {**basic("alice", "alice-password"), **keyed("shared")}
        as_bob = {**basic("bob", "bob-password"), **keyed("shared")}
        alice_tag = await ok(await client.post("/api/v1/tag", json={"name": "a"}, headers=as_alice))
        bob_tag = await client.post("/api/v1/tag", json={"name": "a"}, headers=as_bob)
        assert "Idempotent-Replayed" not in bob_tag.headers  # not alice's answer
        assert (await ok(bob_tag))["id"] != alice_tag["id"]


async def test_the_header_is_documented_on_the_write_routes(client) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    for path, method in [
        ("/api/v1/blog", "post"),
        ("/api/v1/blog/{blog_id}", "put"),
        ("/api/v1/tag/{tag_id}", "delete"),
        ("/api/v1/user", "post"),
    ]:
        operation = spec["paths"][path][method]
        names = [p["name"].lower() for p in operation.get("parameters", []) if p["in"] == "header"]
        assert "idempotency-key" in names, (path, method)
        assert {"409", "422"} <= set(operation["responses"]), (path, method)
    assert not any(
        p["in"] == "header" for p in spec["paths"]["/api/v1/blog"]["get"].get("parameters", [])
    )
