"""Prometheus metrics, in the text format at `GET /metrics`, for every worker at once.

`serve` runs prometheus-client in multi-process mode: the supervisor points
`PROMETHEUS_MULTIPROC_DIR` at an empty folder before it starts the workers, each worker writes
its samples there (memory-mapped files), and the worker that answers a scrape aggregates them
all (counters and histograms summed; gauges summed over live workers, or per worker where the
name says so). Without that variable (tests, `quart run`) the metrics are this process's own.

Metrics (names follow Prometheus conventions; durations in seconds):
- `http_requests_total{route, method, status}`, `http_request_duration_seconds{route, method}`:
  `route` is the URL rule (`/api/v1/user/<user_id>`), never the raw path, so cardinality stays
  bounded; unmatched paths are `<unmatched>`.
- `websocket_connections{endpoint}`: open websockets; `websocket_messages_total{endpoint,
  direction}`: frames received (`in`) and queued to clients (`out`);
  `websocket_messages_dropped_total{reason}`: `slow_consumer` (a send queue overflowed and the
  client was closed with 1013) and `broker_unavailable` (a publish Redis did not take).
- `chat_room_messages_total`: messages published to room logs (its rate is the offsets given out
  per second); `chat_recoveries_total{recovered}`: joins with `since` that got every missed
  message (`true`) or were told they could not (`false`).
- `online_users`: users active within `ONLINE_LAST_MINUTES`, read from the presence store at
  scrape time.
- `db_pool_connections_in_use`: database connections checked out, summed over workers (each
  worker's sampled every 0.25 s: app.db.PoolUseSampler).
- `redis_errors_total{kind}`: Redis calls that failed (`unreachable`) or were refused at once
  while the circuit was open (`circuit_open`).
- Admission (app/admission/): `http_concurrency_limit`, requests the workers may run at once
  (summed); `http_requests_waiting`, requests waiting for a slot; `http_requests_shed_total
  {reason}`, requests answered 503 at once: `queue_full` (`HTTP_QUEUE_MAX` already waiting)
  or `queue_timeout` (waited longer than `HTTP_QUEUE_TIMEOUT`);
  `http_client_requests_refused_total{reason}`: `body_timeout` (408), `body_too_large` (413),
  `client_bodies` (429: `HTTP_CLIENT_MAX_BODIES` uploads from one address at once).
- `error_tracebacks_total{exception, outcome}`: errors that came with a traceback, `logged` or
  `suppressed` (at most one traceback per exception type a minute is written: app/request_log.py).
- `event_loop_lag_seconds`: how late each worker's event loop ran a probe due every 0.1 s
  (app/loop_lag.py); a lag of more than a few milliseconds means something blocked the loop,
  or the worker waited for a CPU. `event_loop_own_lag_seconds`: the same less the time the
  loop's thread waited for a CPU (Linux scheduler statistics): the worker's own blocking.
- `scheduler_job_runs_total{outcome}`: `success`, `error`, `missed`, `skipped`;
  `scheduler_leader{pid}`: 1 for the worker holding the leadership lease, 0 for the others (a
  stalled or stopped worker cannot lower its own); `scheduler_lease_expiry_seconds{pid}`: the Unix
  time until which that worker surely holds the lease: the leaders at time t are the workers
  whose value is above t, never more than one (app/scheduler/leadership.py).

The route and the request observer are in app/web/metrics.py.

In multi-process mode every increment first asks which process it runs in (prometheus-client's
default `os.getpid`, a system call on current glibc, checked against the pid its files were
opened for, so that a forked child never writes its parent's files). Here that identifier is
the pid cached by app/metric_files.py and renewed in a forked child (`os.register_at_fork`): the same
answer without the system call, on the documented extension point `MultiProcessValue(
process_identifier)`. It is installed before the first metric is made.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, values

from app.metric_files import MULTIPROCESS_DIRECTORY, process_identifier

UNMATCHED_ROUTE = "<unmatched>"  # the `route` label of a request no URL rule matched

if os.environ.get(MULTIPROCESS_DIRECTORY):
    values.ValueClass = values.MultiProcessValue(process_identifier=process_identifier)

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from the request's arrival to its response",
    ["route", "method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENT_LOOP_LAG = Histogram(
    "event_loop_lag_seconds",
    "How late the event loop ran a callback that was due",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENT_LOOP_OWN_LAG = Histogram(
    "event_loop_own_lag_seconds",
    "Event-loop lag less the time the loop's thread waited for a CPU: what the worker's own "
    "code held the loop (equal to the lag where Linux gives no scheduler statistics)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
HTTP_REQUESTS_WAITING = Gauge(
    "http_requests_waiting",
    "HTTP requests waiting for an admission slot (HTTP_CONCURRENCY)",
    multiprocess_mode="livesum",
)
HTTP_CONCURRENCY_LIMIT = Gauge(
    "http_concurrency_limit",
    "HTTP requests the workers may run at once (HTTP_CONCURRENCY per worker)",
    multiprocess_mode="livesum",
)
HTTP_REQUESTS_SHED = Counter(
    "http_requests_shed_total",
    "HTTP requests answered 503 by admission control, by reason",
    ["reason"],
)
HTTP_CLIENT_REFUSED = Counter(
    "http_client_requests_refused_total",
    "HTTP requests refused while their body arrived (408, 413, 429), by reason",
    ["reason"],
)
WEBSOCKETS_OPEN = Gauge(
    "websocket_connections", "Open websockets", ["endpoint"], multiprocess_mode="livesum"
)
WEBSOCKET_MESSAGES = Counter(
    "websocket_messages_total", "Websocket frames in and out", ["endpoint", "direction"]
)
WEBSOCKET_DROPPED = Counter(
    "websocket_messages_dropped_total", "Websocket messages not delivered", ["reason"]
)
ONLINE_USERS = Gauge(
    "online_users", "Users active within ONLINE_LAST_MINUTES", multiprocess_mode="mostrecent"
)
DB_CONNECTIONS_IN_USE = Gauge(
    "db_pool_connections_in_use",
    "Database connections checked out of the pool",
    multiprocess_mode="livesum",
)
REDIS_ERRORS = Counter("redis_errors_total", "Redis calls that failed", ["kind"])
ERROR_TRACEBACKS = Counter(
    "error_tracebacks_total",
    "Errors with a traceback, by exception type: written to the log, or suppressed",
    ["exception", "outcome"],
)
SCHEDULER_RUNS = Counter("scheduler_job_runs_total", "Scheduled job runs", ["outcome"])
CHAT_ROOM_MESSAGES = Counter(
    "chat_room_messages_total", "Messages published to room logs (offsets given out)"
)
CHAT_RECOVERIES = Counter(
    "chat_recoveries_total",
    "Room joins that asked to recover from a position: recovered, or not (told so)",
    ["recovered"],
)
SCHEDULER_LEADER = Gauge(
    "scheduler_leader", "1 on the worker that leads the scheduler", multiprocess_mode="liveall"
)
SCHEDULER_LEASE_EXPIRY = Gauge(
    "scheduler_lease_expiry_seconds",
    "Unix time until which the worker surely holds the scheduler lease (0: it does not)",
    multiprocess_mode="liveall",
)


class RequestMetrics:
    """`http_requests_total` and `http_request_duration_seconds` of answered requests, their
    labelled children made once per label set (a lock and a lookup each in prometheus-client)."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    def observe(self, route: str | None, method: str, status: int, seconds: float) -> None:
        """Count one answer of `route` (the URL rule; None: no rule matched) and its time."""
        key = (route or UNMATCHED_ROUTE, method, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = HTTP_REQUESTS.labels(key[0], method, str(status))
        counter.inc()
        timer = self._timers.get(key[:2])
        if timer is None:
            timer = self._timers[key[:2]] = HTTP_LATENCY.labels(key[0], method)
        timer.observe(seconds)
