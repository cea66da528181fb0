"""Users who clicked are re-embedded in batches, in the background: the user tower over their exported
history and their live clicks (as the ANN channel embeds them, `cascade.history.merge_live_history`),
cached in Redis with a TTL (`orchestrator.clients.audience.LiveEmbeddings`). A look-alike request
takes a seed's live embedding where one is fresh, the exported one otherwise."""
from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from cascade.history import merge_live_history
from cascade.rerank.similarity import unit_rows
from orchestrator.clients.audience import LiveEmbeddings
from orchestrator.clients.exposure import ExposureStore
from orchestrator.resources import Resources
from orchestrator.stages import ThrottledLog

log = logging.getLogger("cascade.orchestrator")


async def refresh_once(live: LiveEmbeddings, exposure: ExposureStore, resources: Resources, most: int) -> int:
    """Re-embed up to `most` users waiting for it; returns how many. Users the export does not hold
    have no row in the users' index and are dropped."""
    users = await live.take(most)
    users = users[users < resources.tables.n_users]
    if not len(users):
        return 0
    states = await asyncio.gather(*(exposure.user_state(int(u)) for u in users))
    length = resources.tables.config.history_len
    histories = np.stack([merge_live_history(resources.history_of(int(u)), s.clicks, length) for u, s in zip(users, states)])
    now = np.full(len(users), int(time.time()), np.int64)
    vectors = await asyncio.to_thread(resources.ann.user_embeddings, users, histories, now)
    await live.put(users, unit_rows(vectors, np.float32))
    return len(users)


async def refresh_forever(live: LiveEmbeddings, exposure: ExposureStore, resources: Resources, every_s: float, most: int) -> None:
    """Every `every_s`, re-embed the users who clicked since (all of them, `most` per call). A failure
    (Redis down) is logged and the next pass tries again; the users it took wait for their next click."""
    warnings = ThrottledLog(interval_s=60.0)
    while True:
        await asyncio.sleep(every_s)
        try:
            while await refresh_once(live, exposure, resources, most) == most:
                pass
        except Exception as err:  # noqa: BLE001 - the next pass tries again
            warnings.warn(("live embeddings", type(err).__name__), f"live users not re-embedded: {err}", time.monotonic())
