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
    teaches), and the second objective's. Every second label is a kind of positive (a conversion
    after a click, a 5-star rating among ratings >= 4, a long dwell among the positives), so the
    second head is ESMM-shaped: `second` gives p(second | positive) and the head's probability is
    p(positive) * that, which ranks with the click head's knowledge where the second label's own
    evidence is thin. `forward`, the served score, mixes the two heads' probabilities with the
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

    def probabilities(self, hidden: torch.Tensor) -> torch.Tensor:
        """[N, 2] from the body's output: p(click), and p(second) = p(click) * p(second | click)."""
        click = torch.sigmoid(self.out(hidden))
        return torch.cat([click, click * torch.sigmoid(self.second(hidden))], dim=1)

    def head_probabilities(self, *features: torch.Tensor) -> torch.Tensor:
        return self.probabilities(self.hidden(*features))

    def mix(self, probabilities: torch.Tensor) -> torch.Tensor:
        """[N, 2] head probabilities -> [N] served scores, weighted by `head_weights`."""
        return (probabilities * getattr(self, HEAD_WEIGHTS)).sum(dim=1)

    def forward(
        self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx, user_row=None
    ) -> torch.Tensor:
        return self.mix(self.head_probabilities(user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx, user_row))


def head_loss(probabilities: torch.Tensor, labels: torch.Tensor, head: int = 1) -> torch.Tensor:
    """BCE of one head's probability (`StudentRanker.probabilities`' column `head`: 0 click, 1 the
    second objective) on its labels."""
    return nn.functional.binary_cross_entropy(probabilities[:, head].clamp(1e-7, 1 - 1e-7), labels)
