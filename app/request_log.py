"""Logging: one line per request (method, path, status, duration, request id), text or JSON lines.

The request id is the trace id when tracing is on (app.tracing), else it comes from a sane
incoming `X-Request-ID` or is generated; it is echoed in the
response header and named in 500 messages, so a user's report finds its log line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time

from pythonjsonlogger.json import JsonFormatter
from quart import Quart, Response, g, request

from app.metrics import ERROR_TRACEBACKS
from app.settings import Settings
from app.tracing import current_trace_id

access_log = logging.getLogger("app.access")
REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
# C0 controls, DEL, C1 controls and the Unicode line separators, each shown as `\xNN`/`\uNNNN`.
_CONTROL_ESCAPES = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
}


def escape_controls(text: str) -> str:
    """`text` with control characters escaped, so a request path holding `%0a` cannot forge a
    second log line."""
    return text.translate(_CONTROL_ESCAPES)


class SecondCachedTime(logging.Formatter):
    """`asctime` in logging's default format, with the date and time worked out once a second
    (logging's own `formatTime` calls `strftime` for every record: a tenth of an access line's
    cost). Called under the handler's lock, as every `format` is."""

    _second: int | None = None
    _second_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        if self.default_msec_format:
            return self.default_msec_format % (self._second_text, record.msecs)
        return self._second_text


class EscapingFormatter(SecondCachedTime):
    """The text log's formatter: one event, one line (a traceback still follows on its own
    lines, after the escaped message)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


class CachedTimeJsonFormatter(SecondCachedTime, JsonFormatter):
    """python-json-logger's formatter with `SecondCachedTime`'s `asctime`."""


class TracebackLimit:
    """At most one traceback per exception type per `interval` seconds.

    An outage (a database gone, a bug hit by every request) raises the same error on every
    request: each still gets its one log line, but its traceback is written once a minute per
    type, not hundreds of times a second (the rest is `error_tracebacks_total{outcome=
    "suppressed"}`).
    """

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}

    def exc_info(self, error: BaseException) -> BaseException | None:
        """`error` if its traceback may be written now, else None (count it either way)."""
        kind = f"{type(error).__module__}.{type(error).__qualname__}"
        now = time.monotonic()
        last = self._last.get(kind)
        if last is None or now - last >= self.interval:
            self._last[kind] = now
            ERROR_TRACEBACKS.labels(kind, "logged").inc()
            return error
        ERROR_TRACEBACKS.labels(kind, "suppressed").inc()
        return None


def configure_logging(settings: Settings) -> None:
    """Send the `app` loggers to stderr, as text or (`LOG_FORMAT=json`) one JSON object a line."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(
            CachedTimeJsonFormatter("%(asctime)s %(levelname)s %(name)s %(process)d %(message)s")
        )
    else:
        handler.setFormatter(EscapingFormatter(TEXT_FORMAT))
    # The logging HOWTO's "Optimization": skip what no format here shows (the caller's file and
    # line, the thread, the multiprocessing name): a third of an access line's cost.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    logger = logging.getLogger("app")
    logger.handlers[:] = [handler]
    logger.setLevel(settings.log_level.upper())
    logger.propagate = False


async def _start_timer() -> None:
    # getlist: a missing header costs werkzeug's `get` an exception (BadRequestKeyError).
    # With tracing on, the request id is the trace id (a caller continues its own trace with
    # `traceparent`); else a sane incoming X-Request-ID, or a new one.
    trace_id = current_trace_id()
    if trace_id is not None:
        g.request_id = trace_id
    else:
        incoming = next(iter(request.headers.getlist(REQUEST_ID_HEADER)), "")
        g.request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else os.urandom(16).hex()
    g.request_started = time.perf_counter()


async def _log_request(response: Response) -> Response:
    request_id = g.get("request_id", "-")
    duration_ms = (time.perf_counter() - g.get("request_started", time.perf_counter())) * 1000
    response.headers[REQUEST_ID_HEADER] = request_id
    method, path, status = request.method, request.path, response.status_code
    client = request.remote_addr  # behind a proxy: from X-Forwarded-For (FORWARDED_ALLOW_HOPS)
    access_log.info(
        "%s %s %d %.1fms id=%s client=%s",
        method,
        path,
        status,
        duration_ms,
        request_id,
        client,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(duration_ms, 2),
            "request_id": request_id,
            "client": client,
        },
    )
    return response


def register_request_logging(app: Quart) -> None:
    app.before_request(_start_timer)
    app.after_request(_log_request)
