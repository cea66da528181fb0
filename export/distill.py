"""Distillation losses: soft labels with a temperature, a hint on an intermediate layer, true labels.

For a binary click model the teacher's "soft label" is sigmoid(teacher_logit / T); the soft term
is the binary cross-entropy of the student's tempered probability against it, scaled by T^2 so
its gradient keeps the same magnitude across temperatures (Hinton et al.).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class DistillWeights:
    temperature: float = 2.0
    label: float = 0.5  # weight of the true-label BCE; the soft term gets 1 - label
    hint: float = 0.1  # weight of the hint MSE (0 disables)
    second: float = 0.5  # weight of the student's second-head BCE on its own labels (the teacher has no second head)


def binary_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean KL(teacher || student) between the tempered Bernoulli distributions."""
    p = torch.sigmoid(teacher_logits / temperature).clamp(1e-7, 1 - 1e-7)
    q = torch.sigmoid(student_logits / temperature).clamp(1e-7, 1 - 1e-7)
    return (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean()


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    weights: DistillWeights,
    student_hint: torch.Tensor | None = None,
    teacher_hint: torch.Tensor | None = None,
) -> torch.Tensor:
    T = weights.temperature
    hard = F.binary_cross_entropy_with_logits(student_logits, labels)
    soft = F.binary_cross_entropy_with_logits(student_logits / T, torch.sigmoid(teacher_logits / T)) * T * T
    loss = weights.label * hard + (1.0 - weights.label) * soft
    if student_hint is not None and teacher_hint is not None and weights.hint > 0:
        loss = loss + weights.hint * F.mse_loss(student_hint, teacher_hint)
    return loss
