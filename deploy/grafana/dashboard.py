"""The Grafana dashboard of quart-framework's Prometheus metrics (app/metrics.py), generated with
Grafana's own grafana-foundation-sdk:

    python deploy/grafana/dashboard.py > deploy/grafana/quart-framework.json

tests/test_grafana_dashboard.py checks that the JSON in the folder is what this code makes, and
that every metric a panel queries is one the service exports.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import TimeZoneBrowser
from grafana_foundation_sdk.models.dashboard import DataSourceRef

UID = "quart-framework"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "[$__rate_interval]"


def query(expression: str, legend: str) -> Dataquery:
    return Dataquery().expr(expression).legend_format(legend)


def series(title: str, unit: str, *queries: Dataquery, description: str = "") -> Timeseries:
    panel = Timeseries().title(title).unit(unit).datasource(DATASOURCE).height(8).span(12)
    if description:
        panel = panel.description(description)
    for target in queries:
        panel = panel.with_target(target)
    return panel


def quantile(q: float, metric: str, by: str, name: str = "") -> Dataquery:
    return query(
        f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{RATE})))",
        f"{name}p{round(q * 100)} {{{{{by}}}}}",
    )


def build() -> Dashboard:
    """The dashboard: HTTP, admission, websockets and chat, the scheduler, the stores."""
    return (
        Dashboard("quart-framework")
        .uid(UID)
        .tags(["quart-framework", "generated"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone(TimeZoneBrowser)
        .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_row(Row("HTTP"))
        .with_panel(
            series(
                "Requests by route and status",
                "reqps",
                query(
                    f"sum by (route, status) (rate(http_requests_total{RATE}))",
                    "{{route}} {{status}}",
                ),
            )
        )
        .with_panel(
            series(
                "Latency by route",
                "s",
                quantile(0.5, "http_request_duration_seconds", "route"),
                quantile(0.99, "http_request_duration_seconds", "route"),
            )
        )
        .with_panel(
            series(
                "Admission: limit, waiting, shed",
                "short",
                query("sum(http_concurrency_limit)", "limit (all workers)"),
                query("sum(http_requests_waiting)", "waiting"),
                query(f"sum by (reason) (rate(http_requests_shed_total{RATE}))", "shed {{reason}}"),
                query(
                    f"sum by (reason) (rate(http_client_requests_refused_total{RATE}))",
                    "refused {{reason}}",
                ),
                description="503s with Retry-After (shed) and 408/429s for slow or greedy "
                "clients (refused), per second.",
            )
        )
        .with_panel(
            series(
                "Event-loop lag",
                "s",
                quantile(0.99, "event_loop_lag_seconds", "instance", "lag "),
                quantile(0.99, "event_loop_own_lag_seconds", "instance", "own lag "),
                description="How late a worker's loop runs a timer: every request and "
                "websocket of that worker waits as long. The own lag leaves out the time the "
                "worker waited for a CPU: high lag with low own lag is a crowded machine.",
            )
        )
        .with_row(Row("Websockets and chat"))
        .with_panel(
            series(
                "Open websockets",
                "short",
                query("sum by (endpoint) (websocket_connections)", "{{endpoint}}"),
            )
        )
        .with_panel(
            series(
                "Frames",
                "short",
                query(
                    f"sum by (endpoint, direction) (rate(websocket_messages_total{RATE}))",
                    "{{endpoint}} {{direction}}",
                ),
            )
        )
        .with_panel(
            series(
                "Dropped messages",
                "short",
                query(
                    f"sum by (reason) (rate(websocket_messages_dropped_total{RATE}))",
                    "{{reason}}",
                ),
            )
        )
        .with_panel(
            series(
                "Room messages and recoveries",
                "short",
                query(f"sum(rate(chat_room_messages_total{RATE}))", "offsets given out"),
                query(
                    f"sum by (recovered) (rate(chat_recoveries_total{RATE}))",
                    "recovered={{recovered}}",
                ),
            )
        )
        .with_row(Row("Scheduler and stores"))
        .with_panel(
            Stat()
            .title("Scheduler leaders")
            .description("Workers that lead the scheduler: 1 is right, 2 means a split.")
            .datasource(DATASOURCE)
            .height(8)
            .span(6)
            .with_target(query("sum(scheduler_leader)", "leaders"))
        )
        .with_panel(
            series(
                "Job runs",
                "short",
                query(f"sum by (outcome) (rate(scheduler_job_runs_total{RATE}))", "{{outcome}}"),
            ).span(6)
        )
        .with_panel(
            series(
                "Database connections in use",
                "short",
                query("sum(db_pool_connections_in_use)", "in use (all workers)"),
            ).span(6)
        )
        .with_panel(
            series(
                "Redis errors and tracebacks",
                "short",
                query(f"sum by (kind) (rate(redis_errors_total{RATE}))", "redis {{kind}}"),
                query(
                    f"sum by (outcome) (rate(error_tracebacks_total{RATE}))",
                    "tracebacks {{outcome}}",
                ),
            ).span(6)
        )
        .with_panel(series("Online users", "short", query("max(online_users)", "online")).span(12))
    )


def render() -> str:
    """The dashboard's JSON, as checked in."""
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


if __name__ == "__main__":
    print(render(), end="")
