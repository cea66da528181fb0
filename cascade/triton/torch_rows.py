"""The row graph's torch.export program on a device: the GPU profile's Python scorer
(`cascade.triton.torch_scorer_model`) and the GPU smoke test (`perf.gpu_smoke`) score with it.

torch is imported when a scorer is made, never on import: the CPU profile's processes stay without it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


class TorchRowScorer:
    """Row tensors in (every feature on every row, a scalar per row as [n] or [n, 1]), float32
    scores [n] out; in float16 under autocast when `fp16` and the device is CUDA."""

    def __init__(self, program: Path, input_names: list[str], device: str = "cpu", fp16: bool = False) -> None:
        import torch

        self.torch, self.device = torch, torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"{program}: asked for {device}, but torch sees no CUDA device")
        # Not `.module().to(device)`: that moves parameters and buffers, but the graph keeps the devices
        # export traced in its nodes (a mask made with device=cpu), and CUDA inputs then fail on them.
        from torch.export.passes import move_to_device_pass

        self.module = move_to_device_pass(torch.export.load(str(program)), self.device).module()
        self.input_names, self.fp16 = input_names, fp16 and self.device.type == "cuda"

    def __call__(self, features: dict[str, np.ndarray], scalar: frozenset[str] = frozenset()) -> np.ndarray:
        """`scalar`: the inputs that are one value per row, flattened to [n] for the graph."""
        torch = self.torch
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
            inputs = [
                torch.from_numpy(np.ascontiguousarray(features[n].reshape(-1) if n in scalar else features[n])).to(self.device)
                for n in self.input_names
            ]
            return self.module(*inputs).float().cpu().numpy()
