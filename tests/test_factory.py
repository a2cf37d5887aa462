"""app.factory's Quart subclasses: what they remember between requests must be what Quart
would work out each time."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, Quart, request

from app.factory import ApiRequest, ServiceApp


def nested_app() -> Quart:
    app = ServiceApp(__name__)
    app.request_class = ApiRequest
    outer = Blueprint("outer", __name__)
    inner = Blueprint("inner", __name__)
    seen: list[Any] = []

    @inner.get("/nested")
    async def nested() -> str:
        seen.append(request.blueprints)
        return "nested"

    @app.get("/top")
    async def top() -> str:
        seen.append(request.blueprints)
        return "top"

    outer.register_blueprint(inner, url_prefix="/inner")
    app.register_blueprint(outer, url_prefix="/outer")
    app.config["SEEN"] = seen
    return app


async def test_blueprint_names_are_quart_s_and_each_request_gets_its_own_list() -> None:
    app = nested_app()
    client = app.test_client()
    for _ in range(2):  # worked out, then remembered
        assert (await client.get("/outer/inner/nested")).status_code == 200
        assert (await client.get("/top")).status_code == 200
    assert (await client.get("/missing")).status_code == 404
    seen = app.config["SEEN"]
    assert seen == [["outer.inner", "outer"], [], ["outer.inner", "outer"], []]
    seen[0].append("changed by a caller")
    assert (await client.get("/outer/inner/nested")).status_code == 200
    assert seen[-1] == ["outer.inner", "outer"]


async def test_ensure_async_keeps_coroutine_functions_and_runs_sync_ones_in_a_thread() -> None:
    app = ServiceApp(__name__)

    async def coroutine_function() -> str:
        return "async"

    def plain_function() -> str:
        return "sync"

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self) -> str:
            return "unhashable"

    for _ in range(2):  # worked out, then remembered
        assert app.ensure_async(coroutine_function) is coroutine_function
        wrapped = app.ensure_async(plain_function)
        assert wrapped is not plain_function and asyncio.iscoroutinefunction(wrapped)
        assert await wrapped() == "sync"
        assert await app.ensure_async(Unhashable())() == "unhashable"


def _layers(app: ServiceApp) -> list[type]:
    layer: Any = app.middleware_stack
    layers = []
    while hasattr(layer, "app"):
        layers.append(type(layer))
        layer = layer.app
    assert layer == app.asgi_app  # Quart's own ASGI app is the innermost
    return layers


def test_the_middleware_stack_is_the_ordered_list(tmp_path) -> None:
    from hypercorn.middleware import ProxyFixMiddleware

    from app.admission import Admission
    from app.factory import create_app
    from app.realtime.asgi import DrainWebsocketReceive, WebsocketSchemeFromProxy
    from app.request_hooks import RequestHooks
    from tests.conftest import make_settings

    database = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    app = create_app(make_settings(database))
    # Tracing off: traced_http adds no layer.
    assert _layers(app) == [DrainWebsocketReceive, Admission, RequestHooks]
    proxied = create_app(make_settings(database, forwarded_allow_hops=1))
    assert _layers(proxied) == [
        ProxyFixMiddleware,
        WebsocketSchemeFromProxy,
        DrainWebsocketReceive,
        Admission,
        RequestHooks,
    ]


async def test_a_request_passes_the_middleware_stack(tmp_path) -> None:
    from app.factory import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"))
    async with app.test_app():
        response = await app.test_client().get("/api/v1/tag")
    assert response.headers["X-Request-ID"]  # RequestHooks answered
    assert response.headers["X-Content-Type-Options"] == "nosniff"
