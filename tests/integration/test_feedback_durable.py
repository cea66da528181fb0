"""Feedback survives a Redis restart: the AOF the project's redis-server keeps is loaded back, and
clicks posted while Redis is stopped (SIGTERM) and started again are each applied exactly once."""
from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cascade.feedback import Event
from cascade.servers.process import ManagedProcess, free_port
from cascade.servers.redis import start_redis
from orchestrator.clients import keys
from orchestrator.clients.feedback import FeedbackLimits, FeedbackStore
from orchestrator.errors import BackendTimeout, BackendUnavailable

pytestmark = pytest.mark.integration
N_EVENTS, BATCH, CLIENTS, USERS = 2_000, 5, 16, 50
PACE_S = 0.2  # between one client's calls: 25 batches each span ~5 s, around the outage
STOP_AFTER_S, DOWN_S = 1.0, 3.0
# history_len holds every click of a user, so the sequences count how often each event was applied
LIMITS = FeedbackLimits(3_600, 3_600, 5_000, 3_600, N_EVENTS, 86_400.0, 3_600)


def app_client(port: int) -> redis.Redis:
    """As the orchestrator builds it (`ExposureStore`): 1 s timeouts, one immediate resend."""
    return redis.from_url(
        f"redis://127.0.0.1:{port}", socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 1)
    )


async def test_a_restarted_server_loads_its_append_only_file(tmp_path: Path) -> None:
    port = free_port()
    process = await asyncio.to_thread(start_redis, port, tmp_path)
    client = app_client(port)
    try:
        config = await client.config_get("*")
        assert (config["appendonly"], config["appendfsync"]) == ("yes", "everysec")
        assert (config["maxmemory"], config["maxmemory-policy"]) == (str(2**30), "noeviction")
        store = FeedbackStore(client, LIMITS)
        assert await store.record([Event("kept", 1, 42, "click", int(time.time()), "r")]) == [True]
        await asyncio.to_thread(process.stop)  # SIGTERM
        process = await asyncio.to_thread(start_redis, port, tmp_path)
        await client.aclose()
        client = app_client(port)
        store = FeedbackStore(client, LIMITS)
        assert await client.lrange(keys.sequence(1), 0, -1) == [b"42"]
        assert await store.record([Event("kept", 1, 42, "click", int(time.time()), "r")]) == [False]
    finally:
        await client.aclose()
        await asyncio.to_thread(process.stop)


@dataclass
class Tally:
    first_accepted: set[str] = field(default_factory=set)  # accepted by their first call
    refused: set[str] = field(default_factory=set)  # in a call that failed (503) at least once
    accepted: set[str] = field(default_factory=set)  # a call answered "new": applied by it
    duplicates: set[str] = field(default_factory=set)  # a retry answered "duplicate": applied by a failed call


async def post_until_acknowledged(store: FeedbackStore, batches: deque[list[Event]], tally: Tally) -> None:
    """One client: each batch until a call succeeds, a failed one retried after the rest of its queue."""
    while batches:
        batch = batches.popleft()
        ids = [e.event_id for e in batch]
        try:
            fresh = await store.record(batch)
        except (BackendUnavailable, BackendTimeout):
            tally.refused.update(ids)
            batches.append(batch)
        else:
            for event_id, new in zip(ids, fresh):
                (tally.accepted if new else tally.duplicates).add(event_id)
                if new and event_id not in tally.refused:
                    tally.first_accepted.add(event_id)
        await asyncio.sleep(PACE_S)


async def applied_counts(client: redis.Redis, events: list[Event]) -> tuple[Counter, Counter]:
    """Times each event was applied, by two witnesses: its item in its user's sequence, its label."""
    in_sequences: Counter = Counter()
    for user in range(USERS):
        in_sequences.update(int(i) for i in await client.lrange(keys.sequence(user), 0, -1))
    in_labels = Counter({
        e.item_id: int(await client.hget(keys.labels(e.user_id, e.request_id), f"clicks:{e.item_id}") or 0)
        for e in events
    })
    return in_sequences, in_labels


async def restart_mid_stream(tmp_path: Path, appendfsync: str | None) -> dict[str, int]:
    port = free_port()
    now = int(time.time())
    events = [Event(f"e{n}", n % USERS, n, "click", now, f"q{n}") for n in range(N_EVENTS)]  # item n: event n
    batches = [events[i:i + BATCH] for i in range(0, N_EVENTS, BATCH)]
    queues = [deque(batches[c::CLIENTS]) for c in range(CLIENTS)]
    server: list[ManagedProcess] = [await asyncio.to_thread(start_redis, port, tmp_path, appendfsync=appendfsync)]
    client = app_client(port)
    store = FeedbackStore(client, LIMITS)

    async def outage() -> None:
        await asyncio.sleep(STOP_AFTER_S)
        await asyncio.to_thread(server[0].stop)  # SIGTERM, waits for the exit
        await asyncio.sleep(DOWN_S)
        server[0] = await asyncio.to_thread(start_redis, port, tmp_path, appendfsync=appendfsync)

    tally = Tally()
    try:
        await asyncio.gather(outage(), *(post_until_acknowledged(store, q, tally) for q in queues))
        in_sequences, in_labels = await applied_counts(client, events)
        assert in_sequences == in_labels  # the two witnesses agree: one step wrote both
        replay = [await store.record(b) for b in batches]
        after_replay = await applied_counts(client, events)
    finally:
        await client.aclose()
        await asyncio.to_thread(server[0].stop)
    index = {e.event_id: e.item_id for e in events}
    counts = {
        "events": N_EVENTS,
        "accepted_first_try": len(tally.first_accepted),
        "refused_503": len(tally.refused),
        "accepted": len(tally.accepted),
        "duplicate_on_retry": len(tally.duplicates),
        "lost": sum(in_sequences[index[i]] == 0 for i in tally.accepted | tally.duplicates),
        "applied_twice": sum(n > 1 for n in in_sequences.values()),
        "replay_accepted": sum(sum(r) for r in replay),
        "replay_changed": sum(after_replay[0][item] != in_sequences[item] for item in index.values()),
    }
    print(f"\nredis restarted mid-stream (appendfsync={appendfsync}): {counts}")
    return counts


async def test_a_restart_mid_stream_loses_nothing_and_applies_nothing_twice(tmp_path: Path) -> None:
    counts = await restart_mid_stream(tmp_path, "everysec")
    assert counts["refused_503"] > 0, "the outage never hit a call: the test proves nothing"
    assert counts["accepted"] + counts["duplicate_on_retry"] == N_EVENTS  # every event acknowledged in the end
    assert counts["lost"] == 0 and counts["applied_twice"] == 0
    assert counts["replay_accepted"] == 0 and counts["replay_changed"] == 0


async def test_without_the_append_only_file_the_same_restart_loses_clicks(tmp_path: Path) -> None:
    """The check above can see loss: with the AOF off, what was applied before the stop is gone."""
    counts = await restart_mid_stream(tmp_path, None)
    assert counts["lost"] > 0 and counts["replay_accepted"] > 0
