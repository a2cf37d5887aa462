"""tests/scheduling.py: the order the suite hands pytest-xdist's worksteal."""

from __future__ import annotations

from tests.scheduling import initial_slice_sizes, order_for_workers

# (module, test, long seconds)
ITEMS = [
    ("a", "a1", 0),
    ("a", "a2", 0),
    ("b", "b1", 0),
    ("b", "b2", 30),
    ("c", "c1", 0),
    ("d", "d1", 100),
    ("e", "e1", 0),
    ("e", "e2", 0),
    ("f", "f1", 60),
    ("f", "f2", 0),
    ("g", "g1", 0),
    ("h", "h1", 50),
]


def ordered(items, workers: int) -> list[str]:
    return [
        name for _, name, _ in order_for_workers(items, workers, lambda i: i[0], lambda i: i[2])
    ]


def test_slice_sizes_are_workstealing_s_first_hand_out() -> None:
    assert initial_slice_sizes(12, 3) == [4, 4, 4]
    assert initial_slice_sizes(10, 3) == [3, 3, 4]
    assert initial_slice_sizes(1338, 3) == [446, 446, 446]
    assert sum(initial_slice_sizes(7, 4)) == 7


def test_each_slice_starts_with_its_long_modules_longest_first() -> None:
    order = ordered(ITEMS, 3)
    assert sorted(order) == sorted(name for _, name, _ in ITEMS)
    slices = [order[0:4], order[4:8], order[8:12]]
    # LPT: d (100) to slice 0, f (60) to 1, h (50) to 2, b (30) to 2 (50 < 60 < 100).
    assert slices[0][:1] == ["d1"]
    assert slices[1][:2] == ["f1", "f2"]
    assert slices[2][:3] == ["h1", "b1", "b2"]
    # The other tests keep their order across the slices.
    rest = [name for name in order if name[0] in "aceg"]
    assert rest == ["a1", "a2", "c1", "e1", "e2", "g1"]


def test_a_module_moves_whole_so_its_fixtures_are_set_up_once() -> None:
    order = ordered(ITEMS, 3)
    for module in "abcdefgh":
        positions = [index for index, name in enumerate(order) if name[0] == module]
        assert positions == list(range(positions[0], positions[0] + len(positions))), order


def test_without_long_tests_or_workers_the_order_stays() -> None:
    plain = [(module, name, 0) for module, name, _ in ITEMS]
    assert ordered(plain, 3) == [name for _, name, _ in ITEMS]
    assert ordered(ITEMS, 1) == [name for _, name, _ in ITEMS]
