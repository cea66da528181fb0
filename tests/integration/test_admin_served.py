"""The /admin endpoints: open without CASCADE_ADMIN_TOKEN, a 401 without the right bearer token with it."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


async def test_admin_endpoints_need_the_token_when_one_is_set(configure, triton, redis_server, serve) -> None:
    async with serve(configure(admin_token="s3cret")) as (_, http):
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic s3cret"}):
            for method, path in (("GET", "/admin/models"), ("POST", "/admin/reload-recall")):
                response = await http.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert "CASCADE_ADMIN_TOKEN" in response.json()["error"]
                assert response.headers["www-authenticate"] == "Bearer"
        refused = await http.post("/admin/models/rank/activate", json={"version": 1})
        assert refused.status_code == 401
        good = {"authorization": "Bearer s3cret"}
        assert (await http.get("/admin/models", headers=good)).json()["rank"]["active"] == 1
        assert (await http.post("/admin/reload-recall", headers=good)).status_code == 200
        assert (await http.post("/v1/recommend", json={"user_id": 3, "k": 2})).status_code == 200  # public API: no token


async def test_admin_endpoints_are_open_without_a_token(client) -> None:
    assert (await client.get("/admin/models")).status_code == 200


async def test_an_empty_bearer_never_matches_and_the_scorer_is_an_enum(configure, triton, redis_server, serve) -> None:
    token = "t" * 32
    async with serve(configure(admin_token=token)) as (app, http):
        for header in ("Bearer", "Bearer ", "bearer  "):
            assert (await http.get("/admin/models", headers={"authorization": header})).status_code == 401, header
        good = {"authorization": f"Bearer {token}"}
        unknown = await http.post("/admin/models/teacher/activate", json={"version": 1}, headers=good)
        assert unknown.status_code == 422 and unknown.json()["fields"] == ["path.scorer"]
        schema = app.openapi()["paths"]["/admin/models/{scorer}/activate"]["post"]["parameters"][0]["schema"]
        assert schema["enum"] == ["prerank", "rank"]
