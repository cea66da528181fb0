"""The skeleton every ranking model shares: user and context embeddings, the candidate's
embedding, an interest vector pooled from the behaviour sequence, then a body and a logit.

Models differ in how they pool the sequence (`pool`) and in their body; `hidden` (the body's
output) is the representation the distillation hint aligns.
"""
from __future__ import annotations

import torch
from torch import nn

from cascade.features import FeatureConfig
from cascade.models.embeddings import ItemEmbedding, UserEmbedding


class SequenceScorer(nn.Module):
    def __init__(self, cfg: FeatureConfig, dim: int) -> None:
        super().__init__()
        self.user = UserEmbedding(cfg, dim)
        self.item = ItemEmbedding(cfg, dim)
        self.width = self.user.out_dim + 3 * dim + 2  # user+ctx, candidate, item_num, interest, candidate*interest

    def pool(self, target: torch.Tensor, seq: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def body(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def hidden(self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx) -> torch.Tensor:
        target = self.item.ids(item_id, item_cat)
        interest = self.pool(target, self.item.ids(hist_item, hist_cat), hist_item == 0)
        x = torch.cat([self.user(user_cat, user_num, ctx), target, item_num, interest, target * interest], dim=1)
        return self.body(x)

    def logits(self, *features: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(*features)).squeeze(1)

    def forward(self, user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx) -> torch.Tensor:
        return torch.sigmoid(self.logits(user_cat, user_num, item_id, item_cat, item_num, hist_item, hist_cat, ctx))
