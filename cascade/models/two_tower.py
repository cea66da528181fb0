"""Retrieval two-tower: L2-normalised user and item embeddings whose dot product is the score."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from cascade.features import FeatureConfig
from cascade.models.embeddings import ItemEmbedding, UserEmbedding, masked_mean, mlp
from cascade.specs import ITEM_NUM_DIM


RECENT = 5  # histories are ordered oldest to newest, so the tail is the current interest


class UserTower(nn.Module):
    def __init__(self, cfg: FeatureConfig, items: ItemEmbedding, dim: int, out_dim: int) -> None:
        super().__init__()
        self.user = UserEmbedding(cfg, dim, with_ctx=False)
        self.items = items  # shared with the item tower: history items live in the same space
        self.net = mlp([self.user.out_dim + 2 * dim, 128, out_dim])

    def forward(self, user_cat, user_num, hist_item, hist_cat) -> torch.Tensor:
        """Long-term taste (mean of the whole sequence) and current interest (its last RECENT items)."""
        seq, keep = self.items.ids(hist_item, hist_cat), hist_item != 0
        recent = masked_mean(seq[:, -RECENT:], keep[:, -RECENT:])
        x = torch.cat([self.user(user_cat, user_num), masked_mean(seq, keep), recent], dim=1)
        return F.normalize(self.net(x), dim=1)


class ItemTower(nn.Module):
    def __init__(self, items: ItemEmbedding, dim: int, out_dim: int) -> None:
        super().__init__()
        self.items = items
        self.net = mlp([dim + ITEM_NUM_DIM, 64, out_dim])

    def forward(self, item_id, item_cat, item_num) -> torch.Tensor:
        return F.normalize(self.net(self.items(item_id, item_cat, item_num)), dim=1)


class TwoTower(nn.Module):
    def __init__(self, cfg: FeatureConfig, dim: int = 16, out_dim: int = 32, temperature: float = 0.05) -> None:
        super().__init__()
        items = ItemEmbedding(cfg, dim)
        self.user_tower = UserTower(cfg, items, dim, out_dim)
        self.item_tower = ItemTower(items, dim, out_dim)
        self.temperature = temperature
        self.out_dim = out_dim

    def in_batch_loss(self, user: dict[str, torch.Tensor], item: dict[str, torch.Tensor], log_q: torch.Tensor) -> torch.Tensor:
        """Sampled softmax over the batch's positives, with logQ correction for popularity."""
        u = self.user_tower(user["user_cat"], user["user_num"], user["hist_item"], user["hist_cat"])
        v = self.item_tower(item["item_id"], item["item_cat"], item["item_num"])
        logits = u @ v.T / self.temperature - log_q[None, :]
        return F.cross_entropy(logits, torch.arange(len(u)))
