"""Coalesced reads (app/batching.py): concurrent callers share reads begun after they asked."""

from __future__ import annotations

import asyncio

import pytest

from app.batching import BatchedLookup, SharedReads
from tests.waiting import eventually


async def turns_until(condition) -> None:
    """Wait (polling, with a deadline) until `condition()` holds."""

    async def check() -> bool:
        return condition()

    await eventually(check, timeout=5, interval=0.001)


async def pass_turns(count: int) -> None:
    """Let `count` loop turns pass (deterministic: each `sleep(0)` yields exactly one)."""
    for _ in range(count):
        await asyncio.sleep(0)


async def test_callers_of_one_turn_share_one_read_and_later_ones_share_the_next() -> None:
    reads: list[str] = []
    releases = {number: asyncio.Event() for number in (1, 2, 3)}

    async def read(key: str) -> list[str]:
        reads.append(key)
        number = len(reads)
        await releases[number].wait()
        return [key, str(number)]

    shared = SharedReads(read)
    first = [asyncio.create_task(shared.read("room")) for _ in range(5)]
    other_key = asyncio.create_task(shared.read("other"))
    await turns_until(lambda: reads == ["room", "other"])  # one read per key has begun
    # Asked after the read began: not answered by it; they wait for it to end, then share the
    # next read (one in flight per key).
    late = [asyncio.create_task(shared.read("room")) for _ in range(3)]
    await pass_turns(5)  # their turns pass: no read of their own starts beside the first
    assert reads == ["room", "other"]
    releases[1].set()
    results = await asyncio.gather(*first)
    assert all(result == ["room", "1"] for result in results)
    await turns_until(lambda: reads == ["room", "other", "room"])
    assert not any(task.done() for task in late)
    releases[3].set()
    assert [await task for task in late] == [["room", "3"]] * 3
    releases[2].set()
    assert await other_key == ["other", "2"]


async def test_a_failed_read_fails_every_sharer() -> None:
    async def read(_key: str) -> int:
        raise ConnectionError("down")

    shared = SharedReads(read)
    outcomes = await asyncio.gather(
        *(shared.read("room") for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)


async def test_lookups_of_one_turn_go_out_as_one_fetch() -> None:
    fetches: list[list[str]] = []

    async def fetch(keys: list[str]) -> dict[str, bool]:
        fetches.append(keys)
        return {key: True for key in keys if key.startswith("taken")}

    lookup = BatchedLookup(fetch, False)
    answers = await asyncio.gather(
        lookup.get("taken-a"), lookup.get("free"), lookup.get("taken-b"), lookup.get("free")
    )
    assert answers == [True, False, True, False]
    assert len(fetches) == 1
    assert sorted(fetches[0]) == ["free", "taken-a", "taken-b"]
    assert await lookup.get("taken-c") is True and len(fetches) == 2


async def test_a_failed_fetch_fails_every_lookup_of_its_batch() -> None:
    async def fetch(_keys: list[str]) -> dict[str, bool]:
        raise TimeoutError

    lookup = BatchedLookup(fetch, False)
    with pytest.raises(TimeoutError):
        await asyncio.gather(lookup.get("a"), lookup.get("b"))


async def test_callers_waiting_for_the_next_read_are_cancelled_with_the_one_in_flight() -> None:
    """At shutdown the read under way is cancelled: the callers queued behind it are cancelled
    too, and no new read starts for them."""
    reads: list[str] = []
    never = asyncio.Event()

    async def read(key: str) -> str:
        reads.append(key)
        await never.wait()
        return key

    shared = SharedReads(read)
    first = asyncio.create_task(shared.read("room"))
    await turns_until(lambda: reads == ["room"])
    queued = asyncio.create_task(shared.read("room"))
    await pass_turns(3)
    for task in list(shared._tasks):  # the reads under way, as asyncio.run cancels them
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(queued, 5)  # not left waiting for a read that never starts
    await pass_turns(3)
    assert reads == ["room"]
