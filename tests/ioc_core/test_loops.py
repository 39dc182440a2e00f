"""Background loops survive what their step raises, say so, and report their health."""

import asyncio
import threading
import time

from ioc_core import loops
from tests.support import wait_until


def test_a_failing_step_is_counted_backed_off_retried_and_recovers() -> None:
    loop = loops.Loop("test-recovers", 0.01, max_backoff_s=0.05)
    calls, stopping = [], threading.Event()

    def step() -> None:
        calls.append(time.monotonic())
        if len(calls) <= 3:
            raise RuntimeError("not yet")
        stopping.set()

    before = loops.FAILURES.labels("test-recovers")._value.get()
    loop.run(step, stopping)
    assert len(calls) == 4 and loop.failures == 0 and loop.healthy()
    loops.forget("test-recovers")
    assert loops.FAILURES.labels("test-recovers")._value.get() == before + 3


def test_the_wait_after_a_failure_doubles_up_to_its_bound() -> None:
    loop = loops.Loop("test-backoff", 1.0, max_backoff_s=5)
    assert [loop.failed(RuntimeError()) for _ in range(5)] == [1.0, 2.0, 4.0, 5, 5]
    loop.succeeded()
    assert loop.failed(RuntimeError()) == 1.0
    loops.forget("test-backoff")


def test_a_loop_that_keeps_failing_turns_unhealthy_and_is_reported() -> None:
    loop = loops.Loop("test-unhealthy", 0.05, grace_periods=1)
    loop.grace_s = 0.1
    stopping = threading.Event()

    def step() -> None:
        raise ValueError("broken")

    thread = loop.start_thread(step, stopping)
    wait_until(lambda: loop.failures >= 2, what="two failed steps")
    time.sleep(max(0.0, loop.started + loop.grace_s + loop.period_s - time.monotonic()) + 0.05)
    assert not loop.healthy() and not loops.all_healthy()
    assert loops.report()["test-unhealthy"]["last_error"] == "ValueError: broken"
    stopping.set()
    thread.join(1)
    loops.forget("test-unhealthy")


async def test_an_async_loop_survives_its_step() -> None:
    loop = loops.Loop("test-async", 0.01)
    calls = []

    async def step() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("once")

    task = asyncio.create_task(loop.run_async(step))
    while len(calls) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    assert loop.failures == 0 and loop.healthy()
    loops.forget("test-async")
