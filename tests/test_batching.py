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


async def test_callers_of_one_turn_share_one_read_and_later_ones_start_another() -> None:
    reads: list[str] = []
    release = asyncio.Event()

    async def read(key: str) -> list[str]:
        reads.append(key)
        number = len(reads)
        await release.wait()
        return [key, str(number)]

    shared = SharedReads(read)
    first = [asyncio.create_task(shared.read("room")) for _ in range(5)]
    other_key = asyncio.create_task(shared.read("other"))
    await turns_until(lambda: reads == ["room", "other"])  # one read per key has begun
    late = asyncio.create_task(shared.read("room"))  # after the read began: a read of its own
    await turns_until(lambda: len(reads) == 3)
    release.set()
    results = await asyncio.gather(*first)
    assert all(result is results[0] for result in results)
    assert (await late)[1] == "3" and reads == ["room", "other", "room"]
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
