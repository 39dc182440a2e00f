"""The shared /latest body: one query for callers that miss together, renewed after its age."""

import asyncio

import pytest

from ioc_api.body_cache import BodyCache


class Renderer:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        await asyncio.sleep(0.05)
        return f"body-{self.calls}"


async def test_callers_that_miss_together_share_one_render() -> None:
    cache, render = BodyCache(max_age_s=10), Renderer()
    bodies = await asyncio.gather(*(cache.get("city", render) for _ in range(20)))
    assert bodies == ["body-1"] * 20 and render.calls == 1
    assert await cache.get("city", render) == "body-1"
    assert await cache.get(("hai-chau",), render) == "body-2"  # another scope: its own body


async def test_an_aging_body_is_served_while_one_renewal_runs_then_replaced() -> None:
    cache, render = BodyCache(max_age_s=0.2), Renderer()
    assert await cache.get("k", render) == "body-1"
    await asyncio.sleep(0.25)
    assert [await cache.get("k", render) for _ in range(5)] == ["body-1"] * 5  # no wait
    await asyncio.sleep(0.1)
    assert await cache.get("k", render) == "body-2" and render.calls == 2


async def test_a_body_older_than_twice_its_age_is_not_served() -> None:
    cache, render = BodyCache(max_age_s=0.1), Renderer()
    assert await cache.get("k", render) == "body-1"
    await asyncio.sleep(0.25)
    assert await cache.get("k", render) == "body-2"


async def test_age_zero_always_renders() -> None:
    cache, render = BodyCache(max_age_s=0), Renderer()
    assert [await cache.get("k", render) for _ in range(3)] == ["body-1", "body-2", "body-3"]


async def test_a_failed_render_reaches_every_waiter_and_is_not_kept() -> None:
    cache = BodyCache(max_age_s=10)

    async def broken() -> str:
        await asyncio.sleep(0.05)
        raise RuntimeError("database away")

    results = await asyncio.gather(*(cache.get("k", broken) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    with pytest.raises(RuntimeError):
        await cache.get("k", broken)
    assert await cache.get("k", Renderer()) == "body-1"
