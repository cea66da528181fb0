"""Python-backend adapter for `feature_assembly`: raw ids in, model tensors out.

Runs only inside Triton's Python stub (triton_python_backend_utils exists there alone).
"""
from __future__ import annotations

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from cascade.features import FeatureTables, assemble_request_sides
from cascade.specs import REQUEST_INPUTS
from cascade.triton.batching import FeatureRequest, parse_feature_request, split_sides
from cascade.triton.layout import TABLES_FILE


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        model_dir = Path(args["model_repository"]) / args["model_version"]
        self.tables = FeatureTables.load(model_dir / TABLES_FILE)
        self.output_names = [o["name"] for o in json.loads(args["model_config"])["output"]]

    def execute(self, requests: list) -> list:
        parsed: dict[int, FeatureRequest] = {}
        responses: list = [None] * len(requests)
        for i, request in enumerate(requests):
            tensors = {t.name: pb_utils.get_input_tensor_by_name(request, t.name) for t in REQUEST_INPUTS}
            try:
                parsed[i] = parse_feature_request(self.tables, {k: v.as_numpy() for k, v in tensors.items() if v is not None})
            except ValueError as err:
                responses[i] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(err), pb_utils.TritonError.INVALID_ARG)
                )
        if parsed:
            wanted = {i: set(requests[i].requested_output_names()) or set(self.output_names) for i in parsed}
            users, items, counts = assemble_request_sides(
                self.tables,
                [(r.user_id, r.item_ids, r.history, r.timestamp) for r in parsed.values()],
                frozenset().union(*wanted.values()),
            )
            for i, out in zip(parsed, split_sides(users, items, counts)):
                tensors = [pb_utils.Tensor(n, t) for n, t in out.items() if n in wanted[i]]
                responses[i] = pb_utils.InferenceResponse(tensors)
        return responses
