"""The application state: every resource one worker holds, typed and in one place.

`create_app` makes an `AppState` with the settings; while the app serves, app.lifespan fills in
the resources, and takes them away again after. Code reaches them through the accessors below
(`database()`, `hub()`, …), so a renamed resource is a type error, not a `KeyError` at run time.
Each accessor raises `ResourceUnavailable` outside a serving app or when the resource is off
(e.g. `scheduler()` with `SCHEDULER_ENABLED=false`, `redis()` without `REDIS_URL`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar, cast

from quart import Quart, current_app

if TYPE_CHECKING:
    from app.credentials.credential_cache import CredentialCache
    from app.credentials.rate_limit import CredentialGuard
    from app.credentials.verified_passwords import VerifiedPasswords
    from app.db import Database
    from app.loop_lag import LoopLagProbe
    from app.presence import PresenceRecorder
    from app.realtime.hub import Hub
    from app.realtime.memory import MemoryMonitor
    from app.realtime.read_rules import ReadRules
    from app.realtime.room_service import RoomService
    from app.redis_client import SharedRedis
    from app.request_log import TracebackLimit
    from app.scheduler.service import SchedulerService
    from app.services.idempotency import IdempotencyStore
    from app.settings import Settings

Resource = TypeVar("Resource")
DrainHook = Callable[[], Awaitable[None]]
EXTENSION_KEY = "quart_framework"


class ResourceUnavailable(RuntimeError):
    """A resource was asked for outside a serving app, or it is not configured."""


@dataclass
class AppState:
    """What a worker holds while it serves (None: not open, or off; app.lifespan)."""

    settings: Settings
    database: Database | None = None
    idempotency: IdempotencyStore | None = None
    redis: SharedRedis | None = None
    presence: PresenceRecorder | None = None
    credential_guard: CredentialGuard | None = None
    credential_cache: CredentialCache | None = None
    verified_passwords: VerifiedPasswords | None = None
    hub: Hub | None = None
    rooms: RoomService | None = None
    memory_monitor: MemoryMonitor | None = None
    ws_read_rules: ReadRules | None = None
    scheduler: SchedulerService | None = None
    loop_lag: LoopLagProbe | None = None
    # Run when the worker starts shutting down, before Hypercorn's graceful wait (app.supervisor).
    drain_hooks: list[DrainHook] = field(default_factory=list)
    # Tasks dropping the input of websockets whose handler returned (app.realtime.asgi): held
    # here until done (asyncio keeps only weak references to tasks).
    websocket_drains: set[asyncio.Task[None]] = field(default_factory=set)
    # At most one traceback per exception type a minute in the log (app.request_log).
    tracebacks: TracebackLimit = field(default_factory=lambda: _traceback_limit())


def _traceback_limit() -> TracebackLimit:
    from app.request_log import TracebackLimit

    return TracebackLimit()


def attach_state(app: Quart, settings: Settings) -> AppState:
    """Give `app` its state (create_app does, once)."""
    state = AppState(settings)
    app.extensions[EXTENSION_KEY] = state
    return state


def app_state(app: Quart | None = None) -> AppState:
    """The state of `app`, or of the current app."""
    target = app if app is not None else current_app
    return cast(AppState, target.extensions[EXTENSION_KEY])


def _serving(resource: Resource | None, name: str) -> Resource:
    if resource is None:
        raise ResourceUnavailable(f"{name} is not available (app not serving, or turned off)")
    return resource


def settings() -> Settings:
    return app_state().settings


def database() -> Database:
    return _serving(app_state().database, "the database")


def idempotency() -> IdempotencyStore:
    return _serving(app_state().idempotency, "the idempotency store")


def redis() -> SharedRedis | None:
    """The worker's Redis client, or None without `REDIS_URL`."""
    return app_state().redis


def presence() -> PresenceRecorder:
    return _serving(app_state().presence, "presence")


def credential_guard() -> CredentialGuard:
    return _serving(app_state().credential_guard, "the credential guard")


def verified_passwords() -> VerifiedPasswords:
    return _serving(app_state().verified_passwords, "the verified-password cache")


def hub() -> Hub:
    return _serving(app_state().hub, "the realtime hub")


def rooms() -> RoomService:
    return _serving(app_state().rooms, "the room service")


def memory_monitor() -> MemoryMonitor:
    return _serving(app_state().memory_monitor, "the memory monitor")


def ws_read_rules() -> ReadRules:
    return _serving(app_state().ws_read_rules, "the websocket read rules")


def scheduler() -> SchedulerService:
    return _serving(app_state().scheduler, "the scheduler")


def tracebacks() -> TracebackLimit:
    """The app's traceback limit (outside an app: one of its own, for this call)."""
    try:
        return app_state().tracebacks
    except RuntimeError:  # no app context (a task outside a request)
        return _traceback_limit()
