"""Python-backend adapter for the CPU profile's two-stage model `two_stage_p<P>_r<R>`: the raw request
and `keep` in; `kept`, `prerank_scores` and `scores` out, from `cascade.triton.two_stage.TwoStageScorer`
over the version directory's `prerank.onnx`, `rank.onnx` and `tables.npz`; the rank graph's head weights
follow CASCADE_RANK_HEAD_WEIGHTS when Triton was started with it (`cascade.heads`)."""
from __future__ import annotations

from cascade.features import FeatureTables
from cascade.heads import overrides_from_env
from cascade.specs import KEPT, PIPELINE_OUTPUT, PRERANK_SCORES, TWO_STAGE_INPUTS
from cascade.triton.adapter import answer_each, intra_op_threads, model_config, version_dir
from cascade.triton.layout import PRERANK_ONNX_FILE, RANK_ONNX_FILE, TABLES_FILE
from cascade.triton.two_stage import TwoStageScorer


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        folder = version_dir(args)
        threads = intra_op_threads(model_config(args))
        self.scorer = TwoStageScorer(
            FeatureTables.load(folder / TABLES_FILE), folder / PRERANK_ONNX_FILE, folder / RANK_ONNX_FILE, threads,
            overrides_from_env(),
        )
        self.input_names = [t.name for t in TWO_STAGE_INPUTS]

    def execute(self, requests: list) -> list:
        return answer_each(requests, self.input_names, self.scorer.parse, self.scorer.score, lambda scores: {
            KEPT.name: scores.kept[None], PRERANK_SCORES.name: scores.prerank[None], PIPELINE_OUTPUT.name: scores.rank[None],
        })
