"""The pages in a real browser: Debian's Chromium driven by Playwright, against Hypercorn."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import REDIS_URL
from tests.e2e.server import free_port, run_cli, run_server, workers_of
from tests.waiting import poll

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def timed(text: str) -> re.Pattern[str]:
    """A chat line: the message's time (the reader's zone and clock: `19:16` or `07:16 PM`),
    then `text`."""
    return re.compile(rf"^\d\d:\d\d(\s?[AP]M)?{re.escape(text)}$")


def join_chat(page, base_url: str, room: str, name: str) -> None:
    """Open the chat page, join `room` as `name`, and wait until the page says so."""
    page.goto(base_url + "/chat")
    page.fill("#nickname", name)
    page.fill("#room", room)
    page.click("#join")
    expect(page.locator("#status")).to_have_text(f"in {room} as {name}")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("browser")
    # A test sends 30 chat messages as fast as a user could never type them.
    env = {"APP_ENV": "development", "MONITOR_INTERVAL": "0.3", "WS_RATE_LIMIT": "200/second"}
    run_cli(
        tmp_path,
        env,
        ["init-db"],
        ["create-admin", "--name", "browser-admin", "--password", "browser-password"],
    )
    with run_server(tmp_path, env, workers=1) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_memory_monitor_page(site, browser, tmp_path) -> None:
    page = browser.new_page()
    page.goto(site.base_url + "/")
    expect(page.locator("h1")).to_have_text("Live memory use")
    # It streams on load, with no click, and its axes fit the samples it has.
    expect(page.locator("#status")).to_have_text("connected")
    rows = page.locator("#memory-rows tr")
    expect(rows.nth(2)).to_be_attached(timeout=10_000)  # at least 3 samples
    chart = page.locator("#chart")
    expect(chart).to_have_attribute(
        "aria-label", re.compile(r"memory use: [\d.]+ % \(.*last \d+ s\)")
    )
    assert int(chart.get_attribute("data-samples")) >= 3
    headers = page.locator("#memory-head th").all_inner_texts()
    assert {"total", "available", "percent", "used"} <= set(headers)
    page.screenshot(path=str(tmp_path / "monitor.png"))

    # Bytes in binary units, the exact count in a tooltip; the table fits a 1,100 px page.
    cell = page.locator("#memory-rows tr").first.locator("td").first
    expect(cell).to_have_text(re.compile(r"^[\d.]+ (GiB|MiB|KiB|B)$"))
    assert re.fullmatch(r"[\d,]+ bytes", cell.get_attribute("title") or "")
    page.set_viewport_size({"width": 1100, "height": 800})
    overflow = page.evaluate(
        "() => { const box = document.querySelector('.scroll-x');"
        " return [box.scrollWidth, box.clientWidth, document.documentElement.scrollWidth,"
        " window.innerWidth]; }"
    )
    assert overflow[0] <= overflow[1] and overflow[2] <= overflow[3], overflow

    page.get_by_role("button", name="Stop monitoring").click()
    # Stopping closes the socket normally (1000): no sample can arrive after it.
    expect(page.locator("#status")).to_have_text("disconnected (1000)")
    expect(page.get_by_role("button", name="Start monitoring")).to_be_enabled()
    page.get_by_role("button", name="Start monitoring").click()
    expect(page.locator("#status")).to_have_text("connected")

    # The seed's Chinese words stay, as an option.
    page.goto(site.base_url + "/?lang=zh")
    expect(page.locator("h1")).to_have_text("实时监控内存使用情况")
    expect(page.locator("#status")).to_have_text("连接成功")
    expect(page.get_by_role("button", name="停止监控")).to_be_enabled()
    page.close()


def test_two_browsers_chat(site, browser, tmp_path) -> None:
    ann_context, bob_context = browser.new_context(), browser.new_context()
    ann, bob = ann_context.new_page(), bob_context.new_page()
    for page, name in ((ann, "ann"), (bob, "bob")):
        join_chat(page, site.base_url, "browsers", name)
    expect(ann.locator("#members li")).to_have_text(["ann", "bob"])

    ann.fill("#text", "hello from ann")
    ann.click("#send")
    expect(bob.locator("#messages li.message")).to_have_text([timed("ann: hello from ann")])

    bob.fill("#text", "only for ann")
    bob.fill("#to", "ann")
    bob.click("#send")
    expect(ann.locator("#messages li.private")).to_have_text(
        [timed("(private) bob → ann: only for ann")]
    )
    bob.screenshot(path=str(tmp_path / "chat.png"))

    bob_context.close()
    expect(ann.locator("#members li")).to_have_text(["ann"])
    ann_context.close()


PAGES = ["/", "/chat", "/online", "/login", "/docs"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_run_under_their_csp_without_leaving_the_host(site, browser, path) -> None:
    """Every page loads with no console error (a CSP violation is one), no failed request and
    no request to another host; /docs renders the API's operations from local assets."""
    page = browser.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda message: (
            message.type in ("error", "warning")
            and problems.append(f"console {message.type}: {message.text}")
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
    page.on(
        "request",
        lambda request: (
            request.url.startswith(site.base_url)
            or request.url.startswith("data:")
            or problems.append(f"foreign: {request.url}")
        ),
    )
    response = page.goto(site.base_url + path)
    assert response is not None and response.status == 200
    assert "nonce-" in response.headers["content-security-policy"]
    if path == "/docs":
        page.wait_for_selector(".opblock", timeout=15_000)
        assert page.locator(".opblock").count() > 10
    else:
        page.wait_for_load_state("networkidle")
    page.close()
    assert problems == []


def test_form_login_and_logout_in_the_browser(site, browser) -> None:
    """The login form (CSRF token, same-origin POST) signs in; the logout form signs out."""
    page = browser.new_page()
    page.goto(site.base_url + "/login?next=/chat")
    page.fill("input[name=name]", "browser-admin")
    page.fill("input[name=password]", "browser-password")
    page.click("button[type=submit]")
    expect(page).to_have_url(site.base_url + "/chat")
    expect(page.locator("nav")).to_contain_text("signed in as browser-admin")
    page.click("nav button[type=submit]")
    expect(page).to_have_url(site.base_url + "/login")
    expect(page.locator("nav")).to_contain_text("Log in")
    page.close()


def test_pages_reconnect_after_a_restart_and_show_each_message_once(browser, tmp_path) -> None:
    """Two pages chat, and a monitor page watches; the service stops (SIGTERM: 1001) and comes
    back on the same port; a third client sends messages on the restarted service. Each chat
    page shows every one of them once, in order, with no "missed" line (its rejoin recovered
    them from the room's log), and the monitor streams again."""
    import json

    import redis
    from websockets.sync.client import connect

    port = free_port()
    env = {"APP_ENV": "development", "REDIS_URL": REDIS_URL, "MONITOR_INTERVAL": "0.3"}
    run_cli(tmp_path, env, ["init-db"])
    redis.Redis.from_url(REDIS_URL).flushdb()
    contexts = [browser.new_context() for _ in range(3)]
    ann, bob, monitor = (context.new_page() for context in contexts)
    with run_server(tmp_path, env, workers=1, port=port) as first:
        for page, name in ((ann, "ann"), (bob, "bob")):
            join_chat(page, first.base_url, "recovery", name)
        monitor.goto(first.base_url + "/")
        expect(monitor.locator("#status")).to_have_text("connected")
        ann.fill("#text", "before")
        ann.click("#send")
        expect(bob.locator("#messages li.message")).to_have_text([timed("ann: before")])
        assert first.stop() == 0
    expect(ann.locator("#status")).to_have_text("reconnecting…")
    expect(monitor.locator("#status")).to_contain_text("reconnecting")
    expect(ann.locator("#members li")).to_have_text(["unknown while disconnected"])
    texts = [f"after {number}" for number in range(5)]
    with run_server(tmp_path, env, workers=1, port=port) as second:
        # Playwright's sync API runs a loop in this thread: the third client is a sync one.
        url = second.base_url.replace("http://", "ws://") + "/ws/chat"
        with connect(url, origin=second.base_url) as carl:
            carl.send(json.dumps({"event": "join", "room": "recovery", "nickname": "carl"}))
            for text in texts:
                carl.send(json.dumps({"event": "message", "room": "recovery", "text": text}))
            published = 0
            while published < len(texts):  # its own copies: every message is in the log
                published += json.loads(carl.recv(timeout=10))["event"] == "message"
        for page in (ann, bob):
            shown = page.locator("#messages li.message, #messages li.history")
            expect(shown).to_have_text(
                [timed("ann: before"), *[timed(f"carl: {t}") for t in texts]], timeout=30_000
            )
            expect(page.locator("#messages li.missed")).to_have_count(0)
            expect(page.locator("#status")).to_have_text(re.compile(r"^in recovery as "))
        expect(monitor.locator("#status")).to_have_text("connected", timeout=30_000)
        ann.screenshot(path=str(tmp_path / "recovered.png"))
    for context in contexts:
        context.close()


VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
# SCREENSHOT_DIR=docs/screenshots keeps the phone screenshots (docs/ holds the committed ones).
SCREENSHOTS = os.environ.get("SCREENSHOT_DIR")


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def keep_screenshot(page, tmp_path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name))
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, name))


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_chat_after_30_messages_on_a_phone_and_a_desktop(site, browser, viewport, tmp_path) -> None:
    """The log scrolls inside itself to the newest message (unless the reader scrolled up), the
    input and Send stay in view, messages show their time, touch targets are 44 px, the status
    is a named live region, and the page never scrolls sideways (issue 35)."""
    size = VIEWPORTS[viewport]
    context = browser.new_context(
        viewport=size, is_mobile=viewport == "phone", has_touch=viewport == "phone"
    )
    page = context.new_page()
    page.goto(site.base_url + "/chat")
    page.fill("#nickname", f"ann-{viewport}")
    page.fill("#room", f"phone-{viewport}")
    page.click("#join")
    status = page.get_by_role("status")
    expect(status).to_have_text(f"in phone-{viewport} as ann-{viewport}")
    shown = page.locator("#messages li.message")
    for number in range(30):
        page.fill("#text", f"message {number}")
        page.click("#send")
        expect(shown).to_have_count(number + 1)
    expect(page.locator("#send")).to_be_in_viewport()
    expect(page.locator("#text")).to_be_in_viewport()
    expect(shown.last).to_be_in_viewport()
    expect(shown.last).to_have_text(timed(f"ann-{viewport}: message 29"))
    assert shown.last.locator("time").get_attribute("datetime")
    assert no_horizontal_scroll(page)
    for control in ("#send", "#text", "#join"):
        box = page.locator(control).bounding_box()
        assert box is not None and box["height"] >= 44, (control, box)
    if viewport == "phone":
        keep_screenshot(page, tmp_path, "chat-phone-30-messages.png")

    # A reader who scrolled up to read stays where they are when a message arrives.
    page.evaluate("() => { document.getElementById('messages').scrollTop = 0; }")
    page.fill("#text", "one more")
    page.click("#send")
    expect(shown).to_have_count(31)
    assert page.evaluate("() => document.getElementById('messages').scrollTop") == 0
    expect(shown.first).to_be_in_viewport()
    context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_monitor_and_online_fit_a_phone_and_a_desktop(site, browser, viewport, tmp_path) -> None:
    """The monitor in English, its status a named live region, its chart drawn at the screen's
    pixel size with labelled axes, its table scrolling inside its box; /online names its time
    zone and says the scheduler is off; neither page scrolls sideways (issue 35)."""
    size = VIEWPORTS[viewport]
    context = browser.new_context(
        viewport=size, is_mobile=viewport == "phone", has_touch=viewport == "phone",
        device_scale_factor=3 if viewport == "phone" else 1,
    )  # fmt: skip
    page = context.new_page()
    page.goto(site.base_url + "/")
    expect(page.get_by_role("status", name="connection")).to_have_text("connected")
    expect(page.locator("#memory-rows tr").nth(2)).to_be_attached(timeout=10_000)
    drawn = page.evaluate(
        "() => { const c = document.getElementById('chart');"
        " return [c.width, Math.round(c.clientWidth * devicePixelRatio)]; }"
    )
    assert drawn[0] == drawn[1], drawn  # labels at 12 CSS px, not scaled down
    assert no_horizontal_scroll(page)
    box = page.locator(".scroll-x").bounding_box()
    assert box is not None and box["x"] + box["width"] <= size["width"] + 1
    if viewport == "phone":
        keep_screenshot(page, tmp_path, "monitor-phone.png")

    page.goto(site.base_url + "/online")
    expect(page.locator("#online-users th").nth(1)).to_have_text("Last seen (Asia/Shanghai)")
    expect(page.locator("#history-note")).to_contain_text("The scheduler is off here")
    expect(page.locator("#history-chart")).to_be_hidden()
    expect(page.get_by_role("link", name="API docs")).to_have_attribute("href", "/docs")
    assert no_horizontal_scroll(page)
    context.close()


@pytest.mark.parametrize("fault", ["worker SIGKILL", "Redis restart"])
def test_the_js_client_delivers_each_message_once_in_order_across_a_fault(
    browser, tmp_path, fault
) -> None:
    """Two chat pages (static/rooms-client.js) on 2 workers with a Redis of the test's own.
    A fault (every worker SIGKILLed and restarted by the supervisor, or Redis killed and
    started empty); a message typed during it waits in the client's queue and is sent, and
    acknowledged, once the page is back; a third client then sends five. Both pages end with
    the same messages, each once, in the room's order; after the Redis restart (its log lost)
    each page shows that messages may have been missed (issue 35)."""
    import concurrent.futures
    import json
    import signal

    from websockets.sync.client import connect

    from tests.e2e.dependencies import own_redis
    from tests.e2e.server import prepare_deployment

    with own_redis(tmp_path) as redis:
        (tmp_path / "setup").mkdir()
        # Playwright's sync API runs a loop in this thread: the setup runs in another.
        with concurrent.futures.ThreadPoolExecutor(1) as setup:
            env = setup.submit(
                prepare_deployment,
                tmp_path / "setup",
                "jsclient",
                ("root", "js-client-password"),
                REDIS_URL=f"redis://127.0.0.1:{redis.port}/0",
                SESSION_COOKIE_SECURE="false",
            ).result()
        contexts = [browser.new_context() for _ in range(2)]
        ann, bob = (context.new_page() for context in contexts)
        with run_server(tmp_path, env, workers=2) as server:
            for page, name in ((ann, "ann"), (bob, "bob")):
                join_chat(page, server.base_url, "faults", name)
            ann.fill("#text", "before")
            ann.click("#send")
            expect(bob.locator("#messages li.message")).to_have_text([timed("ann: before")])

            if fault == "worker SIGKILL":
                for worker in workers_of(server.process.pid):
                    worker.send_signal(signal.SIGKILL)
                expect(ann.locator("#status")).to_have_text("reconnecting…", timeout=15_000)
                ann.fill("#text", "during")  # queued offline: sent once the page is back
                ann.click("#send")
            else:
                # The sockets stay open; the publish fails with an error frame naming the
                # message, and the client resends it until the store takes it.
                redis.kill()
                ann.fill("#text", "during")
                ann.click("#send")
                expect(ann.locator("#messages li.error")).not_to_have_count(0, timeout=15_000)
                redis.start()
            expect(ann.locator("#status")).to_have_text("in faults as ann", timeout=30_000)
            expect(bob.locator("#status")).to_have_text("in faults as bob", timeout=30_000)

            for page in (ann, bob):  # the queued message is delivered once the store is back
                expect(page.locator("#messages li.message").last).to_have_text(
                    timed("ann: during"), timeout=30_000
                )

            url = server.base_url.replace("http://", "ws://") + "/ws/chat"
            texts = [f"after {number}" for number in range(5)]

            def carl_joined(carl) -> bool:
                carl.send(json.dumps({"event": "join", "room": "faults", "nickname": "carl"}))
                while (frame := json.loads(carl.recv(timeout=10)))["event"] != "history":
                    if frame["event"] == "error":  # this worker has not seen Redis back yet
                        return False
                return True

            with connect(url, origin=server.base_url) as carl:
                poll(lambda: carl_joined(carl), timeout=30, interval=0.2)
                for text in texts:
                    carl.send(json.dumps({"event": "message", "room": "faults", "text": text}))
                published = 0
                while published < len(texts):
                    published += json.loads(carl.recv(timeout=10))["event"] == "message"

            expected = 1 + 1 + len(texts)  # before, during, carl's
            shown = {}
            for name, page in (("ann", ann), ("bob", bob)):
                lines = page.locator("#messages li.message")
                expect(lines).to_have_count(expected, timeout=30_000)
                shown[name] = [
                    re.sub(r"^\d\d:\d\d(\s?[AP]M)?", "", t) for t in lines.all_inner_texts()
                ]
                missed = page.locator("#messages li.missed")
                if fault == "Redis restart":
                    expect(missed).not_to_have_count(0)
                else:
                    expect(missed).to_have_count(0)
            assert shown["ann"] == shown["bob"], shown
            assert sorted(shown["ann"]) == sorted(
                ["ann: before", "ann: during", *[f"carl: {t}" for t in texts]]
            ), shown
            carls = [line for line in shown["ann"] if line.startswith("carl:")]
            assert carls == [f"carl: {t}" for t in texts]
        for context in contexts:
            context.close()


def test_the_js_client_with_a_token_and_its_bounded_offline_queue(site, browser) -> None:
    """RoomsClient in Chromium: with a bearer token it speaks as the token's user; a client that
    cannot connect keeps at most `maxQueue` messages and reports the one past it."""
    import httpx

    token = httpx.post(
        f"{site.base_url}/api/v1/tokens", auth=("browser-admin", "browser-password"), timeout=10
    ).json()["data"]["token"]
    page = browser.new_page()
    page.goto(site.base_url + "/chat")
    result = page.evaluate(
        """async (token) => {
          const { RoomsClient } = await import("/static/rooms-client.js");
          const you = await new Promise((resolve) => {
            const client = new RoomsClient({ token });
            client.onJoined = (_room, name) => { client.close(); resolve(name); };
            client.join("tokens");
          });
          const refused = [];
          const offline = new RoomsClient({ url: `ws://${location.host}/ws/nowhere`, maxQueue: 2 });
          offline.onQueueFull = (_room, text) => refused.push(text);
          offline.join("lobby", { nickname: "ann" });
          const ids = ["a", "b", "c"].map((text) => offline.send("lobby", text));
          const queued = offline.queued;
          offline.close();
          return { you, ids, refused, queued };
        }""",
        token,
    )
    page.close()
    assert result["you"] == "browser-admin"
    assert all(result["ids"][:2]) and result["ids"][2] is None, result
    assert result["refused"] == ["c"] and result["queued"] == 2
