"""Resumable training: one checkpoint per model after every epoch, keyed by a fingerprint of
everything that shapes the run (data, sizes, seed, hyper-parameters), so a changed run never
resumes from a stale one. Tensors only (loaded with weights_only=True), never arbitrary pickles."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch


class Checkpoints:
    def __init__(self, root: Path, run_config: dict[str, Any]) -> None:
        self.root = root
        self.fingerprint = hashlib.sha256(json.dumps(run_config, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def path(self, name: str) -> Path:
        return self.root / f"{name}.pt"

    def restore(self, name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
        """Load the latest state of `name` if it belongs to this run; return the epochs already done."""
        path = self.path(name)
        if not path.exists():
            return 0
        state = torch.load(path, weights_only=True)
        if state.get("fingerprint") != self.fingerprint:
            return 0
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError):  # the architecture changed since: start afresh
            return 0
        return int(state["epochs_done"])

    def save(self, name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epochs_done: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path(name).with_suffix(".tmp")
        torch.save(
            {"fingerprint": self.fingerprint, "epochs_done": epochs_done,
             "model": model.state_dict(), "optimizer": optimizer.state_dict()},
            tmp,
        )
        tmp.replace(self.path(name))
