"""Python-backend adapter for the CPU profile's two-stage model `two_stage_p<P>_r<R>`: the raw request
and `keep` in; `kept`, `prerank_scores` and `scores` out, from `cascade.triton.two_stage.TwoStageScorer`
over the version directory's `prerank.onnx`, `rank.onnx` and `tables.npz`."""
from __future__ import annotations

from cascade.features import FeatureTables
from cascade.specs import KEPT, PIPELINE_OUTPUT, PRERANK_SCORES, TWO_STAGE_INPUTS
from cascade.triton.adapter import model_config, parameters, parse_each, response, version_dir
from cascade.triton.layout import PRERANK_ONNX_FILE, RANK_ONNX_FILE, TABLES_FILE
from cascade.triton.two_stage import TwoStageScorer


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        folder = version_dir(args)
        threads = int(parameters(model_config(args)).get("intra_op_threads", "1"))
        self.scorer = TwoStageScorer(
            FeatureTables.load(folder / TABLES_FILE), folder / PRERANK_ONNX_FILE, folder / RANK_ONNX_FILE, threads
        )
        self.input_names = [t.name for t in TWO_STAGE_INPUTS]

    def execute(self, requests: list) -> list:
        parsed, responses = parse_each(requests, self.input_names, self.scorer.parse)
        for i, scores in zip(parsed, self.scorer.score(list(parsed.values()))):
            responses[i] = response({
                KEPT.name: scores.kept[None], PRERANK_SCORES.name: scores.prerank[None], PIPELINE_OUTPUT.name: scores.rank[None],
            })
        return responses
