"""The teacher ranker: DIN-style target attention over the last L behaviours plus DCN-v2 cross
layers and a deep tower. Too slow to serve on every candidate; it exists to teach the student."""
from __future__ import annotations

import torch
from torch import nn

from cascade.features import FeatureConfig
from cascade.models.embeddings import ItemEmbedding, UserEmbedding, mlp


class TargetAttention(nn.Module):
    """DIN: an MLP scores each behaviour against the candidate; padding masked."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.score = mlp([4 * dim, hidden, 1])

    def forward(self, target: torch.Tensor, seq: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        t = target.unsqueeze(1).expand_as(seq)
        w = self.score(torch.cat([seq, t, seq - t, seq * t], dim=-1)).squeeze(-1)
        w = torch.softmax(w.masked_fill(pad, -1e4), dim=1) * (~pad).to(seq.dtype)
        return torch.einsum("nl,nld->nd", w, seq)


class CrossNetV2(nn.Module):
    """DCN-v2 explicit feature crossing: x_{l+1} = x_0 * (W_l x_l + b_l) + x_l."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class TeacherRanker(nn.Module):
    def __init__(
        self, cfg: FeatureConfig, dim: int = 32, attention_hidden: int = 64, cross_layers: int = 3,
        deep: tuple[int, ...] = (256, 128), hint_dim: int = 64,
    ) -> None:
        super().__init__()
        self.user = UserEmbedding(cfg, dim)
        self.item = ItemEmbedding(cfg, dim)
        self.attention = TargetAttention(dim, attention_hidden)
        width = self.user.out_dim + 3 * dim + 2
        self.cross = CrossNetV2(width, cross_layers)
        self.deep = mlp([width, *deep], final_activation=True)
        self.body = mlp([width + deep[-1], hint_dim], final_activation=True)
        self.out = nn.Linear(hint_dim, 1)
        self.hint_dim = hint_dim

    def hidden(self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx) -> torch.Tensor:
        target = self.item.ids(item_id, item_cat)
        interest = self.attention(target, self.item.ids(hist_item, hist_cat), hist_item == 0)
        x = torch.cat([self.user(user_cat, user_num, ctx), target, item_num, interest, target * interest], dim=1)
        return self.body(torch.cat([self.cross(x), self.deep(x)], dim=1))

    def logits(self, *features: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(*features)).squeeze(1)

    def forward(self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx) -> torch.Tensor:
        return torch.sigmoid(self.logits(user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx))
