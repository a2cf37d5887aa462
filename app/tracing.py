"""Traces (OpenTelemetry): a request's HTTP span with its SQL and Redis spans, and a chat message
from the frame that sent it to its delivery on every worker.

Off by default. `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) turns it on in every
worker, exporting over OTLP/HTTP; the standard `OTEL_*` variables choose the rest (the sampler,
e.g. `OTEL_TRACES_SAMPLER=parentbased_traceidratio` with `OTEL_TRACES_SAMPLER_ARG=0.1`; the
service name; `OTEL_SDK_DISABLED=true` turns it off again). docs/operations.md ("Traces").

- HTTP: the ASGI instrumentation opens the request's server span (a `traceparent` header
  continues the caller's trace); the SQLAlchemy and redis-py instrumentations add a span per
  statement and per command (a pipeline or Lua script is one span).
- Websockets: the ASGI instrumentation is not on websockets (a connection would be one span of
  hours, and its per-message wrappers would cost every frame); each frame the client sends is
  a span of its own instead (`frame_span`), which continues a `traceparent` given inside the
  frame (browsers cannot set headers on a websocket handshake: docs/websockets.md).
- Fan-out: a publish is a PRODUCER span whose W3C `traceparent` rides in the broker envelope
  (`BrokerMessage["trace"]`); each worker's delivery is a CONSUMER span continuing it and
  linked to it, holding how many of that worker's connections got the frame
  (`delivery_span`). Unsampled publishes carry nothing and cost the receivers nothing.

The tracer provider is the process's (OpenTelemetry keeps one per process), set once by
`start_tracing` in each worker; while it is unset every helper here returns at its first test.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import orjson

from app.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
SERVICE_NAME = "quart-framework"
# Probes and scrapes would be most of the traces and say nothing (OTEL_PYTHON_ASGI_EXCLUDED_URLS
# replaces this list).
EXCLUDED_URLS = "/healthz,/readyz,/metrics"
# At a worker's shutdown, the buffered spans get this long to reach the collector; what is left
# is dropped and counted in one log line (a dead or hung collector must not hold SIGTERM past
# hypercorn.toml's graceful_timeout: the Kubernetes grace period would SIGKILL the pod).
SHUTDOWN_EXPORT_SECONDS = 2.0
# Spans buffered while the collector is slow or down (OTEL_BSP_MAX_QUEUE_SIZE overrides it);
# past it new spans are dropped, not the requests.
MAX_QUEUE_SIZE = 2048

_provider: TracerProvider | None = None
_processor: BatchSpanProcessor | None = None
_tracer: Tracer | None = None
_trace_monitor_frames = False


def tracing_on() -> bool:
    return _tracer is not None


def start_tracing(settings: Settings) -> bool:
    """Set up this process's tracing when `settings.tracing_enabled`, once per process; returns
    whether tracing is on. Instruments redis-py (every client) and SQLAlchemy (every engine
    created afterwards through `sqlalchemy.ext.asyncio.create_async_engine`)."""
    global _provider, _processor, _tracer, _trace_monitor_frames
    if _tracer is not None or not settings.tracing_enabled:
        return _tracer is not None
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"service.instance.id": f"{socket.gethostname()}:{os.getpid()}"}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = SERVICE_NAME
    # The sampler comes from OTEL_TRACES_SAMPLER(_ARG); the exporter's endpoint, headers and
    # timeout from OTEL_EXPORTER_OTLP_*.
    provider = TracerProvider(
        resource=Resource.create(attributes), id_generator=_head_sampled_ids()
    )
    processor = BatchSpanProcessor(
        OTLPSpanExporter(),
        max_queue_size=int(os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE", MAX_QUEUE_SIZE)),
    )
    provider.add_span_processor(processor)
    # The SDK warns for every span it drops while its queue is full: once a minute is enough.
    logging.getLogger("opentelemetry").addFilter(OncePerMinute())
    trace.set_tracer_provider(provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    # The instrumentation declares SQLAlchemy < 2.1 and refuses 2.1 unless told; it works on
    # 2.1 (its events are unchanged), which tests/e2e/test_tracing.py checks.
    SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    _provider = provider
    _processor = processor
    _tracer = provider.get_tracer("app")
    _trace_monitor_frames = settings.trace_monitor_frames
    log.info("tracing on: spans exported over OTLP/HTTP")
    return True


def untraced() -> AbstractContextManager[Any]:
    """Instrumentation suppressed for the block and the tasks it starts (a worker's own
    background work: startup checks, heartbeats, the broker's subscription, scheduled jobs),
    so their statements do not become traces of their own; a no-op while tracing is off.
    Engines must be made outside it: the SQLAlchemy instrumentation skips those made inside."""
    if _tracer is None:
        return nullcontext()
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    return suppress_instrumentation()


def flush_traces() -> None:
    """At a worker's shutdown: export the spans still buffered for at most
    `SHUTDOWN_EXPORT_SECONDS`, then stop exporting, and log how many were dropped (one line).

    The SDK's `force_flush` ignores its time limit and exports every buffered batch, each
    request retried with backoff while the collector fails (open-telemetry/opentelemetry-
    python#4568): 20,000 buffered spans and a hung collector held a SIGTERM 40 s. The batch
    processor's `shutdown` (which exports the rest, then stops) runs in a daemon thread of its
    own here, waited for `SHUTDOWN_EXPORT_SECONDS`: what it has not sent by then is dropped
    with the process, which it does not hold."""
    import threading

    processor = _processor
    if processor is None:
        return
    stopping = threading.Thread(target=processor.shutdown, name="otel-shutdown", daemon=True)
    stopping.start()
    stopping.join(SHUTDOWN_EXPORT_SECONDS)
    dropped = _buffered_spans(processor) if stopping.is_alive() else 0
    if dropped:
        log.warning(
            "tracing: %d spans dropped at shutdown (the collector took none of them within %.0f s)",
            dropped,
            SHUTDOWN_EXPORT_SECONDS,
        )


def _buffered_spans(processor: BatchSpanProcessor) -> int:
    """Spans still in `processor`'s queue (opentelemetry-sdk 1.3x-1.4x keeps them in
    `_batch_processor._queue`; 0 where it does not)."""
    queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
    return len(queue) if queue is not None else 0


class OncePerMinute(logging.Filter):
    """Lets one record per message text through per minute."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        import time

        now = time.monotonic()
        key = str(record.msg)
        if now - self._last.get(key, -60.0) < 60.0:
            return False
        self._last[key] = now
        return True


def traced_http(asgi_app: Any) -> Any:
    """`asgi_app` with a server span per sampled HTTP request when tracing is on (other scopes
    pass straight through); else `asgi_app` itself.

    The sampler (`OTEL_TRACES_SAMPLER`) is asked first, with the request's `traceparent`: an
    unsampled request (90% at 10% sampling), and one to `EXCLUDED_URLS`, skips the ASGI
    instrumentation and runs with instrumentation suppressed under a non-recording span of its
    own trace id (still the log's request id), so its SQL and Redis calls cost no span work.
    A sampled one goes through the instrumentation, whose root span gets the trace id the
    sampler was asked about (`_head_sampled_ids`).
    """
    if _provider is None:
        return asgi_app
    from opentelemetry import propagate, trace
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware, asgi_getter
    from opentelemetry.instrumentation.utils import suppress_instrumentation
    from opentelemetry.sdk.trace.sampling import Decision
    from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
    from opentelemetry.util.http import parse_excluded_urls

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # A coroutine function, as asgiref's ASGI-version check wants (the middlewares under
        # it return their awaitable from a plain __call__).
        await asgi_app(scope, receive, send)

    excluded = parse_excluded_urls(os.environ.get("OTEL_PYTHON_ASGI_EXCLUDED_URLS", EXCLUDED_URLS))
    traced = OpenTelemetryMiddleware(application, exclude_spans=["receive", "send"])
    sampler = _provider.sampler
    ids = _provider.id_generator

    async def http_only(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await asgi_app(scope, receive, send)
            return
        parent = propagate.extract(scope, getter=asgi_getter)
        parent_span = trace.get_current_span(parent).get_span_context()
        trace_id = parent_span.trace_id if parent_span.is_valid else ids.generate_trace_id()
        sampled = (
            not excluded.url_disabled(scope.get("path", ""))
            and sampler.should_sample(
                parent, trace_id, scope.get("method", "HTTP"), SpanKind.SERVER
            ).decision
            is Decision.RECORD_AND_SAMPLE
        )
        if sampled:
            # The instrumentation's root span takes this trace id (a caller's trace: its own).
            primed = _next_trace_id.set(0 if parent_span.is_valid else trace_id)
            try:
                await traced(scope, receive, send)
            finally:
                _next_trace_id.reset(primed)
            return
        span = NonRecordingSpan(
            SpanContext(trace_id, ids.generate_span_id(), False, TraceFlags(TraceFlags.DEFAULT))
        )
        with trace.use_span(span), suppress_instrumentation():
            await asgi_app(scope, receive, send)

    return http_only


_next_trace_id: ContextVar[int] = ContextVar("next_trace_id", default=0)


def _head_sampled_ids() -> Any:
    """The SDK's random ids, except that the next root span's trace id may be primed: the one
    `traced_http` asked the sampler about, so the instrumentation's span gets the same
    decision."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class HeadSampledIds(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            primed = _next_trace_id.get()
            if primed:
                _next_trace_id.set(0)
                return primed
            return super().generate_trace_id()

    return HeadSampledIds()


def current_trace_id() -> str | None:
    """The current span's trace id (32 hex digits) while tracing is on, else None."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def frame_traceparent(data: str) -> str | None:
    """The `traceparent` member of a JSON object frame, if it has a string one."""
    if TRACEPARENT not in data:
        return None
    with contextlib.suppress(ValueError):
        frame = orjson.loads(data)
        if isinstance(frame, dict) and isinstance(frame.get(TRACEPARENT), str):
            return str(frame[TRACEPARENT])
    return None


def frame_span(endpoint: str, data: str | bytes) -> AbstractContextManager[Any]:
    """A span for one frame a client sent on `endpoint`: it continues the frame's own
    `traceparent` (a W3C trace context string) or starts a trace, which the sampler may drop
    (then the instrumentations are suppressed under it). No span for the memory monitor
    unless `TRACE_MONITOR_FRAMES`."""
    if _tracer is None or (endpoint == "monitor" and not _trace_monitor_frames):
        return nullcontext()
    return _frame_span(_tracer, endpoint, data)


@contextlib.contextmanager
def _frame_span(tracer: Tracer, endpoint: str, data: str | bytes) -> Iterator[Span]:
    from opentelemetry.context import Context
    from opentelemetry.instrumentation.utils import suppress_instrumentation
    from opentelemetry.trace import SpanKind

    traceparent = frame_traceparent(data) if isinstance(data, str) else None
    parent = _extract(traceparent) if traceparent else Context()
    with tracer.start_as_current_span(
        f"WEBSOCKET frame /{endpoint}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"websocket.endpoint": endpoint, "websocket.frame.bytes": len(data)},
    ) as span:
        if span.is_recording():
            yield span
        else:
            with suppress_instrumentation():
                yield span


def publish_span(destination: str) -> AbstractContextManager[str | None]:
    """A PRODUCER span around a publish to `destination` ("room/<name>", "endpoint/<name>");
    gives the `traceparent` to put in the envelope, or None when there is nothing to continue
    (tracing off, or the span not sampled)."""
    if _tracer is None:
        return nullcontext()
    return _publish_span(_tracer, destination)


@contextlib.contextmanager
def _publish_span(tracer: Tracer, destination: str) -> Iterator[str | None]:
    from opentelemetry.trace import SpanKind

    with tracer.start_as_current_span(
        f"publish {destination}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "redis",
            "messaging.operation.type": "send",
            "messaging.destination.name": destination,
        },
    ) as span:
        yield _traceparent_of(span) if span.is_recording() else None


@contextlib.contextmanager
def delivery_span(
    envelope: Mapping[str, Any], destination: str, worker: str
) -> Iterator[Span | None]:
    """A CONSUMER span for this worker's delivery of a broker message whose envelope carries a
    `trace` (else yields None): a child of the publish span, linked to it. The caller sets
    `messaging.batch.message_count` to how many connections it reached."""
    traceparent = envelope.get("trace")
    if _tracer is None or not isinstance(traceparent, str):
        yield None
        return
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind

    parent = _extract(traceparent)
    publisher = trace.get_current_span(parent).get_span_context()
    with _tracer.start_as_current_span(
        f"deliver {destination}",
        context=parent,
        kind=SpanKind.CONSUMER,
        links=[Link(publisher)] if publisher.is_valid else None,
        attributes={
            "messaging.system": "redis",
            "messaging.operation.type": "process",
            "messaging.destination.name": destination,
            "app.worker": worker,
        },
    ) as span:
        yield span


def _extract(traceparent: str) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({TRACEPARENT: traceparent})


def _traceparent_of(span: Span) -> str | None:
    from opentelemetry.trace import set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=set_span_in_context(span))
    return carrier.get(TRACEPARENT)
