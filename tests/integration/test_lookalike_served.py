"""POST /v1/lookalike and POST /v1/users/{id}/location end to end: the look-alike scorer on the real
Triton, places in the real Redis GEO set, live re-embeddings cached in the real Redis."""
from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest
import redis.asyncio as redis
from prometheus_client.parser import text_string_to_metric_families

from cascade.artifacts import ArtifactPaths
from cascade.geo import haversine_km
from cascade.lookalike.audience import Likers
from cascade.lookalike.scorer import graph_scores
from cascade.lookalike.users import UserTable
from cascade.settings import Settings
from export.onnx_export import session
from orchestrator.clients import keys
from orchestrator.clients.operator_board import EXPERIMENTS_KEY
from tests.integration.conftest import cleared

pytestmark = pytest.mark.integration


def table(settings: Settings) -> UserTable:
    return UserTable.load(ArtifactPaths(settings.artifacts_dir).users)


async def lookalike(http, **body) -> dict:
    response = await http.post("/v1/lookalike", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def test_seed_users_get_k_others_scored_by_the_served_model(client, exported: Settings) -> None:
    seeds = [3, 8, 21, 40, 77]
    body = await lookalike(client, seed_user_ids=seeds, k=25)
    users = [u["user_id"] for u in body["users"]]
    assert len(users) == 25 == len(set(users)) and set(users).isdisjoint(seeds)
    assert body["scored_by"] == "model" and body["degraded"] == [] and body["model_version"] == 1
    assert body["n_seeds"] == 5 and body["cold_start"] is False and body["experiment"] is None
    assert set(body["latency_ms"]) == {"seeds", "recall", "score", "blend", "total"}
    scores = [u["score"] for u in body["users"]]
    assert scores == sorted(scores, reverse=True) and all(u["distance_km"] is None for u in body["users"])
    # Triton's answer is the exported graph's, run here over the same users
    t = table(exported)
    local = graph_scores(session(ArtifactPaths(exported.artifacts_dir).onnx("lookalike")), t.side, np.array(seeds), np.array(users))
    np.testing.assert_allclose([u["similarity"] for u in body["users"]], local, atol=1e-5)


async def test_an_item_seeds_from_its_likers_and_exclude_seeds_can_keep_them(client, exported: Settings) -> None:
    z = np.load(ArtifactPaths(exported.artifacts_dir).item_likers)
    likers = Likers(z["ptr"], z["users"])
    item = int(np.argmax(np.diff(likers.ptr)))
    seeds = set(likers.of_item(item, exported.lookalike_max_seeds).tolist())
    body = await lookalike(client, item_id=item, k=50)
    assert body["n_seeds"] == len(seeds) and seeds.isdisjoint(u["user_id"] for u in body["users"])
    kept = await lookalike(client, seed_user_ids=[5], k=exported.n_users, exclude_seeds=False)
    assert 5 in [u["user_id"] for u in kept["users"]]


async def test_a_posted_location_is_where_near_finds_the_user(client, exported: Settings) -> None:
    where = {"lat": -33.8688, "lon": 151.2093}  # far from every exported user
    response = await client.post("/v1/users/12/location", json=where)
    assert response.status_code == 200, response.text
    assert response.json() == {"user_id": 12, **where, "geohash": "r3gx2"}
    body = await lookalike(client, seed_user_ids=[3, 8], k=10, near={**where, "radius_km": 2.0})
    assert [u["user_id"] for u in body["users"]] == [12] and body["users"][0]["distance_km"] < 0.01
    u = body["users"][0]
    assert u["score"] == pytest.approx(0.6 * (1 - u["distance_km"] / 5) + 0.4 * u["similarity"], rel=1e-5)
    assert set(body["latency_ms"]) >= {"geo", "score"} and body["degraded"] == []


async def test_near_keeps_users_within_the_radius_ordered_by_the_blend(client, exported: Settings) -> None:
    t = table(exported)
    centre = int(np.flatnonzero(t.located)[0])
    lat, lon = float(t.lat[centre]), float(t.lon[centre])
    body = await lookalike(client, seed_user_ids=[centre], k=100, near={"lat": lat, "lon": lon, "radius_km": 30.0})
    users = np.array([u["user_id"] for u in body["users"]])
    assert len(users) > 0 and centre not in users
    d = np.array([u["distance_km"] for u in body["users"]])
    exported_d = haversine_km(lat, lon, t.lat[users], t.lon[users])
    moved = users == 12  # the location test may have moved user 12
    assert (d <= 30.0 + 1e-6).all()
    np.testing.assert_allclose(d[~moved], exported_d[~moved], atol=0.01)  # GEO stores points to ~0.6 m
    scores = [u["score"] for u in body["users"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(("body", "field"), [
    ({"seed_user_ids": [1, 10**9]}, "seed_user_ids.1"),
    ({"item_id": 10**9}, "item_id"),
    ({}, "item_id"),
    ({"seed_user_ids": [1], "item_id": 2}, "item_id"),
    ({"seed_user_ids": [1], "k": 1001}, "k"),
    ({"seed_user_ids": [1], "near": {"lat": 10, "lon": 10, "radius_km": 51}}, "near.radius_km"),
    ({"seed_user_ids": [1], "near": {"lat": 95, "lon": 10, "radius_km": 5}}, "near.lat"),
    ({"seed_user_ids": list(range(501))}, "seed_user_ids"),
])
async def test_bad_input_is_a_422_naming_the_field(client, body: dict, field: str) -> None:
    response = await client.post("/v1/lookalike", json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["fields"], response.json()


async def test_a_bad_location_is_a_422_naming_the_field(client) -> None:
    for path, body, field in (("/v1/users/3/location", {"lat": 1.0}, "lon"),
                              ("/v1/users/3/location", {"lat": 1.0, "lon": 200.0}, "lon"),
                              ("/v1/users/999999/location", {"lat": 1.0, "lon": 2.0}, "user_id")):
        response = await client.post(path, json=body)
        assert response.status_code == 422 and field in response.json()["fields"], response.text


async def test_a_clicking_user_is_re_embedded_into_redis_with_a_ttl(configure, serve, exported: Settings, triton, redis_server) -> None:
    # a pool of 20: the users recalled by the seed's embedding are the answer, so a new embedding shows
    settings = configure(lookalike_refresh_s=0.1, lookalike_embedding_ttl_s=120, lookalike_pool=20)
    store = redis.from_url(settings.effective_redis_url)
    user = 33
    await store.delete(keys.live_embedding(user))
    try:
        async with serve(settings) as (_, http):
            before = await lookalike(http, seed_user_ids=[user], k=20)
            events = [{"event_id": uuid.uuid4().hex, "request_id": "", "user_id": user, "item_id": item, "type": "click"}
                      for item in range(100, 130)]
            assert (await http.post("/v1/feedback", json={"events": events})).status_code == 200
            for _ in range(100):
                if await store.exists(keys.live_embedding(user)):
                    break
                await asyncio.sleep(0.05)
            vector = np.frombuffer(await store.get(keys.live_embedding(user)), np.float32)
            assert 0 < await store.ttl(keys.live_embedding(user)) <= 120
            assert vector.shape == (table(exported).side.embedding.shape[1],) and abs(np.linalg.norm(vector) - 1) < 1e-5
            assert not np.allclose(vector, table(exported).side.embedding[user], atol=1e-3)  # thirty new clicks moved it
            after = await lookalike(http, seed_user_ids=[user], k=20)
            assert after["degraded"] == [] and {u["user_id"] for u in after["users"]} != {u["user_id"] for u in before["users"]}
            # Triton scored the seed as it is now: the exported graph over the live embedding gives its similarities
            users = np.array([u["user_id"] for u in after["users"]])
            served = session(ArtifactPaths(exported.artifacts_dir).onnx("lookalike"))
            np.testing.assert_allclose([u["similarity"] for u in after["users"]],
                                       graph_scores(served, table(exported).side, np.array([user]), users, vector[None]), atol=1e-5)
    finally:
        await store.delete(keys.live_embedding(user))
        await store.aclose()


async def test_an_experiment_arm_picks_the_model_version(configure, serve, triton, redis_server) -> None:
    arms = [{"name": "audience", "arms": [{"name": "absent", "weight": 1, "model_versions": {"lookalike": 9}}]}]
    async with serve(configure(experiments=arms)) as (_, http):
        body = await lookalike(http, seed_user_ids=[3, 8], k=10)
        assert body["experiment"] == {"name": "audience", "arm": "absent"} and body["model_version"] == 9
        # Triton has no version 9: the answer comes, by embedding, and says so
        assert body["scored_by"] == "embedding" and [d["stage"] for d in body["degraded"]] == ["score"]
        assert len(body["users"]) == 10
        text = (await http.get("/metrics")).text
    degraded = {tuple(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text)
                for s in f.samples if s.name == "cascade_lookalike_degradations_total"}
    assert degraded.get((("reason", "error"), ("stage", "score")), 0) >= 1
    answers = {s.labels["scored_by"]: s.value for f in text_string_to_metric_families(text)
               for s in f.samples if s.name == "cascade_lookalike_answers_total"}
    assert answers.get("embedding", 0) >= 1


async def test_an_operator_pins_a_lookalike_version_triton_serves_and_is_refused_one_it_does_not(
    configure, serve, triton, redis_server,
) -> None:
    settings = configure()
    with cleared(settings, EXPERIMENTS_KEY):
        async with serve(settings) as (_, http):
            absent = [{"name": "audience", "arms": [{"name": "v9", "weight": 1, "model_versions": {"lookalike": 9}}]}]
            refused = await http.put("/admin/experiments", json=absent)
            assert refused.status_code == 409 and "arm 'v9': lookalike version 9" in refused.json()["error"]
            served = [{"name": "audience", "arms": [{"name": "v1", "weight": 1, "model_versions": {"lookalike": 1}}]}]
            assert (await http.put("/admin/experiments", json=served)).status_code == 200
            body = await lookalike(http, seed_user_ids=[3, 8], k=10)
            assert body["experiment"] == {"name": "audience", "arm": "v1"} and body["scored_by"] == "model"
            recommended = (await http.post("/v1/recommend", json={"user_id": 3, "k": 5})).json()
            assert "lookalike" not in recommended["model_versions"]
