"""A RALM-style look-alike scorer (Liu et al., KDD 2019): how likely a candidate user is to join a
seed audience, from the users' fields.

Each user is a few fields: the two-tower user embedding (behaviour), the demographic fields and log
activity. A field attention (RALM's "productive attention" over fields) weighs them into one user
vector; behaviour can then carry a user with a long history and demographics a new one.

The seed set is read two ways, as in RALM:
* globally: self-attention among the seeds, then attention pooling with a learned query, which
  weighs down a seed unlike the rest;
* locally: attention from the candidate over the seeds, so the seeds nearest the candidate speak.

The score is an MLP over the candidate itself (what makes any user likely to join an audience: on
MovieLens, being new), its products with both summaries and its cosines with them. One call scores
one seed set against many candidates: seeds [N, ...], candidates [C, ...] (a batch of tasks in
training: [B, N, ...] and [B, C, ...]).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from cascade.models.embeddings import mlp

FIELD_DIM = 16


class UserFields(nn.Module):
    """[.., E] tower embedding, [.., F] field buckets, [.., 1] log activity -> [.., dim] by field attention."""

    def __init__(self, embedding_dim: int, n_fields: int, field_buckets: int, dim: int) -> None:
        super().__init__()
        self.behaviour = nn.Linear(embedding_dim, dim)
        self.fields = nn.ModuleList(nn.Embedding(field_buckets, dim) for _ in range(n_fields))
        self.activity = nn.Linear(1, dim)
        self.field_score = nn.Sequential(nn.Linear(dim, FIELD_DIM), nn.Tanh(), nn.Linear(FIELD_DIM, 1, bias=False))

    def forward(self, embedding: torch.Tensor, fields: torch.Tensor, activity: torch.Tensor) -> torch.Tensor:
        parts = [self.behaviour(embedding), *(table(fields[..., f]) for f, table in enumerate(self.fields)), self.activity(activity)]
        stacked = torch.stack(parts, dim=-2)  # [.., fields, dim]
        weights = torch.softmax(self.field_score(stacked), dim=-2)
        return (weights * stacked).sum(-2)


class SeedAttention(nn.Module):
    def __init__(self, embedding_dim: int, n_fields: int, field_buckets: int, dim: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.users = UserFields(embedding_dim, n_fields, field_buckets, dim)
        self.self_attention = nn.MultiheadAttention(dim, 1, batch_first=True)
        self.pool_query = nn.Parameter(torch.zeros(dim))
        self.pool_key = nn.Linear(dim, dim)
        self.local_query = nn.Linear(dim, dim)
        self.head = mlp([3 * dim + 2, hidden, 1])
        self.dim = dim

    def summaries(self, seeds: torch.Tensor, seed_mask: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(global [B, 1, dim], local [B, C, dim]) for encoded seeds [B, N, dim] (mask [B, N]: True = a
        seed) and encoded candidates [B, C, dim]."""
        attended, _ = self.self_attention(seeds, seeds, seeds, key_padding_mask=~seed_mask, need_weights=False)
        attended = attended + seeds
        pool = (torch.tanh(self.pool_key(attended)) @ self.pool_query).masked_fill(~seed_mask, -math.inf)
        glob = (torch.softmax(pool, dim=-1).unsqueeze(-1) * attended).sum(1, keepdim=True)
        local = (self.local_query(candidates) @ seeds.transpose(1, 2)) / math.sqrt(self.dim)
        local = torch.softmax(local.masked_fill(~seed_mask.unsqueeze(1), -math.inf), dim=-1) @ seeds
        return glob, local

    def batch_scores(self, seed_inputs: tuple[torch.Tensor, ...], seed_mask: torch.Tensor,
                     candidate_inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Logits [B, C]: B seed sets ([B, N, ...] inputs) against their C candidates each."""
        return self.encoded_scores(self.users(*seed_inputs), seed_mask, self.users(*candidate_inputs))

    def encoded_scores(self, seeds: torch.Tensor, seed_mask: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """`batch_scores` of users already encoded (`self.users`): seeds [B, N, dim], candidates [B, C, dim]."""
        glob, local = self.summaries(seeds, seed_mask, candidates)
        glob = glob.expand_as(candidates)
        cosines = [F.cosine_similarity(candidates, s, dim=-1).unsqueeze(-1) for s in (glob, local)]
        return self.head(torch.cat([candidates, candidates * glob, candidates * local, *cosines], dim=-1)).squeeze(-1)

    def logits(self, seed_embedding, seed_fields, seed_activity, embedding, fields, activity) -> torch.Tensor:
        """One seed set ([N, ...]) against C candidates ([C, ...]): logits [C]."""
        mask = torch.ones(1, seed_embedding.shape[0], dtype=torch.bool)
        return self.batch_scores((seed_embedding[None], seed_fields[None], seed_activity[None]), mask,
                                 (embedding[None], fields[None], activity[None]))[0]

    def forward(self, seed_embedding, seed_fields, seed_activity, embedding, fields, activity) -> torch.Tensor:
        """`logits` as probabilities [C] (the served graph)."""
        return torch.sigmoid(self.logits(seed_embedding, seed_fields, seed_activity, embedding, fields, activity))
