"""Logging: text or JSON lines, and the access log, one line per request (method, path, status,
duration, request id, client: `AccessLog`).

The request id is the trace id when tracing is on (app.tracing), else it comes from a sane
incoming `X-Request-ID` or is generated (`request_id_for`); it is echoed in the response header
and named in 500 messages, so a user's report finds its log line (app.request_hooks).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import re
import sys
import time
from typing import Any, TextIO, cast

import orjson
from pythonjsonlogger.orjson import OrjsonFormatter

from app.metric_files import process_identifier
from app.settings import Settings
from app.tracing import current_trace_id

ACCESS_LOGGER = "app.access"
access_log = logging.getLogger(ACCESS_LOGGER)
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_HEADER_LOWER = b"x-request-id"
# Where the request id is kept in the request's ASGI scope (app.request_hooks sets it).
REQUEST_ID_SCOPE_KEY = "app.request_id"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
JSON_FORMAT = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
# C0 controls, DEL, C1 controls and the Unicode line separators, each shown as `\xNN`/`\uNNNN`.
_CONTROL_ESCAPES = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
}
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """`text` with control characters escaped, so a request path holding `%0a` cannot forge a
    second log line."""
    if _CONTROL.search(text) is None:  # the common case: a search, not a copy
        return text
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
        return self.asctime(record.created)

    def asctime(self, created: float) -> str:
        """The `asctime` of a record made at `created` (seconds since the epoch)."""
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        if self.default_msec_format:
            return self.default_msec_format % (self._second_text, int((created - second) * 1000))
        return self._second_text


class EscapingFormatter(SecondCachedTime):
    """The text log's formatter: one event, one line (a traceback still follows on its own
    lines, after the escaped message)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


class CachedTimeJsonFormatter(SecondCachedTime, OrjsonFormatter):
    """python-json-logger's orjson formatter with `SecondCachedTime`'s `asctime`."""


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
        # Not imported with this module: the supervisor imports it (app/metric_files.py).
        from app.metrics import ERROR_TRACEBACKS

        kind = f"{type(error).__module__}.{type(error).__qualname__}"
        now = time.monotonic()
        last = self._last.get(kind)
        if last is None or now - last >= self.interval:
            self._last[kind] = now
            ERROR_TRACEBACKS.labels(kind, "logged").inc()
            return error
        ERROR_TRACEBACKS.labels(kind, "suppressed").inc()
        return None


def configure_logging(settings: Settings) -> logging.StreamHandler[TextIO]:
    """Send the `app` loggers to stderr, as text or (`LOG_FORMAT=json`) one JSON object a line;
    returns the handler (its stream also takes the access log's lines, `AccessLog`)."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(CachedTimeJsonFormatter(JSON_FORMAT))
    else:
        handler.setFormatter(EscapingFormatter(TEXT_FORMAT))
    # The logging HOWTO's "Optimization": skip what no format here shows (the caller's file and
    # line, the thread, the multiprocessing name).
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    logger = logging.getLogger("app")
    logger.handlers[:] = [handler]
    logger.setLevel(settings.log_level.upper())
    logger.propagate = False
    return handler


def request_id_for(scope: dict[str, Any]) -> str:
    """The id of the HTTP request of `scope`: the trace id when tracing is on (a caller
    continues its own trace with `traceparent`), else its first `X-Request-ID` when that is
    sane (1-64 of `A-Za-z0-9._-`), else a new one (32 hex digits)."""
    trace_id = current_trace_id()
    if trace_id is not None:
        return trace_id
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER_LOWER:
            incoming: str = value.decode("latin-1")
            if _SAFE_REQUEST_ID.match(incoming):
                return incoming
            break
    return os.urandom(16).hex()


def current_request_id() -> str | None:
    """The id of the request being handled (None outside one: a websocket, a job)."""
    from quart import has_request_context, request  # Quart is not the supervisor's to import

    if has_request_context():
        found: str | None = cast("dict[str, Any]", request.scope).get(REQUEST_ID_SCOPE_KEY)
        return found
    return None


class AccessLog:
    """The access log: one line per answered request (method, path, status, duration, request
    id, client address) from the logger `app.access`, in the log's format (text or JSON lines,
    with the same fields as every other line), at INFO.

    The lines are written to the log handler's stream directly, not through logging's records,
    handlers and formatters, and the lines of one event-loop turn go out in one write: that
    path cost a request about 30 us (a record, the handler's lock, a formatter, and a write
    and flush per line; bench/, docs/performance.md). `LOG_LEVEL=WARNING` turns it off like any
    INFO line.

    Arguments:
        handler: the handler `configure_logging` made (its stream and lock are shared).
        json_lines: write JSON objects (`LOG_FORMAT=json`) instead of text lines.
    """

    def __init__(self, handler: logging.StreamHandler[TextIO], *, json_lines: bool) -> None:
        self._handler = handler
        self._json = json_lines
        formatter = handler.formatter
        self._formatter = (
            formatter if isinstance(formatter, SecondCachedTime) else EscapingFormatter()
        )
        self._pending: list[str] = []
        self._flush_scheduled = False
        atexit.register(self.flush)

    def write(
        self,
        method: str,
        path: str,
        status: int,
        seconds: float,
        request_id: str,
        client: str | None,
    ) -> None:
        """Log one answered request (`seconds` from its start to its answer's end)."""
        if not access_log.isEnabledFor(logging.INFO):
            return
        now = time.time()
        duration_ms = seconds * 1000
        message = f"{method} {path} {status} {duration_ms:.1f}ms id={request_id} client={client}"
        asctime = self._formatter.asctime(now)
        process = process_identifier()
        if self._json:
            line = orjson.dumps(
                {
                    "asctime": asctime,
                    "levelname": "INFO",
                    "name": ACCESS_LOGGER,
                    "process": process,
                    "message": message,
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round(duration_ms, 2),
                    "request_id": request_id,
                    "client": client,
                }
            ).decode()
        else:
            line = f"{asctime} INFO {ACCESS_LOGGER} [{process}] {escape_controls(message)}"
        self._pending.append(line)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop: write at once
                self.flush()

    def flush(self) -> None:
        """Write the pending lines (at the end of the loop turn that logged them)."""
        self._flush_scheduled = False
        if not self._pending:
            return
        text = "\n".join(self._pending) + "\n"
        self._pending.clear()
        handler = self._handler
        with handler.lock or contextlib.nullcontext():
            try:
                handler.stream.write(text)
                handler.stream.flush()
            except (OSError, ValueError):  # a closed or broken stream, as logging tolerates
                pass
