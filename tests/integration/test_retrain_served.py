"""Learning from served traffic: users' taste shifts to one category, shown through /v1/feedback on
a running stack; the logged samples retrain the ranker (`python -m export.retrain`), which beats the
served version on the latest slice of the log, is published, activated, and then serves more of
that category.

The test runs its own tritonserver and redis-server on copies of the export (publishing writes into
the repositories, retraining into the artifacts), so no other test sees the new version or the log.
"""
from __future__ import annotations

import asyncio
import shutil
import uuid
from collections import Counter

import httpx
import numpy as np
import pytest

from cascade.servers.process import free_port
from cascade.servers.redis import start_redis
from cascade.servers.triton import start_triton
from cascade.settings import Settings
from export.retrain import retrain
from orchestrator.export_samples import export_samples

pytestmark = pytest.mark.integration
USERS = range(40, 140)
ROUNDS = 3
K = 20


@pytest.fixture
async def own_stack(configure, exported: Settings, tmp_path):
    models, ensembles, artifacts = tmp_path / "model_repository", tmp_path / "ensemble", tmp_path / "artifacts"
    shutil.copytree(exported.model_repository, models)
    shutil.copytree(exported.ensemble_repository, ensembles)
    shutil.copytree(exported.artifacts_dir, artifacts, ignore=shutil.ignore_patterns("checkpoints"))
    settings = configure(
        model_repository=models, ensemble_repository=ensembles, artifacts_dir=artifacts, run_dir=tmp_path / "run",
        triton_http_port=free_port(), triton_grpc_port=free_port(), triton_metrics_port=free_port(),
        redis_port=free_port(), port=free_port(),  # nothing answers there: retraining finds the served version itself
        feedback_rate_per_s=1e6, feedback_burst=1_000_000,  # one simulated client speaks for all the users
    )
    redis_process = await asyncio.to_thread(start_redis, settings.redis_port, tmp_path / "redis", appendfsync=None)
    triton = await asyncio.to_thread(
        start_triton, [models, ensembles], settings.run_dir, settings.triton_host,
        settings.triton_http_port, settings.triton_grpc_port, settings.triton_metrics_port,
    )
    try:
        yield settings
    finally:
        await asyncio.to_thread(triton.stop)
        await asyncio.to_thread(redis_process.stop)


async def served_round(http: httpx.AsyncClient, target: int | None, rng: np.random.Generator) -> list[dict]:
    """Every user asks for K items once; with a `target` category each reports seeing all of them,
    clicks most of the target's and few others, and dwells long on the target's it clicked."""
    answers = []
    for user in USERS:
        response = await http.post("/v1/recommend", json={"user_id": user, "k": K})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["degraded"] == [] and answer["scored_by"] == "rank", answer
        answers.append(answer)
        if target is None:
            continue
        events = []
        for item in answer["items"]:
            event = {"request_id": answer["request_id"], "user_id": user, "item_id": item["item_id"]}
            events.append({**event, "event_id": uuid.uuid4().hex, "type": "impression"})
            liked = item["category"] == target
            if rng.random() < (0.9 if liked else 0.03):
                events.append({**event, "event_id": uuid.uuid4().hex, "type": "click"})
                if liked:
                    events.append({**event, "event_id": uuid.uuid4().hex, "type": "dwell", "dwell_ms": 15_000})
        feedback = await http.post("/v1/feedback", json={"events": events})
        assert feedback.status_code == 200, feedback.text
    return answers


def top_share(answers: list[dict], category: int, top: int = 10) -> float:
    """The target category's share of the first `top` items of the answers."""
    items = [i for a in answers for i in a["items"][:top]]
    return sum(i["category"] == category for i in items) / len(items)


async def test_a_preference_shift_is_learnt_published_and_served(own_stack: Settings, serve, tmp_path) -> None:
    settings = own_stack
    rng = np.random.default_rng(0)
    async with serve(settings) as (_, http):
        first = await served_round(http, None, rng)
        counts = Counter(i["category"] for a in first for i in a["items"])
        # the shift: a category the served ranker holds back (served, but rarely near the top)
        target = min((c for c, n in counts.items() if n >= len(first)), key=lambda c: top_share(first, c))
        for _ in range(ROUNDS):
            last = await served_round(http, target, rng)
        before = top_share(last, target)  # v1, with the users' new clicks in their histories

        out = tmp_path / "samples.parquet"
        exported = await asyncio.to_thread(export_samples, settings, out)
        verdict, version = await asyncio.to_thread(retrain, settings, out, 0.25, 5)
        print(f"target category {target}; {exported['rows']} logged rows ({exported['positives']} positive); "
              f"verdict {verdict.as_dict()}")
        assert exported["samples"] == len(USERS) * (ROUNDS + 1) and exported["rows"] == len(USERS) * ROUNDS * K
        assert verdict.served_version == 1 and verdict.eval_rows == len(USERS) * ROUNDS * K // 4
        assert verdict.retrained_auc > verdict.served_auc + 0.05 and verdict.gain.low > 0
        assert verdict.wins and version == 2

        switched = await http.post("/admin/models/rank/activate", json={"version": version})
        assert switched.status_code == 200, switched.text
        after_answers = await served_round(http, None, rng)
        assert {a["model_versions"]["rank"] for a in after_answers} == {2}
    after = top_share(after_answers, target)
    print(f"category {target}'s share of the top 10: {top_share(first, target):.3f} before the shift, {before:.3f} "
          f"in its last round (v1), {after:.3f} once v2 serves")
    assert after > before + 0.1
