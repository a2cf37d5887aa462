"""deploy/grafana/: the checked-in dashboard is what deploy/grafana/dashboard.py generates, and
every metric and label its panels query is one the service exports (app/metrics.py)."""

from __future__ import annotations

import importlib.util
import json
import re
from types import ModuleType

from prometheus_client.metrics import MetricWrapperBase

from app import metrics
from tests.e2e.server import PROJECT_ROOT

GRAFANA = PROJECT_ROOT / "deploy" / "grafana"
PROMETHEUS_LABELS = {"le", "instance", "job"}  # added by histograms and by Prometheus itself
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboard", GRAFANA / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exported() -> dict[str, set[str]]:
    """Every sample name the service exports, with the labels it carries."""
    samples: dict[str, set[str]] = {}
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            name = metric._name
            names = [name + suffix for suffix in SUFFIXES.get(metric._type, ("",))]
            if metric._type == "counter":
                names = [name if name.endswith("_total") else name + "_total"]
            for sample in names:
                samples[sample] = set(metric._labelnames)
    return samples


def test_the_checked_in_dashboard_is_the_generated_one() -> None:
    checked_in = (GRAFANA / "quart-framework.json").read_text()
    assert generator().render() == checked_in, "run: python deploy/grafana/dashboard.py > …"


def test_every_query_names_exported_metrics_and_labels() -> None:
    dashboard = json.loads((GRAFANA / "quart-framework.json").read_text())
    samples = exported()
    queried = set()
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len(panels) >= 12
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expression = target["expr"]
            names = [
                word
                for word in re.findall(
                    r"[a-z_]+(?=[{\[)])", re.sub(r"by \([^)]*\)", "", expression)
                )
                if word not in {"sum", "rate", "max", "histogram_quantile", "by"}
            ]
            assert names, expression
            for name in names:
                assert name in samples, f"{panel['title']}: {name} is not exported"
                queried.add(name.removesuffix("_bucket"))
                for group in re.findall(r"by \(([^)]*)\)", expression):
                    for label in (label.strip() for label in group.split(",")):
                        assert label in samples[name] | PROMETHEUS_LABELS, (name, label)
    # What the dashboard is for (issue 22): each of these has a panel.
    for wanted in [
        "http_requests_total",
        "http_request_duration_seconds",
        "websocket_connections",
        "websocket_messages_total",
        "websocket_messages_dropped_total",
        "scheduler_leader",
        "db_pool_connections_in_use",
        "redis_errors_total",
    ]:
        assert wanted in queried, wanted
