"""Every override of a third-party package's internals, in one list: what it changes, where,
the releases it was written for and tested on, and what upstream offers instead.

`unsupported()` names each override whose package's installed release is outside what the
override supports; `python -m app serve` refuses to start on any (app/cli.py), as it refuses
unsupported Hypercorn releases. pyproject.toml bounds each package the same way
(tests/test_overrides.py checks the two agree), so `make lock` cannot take a release an
override was not checked on. An override that subclasses a documented extension point is listed
too: a new major release may still move it.

Upstream: none of these has an upstream issue filed by this project (the issue tracker of each
was searched for the behaviour; nothing matched). Where upstream has a setting, the entry says
which and why it is not enough.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from packaging.specifiers import SpecifierSet


@dataclass(frozen=True, slots=True)
class Override:
    """One package's internals that the service relies on."""

    package: str  # the distribution's name, as pyproject.toml spells it
    supported: str  # PEP 440 specifier: the releases it was written for and tested on
    where: str  # the modules that hold the override
    what: str  # the internals it changes or reads
    upstream: str  # a fix or setting upstream, or why there is none to use

    def supports(self, release: str) -> bool:
        return SpecifierSet(self.supported).contains(release, prereleases=True)


OVERRIDES: tuple[Override, ...] = (
    Override(
        "quart",
        ">=0.20,<0.23",
        "app/http_connection.py, app/factory.py",
        "LeanHTTPConnection subclasses quart.asgi.ASGIHTTPConnection (handle_request, "
        "_create_request_from_scope, _send_response, _normalise_path); ApiRequest overrides "
        "Request.blueprints and get_json; ServiceApp overrides Quart.__call__ and ensure_async",
        "ensure_async and __call__ are documented; Quart has no setting for its three tasks per "
        "request (0.23 not tried yet: issue 34)",
    ),
    Override(
        "quart-schema",
        ">=0.21,<0.26",
        "app/json_provider.py",
        "reads QuartSchema's wrapped app.make_response through __wrapped__, to skip its "
        "per-response TypeAdapter for plain JSON",
        "no setting to skip the conversion",
    ),
    Override(
        "hypercorn",
        ">=0.18,<0.19",
        "app/hypercorn_patches.py, app/hypercorn_http1.py, app/supervisor.py",
        "patches H11Protocol, WSStream, TCPServer and the worker loop (header timeout, framing, "
        "bounded closes, websocket wire): the list is hypercorn_patches' docstring; "
        "HttpToolsH11Protocol subclasses H11Protocol and drives HTTPStream with Hypercorn's "
        "protocol events, installed as hypercorn.protocol.H11Protocol",
        "keep_alive_timeout and h11_max_incomplete_size exist; no request-head timeout",
    ),
    Override(
        "h11",
        ">=0.16,<0.17",
        "app/hypercorn_patches.py, app/hypercorn_http1.py",
        "reads h11's connection states and events in the patched H11Protocol; the fast HTTP/1 "
        "path writes responses as h11 frames them and raises its LocalProtocolError",
        "no setting (h11 is sans-IO: timeouts are the server's)",
    ),
    Override(
        "wsproto",
        ">=1.3,<1.4",
        "app/hypercorn_patches.py",
        "PerMessageDeflate without context takeover; frames written to the transport directly",
        "PerMessageDeflate takes the no-context-takeover parameters; Hypercorn does not pass them",
    ),
    Override(
        "uvicorn",
        ">=0.55,<0.56",
        "app/uvicorn_server.py",
        "subclasses HttpToolsProtocol and WebSocketsSansIOProtocol (head size, header timeout, "
        "close codes); sets RequestResponseCycle.transport (the head written with the body)",
        "h11_max_incomplete_event_size is h11's only; no request-head timeout",
    ),
    Override(
        "httptools",
        ">=0.9,<0.10",
        "app/uvicorn_server.py, app/hypercorn_http1.py",
        "the parser callbacks the Uvicorn protocol subclass counts header bytes in; the "
        "request parser of Hypercorn's fast HTTP/1 path (callbacks, should_keep_alive)",
        "no setting",
    ),
    Override(
        "uvloop",
        ">=0.23,<0.24",
        "app/uvicorn_server.py",
        "the loop Uvicorn's workers run on (transport behaviour the subclass relies on)",
        "no setting needed; listed for its transport semantics",
    ),
    Override(
        "apscheduler",
        ">=3.10,<3.12",
        "app/scheduler/guard.py, executor.py, job_stores.py",
        "replaces Job._get_run_times (bounded catching up); overrides "
        "AsyncIOScheduler._process_jobs; AsyncIOExecutor._do_submit_job is 3.11's, with a "
        "claim first; subclasses the Redis, SQLAlchemy and memory job stores (their writes, "
        "_reconstitute_job, jobs_t)",
        "misfire_grace_time bounds what runs, not the catching-up loop; APScheduler 4 is a "
        "rewrite with its own data store API",
    ),
    Override(
        "sqlalchemy",
        ">=2.0.30,<2.2",
        "app/db.py, app/greenlet_pool.py",
        "a read's checkout, statement and release run in one greenlet, as "
        "AsyncConnection.run_sync runs the statements alone; that greenlet is kept for the next "
        "read, marked __sqlalchemy_greenlet_provider__ (the mark sqlalchemy.util.concurrency's "
        "await_ checks) as greenlet_spawn's own greenlets are",
        "run_sync is public but spawns a greenlet per step around it, and greenlet_spawn a new "
        "greenlet per call: a 16 KiB data stack mapped, faulted in and unmapped each time",
    ),
    Override(
        "aiosqlite",
        ">=0.22,<0.23",
        "app/aiosqlite_stop.py",
        "Connection.stop returns its first future when called again (a second stop queued "
        "behind the first was never answered: SQLAlchemy's terminate hung the loop's shutdown)",
        "no setting; not filed upstream yet (wapiti-scanner/wapiti#802 reports the same hang)",
    ),
    Override(
        "redis",
        ">=8.0,<9",
        "app/redis_client.py",
        "BoundedWaitConnectionPool uses ConnectionPool.get_available_connection and "
        "_in_use_connections (tests/test_redis_pool.py)",
        "BlockingConnectionPool gives the bound at 240-350 us of CPU per command",
    ),
    Override(
        "prometheus-client",
        ">=0.20,<0.27",
        "app/metrics.py",
        "values.ValueClass = MultiProcessValue(process_identifier=...): the pid without a "
        "system call per increment",
        "the documented extension point (process_identifier)",
    ),
)


class UnsupportedDependency(RuntimeError):
    """An installed release that an override was not written for."""


def unsupported(packages: Iterable[str] | None = None) -> list[str]:
    """One sentence per override (of `packages`, default all) whose package's installed release
    it does not support. The modules that hold an override check their own packages with it."""
    problems = []
    for override in OVERRIDES:
        if packages is not None and override.package not in packages:
            continue
        try:
            installed = version(override.package)
        except PackageNotFoundError:
            continue  # an optional server's package (uvicorn, uvloop) that is not installed
        if not override.supports(installed):
            problems.append(
                f"{override.package} {installed} is installed; {override.where} supports "
                f"{override.package}{override.supported}"
            )
    return problems


def check_overrides() -> None:
    """Raises `UnsupportedDependency` naming every override on an unsupported release."""
    problems = unsupported()
    if problems:
        raise UnsupportedDependency("; ".join(problems))
