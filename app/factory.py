"""The app factory: the one place that wires the routes, hooks and middlewares together (the
resources a worker opens while it serves are app.lifespan's)."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import timedelta
from typing import Any, ParamSpec, TextIO, TypeVar, cast

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from quart import Quart
from quart.app import iscoroutinefunction  # Quart's choice per Python version
from quart.wrappers import Request
from quart_schema import QuartSchema
from werkzeug.exceptions import BadRequest

from app import json_provider
from app.admission import Admission
from app.api import api_v1
from app.api.openapi import SECURITY_SCHEMES, DocumentingProvider
from app.api.scheduler_off import scheduler_off_blueprint
from app.auth.cookie_session import CachedSerializerSessionInterface
from app.auth.csrf import check_csrf, csrf_token
from app.auth.identity import identify_request, identify_websocket
from app.commands import DATABASE_COMMANDS
from app.envelope import register_error_handlers
from app.health import blueprint as health_blueprint
from app.http_connection import LeanHTTPConnection
from app.lifespan import serving
from app.metrics import RequestMetrics
from app.middleware import ASGIApp, Middleware, build_middleware_stack
from app.realtime.asgi import DrainWebsocketReceive, WebsocketSchemeFromProxy
from app.request_hooks import RequestHooks
from app.request_log import AccessLog, configure_logging
from app.resources import resource_path
from app.security_headers import SecurityHeaders, register_security_headers
from app.settings import Settings
from app.state import AppState, attach_state
from app.tracing import start_tracing, traced_http
from app.web import basics, docs, pages
from app.web.metrics import register_metrics
from app.ws import chat, monitor

_BLUEPRINTS_OF_ENDPOINT: dict[str, list[str]] = {}


class ApiRequest(Request):
    """A request whose unparsable JSON body is a 400 with a message, never a 500: invalid
    UTF-8, NaN/Infinity and over-deep nesting included (`app.json_provider`); its blueprint
    names are worked out once per endpoint."""

    @property
    def blueprints(self) -> list[str]:
        # Quart's property imports a helper and splits the endpoint's name on every call, and
        # every hook dispatch asks: worked out once per endpoint (a fixed set).
        rule = self.url_rule
        if rule is None:
            return []
        names = _BLUEPRINTS_OF_ENDPOINT.get(rule.endpoint)
        if names is None:
            names = _BLUEPRINTS_OF_ENDPOINT[rule.endpoint] = super().blueprints
        return list(names)

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if cache and self._cached_json[silent] is not Ellipsis:
            return self._cached_json[silent]
        if not (
            force or self.is_json or getattr(self, json_provider.JSON_OF_ANY_CONTENT_TYPE, False)
        ):
            return None
        data = await self.get_data(cache=cache, as_text=False)
        try:
            result = json_provider.loads(data)
        except ValueError as error:
            if not silent:
                raise BadRequest(f"request body is not valid JSON ({error})") from None
            result = None
        if cache:
            self._cached_json[silent] = result
        return result


P = ParamSpec("P")
T = TypeVar("T")


@functools.lru_cache(maxsize=1024)
def _is_coroutine_function(func: Callable[..., Any]) -> bool:
    return iscoroutinefunction(func)


class ServiceApp(Quart):
    """Quart, served through the service's middleware stack (app.middleware; Quart's documented
    way, reassigning `asgi_app` once per middleware, is not typed), and with `ensure_async`
    (its documented override point) remembering which functions are coroutine functions: Quart
    asks `inspect` again for every hook and view of every request (2% of a request's
    instructions, callgrind). The cache is bounded, for callables made per request
    (`after_this_request`)."""

    middleware_stack: ASGIApp | None = None  # built by create_app; None: Quart alone

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        stack = self.middleware_stack
        await (self.asgi_app if stack is None else stack)(scope, receive, send)

    def ensure_async(
        self, func: Callable[P, Awaitable[T]] | Callable[P, T]
    ) -> Callable[P, Awaitable[T]]:
        try:
            is_async = _is_coroutine_function(func)
        except TypeError:  # an unhashable callable
            is_async = iscoroutinefunction(func)
        if is_async:
            return cast("Callable[P, Awaitable[T]]", func)  # a string: no typing work per call
        return self.sync_to_async(cast("Callable[P, T]", func))


def middleware_list(
    settings: Settings, state: AppState, log_handler: logging.StreamHandler[TextIO]
) -> list[Middleware]:
    """The middlewares, outermost first. HTTP requests pass admission, then the service's own
    hooks; websockets pass the receive drain (each middleware passes the other kind straight
    through, without a coroutine of its own)."""
    middleware: list[Middleware] = []
    if settings.forwarded_allow_hops:
        from hypercorn.middleware import ProxyFixMiddleware

        hops = settings.forwarded_allow_hops

        # Behind N trusted proxies, the client address comes from X-Forwarded-For (and the
        # scheme from X-Forwarded-Proto, kept ws/wss for websockets).
        def behind_proxies(inner: ASGIApp) -> ASGIApp:
            fixed = WebsocketSchemeFromProxy(inner)
            return ProxyFixMiddleware(fixed, mode="legacy", trusted_hops=hops)

        middleware.append(behind_proxies)
    return [
        *middleware,
        traced_http,  # a server span per HTTP request when tracing is on (shed ones included)
        functools.partial(DrainWebsocketReceive, drains=state.websocket_drains),
        functools.partial(
            Admission,
            limit=settings.effective_http_concurrency,
            queue_timeout=settings.http_queue_timeout,
            queue_max=settings.http_queue_max,
            body_timeout=settings.http_body_timeout,
            client_max_bodies=settings.http_client_max_bodies,
            max_body_bytes=settings.max_content_length,
            scheduler_prefix=settings.scheduler_api_prefix,
        ),
        functools.partial(
            RequestHooks,
            security_headers=SecurityHeaders(settings),
            metrics=RequestMetrics(),
            access_log=AccessLog(log_handler, json_lines=settings.log_format == "json"),
            database_seconds=settings.db_timeout,
        ),
    ]


def create_app(settings: Settings | None = None) -> ServiceApp:
    """Build the Quart app.

    Arguments:
        settings: the configuration; read from the environment when None.

    The resources (database, Redis, hub, scheduler, …) are opened while the app serves
    (app.lifespan), so it must be served (Hypercorn) or entered with `app.test_app()` before it
    answers requests.
    """
    settings = settings or Settings()
    log_handler = configure_logging(settings)
    start_tracing(settings)

    app = ServiceApp(
        __name__,
        template_folder=str(resource_path("templates")),
        static_folder=str(resource_path("static")),  # /static/rooms-client.js
    )
    app.request_class = ApiRequest
    app.asgi_http_class = LeanHTTPConnection
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_content_length,
        TESTING=settings.app_env == "testing",
        SESSION_COOKIE_NAME="session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.permanent_session_lifetime),
    )
    state = attach_state(app, settings)

    QuartSchema(
        app,
        info={"title": "quart-framework", "version": "0.1.0"},
        security_schemes=SECURITY_SCHEMES,
        openapi_provider_class=DocumentingProvider,
        openapi_path="/openapi.json",
        swagger_ui_path=None,  # served by app.web.docs, without a CDN
        redoc_ui_path=None,
        scalar_ui_path=None,
    )
    json_provider.use_orjson(app)
    app.session_interface = CachedSerializerSessionInterface()
    register_metrics(app)
    register_security_headers(app)
    register_error_handlers(app)
    app.jinja_env.globals["csrf_token"] = csrf_token

    app.before_request(identify_request)
    app.before_request(check_csrf)
    app.before_websocket(identify_websocket)
    app.register_blueprint(api_v1)
    app.register_blueprint(health_blueprint)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(docs.blueprint)
    app.register_blueprint(basics.blueprint)
    app.register_blueprint(monitor.blueprint)
    app.register_blueprint(chat.blueprint)
    if settings.scheduler_enabled and settings.scheduler_api_enabled:
        from app.api.scheduler import blueprint as scheduler_api

        app.register_blueprint(scheduler_api, url_prefix=settings.scheduler_api_prefix)
    else:
        app.register_blueprint(scheduler_off_blueprint(settings))
    for command in DATABASE_COMMANDS:
        app.cli.add_command(command)

    @app.while_serving
    async def open_resources() -> AsyncGenerator[None, None]:
        async with serving(state):
            yield

    app.middleware_stack = build_middleware_stack(
        app.asgi_app, middleware_list(settings, state, log_handler)
    )
    return app
