import pytest
import websockets.asyncio.client
import websockets.sync.client

from tests.e2e.hardening import ADMIN
from tests.e2e.server import prepare_deployment, run_server


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


# The hardening suites' service (tests/e2e/test_hardening_*.py): one per test module.
@pytest.fixture(scope="module")
def hardening_env(tmp_path_factory) -> dict[str, str]:
    from tests.conftest import REDIS_URL  # claimed here, in a worker that runs tests

    return prepare_deployment(
        tmp_path_factory.mktemp("hardening-setup"),
        "hardening",
        ADMIN,
        REDIS_URL=REDIS_URL,
        SCHEDULER_ENABLED="true",
        SCHEDULER_BUILTIN_JOBS="false",
        SESSION_COOKIE_SECURE="false",
    )


@pytest.fixture(scope="module")
def hardening_server(hardening_env, tmp_path_factory):
    with run_server(tmp_path_factory.mktemp("hardening"), hardening_env, workers=2) as running:
        yield running


@pytest.fixture(autouse=True)
def server_frames_follow_the_asyncapi_document(monkeypatch):
    """Check each frame a `websockets` client of these tests receives from the service against
    /asyncapi.json (tests/frame_validation.py)."""
    from tests.frame_validation import check_server_frame

    asynchronous = websockets.asyncio.client.ClientConnection.recv
    synchronous = websockets.sync.client.ClientConnection.recv

    async def checked_recv(self, *args, **kwargs):
        data = await asynchronous(self, *args, **kwargs)
        check_server_frame(self.request.path, data)
        return data

    def checked_sync_recv(self, *args, **kwargs):
        data = synchronous(self, *args, **kwargs)
        check_server_frame(self.request.path, data)
        return data

    monkeypatch.setattr(websockets.asyncio.client.ClientConnection, "recv", checked_recv)
    monkeypatch.setattr(websockets.sync.client.ClientConnection, "recv", checked_sync_recv)
