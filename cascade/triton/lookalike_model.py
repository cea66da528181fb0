"""Python-backend adapter for the look-alike scorer (`lookalike_v<N>`): seed and candidate user ids
and the seeds' embeddings in, `scores` out, with `cascade.lookalike.scorer.SeedScorer` over the version directory's
`model.onnx` and `users.npz`."""
from __future__ import annotations

from cascade.lookalike.scorer import SeedScorer
from cascade.lookalike.users import UserTable
from cascade.specs import LOOKALIKE_INPUTS, PIPELINE_OUTPUT
from cascade.triton.adapter import answer_each, intra_op_threads, model_config, version_dir
from cascade.triton.layout import ONNX_FILE, USERS_FILE
from cascade.triton.sessions import cpu_session


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        folder = version_dir(args)
        session = cpu_session(folder / ONNX_FILE, intra_op_threads(model_config(args)))
        self.scorer = SeedScorer(UserTable.load(folder / USERS_FILE).side, session)
        self.input_names = [t.name for t in LOOKALIKE_INPUTS]

    def execute(self, requests: list) -> list:
        return answer_each(
            requests, self.input_names, self.scorer.parse, self.scorer.score, lambda scores: {PIPELINE_OUTPUT.name: scores[None]}
        )
