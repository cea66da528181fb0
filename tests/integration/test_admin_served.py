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
