"""Python-backend adapter for `feature_assembly`: raw ids in, model tensors out (the first step of
the GPU profile's ensembles).

Unbatched (`cascade.triton.config.row_assembly_config`): each request is one user's candidates, and
its answer every feature on every candidate's row, a scalar per row as [n, 1]
(`cascade.triton.batching.feature_rows`, over `cascade.features`, the code training uses), which
the native GPU scorers batch as rows.

Runs only inside Triton's Python stub (triton_python_backend_utils exists there alone).
"""
from __future__ import annotations

from functools import partial

from cascade.features import FeatureTables
from cascade.specs import REQUEST_INPUTS
from cascade.triton.adapter import model_config, parse_each, response, version_dir
from cascade.triton.batching import feature_rows, parse_feature_request
from cascade.triton.layout import TABLES_FILE


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.tables = FeatureTables.load(version_dir(args) / TABLES_FILE)
        self.output_names = [o["name"] for o in model_config(args)["output"]]

    def execute(self, requests: list) -> list:
        parsed, responses = parse_each(requests, [t.name for t in REQUEST_INPUTS], partial(parse_feature_request, self.tables))
        for i, request in parsed.items():
            wanted = frozenset(requests[i].requested_output_names()) or frozenset(self.output_names)
            responses[i] = response(feature_rows(self.tables, request, wanted))
        return responses
