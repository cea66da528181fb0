"""Triton over gRPC (tritonclient.grpc.aio): score one user's candidates through a pipeline."""
from __future__ import annotations

import numpy as np
import tritonclient.grpc.aio as grpcclient

from cascade.specs import PIPELINE_OUTPUT, REQUEST_INPUTS

PIPELINES = ("prerank_pipeline", "rank_pipeline")


class TritonScorer:
    def __init__(self, url: str, timeout_s: float) -> None:
        self.client = grpcclient.InferenceServerClient(url)
        self.timeout_s = timeout_s

    async def score(self, pipeline: str, user_id: int, item_ids: np.ndarray, history: np.ndarray, timestamp: int) -> np.ndarray:
        arrays = {
            "user_id": np.array([[user_id]], dtype=np.int64),
            "item_ids": item_ids.astype(np.int64)[None, :],
            "history": history.astype(np.int64)[None, :],
            "timestamp": np.array([[timestamp]], dtype=np.int64),
        }
        inputs = []
        for spec in REQUEST_INPUTS:
            tensor = grpcclient.InferInput(spec.name, list(arrays[spec.name].shape), "INT64")
            tensor.set_data_from_numpy(arrays[spec.name])
            inputs.append(tensor)
        outputs = [grpcclient.InferRequestedOutput(PIPELINE_OUTPUT.name)]
        result = await self.client.infer(pipeline, inputs, outputs=outputs, client_timeout=self.timeout_s)
        scores = result.as_numpy(PIPELINE_OUTPUT.name)[0]
        if scores.shape != item_ids.shape:
            raise RuntimeError(f"{pipeline} returned {scores.shape[0]} scores for {item_ids.shape[0]} items")
        return scores

    async def ready(self) -> dict[str, bool]:
        status = {}
        for name in PIPELINES:
            try:
                status[name] = bool(await self.client.is_model_ready(name))
            except Exception:  # any transport error means "not ready", which /readyz reports
                status[name] = False
        return status

    async def close(self) -> None:
        await self.client.close()
