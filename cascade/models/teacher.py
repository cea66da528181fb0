"""The teacher ranker: DIN-style target attention over the last L behaviours plus DCN-v2 cross
layers and a deep tower. Too slow to serve on every candidate; it exists to teach the student."""
from __future__ import annotations

import torch
from torch import nn

from cascade.features import FeatureConfig
from cascade.models.base import SequenceScorer
from cascade.models.embeddings import attend, mlp


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


class TeacherRanker(SequenceScorer):
    def __init__(
        self, cfg: FeatureConfig, dim: int = 32, attention_hidden: int = 64, cross_layers: int = 3,
        deep: tuple[int, ...] = (256, 128), hint_dim: int = 64,
    ) -> None:
        super().__init__(cfg, dim)
        self.attention = mlp([4 * dim, attention_hidden, 1])
        self.cross = CrossNetV2(self.width, cross_layers)
        self.deep = mlp([self.width, *deep], final_activation=True)
        self.combine = mlp([self.width + deep[-1], hint_dim], final_activation=True)
        self.out = nn.Linear(hint_dim, 1)
        self.hint_dim = hint_dim

    def pool(self, target: torch.Tensor, seq: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """DIN: an MLP scores each behaviour against the candidate; padding masked."""
        t = target.unsqueeze(1).expand_as(seq)
        return attend(self.attention(torch.cat([seq, t, seq - t, seq * t], dim=-1)).squeeze(-1), seq, pad)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(torch.cat([self.cross(x), self.deep(x)], dim=1))
