"""Schemathesis over the public API's OpenAPI document, positive and negative cases, against an app
whose lifespan never ran but whose funnel, feedback store and look-alike ports are in-memory fakes
(the real funnel and look-alike code over fake recall, scorers and places): every answer must be documented and match its schema, valid input must
be accepted, invalid input refused, and no 5xx.

The /admin routes are fuzzed too, over fakes of the scorer versions (every version servable) and the
recall reload, and the real shared experiments over an in-memory board; tests/integration/
test_admin_served.py, test_version_switch_served.py and test_shared_experiments_served.py cover what
they drive (Triton's model control, the shared operator board) against real servers.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode

from cascade.feedback import Event, effects_of
from cascade.features import FeatureTables
from cascade.geo import haversine_km
from cascade.lookalike.audience import Likers
from cascade.lookalike.users import UserSide, UserTable
from cascade.recall.exact import ExactInnerProduct
from cascade.recall.merge import Candidates
from cascade.settings import Settings
from orchestrator.app import build_app
from orchestrator.context import ContextFactory
from orchestrator.lookalike import LookalikeService
from orchestrator.funnel import FunnelPorts
from orchestrator.experiments import SharedExperiments
from orchestrator.memory_store import MemoryOperatorBoard, MemoryUserStore
from orchestrator.service import FunnelRunner

N_ITEMS = 4  # the tiny tables' catalogue
N_USERS = 12  # the look-alike users' table
EXAMPLES = 300  # per operation and generation mode
# Invalid input is refused with a 4xx; a 413 refuses it too: an invalid body of nested lists (PUT
# /admin/experiments, extra properties with any JSON in them) outgrows CASCADE_MAX_BODY_BYTES.
REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}})


class FakeRecall:
    async def recall(self, user_id: int, history: np.ndarray | None, timestamp: int) -> Candidates:
        ids = np.arange(N_ITEMS, dtype=np.int64)
        return Candidates(ids, np.zeros(N_ITEMS, np.int64), np.zeros(N_ITEMS, np.float32), ("ann",))


class FakeScorer:
    async def score(self, scorer, version, user_id, item_ids, history, timestamp) -> np.ndarray:
        return item_ids.astype(np.float32)

    async def ready(self, pipelines: list[str]) -> dict[str, bool]:
        return dict.fromkeys(pipelines, True)

    async def loaded(self) -> list[tuple[str, int, str]]:
        """Triton's repository index: the pinned pipelines of version 1, ready."""
        return [("prerank_pipeline_v1", 1, "READY"), ("rank_pipeline_v1", 1, "READY")]


class FakeVersions:
    """The scorer versions an operator switches (`orchestrator.versions.ScorerVersions`): every version servable."""

    def __init__(self) -> None:
        self.active = {"prerank": 1, "rank": 1}

    def pipelines(self) -> list[str]:
        return [f"{s}_pipeline_v{v}" for s, v in self.active.items()]

    async def activate(self, scorer_client, scorer: str, version: int, warm_up) -> int:
        previous, self.active[scorer] = self.active[scorer], version
        return previous


class MemoryExposure(MemoryUserStore):
    async def ping(self) -> bool:
        return True


class Catalogue:
    def __init__(self, tables: FeatureTables) -> None:
        self.tables, self.unit_item_embeddings = tables, np.eye(N_ITEMS, 3, dtype=np.float32)
        self.model_versions = {"prerank": 1, "rank": 1, "user_tower": 1}

    def history_of(self, user_id: int) -> np.ndarray | None:
        return np.array([-1, 0, 2], np.int64) if user_id < self.tables.n_users else None


class MemoryFeedback:
    """The feedback store's contract in memory: duplicates by event id, the effects computed."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    async def record(self, events: list[Event]) -> list[bool]:
        fresh = []
        for e in events:
            fresh.append(e.event_id not in self.seen)
            self.seen.add(e.event_id)
        effects_of([e for e, new in zip(events, fresh) if new])
        return fresh


class FakeFunnel:
    """What the public routes use of `FunnelService`."""

    def __init__(self, settings: Settings, tables: FeatureTables, app: FastAPI) -> None:
        self.settings, self.scorer, self.exposure = settings, FakeScorer(), MemoryExposure()
        self.resources = SimpleNamespace(tables=tables, ann=SimpleNamespace(index=SimpleNamespace(ntotal=N_ITEMS)))
        self.versions = FakeVersions()
        ports = FunnelPorts(FakeRecall(), self.scorer, self.exposure, Catalogue(tables), 3, 2, True)
        self.runner = FunnelRunner(settings, ports, {"prerank": 1, "rank": 1}, app.state.metrics)
        self.experiments = SharedExperiments(self.runner.contexts, MemoryOperatorBoard())

    async def recommend(self, user_id: int, k: int, timestamp: int | None, started: float):
        return await self.runner.recommend(user_id, k, timestamp, started)

    def issued(self, request_id: str, user_id: int) -> bool:
        return self.runner.contexts.ids.valid(request_id, user_id)

    # --- what /admin uses ---
    def pinned_versions(self, scorer: str) -> list[int]:
        return []

    def switch_warm_up(self, scorer: str):
        return None

    def reload_recall(self) -> dict:
        return {"source": "config/recall.toml", "channels": [{"name": "ann", "quota": 1000}]}

    async def share_recall_reload(self) -> None:
        pass


class MemoryPlaces:
    def __init__(self, table: UserTable) -> None:
        self.table = table

    async def nearby(self, lat: float, lon: float, radius_km: float, most: int) -> tuple[np.ndarray, np.ndarray]:
        km = haversine_km(lat, lon, self.table.lat, self.table.lon)
        inside = np.flatnonzero(km <= radius_km)[:most]
        return inside.astype(np.int64), km[inside]

    async def where(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.table.lat[user_ids], self.table.lon[user_ids]

    async def put(self, user_id: int, lat: float, lon: float) -> None:
        self.table.lat[user_id], self.table.lon[user_id] = lat, lon


class NoLiveEmbeddings:
    async def get(self, user_ids: np.ndarray, dim: int) -> dict[int, np.ndarray]:
        return {}


class FakeAudienceScorer:
    async def score_lookalike(self, version: int, seeds: np.ndarray, seed_embeddings: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        return np.linspace(0.9, 0.1, len(candidates), dtype=np.float32)


def lookalike_service(settings: Settings, app: FastAPI) -> LookalikeService:
    """The real look-alike request path over N_USERS users in memory, half of them with behaviour."""
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(N_USERS, 4)).astype(np.float32)
    side = UserSide(embedding, rng.integers(0, 5, (N_USERS, 5)), (np.arange(N_USERS) % 2)[:, None].astype(np.float32))
    table = UserTable(side, rng.uniform(-60, 60, N_USERS), rng.uniform(-170, 170, N_USERS))
    items = np.arange(N_ITEMS).repeat(2)
    likers = Likers.of(items, np.arange(len(items)) % N_USERS, np.zeros(len(items), np.int64), N_ITEMS)
    return LookalikeService(settings, table, likers, ExactInnerProduct(embedding), MemoryPlaces(table), NoLiveEmbeddings(),
                            FakeAudienceScorer(), 1, ContextFactory(settings, {"prerank": 1, "rank": 1}), app.state.metrics)


@asynccontextmanager
async def no_servers(_: FastAPI) -> AsyncIterator[None]:
    yield


def fuzzed_app(tables: FeatureTables, tmp_path: Path) -> FastAPI:
    settings = Settings(
        artifacts_dir=tmp_path / "none", run_dir=tmp_path / "run", rerank_chain=[{"name": "truncate"}],
        request_deadline_ms=5_000.0, admission_wait_ms=1_000.0, max_in_flight=64, lookalike_max_seeds=4_096,
        lookalike_deadline_ms=5_000.0,
    )
    app = build_app(settings)
    app.router.lifespan_context = no_servers  # schemathesis's ASGI client runs the lifespan: the fakes replace it
    app.state.funnel, app.state.feedback = FakeFunnel(settings, tables, app), MemoryFeedback()
    app.state.lookalike = lookalike_service(settings, app)
    return app


def public_operations() -> list[tuple[str, str, GenerationMode]]:
    """(path, method, mode) of each public operation; negative cases only where there is input to spoil."""
    document = build_app(Settings(artifacts_dir=Path("none"))).openapi()
    return [
        (path, method.upper(), mode)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        for mode in GenerationMode if mode.is_positive or "requestBody" in op or op.get("parameters")
    ]


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[Counter]:
    counts: Counter = Counter()
    yield counts
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        statuses = ", ".join(f"{status}: {n}" for status, n in sorted(counts.items()))
        with capture.global_and_fixture_disabled():  # the count goes into the closing notes
            reporter.write_line(f"\nschemathesis: {counts.total()} cases, by status {statuses}")


def within_rules(body: Any, now: int, past_s: int) -> Any:
    """A valid body kept valid under the rules the document cannot say: timestamps in the window
    around now (a JSON Schema has no `now`), item ids in the catalogue (known only when serving),
    request ids the service issued (signed: none can be generated; "" is "unknown", always valid),
    seed users among the known ones,
    names unique within a list (experiments, arms), rerank chains of known operators with valid
    parameters (a free-form list of objects in the document)."""
    if isinstance(body, dict):
        fixed = {k: within_rules(v, now, past_s) for k, v in body.items()}
        if isinstance(fixed.get("request_id"), str):
            fixed["request_id"] = ""
        if isinstance(fixed.get("timestamp"), (int, float)):  # 7.0 is an integer too
            fixed["timestamp"] = now - int(fixed["timestamp"]) % past_s
        if isinstance(fixed.get("item_id"), (int, float)):
            fixed["item_id"] = int(fixed["item_id"]) % N_ITEMS
        if isinstance(fixed.get("seed_user_ids"), list):
            fixed["seed_user_ids"] = [int(u) % N_USERS if isinstance(u, (int, float)) else u for u in fixed["seed_user_ids"]]
        if isinstance(fixed.get("rerank_chain"), list):
            fixed["rerank_chain"] = [{"name": "truncate"}]
        return fixed
    if isinstance(body, list):
        fixed = [within_rules(v, now, past_s) for v in body]
        return [{**v, "name": f"{i}:{v['name']}"} if isinstance(v, dict) and isinstance(v.get("name"), str) else v
                for i, v in enumerate(fixed)]
    return body


@pytest.mark.parametrize(("path", "method", "mode"), public_operations())
def test_api_answers_as_documented(
    path: str, method: str, mode: GenerationMode, tiny_tables: FeatureTables, tmp_path: Path, tally: Counter,
) -> None:
    """Each case runs schemathesis's checks (status and content type documented, body and headers as
    documented, valid data accepted, invalid refused); and no 5xx."""
    operation = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app(tiny_tables, tmp_path), config=CONFIG)[path][method]
    past_s = Settings().label_ttl_s

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    def answers_as_documented(case: schemathesis.Case) -> None:
        if mode.is_positive:
            case.body = within_rules(case.body, int(time.time()), past_s)
            if isinstance((case.path_parameters or {}).get("user_id"), int):  # a location for a known user
                case.path_parameters["user_id"] %= N_USERS
        response = case.call_and_validate()
        tally[response.status_code] += 1
        assert response.status_code < 500, response.text

    answers_as_documented()
