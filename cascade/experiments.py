"""A/B experiments: parse CASCADE_EXPERIMENTS and assign users to arms, deterministically.

A user's arm is `splitmix64(user_id, salt) % total_weight` walked over the arms' cumulative
weights; the salt is a stable 64-bit value from SHA-256 of the experiment's name (Python's hash()
is salted per process), so every process and every restart puts a user in the same arm, and two
experiments with different names split users independently of each other.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cascade.hashing import splitmix64
from cascade.rerank.registry import build_chain

EXPERIMENT_KEYS = {"name", "arms"}
ARM_KEYS = {"name", "weight", "rerank_chain", "model_versions"}
PINNABLE = ("prerank", "rank", "lookalike")
MAX_WEIGHT = 2**31 - 1  # the arms' total weight is taken modulo in uint64: any number of such weights fits


@dataclass(frozen=True)
class Arm:
    name: str
    weight: int
    rerank_chain: list[dict[str, Any]] | None = None  # None: the default CASCADE_RERANK_CHAIN
    model_versions: dict[str, int] | None = None  # scorer (prerank, rank) -> version, called via its pinned pipeline


@dataclass(frozen=True)
class Experiment:
    name: str
    arms: tuple[Arm, ...]

    @property
    def salt(self) -> int:
        return experiment_salt(self.name)

    def assign(self, user_id: int) -> Arm:
        return self.arms[int(assign_arms(self, np.array([user_id]))[0])]


def experiment_salt(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")


def assign_arms(experiment: Experiment, user_ids: np.ndarray) -> np.ndarray:
    """Index of each user's arm in `experiment.arms` (vectorised)."""
    weights = np.array([arm.weight for arm in experiment.arms], dtype=np.uint64)
    bucket = splitmix64(np.asarray(user_ids, dtype=np.int64), experiment.salt) % np.uint64(int(weights.sum()))
    return np.searchsorted(np.cumsum(weights), bucket, side="right").astype(np.int64)


def _named_object(where: str, raw: Any, known: set[str], what: str) -> str:
    """Check `raw` is an object with only `known` keys and a non-empty string name; return the name."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: {what} must be an object, got {raw!r}")
    unknown = sorted(str(k) for k in set(raw) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: {what} name must be a non-empty string, got {name!r}")
    return name


def _parse_arm(where: str, raw: Any) -> Arm:
    name = _named_object(where, raw, ARM_KEYS, "an arm")
    where = f"{where} {name!r}"
    weight = raw.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 < weight <= MAX_WEIGHT:
        raise ValueError(f"{where}: weight must be an integer > 0 and <= {MAX_WEIGHT}, got {weight!r}")
    chain = raw.get("rerank_chain")
    if chain is not None:
        if not isinstance(chain, list) or not all(isinstance(op, dict) for op in chain):
            raise ValueError(f"{where}: rerank_chain must be a list of operator objects, got {chain!r}")
        try:
            build_chain(chain)
        except ValueError as err:
            raise ValueError(f"{where}: rerank_chain: {err}") from None
    versions = raw.get("model_versions")
    if versions is not None:
        if not isinstance(versions, dict):
            raise ValueError(f"{where}: model_versions must be an object, got {versions!r}")
        unknown = sorted(str(k) for k in set(versions) - set(PINNABLE))
        if unknown:
            raise ValueError(f"{where}: model_versions: unknown model(s) {unknown}; pinnable: {list(PINNABLE)}")
        for role, v in versions.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{where}: model_versions.{role} must be an integer >= 1, got {v!r}")
    return Arm(name, weight, chain, dict(versions) if versions is not None else None)


def parse_experiments(raw: Any) -> list[Experiment]:
    """Experiments from their JSON form; ValueError names the experiment and arm at fault."""
    if not isinstance(raw, list):
        raise ValueError(f"must be a list of experiments, got {raw!r}")
    experiments, names = [], set()
    for i, entry in enumerate(raw):
        name = _named_object(f"experiment {i}", entry, EXPERIMENT_KEYS, "an experiment")
        if name in names:
            raise ValueError(f"duplicate experiment name {name!r}")
        names.add(name)
        where = f"experiment {name!r}"
        arms_raw = entry.get("arms")
        if not isinstance(arms_raw, list) or not arms_raw:
            raise ValueError(f"{where}: arms must be a non-empty list, got {arms_raw!r}")
        arms = tuple(_parse_arm(f"{where} arm", arm) for arm in arms_raw)
        seen = [arm.name for arm in arms]
        duplicates = sorted({n for n in seen if seen.count(n) > 1})
        if duplicates:
            raise ValueError(f"{where}: duplicate arm name(s) {duplicates}")
        experiments.append(Experiment(name, arms))
    return experiments


def experiments_json(experiments: Sequence[Experiment]) -> list[dict[str, Any]]:
    """The JSON form `parse_experiments` reads back into `experiments`; an arm's unset chain or
    versions are left out."""
    def arm_json(arm: Arm) -> dict[str, Any]:
        optional = {"rerank_chain": arm.rerank_chain, "model_versions": arm.model_versions}
        return {"name": arm.name, "weight": arm.weight} | {k: v for k, v in optional.items() if v is not None}

    return [{"name": e.name, "arms": [arm_json(arm) for arm in e.arms]} for e in experiments]
