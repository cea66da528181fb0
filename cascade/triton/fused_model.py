"""Python-backend adapter for a fused pipeline (the CPU profile's `<scorer>_pipeline[_v<N>]`):
raw request tensors in, `scores` out, with `cascade.triton.fused.FusedScorer` over the version
directory's `model.onnx` and `tables.npz`. One ONNX Runtime call per `execute`, over all its requests.
"""
from __future__ import annotations

from cascade.features import FeatureTables
from cascade.specs import PIPELINE_OUTPUT, REQUEST_INPUTS
from cascade.triton.adapter import model_config, parameters, parse_each, response, version_dir
from cascade.triton.fused import FusedScorer
from cascade.triton.layout import ONNX_FILE, TABLES_FILE


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        folder = version_dir(args)
        threads = int(parameters(model_config(args)).get("intra_op_threads", "1"))
        self.scorer = FusedScorer(FeatureTables.load(folder / TABLES_FILE), folder / ONNX_FILE, threads)
        self.input_names = [t.name for t in REQUEST_INPUTS]

    def execute(self, requests: list) -> list:
        parsed, responses = parse_each(requests, self.input_names, self.scorer.parse)
        for i, scores in zip(parsed, self.scorer.score(list(parsed.values()))):
            responses[i] = response({PIPELINE_OUTPUT.name: scores[None]})
        return responses
