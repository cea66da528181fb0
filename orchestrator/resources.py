"""Everything the funnel reads from the export's artefacts, loaded once and checked against the manifest."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from cascade.artifacts import ArtifactPaths, Manifest, sha256_file
from cascade.features import FeatureTables
from cascade.lookalike.audience import Likers
from cascade.lookalike.users import UserTable
from cascade.recall.ann import AnnRecall, load_index
from cascade.recall.item_to_item import ItemToItemIndex
from cascade.recall.popular import popular_items
from cascade.rerank.similarity import unit_rows
from cascade.settings import Settings
from orchestrator.recall import RecallChannels

log = logging.getLogger("cascade.orchestrator")


class ArtifactMismatch(RuntimeError):
    pass


@dataclass(frozen=True)
class Audience:
    """What look-alike requests read from the export: the users' table, each item's likers, the users' index."""

    table: UserTable
    likers: Likers
    index: object  # faiss.Index | ExactInnerProduct (`cascade.recall.ann.load_index`)
    version: str  # the users' table's SHA-256: which export Redis GEO was filled from

    @staticmethod
    def load(settings: Settings, manifest: Manifest) -> "Audience | None":
        """None (look-alike requests answer 503) for an export made before look-alike existed."""
        paths = ArtifactPaths(settings.artifacts_dir)
        if not paths.users.exists():
            log.warning("%s not found: POST /v1/lookalike answers 503; re-run the export", paths.users)
            return None
        table = UserTable.load(paths.users)
        with np.load(paths.item_likers, allow_pickle=False) as z:
            likers = Likers(z["ptr"], z["users"])
        index = load_index(paths.user_index, use_gpu=settings.triton_profile == "gpu", nprobe=settings.faiss_nprobe)
        checks = {"users' table": (table.n_users, manifest.n_users), "users' index": (index.ntotal, manifest.n_users),
                  "item likers": (likers.n_items, manifest.n_items)}
        for what, (got, want) in checks.items():
            if got != want:
                raise ArtifactMismatch(f"{paths.root}: {what} holds {got}, manifest says {want}; re-run the export")
        return Audience(table, likers, index, sha256_file(paths.users))


@dataclass(frozen=True)
class Resources:
    manifest: Manifest
    tables: FeatureTables
    user_history: np.ndarray  # int64 [n_users, L]
    unit_item_embeddings: np.ndarray  # [n_items, d] item embeddings at unit length, normalised once for the rerank
    popular_ids: np.ndarray
    popular_scores: np.ndarray
    ann: AnnRecall
    channels: RecallChannels  # every recall channel, configured by CASCADE_RECALL_CONFIG

    @staticmethod
    def load(settings: Settings, trending: bool = True) -> "Resources":
        """`trending` False: the recall channels never read Redis (`RecallChannels`), for offline use."""
        paths = ArtifactPaths(settings.artifacts_dir)
        manifest = Manifest.read(paths.manifest)
        tables = FeatureTables.load(paths.tables)
        history = np.load(paths.user_history, allow_pickle=False)
        embeddings = np.load(paths.item_embeddings, allow_pickle=False)
        index = load_index(paths.faiss_index, use_gpu=settings.triton_profile == "gpu", nprobe=settings.faiss_nprobe)
        checks = {
            "tables items": (tables.n_items, manifest.n_items),
            "tables users": (tables.n_users, manifest.n_users),
            "history length": (tables.config.history_len, manifest.history_len),
            "user_history shape": (history.shape, (manifest.n_users, manifest.history_len)),
            "item_embeddings shape": (embeddings.shape, (manifest.n_items, manifest.embedding_dim)),
            "faiss index size": (index.ntotal, manifest.n_items),
        }
        for what, (got, want) in checks.items():
            if got != want:
                raise ArtifactMismatch(f"{paths.root}: {what} is {got}, manifest says {want}; re-run the export")
        pop_ids, pop_scores = popular_items(tables.item_positives, settings.recall_ann_k + settings.recall_popular_k)
        item_to_item = None
        if paths.item_to_item.exists():
            item_to_item = ItemToItemIndex.load(paths.item_to_item)
            if item_to_item.n_items != manifest.n_items:
                raise ArtifactMismatch(f"{paths.item_to_item}: {item_to_item.n_items} items, manifest says {manifest.n_items}")
        else:
            log.warning("%s not found: the item_to_item channel answers nothing; re-run the export", paths.item_to_item)
        ann = AnnRecall(tables, paths.onnx("user_tower"), index)
        return Resources(
            manifest, tables, history, unit_rows(embeddings), pop_ids, pop_scores, ann,
            RecallChannels(settings, tables, ann, item_to_item, pop_ids, pop_scores, trending=trending),
        )

    @property
    def model_versions(self) -> dict[str, int]:
        """The exported versions of the models a recommendation calls (the look-alike scorer answers
        another route, which names its own version)."""
        return {name: v for name, v in self.manifest.model_versions.items() if name != "lookalike"}

    def history_of(self, user_id: int) -> np.ndarray | None:
        """The user's behaviour sequence, or None for a user the export never saw (cold start)."""
        return self.user_history[user_id] if 0 <= user_id < self.tables.n_users else None
