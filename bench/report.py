"""The table `python -m bench` prints: one row per figure, with its reference, the ratio, the
target and the 1-minute load average while it was measured."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass


def load_average() -> float:
    return os.getloadavg()[0]


@dataclass
class Row:
    """One line of the table. `ratio` is `value / reference`; `target` is a predicate on it
    (e.g. ">= 2.5") or empty when the row is for information."""

    workload: str
    value: float
    unit: str
    reference_name: str = ""
    reference: float | None = None
    target: str = ""
    load: float = 0.0
    # The target bounds the value itself (e.g. "<= 25" KiB), not its ratio to the reference.
    absolute_target: bool = False
    # What else the measurement showed (e.g. "p99 12 ms, 0 errors, 0 timeouts").
    detail: str = ""

    @property
    def ratio(self) -> float | None:
        if self.reference in (None, 0):
            return None
        assert self.reference is not None
        return self.value / self.reference

    @property
    def met(self) -> bool | None:
        """Whether the target holds (None: no target)."""
        if not self.target:
            return None
        operator, _, bound_text = self.target.partition(" ")
        subject = self.ratio if self.target_on_ratio else self.value
        if subject is None:
            return False
        bound = float(bound_text)
        return subject >= bound if operator == ">=" else subject <= bound

    @property
    def target_on_ratio(self) -> bool:
        return self.reference is not None and not self.absolute_target


class Samples:
    """Figures of one measurement over interleaved runs, and their median."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.loads: list[float] = []

    def add(self, value: float) -> None:
        self.values.append(value)
        self.loads.append(load_average())

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def load(self) -> float:
        return statistics.median(self.loads) if self.loads else 0.0


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def render(rows: list[Row], *, title: str = "") -> str:
    """A fixed-width table of `rows`."""
    header = ("workload", "this service", "reference", "ratio", "target", "met", "load", "detail")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        met = {True: "yes", False: "NO", None: ""}[row.met]
        reference = (
            f"{_figure(row.reference)} {row.unit} ({row.reference_name})"
            if row.reference is not None
            else row.reference_name
        )
        ratio = f"x{row.ratio:.2f}" if row.ratio is not None else ""
        lines.append(
            (
                row.workload,
                f"{_figure(row.value)} {row.unit}",
                reference,
                ratio,
                row.target,
                met,
                f"{row.load:.2f}",
                row.detail,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines
    ]
    text.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(([title] if title else []) + text)
