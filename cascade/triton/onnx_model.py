"""Python-backend adapter running an ONNX model with ONNX Runtime (a standalone scorer on ONNX Runtime).

All requests of one `execute` call are concatenated along the candidate axis (each request's
user-side tensors, sent once, kept once, `user_row` naming each candidate's request) and scored in
one ONNX Runtime call, then split back per request.
"""
from __future__ import annotations

import numpy as np

from cascade.specs import USER_SIDE
from cascade.triton.adapter import intra_op_threads, model_config, parse_each, response, version_dir
from cascade.triton.batching import check_candidate_shapes, concat_candidates, split_candidates
from cascade.triton.layout import ONNX_FILE
from cascade.triton.sessions import cpu_session


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = model_config(args)
        threads = intra_op_threads(config)
        self.session = cpu_session(version_dir(args) / ONNX_FILE, threads)
        self.input_names = [i["name"] for i in config["input"]]
        self.per_request = [n for n in self.input_names if n in USER_SIDE]
        self.per_candidate = [n for n in self.input_names if n not in USER_SIDE]
        self.output_names = [o["name"] for o in config["output"]]

    def _checked(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_candidate_shapes(arrays, self.per_candidate, self.per_request)
        return arrays

    def execute(self, requests: list) -> list:
        good, responses = parse_each(requests, self.input_names, self._checked)
        if good:
            batch, counts = concat_candidates(list(good.values()), self.per_candidate, self.per_request)
            outputs = dict(zip(self.output_names, self.session.run(self.output_names, batch)))
            for i, out in zip(good, split_candidates(outputs, counts)):
                responses[i] = response(out)
        return responses
