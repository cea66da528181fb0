"""The orchestrator's funnel in this process, over the export's artefacts, for offline evaluation.

The served code runs end to end (`orchestrator.service.FunnelRunner` over `orchestrator.funnel.run_funnel`):
the recall channels of `orchestrator.recall`, configured by CASCADE_RECALL_CONFIG, with the
trending list kept at the exported popularity list (no Redis); the exposure filter, over an
in-memory store that holds each user's training items as what the client reported shown; pre-rank
and rank through the exported ONNX models (`OnnxScorer`, two calls); the rerank chain given. Only
the deadline is lifted, so that no stage is ever skipped for time: an answer that still names a
degraded stage is a fault, and `answers` raises on it.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cascade.features import FeatureTables, assemble_requests
from cascade.recall.merge import Candidates
from cascade.settings import Settings
from export.eval_scorers import OnnxModel
from orchestrator.funnel import Answer, FunnelPorts
from orchestrator.memory_store import MemoryUserStore
from orchestrator.metrics import FunnelMetrics
from orchestrator.recall import Channel, RecallChannels, RecallPlan
from orchestrator.resources import Resources
from orchestrator.service import FunnelRunner

UNLIMITED_MS = 3_600_000.0  # an hour: the evaluation measures the funnel's answers, never a skipped stage
Chain = list[dict[str, Any]]  # a rerank chain as CASCADE_RERANK_CHAIN gives it


def score_items(
    model: OnnxModel, tables: FeatureTables, user: int, items: np.ndarray, history: np.ndarray, timestamp: int
) -> np.ndarray:
    """One user's scores of `items`, assembled by `cascade.features.assemble_requests` as Triton's models do."""
    features, _ = assemble_requests(tables, [(user, items, history, timestamp)], frozenset(model.inputs))
    return model(features)


class OnnxScorer:
    """`orchestrator.ports.Scorer`'s `score` over the exported ONNX models in this process. Every version
    asked for is the export's: the evaluation scores what the export wrote. The funnel is run with no
    two-stage pair (`ServedFunnel`), so it makes two calls and never asks for `score_two_stage`, whose
    answer is the two calls' (`cascade.triton.two_stage`)."""

    def __init__(self, tables: FeatureTables, models: Mapping[str, OnnxModel]) -> None:
        self.tables, self.models = tables, models  # "prerank" and "rank"

    async def score(
        self, scorer: str, version: int, user_id: int, item_ids: np.ndarray, history: np.ndarray, timestamp: int
    ) -> np.ndarray:
        return score_items(self.models[scorer], self.tables, user_id, item_ids, history, timestamp)


@dataclass(frozen=True)
class Served:
    answer: Answer
    plan: RecallPlan  # the recall plan the user's request ran
    channels: list[Channel]  # each recall channel's own list, which the recall stage merged


class RecordingRecall:
    """`orchestrator.ports.Recall` over the served channels, keeping each user's channel lists: the
    recall stage's answer (`RecallChannels.recall`), with what it was merged from."""

    def __init__(self, channels: RecallChannels) -> None:
        self.channels = channels
        self.recorded: dict[int, tuple[RecallPlan, list[Channel]]] = {}

    async def recall(self, user_id: int, history: np.ndarray | None, timestamp: int) -> Candidates:
        plan, channels = await self.channels.channel_lists(user_id, history, timestamp)
        self.recorded[user_id] = plan, channels
        return plan.merge(channels)


class ServedFunnel:
    """The export's served funnel with the scorers given; `close` it when done (the recall thread pool)."""

    def __init__(self, settings: Settings, prerank: OnnxModel, rank: OnnxModel) -> None:
        self.settings = settings.model_copy(update={"request_deadline_ms": UNLIMITED_MS, "experiments": []})
        self.resources = Resources.load(self.settings, trending=False)
        self.scorer = OnnxScorer(self.resources.tables, {"prerank": prerank, "rank": rank})
        self.metrics = FunnelMetrics()

    async def answers(
        self, chain: Chain, users: np.ndarray, timestamps: np.ndarray, seen: Sequence[np.ndarray], k: int
    ) -> list[Served]:
        """Each user's answer of `k` under the rerank `chain`, at its timestamp, with `seen[i]` (the
        user's training items) in the long-term exposure buffer. Users are answered one after another."""
        store = MemoryUserStore()
        for user, items in zip(users.tolist(), seen):
            store.seen[user] = items.tolist()
        s = self.settings
        recall = RecordingRecall(self.resources.channels)
        ports = FunnelPorts(recall, self.scorer, store, self.resources, s.prerank_keep, s.rank_keep, False)
        runner = FunnelRunner(s.model_copy(update={"rerank_chain": chain}), ports, self.resources.model_versions, self.metrics)
        out = []
        for user, timestamp in zip(users.tolist(), timestamps.tolist()):
            answer = await runner.recommend(user, k, timestamp, time.perf_counter())
            if answer.degraded:
                raise RuntimeError(f"user {user}: the in-process funnel degraded {answer.degraded}")
            out.append(Served(answer, *recall.recorded[user]))
        return out

    async def close(self) -> None:
        await self.resources.channels.close()
