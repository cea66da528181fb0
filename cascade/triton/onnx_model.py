"""Python-backend adapter running an ONNX model with ONNX Runtime (the CPU profile's scorers).

All requests of one `execute` call are concatenated along the candidate axis (each request's
user-side tensors, sent once, repeated over its candidates) and scored in one ONNX Runtime call,
then split back per request.
"""
from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from cascade.specs import USER_SIDE
from cascade.triton.batching import check_candidate_shapes, concat_candidates, split_candidates
from cascade.triton.layout import ONNX_FILE


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        path = Path(args["model_repository"]) / args["model_version"] / ONNX_FILE
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i["name"] for i in config["input"]]
        self.per_request = [n for n in self.input_names if n in USER_SIDE]
        self.per_candidate = [n for n in self.input_names if n not in USER_SIDE]
        self.output_names = [o["name"] for o in config["output"]]

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        good: dict[int, dict] = {}
        for i, request in enumerate(requests):
            tensors = {n: pb_utils.get_input_tensor_by_name(request, n) for n in self.input_names}
            arrays = {n: t.as_numpy() for n, t in tensors.items() if t is not None}
            try:
                check_candidate_shapes(arrays, self.per_candidate, self.per_request)
                good[i] = arrays
            except ValueError as err:
                responses[i] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(err), pb_utils.TritonError.INVALID_ARG)
                )
        if good:
            batch, counts = concat_candidates(list(good.values()), self.per_candidate, self.per_request)
            outputs = dict(zip(self.output_names, self.session.run(self.output_names, batch)))
            for i, out in zip(good, split_candidates(outputs, counts)):
                responses[i] = pb_utils.InferenceResponse([pb_utils.Tensor(n, t) for n, t in out.items()])
        return responses
