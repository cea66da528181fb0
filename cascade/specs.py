"""One spec for every tensor: names, dtypes and per-row dims of each model's inputs and outputs.

ONNX export, every Triton config, the ensemble maps and the orchestrator's client read these;
no traced name ever leaks anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: type  # a numpy scalar type
    dims: tuple[int, ...]  # dims after the leading row (candidate) dimension; -1 = variable


@dataclass(frozen=True)
class ModelSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


USER_CAT_COLUMNS = 4  # the three user fields (cascade.schema.USER_FIELDS), then the hashed user id
USER_NUM_DIM = 3  # events, positive rate, recency (cascade.features.user_numbers)
ITEM_NUM_DIM = 3  # value, positives, positive rate (cascade.features.item_numbers)


def feature_tensors(history_len: int) -> dict[str, TensorSpec]:
    """Every tensor feature assembly produces, one row per candidate item."""
    specs = (
        TensorSpec("user_cat", np.int64, (USER_CAT_COLUMNS,)),
        TensorSpec("user_num", np.float32, (USER_NUM_DIM,)),
        TensorSpec("item_id", np.int64, ()),
        TensorSpec("item_cat", np.int64, ()),
        TensorSpec("item_num", np.float32, (ITEM_NUM_DIM,)),
        TensorSpec("hist_item", np.int64, (history_len,)),
        TensorSpec("hist_cat", np.int64, (history_len,)),
        TensorSpec("ctx", np.int64, (2,)),
    )
    return {t.name: t for t in specs}


USER_SIDE = ("user_cat", "user_num", "hist_item", "hist_cat", "ctx")
ITEM_SIDE = ("item_id", "item_cat", "item_num")
# The scorers' ONNX models are request-shaped: the user side once per user ([R, ...]), the item side
# once per candidate ([N, ...]), and per candidate the row of the user side it belongs to. Rows that
# each carry their own user side (training rows) pass user_row = arange(N) (`cascade.features.as_rows`).
# Triton's scorer models take no user_row: their adapter derives it from the request boundaries.
USER_ROW = TensorSpec("user_row", np.int64, ())
SCORE = TensorSpec("score", np.float32, ())
USER_EMBEDDING = "user_emb"

# Raw request tensors sent to feature assembly (and to the pipelines): one user, many items.
REQUEST_INPUTS = (
    TensorSpec("user_id", np.int64, (1,)),
    TensorSpec("item_ids", np.int64, (-1,)),
    TensorSpec("history", np.int64, (-1,)),
    TensorSpec("timestamp", np.int64, (1,)),
)
PIPELINE_OUTPUT = TensorSpec("scores", np.float32, (-1,))

# The two-stage model (pre-rank -> top `keep` -> rank in one call): the request, plus how many to keep;
# out come the kept candidates' indices into `item_ids` (best pre-rank score first), their pre-rank
# scores and their rank scores (`scores`, as a pipeline's).
TWO_STAGE_INPUTS = (*REQUEST_INPUTS, TensorSpec("keep", np.int64, (1,)))
KEPT = TensorSpec("kept", np.int64, (-1,))
PRERANK_SCORES = TensorSpec("prerank_scores", np.float32, (-1,))
TWO_STAGE_OUTPUTS = (KEPT, PRERANK_SCORES, PIPELINE_OUTPUT)

# The look-alike scorer (`cascade.models.lookalike.SeedAttention`): its ONNX graph takes one seed set's
# user inputs ([N, ...]) and C candidates' ([C, ...]) and gives a probability per candidate. Triton's
# look-alike model takes user ids and looks the inputs up in its `users.npz` (`cascade.lookalike.users`),
# but for the seeds' embeddings, which the caller sends (flat, N x d): live ones where a seed's clicks
# were re-embedded since the export (`orchestrator.live_embeddings`).
LOOKALIKE_GRAPH_INPUTS = ("seed_embedding", "seed_fields", "seed_activity", "embedding", "fields", "activity")
LOOKALIKE_GRAPH_OUTPUT = "score"
LOOKALIKE_INPUTS = (
    TensorSpec("seed_ids", np.int64, (-1,)), TensorSpec("seed_embeddings", np.float32, (-1,)),
    TensorSpec("candidate_ids", np.int64, (-1,)),
)

PRERANK_FEATURES = ("user_cat", "user_num", "item_id", "item_cat", "item_num", "hist_item", "hist_cat", "ctx")
RANK_FEATURES = ("user_cat", "user_num", "item_id", "item_cat", "item_num", "hist_item", "hist_cat", "ctx")
USER_TOWER_FEATURES = ("user_cat", "user_num", "hist_item", "hist_cat")


def scorer_spec(name: str, features: tuple[str, ...], history_len: int) -> ModelSpec:
    """The ONNX scorer: `features` and `USER_ROW` in, a score per candidate out."""
    all_features = feature_tensors(history_len)
    return ModelSpec(name, (*(all_features[f] for f in features), USER_ROW), (SCORE,))


def triton_scorer(spec: ModelSpec) -> ModelSpec:
    """A scorer's inputs as Triton sends them: the features, without `USER_ROW`."""
    return ModelSpec(spec.name, tuple(t for t in spec.inputs if t != USER_ROW), spec.outputs)


def prerank_spec(history_len: int) -> ModelSpec:
    return scorer_spec("prerank", PRERANK_FEATURES, history_len)


def rank_spec(history_len: int) -> ModelSpec:
    return scorer_spec("rank", RANK_FEATURES, history_len)


def teacher_spec(history_len: int) -> ModelSpec:
    return scorer_spec("teacher", RANK_FEATURES, history_len)


def user_tower_spec(history_len: int, dim: int) -> ModelSpec:
    all_features = feature_tensors(history_len)
    return ModelSpec(
        "user_tower",
        tuple(all_features[f] for f in USER_TOWER_FEATURES),
        (TensorSpec(USER_EMBEDDING, np.float32, (dim,)),),
    )


def feature_assembly_spec(history_len: int) -> ModelSpec:
    return ModelSpec("feature_assembly", REQUEST_INPUTS, tuple(feature_tensors(history_len).values()))
