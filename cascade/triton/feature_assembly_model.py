"""Python-backend adapter for `feature_assembly`: raw ids in, model tensors out (the GPU profile's
first ensemble step).

Runs only inside Triton's Python stub (triton_python_backend_utils exists there alone).
"""
from __future__ import annotations

from functools import partial

from cascade.features import FeatureTables, assemble_request_sides
from cascade.specs import REQUEST_INPUTS
from cascade.triton.adapter import model_config, parse_each, response, version_dir
from cascade.triton.batching import parse_feature_request, split_sides
from cascade.triton.layout import TABLES_FILE


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.tables = FeatureTables.load(version_dir(args) / TABLES_FILE)
        self.output_names = [o["name"] for o in model_config(args)["output"]]

    def execute(self, requests: list) -> list:
        parsed, responses = parse_each(requests, [t.name for t in REQUEST_INPUTS], partial(parse_feature_request, self.tables))
        if parsed:
            wanted = {i: set(requests[i].requested_output_names()) or set(self.output_names) for i in parsed}
            users, items, counts = assemble_request_sides(
                self.tables, [r.as_tuple() for r in parsed.values()], frozenset().union(*wanted.values())
            )
            for i, out in zip(parsed, split_sides(users, items, counts)):
                responses[i] = response({n: t for n, t in out.items() if n in wanted[i]})
        return responses
