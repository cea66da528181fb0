"""Pre-ranker and ranker: both map feature tensors to a click probability per row.

`logits` is what training optimises; `forward` (the exported graph) returns sigmoid(logits).
"""
from __future__ import annotations

import torch
from torch import nn

from cascade.features import FeatureConfig
from cascade.models.embeddings import ItemEmbedding, UserEmbedding, mlp


class PreRanker(nn.Module):
    """A light MLP over cheap user, item and context features; no behaviour sequence."""

    def __init__(self, cfg: FeatureConfig, dim: int = 8, hidden: int = 64) -> None:
        super().__init__()
        self.user = UserEmbedding(cfg, dim)
        self.item = ItemEmbedding(cfg, dim)
        self.head = mlp([self.user.out_dim + dim + 2, hidden, hidden // 2, 1])

    def logits(self, user_cat, user_num, item_id, item_cat, item_num, ctx) -> torch.Tensor:
        x = torch.cat([self.user(user_cat, user_num, ctx), self.item(item_id, item_cat, item_num)], dim=1)
        return self.head(x).squeeze(1)

    def forward(self, user_cat, user_num, item_id, item_cat, item_num, ctx) -> torch.Tensor:
        return torch.sigmoid(self.logits(user_cat, user_num, item_id, item_cat, item_num, ctx))


class TargetAttention(nn.Module):
    """DIN-style attention: the candidate item queries the behaviour sequence (padding masked)."""

    def __init__(self, dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.score = mlp([4 * dim, hidden, 1])

    def forward(self, target: torch.Tensor, seq: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        t = target.unsqueeze(1).expand_as(seq)
        w = self.score(torch.cat([seq, t, seq - t, seq * t], dim=-1)).squeeze(-1)
        w = w.masked_fill(pad, -1e4)
        w = torch.softmax(w, dim=1) * (~pad).to(seq.dtype)
        return torch.einsum("nl,nld->nd", w, seq)


class Ranker(nn.Module):
    """Pre-ranker features plus target attention over the last L behaviours."""

    def __init__(self, cfg: FeatureConfig, dim: int = 16, hidden: int = 128) -> None:
        super().__init__()
        self.user = UserEmbedding(cfg, dim)
        self.item = ItemEmbedding(cfg, dim)
        self.attention = TargetAttention(dim)
        self.head = mlp([self.user.out_dim + 3 * dim + 2, hidden, hidden // 2, 1])

    def logits(self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx) -> torch.Tensor:
        target = self.item.ids(item_id, item_cat)
        seq = self.item.ids(hist_item, hist_cat)
        interest = self.attention(target, seq, hist_item == 0)
        x = torch.cat([self.user(user_cat, user_num, ctx), target, item_num, interest, target * interest], dim=1)
        return self.head(x).squeeze(1)

    def forward(self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx) -> torch.Tensor:
        return torch.sigmoid(self.logits(user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx))
