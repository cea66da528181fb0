"""The skeleton every ranking model shares: user and context embeddings, the candidate's
embedding, an interest vector pooled from the behaviour sequence, then a body and a logit.

Models differ in how they pool the sequence (`pool`) and in their body; `hidden` (the body's
output) is the representation the distillation hint aligns.

Serving scores one user's candidates at a time, so the exported scorers are request-shaped
(`cascade.specs.USER_ROW`): the user-side tensors come once per user ([R, ...]) and each candidate
row names its user's row (`user_row` [N]). The user side is then computed once per user: the user
embedding, the history's embeddings, the pooled interest where the pooling ignores the candidate
(`USER_SIDE_POOL`), and the user side's share of the body's first layer (`split_first_layer`);
candidates gather their user's result. With `user_row` None every row carries its own user side
(training, whose batches are rows of many users); the output is the same function, up to float
rounding (a unit test holds it to 1e-6).

This replaced a `torch.unique` over every row's repeated history: a third of the pre-ranker's
time in ONNX Runtime at ~1,245 candidates, and an op TensorRT does not have.
"""
from __future__ import annotations

import torch
from torch import nn

from cascade.features import FeatureConfig
from cascade.models.embeddings import ItemEmbedding, UserEmbedding
from cascade.specs import ITEM_NUM_DIM


class HiddenScorer(nn.Module):
    """A ranker whose logit is `out` over its last hidden layer (`hidden`, what the distillation hint
    aligns), plus `bias` where the model has a term outside that layer, and whose score is that
    logit's sigmoid."""

    out: nn.Linear

    def hidden(
        self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx, user_row=None
    ) -> torch.Tensor:
        raise NotImplementedError

    def bias(self, item_id: torch.Tensor, item_cat: torch.Tensor) -> torch.Tensor | None:
        """[N] added to the logit outside the hidden layer (the teacher's wide part); None: no such term."""
        return None

    def hidden_and_logits(
        self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx, user_row=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The hidden layer and the logit, from one pass (distillation reads both)."""
        hidden = self.hidden(user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx, user_row)
        logits = self.out(hidden).squeeze(1)
        bias = self.bias(item_id, item_cat)
        return hidden, logits if bias is None else logits + bias

    def logits(self, *features: torch.Tensor) -> torch.Tensor:
        return self.hidden_and_logits(*features)[1]

    def forward(
        self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx, user_row=None
    ) -> torch.Tensor:
        return torch.sigmoid(self.logits(user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx, user_row))


class SequenceScorer(HiddenScorer):
    USER_SIDE_POOL = False  # True: `pool` ignores `target`, so it runs once per user

    def __init__(self, cfg: FeatureConfig, dim: int) -> None:
        super().__init__()
        self.user = UserEmbedding(cfg, dim)
        self.item = ItemEmbedding(cfg, dim)
        self.dim = dim
        self.width = self.user.out_dim + 3 * dim + ITEM_NUM_DIM  # user+ctx, candidate, item_num, interest, candidate*interest

    def pool(self, target: torch.Tensor, seq: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def body(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def split_first_layer(self) -> tuple[nn.Linear, nn.Module] | None:
        """The body as (its first Linear over x, the rest), when the body starts with one."""
        return None

    def hidden(
        self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx, user_row=None
    ) -> torch.Tensor:
        target = self.item.ids(item_id, item_cat)
        user = self.user(user_cat, user_num, ctx)
        seq, pad = self.item.ids(hist_item, hist_cat), hist_item == 0
        if user_row is None:
            interest = self.pool(target, seq, pad)
            return self.body(torch.cat([user, target, item_num, interest, target * interest], dim=1))
        if self.USER_SIDE_POOL:
            interest = self.pool(target, seq, pad)  # [R, D]
            interest_rows = interest[user_row]
        else:
            interest_rows = interest = self.pool(target, seq[user_row], pad[user_row])
        split = self.split_first_layer()
        if split is None:
            return self.body(torch.cat([user[user_row], target, item_num, interest_rows, target * interest_rows], dim=1))
        first_layer, rest = split
        return rest(self._first_layer(first_layer, user, interest, target, item_num, interest_rows, user_row))

    def _first_layer(self, layer: nn.Linear, user, interest, target, item_num, interest_rows, user_row) -> torch.Tensor:
        """`layer` over x = [user, target, item_num, interest, target*interest], the user side's
        columns multiplied once per user."""
        u, d, w = user.shape[1], self.dim + ITEM_NUM_DIM, layer.weight  # d: the candidate's columns with item_num
        if self.USER_SIDE_POOL:
            per_user = user @ w[:, :u].T + interest @ w[:, u + d : u + d + self.dim].T
            per_row_w = torch.cat([w[:, u : u + d], w[:, u + d + self.dim :]], dim=1)
            per_row = torch.cat([target, item_num, target * interest_rows], dim=1) @ per_row_w.T
        else:
            per_user = user @ w[:, :u].T
            per_row = torch.cat([target, item_num, interest_rows, target * interest_rows], dim=1) @ w[:, u:].T
        return per_user[user_row] + per_row + layer.bias
