"""The README's tables kept true by the code (issue 35): every setting of `Settings` is in the
settings table (the scheduler's in the "Scheduler" section), every metric app/metrics.py
exports is in the metrics table, and neither table names one that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

import app.metrics
from app.settings import Settings

README = (Path(__file__).parents[1] / "README.md").read_text()
NAME = re.compile(r"`([A-Za-z0-9_]+)`")


def section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def first_column_names(text: str) -> set[str]:
    """The backticked names in the first column of the table rows of `text`."""
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in NAME.findall(row.split(" | ", 1)[0])}


def setting_names() -> set[str]:
    names = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.add(field_name.upper() if not isinstance(alias, str) else alias.upper())
    return names


def test_every_setting_is_documented_and_every_documented_one_exists() -> None:
    table = first_column_names(section("Pointing it at MySQL and Redis"))
    scheduler = set(re.findall(r"`([A-Z0-9_]+)[`=]", section("Scheduler")))
    settings = setting_names()
    undocumented = {
        name
        for name in settings
        if name not in table and not (name.startswith("SCHEDULER_") and name in scheduler)
    }
    assert not undocumented, f"settings missing from the README: {sorted(undocumented)}"
    stale = {name for name in table if name not in settings and not name.startswith("OTEL_")}
    assert not stale, f"the README's settings table names what Settings lacks: {sorted(stale)}"


def exported_metrics() -> set[str]:
    names = set()
    for value in vars(app.metrics).values():
        if isinstance(value, MetricWrapperBase):
            suffix = "_total" if value._type == "counter" else ""
            names.add(value._name + suffix)
    return names


def test_every_metric_is_in_the_metrics_table_and_no_other() -> None:
    table = first_column_names(section("Metrics"))
    exported = exported_metrics()
    assert len(exported) >= 20  # the module's metrics were found
    assert exported - table == set(), "metrics missing from the README"
    assert table - exported == set(), "the README's metrics table names unknown metrics"


def test_no_link_leaves_the_repository() -> None:
    """Markdown links and backticked paths of the README and docs/ stay inside the checkout."""
    root = Path(__file__).parents[1]
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)#]+)[^)]*\)", text):
            if "://" in target:
                continue
            assert (page.parent / target).resolve().is_relative_to(root), (page.name, target)
            assert (page.parent / target).exists(), (page.name, target)
        assert "../shared" not in text, page.name


def test_the_layout_list_names_every_module() -> None:
    """docs/design.md's Layout (the one list) names each module of app/: its path, or its name
    under its folder's entry."""
    root = Path(__file__).parents[1]
    layout = (root / "docs" / "design.md").read_text().split("## Layout", 1)[1]
    layout = layout.split("\n## ", 1)[0]
    missing = []
    for path in sorted((root / "app").rglob("*.py")):
        relative = path.relative_to(root)
        if path.stem == "__init__" and path.parent != root / "app":
            continue
        folder = f"{relative.parent}/"
        if str(relative) in layout:
            continue
        if folder in layout and re.search(rf"\b{re.escape(path.stem)}\b", layout):
            continue
        missing.append(str(relative))
    assert missing == []
