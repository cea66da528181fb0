"""The served scorers: the distilled student ranker (`rank`) and the COLD-style pre-ranker (`prerank`)."""
from __future__ import annotations

import torch
from torch import nn

from cascade.features import FeatureConfig
from cascade.heads import HEAD_WEIGHTS, normalised
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
    Target attention at the cost of one dot product per behaviour.

    Two heads over one body (`cascade.heads`): `out`, the click head (`logits`, what the teacher
    teaches), and `second`. `forward`, the served score, mixes their probabilities with the
    `head_weights` buffer, which the ONNX graph keeps as an initializer of that name."""

    def __init__(
        self, cfg: FeatureConfig, dim: int = 16, hidden: int = 128, hint_dim: int = 32,
        head_weights: tuple[float, float] = (1.0, 0.0),
    ) -> None:
        super().__init__(cfg, dim)
        self.mlp = mlp([self.width, hidden, hint_dim], final_activation=True)
        self.out = nn.Linear(hint_dim, 1)
        self.second = nn.Linear(hint_dim, 1)
        self.hint_dim = hint_dim
        self.register_buffer(HEAD_WEIGHTS, torch.empty(2))
        self.set_head_weights(head_weights)

    def set_head_weights(self, weights: tuple[float, float]) -> None:
        getattr(self, HEAD_WEIGHTS).copy_(torch.from_numpy(normalised(weights)))

    def pool(self, target: torch.Tensor, seq: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        return attend(torch.einsum("nd,nld->nl", target, seq) / seq.shape[-1] ** 0.5, seq, pad)

    def head_logits(self, *features: torch.Tensor) -> torch.Tensor:
        """[N, 2]: the click head's and the second head's logits."""
        hidden = self.hidden(*features)
        return torch.cat([self.out(hidden), self.second(hidden)], dim=1)

    def forward(
        self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx, user_row=None
    ) -> torch.Tensor:
        heads = self.head_logits(user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx, user_row)
        return (torch.sigmoid(heads) * getattr(self, HEAD_WEIGHTS)).sum(dim=1)
