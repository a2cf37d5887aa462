"""The request-basics routes of the tutorial (contract §7), with the tutorial's hole fixed."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie

import pytest
from quart.datastructures import FileStorage

from tests.helpers import failed, ok


@pytest.fixture
def settings(database_url, tmp_path):
    from tests.conftest import make_settings

    return make_settings(
        database_url, upload_folder=tmp_path / "uploads", upload_max_bytes=1000, api_auth="open"
    )


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path, sqlite_template) -> str:  # these routes touch no table
    import shutil

    shutil.copyfile(sqlite_template, tmp_path / "app.db")
    return f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"


def cookies_of(response) -> dict[str, str]:
    jar = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie"):
        jar.load(header)
    return {name: morsel.OutputString() for name, morsel in jar.items()}


async def test_methods_is_get_only(client) -> None:
    assert await ok(await client.get("/methods")) == {"method": "GET"}
    response = await client.post("/methods")
    await failed(response, 405, "POST", "/methods")
    assert "GET" in response.headers["Allow"]


async def test_query_args(client) -> None:
    assert await ok(await client.get("/params/url?name=quart")) == {"name": "quart"}
    assert (await failed(await client.get("/params/url"), 400, "GET", "/params/url")).startswith(
        "name:"
    )


async def test_path_param_with_default(client) -> None:
    assert await ok(await client.get("/params/rest/")) == {"id": "1"}
    assert await ok(await client.get("/params/rest/42")) == {"id": "42"}


async def test_json_body(client) -> None:
    assert await ok(await client.post("/params/body", json={"a": [1, 2]})) == {
        "body": {"a": [1, 2]}
    }
    await failed(await client.post("/params/body", data="x"), 400, "POST", "/params/body")
    bad = await client.post("/params/body", data="{", headers={"Content-Type": "application/json"})
    await failed(bad, 400, "POST", "/params/body")


async def test_json_response(client) -> None:
    data = await ok(await client.post("/params/json?x=1&x=2", json={"k": "v"}))
    assert data == {"args": {"x": ["1", "2"]}, "json": {"k": "v"}}


async def test_form(client) -> None:
    response = await client.post("/params/form", form={"name": "alice", "age": "3"})
    assert await ok(response) == {"name": "alice", "age": "3"}
    await failed(await client.post("/params/form", json={"a": 1}), 400, "POST", "/params/form")


async def upload(client, filename: str, content: bytes):
    return await client.post(
        "/params/file",
        files={"file": FileStorage(io.BytesIO(content), filename=filename)},
    )


async def test_upload_and_download(client, settings) -> None:
    data = await ok(await upload(client, "notes.TXT", b"hello"))
    assert data["size"] == 5 and data["filename"] == "notes.TXT"
    assert data["stored_as"].endswith(".txt") and "notes" not in data["stored_as"]
    assert (settings.upload_folder / data["stored_as"]).read_bytes() == b"hello"

    response = await client.get(f"/download?name={data['stored_as']}")
    assert response.status_code == 200 and await response.get_data() == b"hello"
    assert response.headers["Content-Disposition"].startswith("attachment;")


@pytest.mark.parametrize(
    "filename", ["../../evil.py", "/etc/passwd", "..\\..\\win.ini", "a/../../b.sh", "....//x"]
)
async def test_upload_path_traversal_stays_in_the_folder(
    client, settings, tmp_path, filename
) -> None:
    data = await ok(await upload(client, filename, b"payload"))
    stored = settings.upload_folder / data["stored_as"]
    assert stored.resolve().parent == settings.upload_folder.resolve()
    assert stored.read_bytes() == b"payload"
    assert [p.name for p in settings.upload_folder.iterdir()] == [data["stored_as"]]
    assert not any(tmp_path.parent.glob("evil.py")) and not (tmp_path / "evil.py").exists()


async def test_upload_limits_and_missing_file(client, settings) -> None:
    response = await upload(client, "big.bin", b"x" * 1001)
    assert "at most 1000 bytes" in await failed(response, 413, "POST", "/params/file")
    assert list(settings.upload_folder.iterdir()) == []  # the partial file was removed
    msg = await failed(
        await client.post("/params/file", form={"x": "1"}), 400, "POST", "/params/file"
    )
    assert msg.startswith("file:")


@pytest.mark.parametrize("name", ["../app.db", "..%2Fapp.db", "app.db", "0" * 32 + ".txt"])
async def test_download_refuses_anything_but_stored_files(client, name) -> None:
    response = await client.get(f"/download?name={name}")
    assert response.status_code in (400, 404)
    assert (await response.get_json())["status"] == "failed"


async def test_custom_status_and_headers(client) -> None:
    response = await client.get("/response")
    assert response.status_code == 201 and response.headers["X-Custom-Header"] == "quart-framework"
    assert (await client.get("/response?status=418")).status_code == 418
    await failed(await client.get("/response?status=99"), 400, "GET", "/response")


async def test_cookie_with_every_option(client) -> None:
    expires = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    response = await client.get(
        "/cookie/set",
        query_string={
            "name": "theme",
            "value": "dark",
            "max_age": "3600",
            "expires": expires.isoformat(),
            "path": "/",
            "domain": "example.test",
            "secure": "true",
            "httponly": "true",
            "samesite": "Strict",
        },
    )
    await ok(response)
    header = cookies_of(response)["theme"]
    for part in (
        "theme=dark",
        "Max-Age=3600",
        "Path=/",
        "Domain=example.test",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "expires=",
    ):
        assert part.lower() in header.lower(), (part, header)


async def test_cookie_get_and_delete(client) -> None:
    await ok(await client.get("/cookie/set?name=lang&value=zh"))
    assert await ok(await client.get("/cookie/get?name=lang")) == {"lang": "zh"}
    assert await ok(await client.get("/cookie/get")) == {"lang": "zh"}
    response = await client.get("/cookie/delete?name=lang")
    assert (
        "Max-Age=0" in cookies_of(response)["lang"]
        or "expires=Thu, 01 Jan 1970" in cookies_of(response)["lang"]
    )
    await failed(await client.get("/cookie/get?name=lang"), 404, "GET", "/cookie/get")


@pytest.mark.parametrize(
    "query",
    [
        "name=a;b&value=x",
        "name=&value=x",
        "name=ok&samesite=Bogus",
        "name=ok&max_age=-1",
        "name=ok&samesite=None",
        "name=session&value=forged",
        "name=ok&path=nopath",
    ],
)
async def test_bad_cookie_options_are_400(client, query) -> None:
    await failed(await client.get(f"/cookie/set?{query}"), 400, "GET", "/cookie/set")


async def test_session_set_get_pop_clear_permanent(client) -> None:
    assert await ok(await client.get("/session/set?key=cart&value=3")) == {"cart": "3"}
    await ok(await client.get("/session/set?key=color&value=red"))
    assert await ok(await client.get("/session/get")) == {
        "values": {"cart": "3", "color": "red"},
        "permanent": False,
    }
    assert await ok(await client.get("/session/pop?key=cart")) == {"cart": "3"}
    await failed(await client.get("/session/pop?key=cart"), 404, "GET", "/session/pop")
    permanent = await ok(await client.get("/session/permanent?permanent=true"))
    assert permanent == {"permanent": True, "lifetime_seconds": 7 * 86400}
    assert (await ok(await client.get("/session/get")))["permanent"] is True
    await ok(await client.get("/session/clear"))
    assert (await ok(await client.get("/session/get")))["values"] == {}


async def test_session_values_cannot_forge_a_login(client, app) -> None:
    from tests.auth_helpers import make_user

    user = await make_user(app, "alice")
    await ok(await client.get(f"/session/set?key=user_id&value={user.id}"))
    await failed(await client.get("/api/v1/me"), 401, "GET", "/api/v1/me")
