"""Attacks on a production-mode service (2 Hypercorn workers, MariaDB, Redis), over real HTTP.

Each test does what an attacker did in the security review (issue "Security"): guesses
passwords from many addresses and through every route, rides on a session cookie from another
origin, reuses credentials after a password change or logout, sends hostile bodies, uploads and
redirect targets, and forges log lines. Clients bind to other loopback addresses (127.0.0.N) to
come from other client addresses.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import REDIS_URL
from tests.e2e.server import prepare_deployment, run_server
from tests.waiting import poll

ADMIN = ("root", "security-admin-password")
FOREIGN = {"Origin": "http://evil.example"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = prepare_deployment(
        tmp_path_factory.mktemp("security-setup"),
        "security",
        ADMIN,
        REDIS_URL=REDIS_URL,
        SCHEDULER_ENABLED="true",
        SCHEDULER_BUILTIN_JOBS="false",
        SESSION_COOKIE_SECURE="false",  # plain HTTP in the test; production default is Secure
        UPLOAD_FOLDER_MAX_BYTES="4000",
    )
    with run_server(tmp_path_factory.mktemp("security"), env, workers=2) as running:
        yield running


def client(server, address: str = "127.0.0.1", **options) -> httpx.Client:
    """A client whose connections come from `address` (any 127.0.0.N reaches the server)."""
    return httpx.Client(
        base_url=server.base_url,
        transport=httpx.HTTPTransport(local_address=address),
        timeout=15,
        **options,
    )


def same_origin(server) -> dict[str, str]:
    return {"Origin": server.base_url}


def make_user(server, name: str, password: str, role: int = 0) -> str:
    with client(server) as admin:
        response = admin.post(
            "/api/v1/user", json={"name": name, "role": role, "password": password}, auth=ADMIN
        )
        assert response.status_code == 200, response.text
        return response.json()["data"]["id"]


def assert_429(response: httpx.Response) -> None:
    body = response.json()
    assert response.status_code == 429, body
    assert body["code"] == 429 and body["status"] == "failed", body
    assert "too many failed sign-in attempts" in body["msg"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def wrong_attempt(http: httpx.Client, route: str, name: str) -> httpx.Response:
    if route == "basic":
        return http.get("/api/v1/tag", auth=(name, "wrong-password"))
    if route == "tokens":
        return http.post("/api/v1/tokens", auth=(name, "wrong-password"))
    return http.post("/login", json={"name": name, "password": "wrong-password"})


ROUTES = ("basic", "tokens", "login")


def test_the_eleventh_wrong_password_is_429_from_any_address_and_route(server) -> None:
    make_user(server, "victim", "victim-password")
    statuses = []
    for n in range(10):  # 10 failures, each from another address, cycling through the routes
        with client(server, f"127.0.0.{10 + n}") as http:
            statuses.append(wrong_attempt(http, ROUTES[n % 3], "victim").status_code)
    assert statuses == [401] * 10
    for n, route in enumerate(ROUTES):  # the 11th, from fresh addresses, through every route
        with client(server, f"127.0.0.{30 + n}") as http:
            assert_429(wrong_attempt(http, route, "VICTIM" if n else "victim"))
    with client(server, "127.0.0.33") as http:  # another account from there is not affected
        assert wrong_attempt(http, "basic", "someone-else").status_code == 401


def test_one_address_gets_30_failures_a_minute_over_all_accounts(server) -> None:
    with client(server, "127.0.0.50") as http:
        statuses = [wrong_attempt(http, ROUTES[n % 3], f"spray-{n}").status_code for n in range(30)]
        assert statuses == [401] * 30
        assert_429(wrong_attempt(http, "basic", "spray-30"))
    with client(server, "127.0.0.51") as http:  # another address is not affected
        assert wrong_attempt(http, "basic", "spray-31").status_code == 401


def test_right_passwords_are_never_throttled(server) -> None:
    make_user(server, "steady", "steady-password")
    with client(server, "127.0.0.60") as http:
        for _ in range(40):  # more than both budgets
            assert http.get("/api/v1/me", auth=("steady", "steady-password")).status_code == 200


def login(server, name: str, password: str, address: str = "127.0.0.1") -> httpx.Client:
    http = client(server, address)
    response = http.post("/login", json={"name": name, "password": password})
    assert response.status_code == 200, response.text
    return http


def copy_of(server, http: httpx.Client) -> httpx.Client:
    other = client(server)
    other.cookies.update(http.cookies)
    return other


def token_for(server, name: str, password: str) -> str:
    with client(server) as http:
        response = http.post("/api/v1/tokens", auth=(name, password))
        assert response.status_code == 200, response.text
        return response.json()["data"]["token"]


def is_signed_in(http: httpx.Client, **options) -> bool:
    return http.get("/api/v1/me", **options).status_code == 200


def test_logout_ends_the_session_for_every_copy_of_the_cookie(server) -> None:
    make_user(server, "carol", "carol-password")
    browser = login(server, "carol", "carol-password")
    stolen = copy_of(server, browser)
    assert is_signed_in(browser) and is_signed_in(stolen)
    response = browser.post("/logout", json={}, headers=same_origin(server))
    assert response.status_code == 200
    assert not is_signed_in(stolen)  # the copied cookie is dead on both workers


def test_a_password_or_role_change_ends_other_sessions_and_tokens(server) -> None:
    user_id = make_user(server, "dave", "dave-password")
    browser = login(server, "dave", "dave-password")
    token = token_for(server, "dave", "dave-password")
    bearer = {"Authorization": f"Bearer {token}"}
    with client(server) as admin:
        response = admin.put(
            f"/api/v1/user/{user_id}",
            auth=ADMIN,
            json={"name": "dave", "role": 0, "password": "dave-new-password"},
        )
        assert response.status_code == 200
        assert not is_signed_in(browser)
        assert admin.get("/api/v1/me", headers=bearer).status_code == 401

        browser = login(server, "dave", "dave-new-password")
        token = token_for(server, "dave", "dave-new-password")
        response = admin.put(
            f"/api/v1/user/{user_id}", auth=ADMIN, json={"name": "dave", "role": 1}
        )  # a role change
        assert response.status_code == 200
        assert not is_signed_in(browser)
        assert (
            admin.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        )


def test_a_user_changing_their_own_password_stays_signed_in_there_only(server) -> None:
    user_id = make_user(server, "erin", "erin-password")
    here = login(server, "erin", "erin-password")
    elsewhere = login(server, "erin", "erin-password")
    token = token_for(server, "erin", "erin-password")
    response = here.put(
        f"/api/v1/user/{user_id}",
        headers=same_origin(server),
        json={"name": "erin", "role": 0, "password": "erin-new-password"},
    )
    assert response.status_code == 200, response.text
    assert is_signed_in(here)
    assert not is_signed_in(elsewhere)
    assert not is_signed_in(here, headers={"Authorization": f"Bearer {token}"})


def test_an_admin_revokes_every_session_and_token_of_a_user(server) -> None:
    user_id = make_user(server, "frank", "frank-password")
    browser = login(server, "frank", "frank-password")
    token = token_for(server, "frank", "frank-password")
    with client(server) as admin:
        response = admin.delete(f"/api/v1/user/{user_id}/sessions", auth=ADMIN)
        assert response.json() == {"code": 0, "data": {"revoked": 2}, "status": "succeed"}
        assert not is_signed_in(browser)
        assert (
            admin.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        )
        other = make_user(server, "grace", "grace-password")
        response = admin.delete(f"/api/v1/user/{other}/sessions", auth=("frank", "frank-password"))
        assert response.status_code == 403


def csrf_token_of(http: httpx.Client) -> str:
    page = http.get("/online").text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def test_cookie_only_writes_must_be_same_origin(server) -> None:
    make_user(server, "heidi", "heidi-password")
    browser = login(server, "heidi", "heidi-password")
    tag = {"name": "csrf-tag"}
    for headers in (FOREIGN, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}, {}):
        response = browser.post("/api/v1/tag", json=tag, headers=headers)
        assert response.status_code == 403, (headers, response.text)
        assert response.json()["status"] == "failed"
    created = browser.post("/api/v1/tag", json=tag, headers=same_origin(server))
    assert created.status_code == 200
    tag_id = created.json()["data"]["id"]
    assert (
        browser.post(
            "/api/v1/tag",
            json={"name": "by-fetch-metadata"},
            headers={"Sec-Fetch-Site": "same-origin"},
        ).status_code
        == 200
    )
    assert (
        browser.post(
            "/api/v1/tag",
            json={"name": "by-token"},
            headers={"X-CSRF-Token": csrf_token_of(browser)},
        ).status_code
        == 200
    )
    assert browser.delete(f"/api/v1/tag/{tag_id}", headers=FOREIGN).status_code == 403
    # Bearer and Basic requests carry no ambient credential: no Origin rule applies.
    token = token_for(server, "heidi", "heidi-password")
    with client(server) as api:
        response = api.post(
            "/api/v1/tag",
            json={"name": "by-bearer"},
            headers={**FOREIGN, "Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200


def test_scheduler_controls_refuse_a_foreign_origin_with_the_admin_cookie(server) -> None:
    admin = login(server, *ADMIN)
    for path in ("/scheduler/pause", "/scheduler/shutdown"):
        assert admin.post(path, headers=FOREIGN).status_code == 403
    assert admin.get("/scheduler").json()["running"] is True  # Flask-APScheduler: no envelope
    assert admin.post("/scheduler/pause", headers=same_origin(server)).status_code == 204
    assert admin.post("/scheduler/resume", headers=same_origin(server)).status_code == 204


def test_login_from_a_foreign_origin_is_refused(server) -> None:
    with client(server) as http:
        response = http.post("/login", headers=FOREIGN, data={"name": "root", "password": ADMIN[1]})
        assert response.status_code == 403
        assert "session" not in http.cookies


@pytest.mark.parametrize(
    "target",
    [
        "/%5Cevil.example",
        "//evil.example",
        "/%5C/evil.example",
        "/%09/evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/%0d%0aSet-Cookie:%20x=1",
        "evil.example",
    ],
)
def test_login_next_accepts_only_a_path_of_this_site(server, target) -> None:
    with client(server) as http:
        response = http.post(
            f"/login?next={target}",
            data={"name": "root", "password": ADMIN[1]},
            headers=same_origin(server),
        )
        assert response.status_code == 303
        assert response.headers["Location"] == "/online", target


def test_login_next_keeps_a_path_of_this_site(server) -> None:
    with client(server) as http:
        response = http.post(
            "/login?next=/chat%3Froom%3Dlobby",
            data={"name": "root", "password": ADMIN[1]},
            headers=same_origin(server),
        )
        assert response.headers["Location"] == "/chat?room=lobby"


def test_every_response_has_its_security_headers(server) -> None:
    with client(server) as http:
        for path in (
            "/api/v1/user",
            "/healthz",
            "/openapi.json",
            "/no-such-page",
            "/login",
            "/docs",
            "/chat",
            "/",
        ):
            response = http.get(path)
            headers = response.headers
            assert headers["X-Content-Type-Options"] == "nosniff", path
            assert headers["X-Frame-Options"] == "DENY", path
            assert headers["Referrer-Policy"] == "same-origin", path
            assert headers["Strict-Transport-Security"].startswith("max-age="), path
            policy = headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in policy, path
            if response.headers["Content-Type"].startswith("text/html"):
                nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
                assert "unsafe-inline" not in policy and "http" not in policy, path
                scripts = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", response.text)
                assert all(f'nonce="{nonce}"' in attributes for attributes in scripts), path
                assert " style=" not in response.text, path
            else:
                assert policy.startswith("default-src 'none'"), path


def test_uploads_need_a_user_a_folder_budget_and_download_as_attachments(server) -> None:
    with client(server) as http:
        anonymous = http.post("/params/file", files={"file": ("a.txt", b"x" * 10)})
        assert anonymous.status_code == 401
        stored = []
        for _ in range(2):
            response = http.post(
                "/params/file",
                auth=ADMIN,
                files={"file": ("page.html", b"<script>alert(1)</script>" * 60)},
            )
            assert response.status_code == 200, response.text
            stored.append(response.json()["data"]["stored_as"])
        full = http.post("/params/file", auth=ADMIN, files={"file": ("more.txt", b"y" * 1500)})
        assert full.status_code == 507 and "full" in full.json()["msg"]
        download = http.get("/download", params={"name": stored[0]})
        assert download.status_code == 200
        assert download.headers["Content-Type"] == "application/octet-stream"
        assert download.headers["Content-Disposition"].startswith("attachment")
        assert download.headers["X-Content-Type-Options"] == "nosniff"


HOSTILE_BODIES = {
    "invalid UTF-8": b'{"name": "\xff\xfe", "role": 0}',
    "100,000 levels deep": b"[" * 100_000 + b"]" * 100_000,
    "NaN": b'{"name": "nan", "role": NaN}',
    "Infinity": b'{"x": Infinity}',
}


@pytest.mark.parametrize("kind", HOSTILE_BODIES)
@pytest.mark.parametrize("path", ["/api/v1/user", "/login", "/params/body"])
def test_hostile_json_bodies_are_400_in_the_envelope(server, path, kind) -> None:
    with client(server) as http:
        started = time.monotonic()
        response = http.post(
            path,
            content=HOSTILE_BODIES[kind],
            auth=ADMIN,
            headers={"Content-Type": "application/json"},
        )
        elapsed = time.monotonic() - started
    body = response.json()
    assert response.status_code == 400, body
    assert body["status"] == "failed" and "not valid JSON" in body["msg"], body
    assert elapsed < 2, elapsed  # bounded work, whatever the nesting


def test_hostile_bodies_leave_no_traceback_in_the_log(server) -> None:
    # Runs after the hostile-body tests in this module (pytest keeps file order).
    assert "Traceback" not in server.log()


def test_control_characters_cannot_forge_a_log_line(server) -> None:
    with client(server) as http:
        http.get("/api/v1/user%0a2026-01-01 00:00:00,000 INFO app.access forged-line")
    escaped = "\\x0a2026-01-01 00:00:00,000 INFO app.access forged-line"
    poll(lambda: escaped in server.log(), timeout=10)  # the access line is written after the answer
    log = server.log()
    assert not any(line.startswith("2026-01-01") for line in log.splitlines())


def test_a_short_secret_key_is_refused_in_one_line(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        env={"APP_ENV": "production", "SECRET_KEY": "abc", "PATH": ""},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "SECRET_KEY" in result.stderr and "32 characters" in result.stderr
    assert "Traceback" not in result.stderr
