"""The door: bounded in-flight requests, FIFO waits inside a bound, shedding past it."""
from __future__ import annotations

import asyncio

import pytest

from orchestrator.admission import Admission


async def test_below_the_limit_nobody_waits() -> None:
    door = Admission(2, wait_s=0.0)
    assert await door.enter() and await door.enter()
    assert door.in_flight == 2
    assert not await door.enter()  # full and no waiting allowed: shed
    door.leave()
    assert await door.enter()


async def test_a_waiter_gets_the_next_slot_in_arrival_order() -> None:
    door = Admission(1, wait_s=1.0)
    assert await door.enter()
    first, second = asyncio.create_task(door.enter()), asyncio.create_task(door.enter())
    await asyncio.sleep(0)
    assert door.waiting == 2
    door.leave()
    assert await first and not second.done()
    door.leave()
    assert await second and door.in_flight == 1 and door.waiting == 0


async def test_a_waiter_past_its_wait_is_shed_and_leaks_no_slot() -> None:
    door = Admission(1, wait_s=0.01)
    assert await door.enter()
    assert not await door.enter()  # timed out
    assert door.waiting == 0 and door.in_flight == 1
    door.leave()
    assert door.in_flight == 0
    assert await door.enter() and door.in_flight == 1  # the fast path is open again


async def test_many_requests_never_exceed_the_limit() -> None:
    door, running, peak = Admission(3, wait_s=5.0), 0, 0

    async def request() -> None:
        nonlocal running, peak
        assert await door.enter()
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        door.leave()

    await asyncio.gather(*(request() for _ in range(50)))
    assert peak == 3 and door.in_flight == 0 and door.waiting == 0


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Admission(0, 1.0)


async def test_a_waiter_whose_client_left_leaks_no_slot() -> None:
    door = Admission(1, wait_s=5.0)
    assert await door.enter()
    left = asyncio.create_task(door.enter())
    await asyncio.sleep(0)
    left.cancel()  # the client disconnected while waiting
    with pytest.raises(asyncio.CancelledError):
        await left
    assert door.waiting == 0
    door.leave()
    assert door.in_flight == 0 and await door.enter()


async def test_a_slot_handed_to_a_waiter_cancelled_at_that_moment_is_passed_on() -> None:
    door = Admission(1, wait_s=5.0)
    assert await door.enter()
    cancelled, next_in_line = asyncio.create_task(door.enter()), asyncio.create_task(door.enter())
    await asyncio.sleep(0)
    door.leave()  # hands the slot to `cancelled` ...
    cancelled.cancel()  # ... which is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await next_in_line and door.in_flight == 1 and door.waiting == 0


async def test_a_slot_freed_before_a_cancelled_waiter_resumes_goes_to_the_next_one() -> None:
    """Cancelling a waiting task cancels its slot at once, but the task only notices later: a slot
    freed in between must skip it, not fail or vanish."""
    door = Admission(1, wait_s=5.0)
    assert await door.enter()
    gone, next_in_line = asyncio.create_task(door.enter()), asyncio.create_task(door.enter())
    await asyncio.sleep(0)
    gone.cancel()  # its slot future is cancelled now; its except block runs on its next step
    door.leave()  # frees the slot before `gone` resumes
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert await next_in_line and door.in_flight == 1 and door.waiting == 0
    door.leave()
    assert door.in_flight == 0


async def test_gate_sheds_with_retry_after_and_counts_it() -> None:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from orchestrator.admission import ARRIVED, AdmissionGate
    from orchestrator.metrics import FunnelMetrics

    release, arrivals = asyncio.Event(), []

    async def slow_app(scope, receive, send) -> None:
        arrivals.append(scope.get(ARRIVED))
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    metrics = FunnelMetrics()
    gate = AdmissionGate(slow_app, Admission(1, wait_s=0.0), metrics, "/v1/recommend", retry_after_s=2)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gate), base_url="http://t") as http:
        first = asyncio.create_task(http.post("/v1/recommend", json={}))
        while not arrivals:
            await asyncio.sleep(0.001)
        shed = await http.post("/v1/recommend", json={})
        other = asyncio.create_task(http.get("/healthz"))  # other routes never wait at the door
        release.set()
        assert (await first).status_code == 200 and (await other).status_code == 200
    assert shed.status_code == 503 and shed.headers["retry-after"] == "2" and "overloaded" in shed.json()["error"]
    assert arrivals[0] is not None and gate.door.in_flight == 0
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition()[0].decode())}
    assert families["cascade_shed_requests"].samples[0].value == 1.0


async def test_the_lookalike_door_is_its_own_and_counts_its_own_sheds() -> None:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from orchestrator.admission import AdmissionGate
    from orchestrator.metrics import FunnelMetrics

    release, entered = asyncio.Event(), asyncio.Event()

    async def slow_app(scope, receive, send) -> None:
        entered.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    metrics = FunnelMetrics()
    recommend = AdmissionGate(slow_app, Admission(1, wait_s=0.0), metrics, "/v1/recommend")
    both = AdmissionGate(recommend, Admission(1, wait_s=0.0), metrics, "/v1/lookalike", shed=metrics.count_lookalike_shed)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=both), base_url="http://t") as http:
        first = asyncio.create_task(http.post("/v1/lookalike", json={}))
        await entered.wait()
        shed = await http.post("/v1/lookalike", json={})
        entered.clear()
        other = asyncio.create_task(http.post("/v1/recommend", json={}))  # the recommend door is free
        await entered.wait()
        release.set()
        assert (await first).status_code == 200 and (await other).status_code == 200
    assert shed.status_code == 503 and "overloaded" in shed.json()["error"]
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition()[0].decode())}
    assert families["cascade_lookalike_shed_requests"].samples[0].value == 1.0
    assert families["cascade_shed_requests"].samples[0].value == 0.0
