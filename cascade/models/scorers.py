"""The served scorers: the distilled student ranker (`rank`) and the COLD-style pre-ranker (`prerank`).

`logits` is what training optimises; `forward` (the exported graph) returns sigmoid(logits);
`hidden` is the representation the hint loss aligns with the teacher's.
"""
from __future__ import annotations

import torch
from torch import nn

from cascade.features import FeatureConfig
from cascade.models.embeddings import ItemEmbedding, UserEmbedding, masked_mean, mlp


class PreRanker(nn.Module):
    """COLD-style: a small MLP over cheap features; the behaviour sequence enters only as a mean
    of its embeddings (a user-side vector), so cost per candidate stays a few thousand MACs."""

    def __init__(self, cfg: FeatureConfig, dim: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.user = UserEmbedding(cfg, dim)
        self.item = ItemEmbedding(cfg, dim)
        self.head = mlp([self.user.out_dim + 3 * dim + 2, hidden, hidden // 2, 1])

    def logits(self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx) -> torch.Tensor:
        target = self.item.ids(item_id, item_cat)
        interest = masked_mean(self.item.ids(hist_item, hist_cat), hist_item != 0)
        x = torch.cat([self.user(user_cat, user_num, ctx), target, item_num, interest, target * interest], dim=1)
        return self.head(x).squeeze(1)

    def forward(self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx) -> torch.Tensor:
        return torch.sigmoid(self.logits(user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx))


class DotAttention(nn.Module):
    """Target attention at the cost of one dot product per behaviour (padding masked)."""

    def forward(self, target: torch.Tensor, seq: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        w = torch.einsum("nd,nld->nl", target, seq) / seq.shape[-1] ** 0.5
        w = torch.softmax(w.masked_fill(pad, -1e4), dim=1) * (~pad).to(seq.dtype)
        return torch.einsum("nl,nld->nd", w, seq)


class StudentRanker(nn.Module):
    """The ranker Triton serves: distilled from the teacher, a fraction of its cost per item."""

    def __init__(self, cfg: FeatureConfig, dim: int = 16, hidden: int = 128, hint_dim: int = 32) -> None:
        super().__init__()
        self.user = UserEmbedding(cfg, dim)
        self.item = ItemEmbedding(cfg, dim)
        self.attention = DotAttention()
        self.body = mlp([self.user.out_dim + 3 * dim + 2, hidden, hint_dim], final_activation=True)
        self.out = nn.Linear(hint_dim, 1)
        self.hint_dim = hint_dim

    def hidden(self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx) -> torch.Tensor:
        target = self.item.ids(item_id, item_cat)
        interest = self.attention(target, self.item.ids(hist_item, hist_cat), hist_item == 0)
        x = torch.cat([self.user(user_cat, user_num, ctx), target, item_num, interest, target * interest], dim=1)
        return self.body(x)

    def logits(self, *features: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(*features)).squeeze(1)

    def forward(self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx) -> torch.Tensor:
        return torch.sigmoid(self.logits(user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx))
