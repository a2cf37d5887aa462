"""Serving on the embedded default, and stopping on SIGTERM like a container runtime does."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import httpx

from tests.e2e.server import run_cli, run_server, workers_of


def test_embedded_default_runs_with_migrations_and_stops_cleanly(tmp_path) -> None:
    env = {"APP_ENV": "development"}
    run_cli(
        tmp_path, env, ["init-db"], ["create-admin", "--name", "root", "--password", "s3cret-pass"]
    )
    assert (tmp_path / "var" / "quart-framework.db").exists()
    with run_server(tmp_path, env, workers=1) as server:
        url = server.base_url + "/api/v1/tag"
        assert httpx.post(url, json={"name": "anonymous"}).status_code == 401
        response = httpx.post(url, json={"name": "embedded"}, auth=("root", "s3cret-pass"))
        assert response.status_code == 200, response.text
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 9  # within hypercorn.toml's graceful_timeout
    log = server.log()
    assert "serving with database sqlite+aiosqlite:///var/quart-framework.db" in log
    # The worker froze what startup built, so full collections do not stall its loop.
    frozen = re.search(r"startup objects frozen: (\d+)", log)
    assert frozen is not None and int(frozen.group(1)) > 10_000, log
    # ... and set the collector's thresholds (GC_THRESHOLDS' default).
    assert "collector thresholds (100000, 50, 100)" in log


def test_production_refuses_to_start_without_secret_key(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        env={"APP_ENV": "production", "PATH": ""},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_clear_db_then_init_db(tmp_path) -> None:
    env = {"APP_ENV": "development", "PATH": ""}
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "app", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run("init-db").returncode == 0
    refused = run("clear-db")  # asks first; no answer on stdin means no
    assert refused.returncode != 0
    cleared = run("clear-db", "--yes")
    assert cleared.returncode == 0 and "dropped" in cleared.stdout
    assert run("init-db").returncode == 0


def test_workers_still_starting_when_the_supervisor_is_killed_exit(tmp_path) -> None:
    """A supervisor SIGKILLed (an OOM kill, a CI time-out) while its workers were still
    loading the app left them serving forever: they read the supervisor's pid with getppid()
    after it had died, got init's, and never saw it go (14 such workers after the load runs)."""
    import os
    import signal

    import psutil

    from tests.conftest import TEST_SECRET_KEY
    from tests.e2e.server import free_port

    env = {
        **os.environ,
        "APP_ENV": "production",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/app.db",
        "BIND": f"127.0.0.1:{free_port()}",
        "WEB_CONCURRENCY": "2",
    }
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--migrate"], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    workers: list[psutil.Process] = []
    while len(workers) < 2:  # started, and still importing the app
        assert time.monotonic() < deadline, "no workers started"
        workers = workers_of(supervisor.pid)
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait(10)
    gone, alive = psutil.wait_procs(workers, timeout=30)
    for worker in alive:
        worker.kill()
    assert not alive, f"workers outlived their supervisor: {[w.pid for w in alive]}"
    assert len(gone) == 2


def test_quart_s_factory_string_serves_the_patched_app(tmp_path) -> None:
    """`hypercorn "app:create_app()"`, Quart's usual factory string (issue 34: it had stopped
    working), serves the app with the server patches, as `app.asgi:app` does: a request head
    still arriving after HTTP_HEADER_TIMEOUT is cut off (unpatched Hypercorn would wait for its
    keep_alive_timeout, 5 s here)."""
    import socket

    import psutil

    from tests.conftest import TEST_SECRET_KEY
    from tests.e2e.server import free_port

    port = free_port()
    env = {
        "APP_ENV": "production",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
        "HTTP_HEADER_TIMEOUT": "1",
    }
    hypercorn = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}"]
    command = [*hypercorn, "--keep-alive", "5", "app:create_app()"]
    with run_server(tmp_path, env, command=command, port=port, ready_path="/healthz") as server:
        assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            started = time.monotonic()
            while slow.recv(4096):  # the server's 408 or close, then the end of the stream
                pass
            assert time.monotonic() - started < 4
        # Plain Hypercorn's workers outlive a killed master: stop it as an operator would.
        workers = psutil.Process(server.process.pid).children(recursive=True)
        assert server.stop() == 0
        gone, alive = psutil.wait_procs(workers, timeout=15)
        assert alive == [], alive


def test_a_burst_of_stop_signals_still_stops_the_supervisor(tmp_path) -> None:
    """A container runtime and a shell (`make run`, whose process group gets the signal with
    the supervisor) can signal twice at once. The supervisor's handler once set the workers'
    `multiprocessing.Event` itself, whose lock a second signal arriving inside the handler (or
    one arriving while the supervisor's loop held it) waited for forever: the supervisor hung
    with its worker stopped and unreaped."""
    env = {"APP_ENV": "development"}
    run_cli(tmp_path, env, ["init-db"])
    with run_server(tmp_path, env, workers=1) as server:
        assert httpx.get(server.base_url + "/api/v1/tag").status_code == 200
        for _ in range(200):
            for stop_signal in (signal.SIGTERM, signal.SIGINT):
                server.process.send_signal(stop_signal)
        server.process.wait(15)  # raises TimeoutExpired if it hangs
        assert server.process.returncode == 0
