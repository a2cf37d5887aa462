"""The order pytest-xdist's `worksteal` receives the tests in: the long ones first, spread over
the workers, so the run does not end on one worker finishing a minute-long test alone.

worksteal (pytest-xdist 3.x, `WorkStealingScheduling.check_schedule`) first hands worker k the
k-th contiguous slice of the collection, sizes `len(pending) // workers_left` in turn, and
later moves tests from the tail of the longest queue to an idle worker. A test at the head of
a slice therefore runs first, on that worker. This module puts each module that holds a test
marked `long(seconds)` at the head of one slice, the slices chosen longest first (LPT: each
to the slice with the fewest long seconds so far); the other tests keep their order.

A whole module moves, not one test, so a module-scoped fixture (a server several tests share)
is still set up once. Measured on 2 cores with 3 workers: the last 30 s of a run went to one
worker's 21 s sentinel test, the cores 38% busy meanwhile."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

Item = TypeVar("Item")

LONG_MARKER = "long"


def initial_slice_sizes(count: int, workers: int) -> list[int]:
    """The sizes of worksteal's first hand-out of `count` tests to `workers` idle workers."""
    sizes = []
    left = count
    for workers_left in range(workers, 0, -1):
        size = left // workers_left
        sizes.append(size)
        left -= size
    return sizes


def order_for_workers(
    items: Sequence[Item],
    workers: int,
    module_of: Callable[[Item], str],
    long_seconds: Callable[[Item], float],
) -> list[Item]:
    """`items` reordered for `workers` worksteal workers (module docstring); the same items,
    each once. `long_seconds(item)` is 0 for a test that is not marked long. Without a long
    test, or with fewer than 2 workers, the order is unchanged."""
    weights: dict[str, float] = {}
    for item in items:
        seconds = long_seconds(item)
        if seconds > 0:
            weights[module_of(item)] = weights.get(module_of(item), 0.0) + seconds
    if workers < 2 or not weights:
        return list(items)
    heads: list[list[Item]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for module in sorted(weights, key=lambda name: (-weights[name], name)):
        lightest = min(range(workers), key=lambda index: (loads[index], index))
        loads[lightest] += weights[module]
        heads[lightest].extend(item for item in items if module_of(item) == module)
    rest = [item for item in items if module_of(item) not in weights]
    taken = 0
    ordered: list[Item] = []
    slice_end = 0
    for head, size in zip(heads, initial_slice_sizes(len(items), workers), strict=True):
        ordered.extend(head)
        slice_end += size
        # Fill the slice up to its end (a head longer than its slice leaves nothing to add).
        fill = max(0, slice_end - len(ordered))
        ordered.extend(rest[taken : taken + fill])
        taken += fill
    ordered.extend(rest[taken:])
    return ordered
