"""The served scorers: the distilled student ranker (`rank`) and the COLD-style pre-ranker (`prerank`)."""
from __future__ import annotations

import torch
from torch import nn

from cascade.features import FeatureConfig
from cascade.models.base import SequenceScorer
from cascade.models.embeddings import attend, masked_mean, mlp


class MlpScorer(SequenceScorer):
    """A scorer whose body is the MLP `self.mlp`; serving multiplies the user side's share of its
    first layer once per user (`SequenceScorer.split_first_layer`)."""

    mlp: nn.Sequential

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)

    def split_first_layer(self) -> tuple[nn.Linear, nn.Module]:
        return self.mlp[0], self.mlp[1:]


class PreRanker(MlpScorer):
    """COLD-style: a small MLP over cheap features; the behaviour sequence enters only as the mean
    of its embeddings (a user-side vector, computed once per request), so cost per candidate stays a
    few thousand MACs."""

    USER_SIDE_POOL = True

    def __init__(self, cfg: FeatureConfig, dim: int = 16, hidden: int = 64) -> None:
        super().__init__(cfg, dim)
        self.mlp = mlp([self.width, hidden, hidden // 2], final_activation=True)
        self.out = nn.Linear(hidden // 2, 1)

    def pool(self, target: torch.Tensor, seq: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        return masked_mean(seq, ~pad)


class StudentRanker(MlpScorer):
    """The ranker Triton serves: distilled from the teacher, a fraction of its cost per item.
    Target attention at the cost of one dot product per behaviour."""

    def __init__(self, cfg: FeatureConfig, dim: int = 16, hidden: int = 128, hint_dim: int = 32) -> None:
        super().__init__(cfg, dim)
        self.mlp = mlp([self.width, hidden, hint_dim], final_activation=True)
        self.out = nn.Linear(hint_dim, 1)
        self.hint_dim = hint_dim

    def pool(self, target: torch.Tensor, seq: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        return attend(torch.einsum("nd,nld->nl", target, seq) / seq.shape[-1] ** 0.5, seq, pad)
