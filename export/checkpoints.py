"""Resumable training: one checkpoint per model after every epoch, keyed by a fingerprint of
everything that shapes the run (data, sizes, seed, hyper-parameters), so a changed run never
resumes from a stale one. Tensors only (loaded with weights_only=True), never arbitrary pickles."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


class Checkpoints:
    def __init__(self, root: Path, run_config: dict[str, Any]) -> None:
        self.root = root
        self.fingerprint = hashlib.sha256(json.dumps(run_config, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def path(self, name: str) -> Path:
        return self.root / f"{name}.pt"

    def restore(self, name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Progress:
        """Load the latest state of `name` if it belongs to this run; return how far it got."""
        path = self.path(name)
        if not path.exists():
            return Progress()
        state = torch.load(path, weights_only=True)
        if state.get("fingerprint") != self.fingerprint:
            return Progress()
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError):  # the architecture changed since: start afresh
            return Progress()
        return Progress(int(state["epochs_done"]), state.get("best"), bool(state.get("stopped", False)))

    def save(
        self, name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, progress: Progress,
    ) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path(name).with_suffix(".tmp")
        torch.save(
            {"fingerprint": self.fingerprint, "epochs_done": progress.epochs_done, "best": progress.best,
             "stopped": progress.stopped, "model": model.state_dict(), "optimizer": optimizer.state_dict()},
            tmp,
        )
        tmp.replace(self.path(name))


@dataclass
class Progress:
    """How far a model's training got: epochs done, the best validated epoch so far ({"epoch",
    "score", "state"}; None without validation), and whether it stopped early."""

    epochs_done: int = 0
    best: dict[str, Any] | None = None
    stopped: bool = False
