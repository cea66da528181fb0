"""Embedding blocks shared by every model: one table per feature, sized from FeatureConfig."""
from __future__ import annotations

import torch
from torch import nn

from cascade.features import FeatureConfig
from cascade.specs import USER_CAT_COLUMNS, USER_NUM_DIM


class UserEmbedding(nn.Module):
    """user_cat [N, F + 1] (the fields, then the hashed user id) + user_num [N, USER_NUM_DIM] + ctx
    [N, 2] -> [N, out_dim]. The user id's bucket 0 (unknown: a cold-start user) is a learnt vector:
    training hides some ids behind it (`export.train`), so it stands for a user nobody knows yet."""

    def __init__(self, cfg: FeatureConfig, dim: int, with_ctx: bool = True) -> None:
        super().__init__()
        n_fields = USER_CAT_COLUMNS - 1
        self.fields = nn.Embedding(cfg.user_field_buckets, dim)
        self.field_offset = nn.Parameter(torch.zeros(n_fields, dim))
        self.user_id = nn.Embedding(cfg.user_id_buckets, dim)
        self.with_ctx = with_ctx
        self.hour = nn.Embedding(cfg.hours, dim // 2)
        self.weekday = nn.Embedding(cfg.weekdays, dim // 2)
        self.out_dim = (n_fields + 1) * dim + USER_NUM_DIM + (dim if with_ctx else 0)

    def forward(self, user_cat: torch.Tensor, user_num: torch.Tensor, ctx: torch.Tensor | None = None) -> torch.Tensor:
        fields = (self.fields(user_cat[:, :-1]) + self.field_offset).flatten(1)
        parts = [fields, self.user_id(user_cat[:, -1]), user_num]
        if self.with_ctx and ctx is not None:
            parts += [self.hour(ctx[:, 0]), self.weekday(ctx[:, 1])]
        return torch.cat(parts, dim=1)


class ItemEmbedding(nn.Module):
    """item_id [N] + item_cat [N] (+ item_num [N, ITEM_NUM_DIM]) -> [N, dim + ITEM_NUM_DIM]; also embeds histories."""

    def __init__(self, cfg: FeatureConfig, dim: int) -> None:
        super().__init__()
        self.item = nn.Embedding(cfg.item_buckets, dim, padding_idx=0)
        self.category = nn.Embedding(cfg.category_buckets, dim, padding_idx=0)
        self.dim = dim

    def ids(self, item_id: torch.Tensor, item_cat: torch.Tensor) -> torch.Tensor:
        return self.item(item_id) + self.category(item_cat)

    def forward(self, item_id: torch.Tensor, item_cat: torch.Tensor, item_num: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.ids(item_id, item_cat), item_num], dim=1)


def mlp(sizes: list[int], final_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def masked_mean(seq: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean over the sequence axis of [N, L, D] where `keep` [N, L] is True; zeros if none kept."""
    w = keep.to(seq.dtype).unsqueeze(-1)
    return (seq * w).sum(1) / w.sum(1).clamp(min=1.0)


def attend(weights: torch.Tensor, seq: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """Softmax of [N, L] attention `weights` over the unpadded positions, applied to seq [N, L, D]."""
    w = torch.softmax(weights.masked_fill(pad, -1e4), dim=1) * (~pad).to(seq.dtype)
    return torch.einsum("nl,nld->nd", w, seq)


class ItemBias(nn.Module):
    """item_id [N] + item_cat [N] -> [N]: a learnt scalar per item bucket and per category bucket, added
    to a logit. The wide part of a wide-and-deep ranker: logistic regression's item and category terms
    (its user term is the same for all of a user's candidates, so GAUC never sees it). Starts at zero,
    so a fresh model scores as it would without it."""

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self.item = nn.Embedding(cfg.item_buckets, 1)
        self.category = nn.Embedding(cfg.category_buckets, 1)
        nn.init.zeros_(self.item.weight)
        nn.init.zeros_(self.category.weight)

    def forward(self, item_id: torch.Tensor, item_cat: torch.Tensor) -> torch.Tensor:
        return (self.item(item_id) + self.category(item_cat)).squeeze(-1)
