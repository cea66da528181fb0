"""The skeleton every ranking model shares: user and context embeddings, the candidate's
embedding, an interest vector pooled from the behaviour sequence, then a body and a logit.

Models differ in how they pool the sequence (`pool`) and in their body; `hidden` (the body's
output) is the representation the distillation hint aligns.

Serving repeats one user's history on every candidate row (feature assembly broadcasts it), so
`interest` embeds each distinct history once (`torch.unique` over the rows, exported as an ONNX
Unique) and, for a model whose pooling ignores the candidate (`USER_SIDE_POOL`), pools it once too;
rows then gather their history's result. The output is the same, row for row, as embedding every
row. Training skips it: its batches are rows of many users, where the Unique only costs time (it
made the default export 30% slower). TensorRT has no Unique layer: a TensorRT export sets
`dedupe_histories = False`.
"""
from __future__ import annotations

import torch
from torch import nn

from cascade.features import FeatureConfig
from cascade.models.embeddings import ItemEmbedding, UserEmbedding


class SequenceScorer(nn.Module):
    USER_SIDE_POOL = False  # True: `pool` ignores `target`, so it runs once per distinct history

    def __init__(self, cfg: FeatureConfig, dim: int) -> None:
        super().__init__()
        self.dedupe_histories = True
        self.user = UserEmbedding(cfg, dim)
        self.item = ItemEmbedding(cfg, dim)
        self.width = self.user.out_dim + 3 * dim + 2  # user+ctx, candidate, item_num, interest, candidate*interest

    def pool(self, target: torch.Tensor, seq: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def body(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def interest(self, target: torch.Tensor, hist_item: torch.Tensor, hist_cat: torch.Tensor) -> torch.Tensor:
        """The behaviour sequence pooled for each row [N, D] (see the module docstring)."""
        if self.training or not self.dedupe_histories:
            return self.pool(target, self.item.ids(hist_item, hist_cat), hist_item == 0)
        length = hist_item.shape[1]
        distinct, rows = torch.unique(torch.cat([hist_item, hist_cat], dim=1), dim=0, return_inverse=True)
        seq, pad = self.item.ids(distinct[:, :length], distinct[:, length:]), distinct[:, :length] == 0
        if self.USER_SIDE_POOL:
            return self.pool(target, seq, pad)[rows]
        return self.pool(target, seq[rows], pad[rows])

    def hidden(self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx) -> torch.Tensor:
        target = self.item.ids(item_id, item_cat)
        interest = self.interest(target, hist_item, hist_cat)
        x = torch.cat([self.user(user_cat, user_num, ctx), target, item_num, interest, target * interest], dim=1)
        return self.body(x)

    def logits(self, *features: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(*features)).squeeze(1)

    def forward(self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx) -> torch.Tensor:
        return torch.sigmoid(self.logits(user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx))
