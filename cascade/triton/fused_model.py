"""Python-backend adapter for a fused pipeline (the CPU profile's `<scorer>_pipeline[_v<N>]`):
raw request tensors in, `scores` out, with `cascade.triton.fused.FusedScorer` over the version
directory's `model.onnx` and `tables.npz`. One ONNX Runtime call per `execute`, over all its requests.
The rank graph's head weights follow CASCADE_RANK_HEAD_WEIGHTS when Triton was started with it
(`cascade.heads`).
"""
from __future__ import annotations

from cascade.features import FeatureTables
from cascade.heads import overrides_from_env
from cascade.specs import PIPELINE_OUTPUT, REQUEST_INPUTS
from cascade.triton.adapter import answer_each, intra_op_threads, model_config, version_dir
from cascade.triton.fused import FusedScorer
from cascade.triton.layout import ONNX_FILE, TABLES_FILE


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        folder = version_dir(args)
        threads = intra_op_threads(model_config(args))
        self.scorer = FusedScorer(FeatureTables.load(folder / TABLES_FILE), folder / ONNX_FILE, threads, overrides_from_env())
        self.input_names = [t.name for t in REQUEST_INPUTS]

    def execute(self, requests: list) -> list:
        return answer_each(
            requests, self.input_names, self.scorer.parse, self.scorer.score, lambda scores: {PIPELINE_OUTPUT.name: scores[None]}
        )
