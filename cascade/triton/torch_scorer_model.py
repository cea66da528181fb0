"""Python-backend adapter scoring rows with torch on the GPU: the GPU profile's scorer where the
tritonserver has no TensorRT or ONNX Runtime backend (nvidia-pytriton's build has the Python backend
alone).

The version directory holds the row graph as a torch.export program (`export.onnx_export.export_row_graphs`).
Each request brings its candidates' rows; all requests of one `execute` are concatenated, scored in
one call on the instance's device (`cascade.triton.torch_rows`; float16 under autocast when the
config's `precision` is fp16), and split back. Runs only inside Triton's Python stub.
"""
from __future__ import annotations

import numpy as np

from cascade.triton.adapter import model_config, parameters, parse_each, response, version_dir
from cascade.triton.batching import check_rows, concat_rows
from cascade.triton.layout import PROGRAM_FILE
from cascade.triton.torch_rows import TorchRowScorer


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = model_config(args)
        gpu = args.get("model_instance_kind") == "GPU"
        self.input_names = [i["name"] for i in config["input"]]
        self.scalar = frozenset(i["name"] for i in config["input"] if "reshape" in i)  # one value per row
        self.output_name = config["output"][0]["name"]
        self.scorer = TorchRowScorer(
            version_dir(args) / PROGRAM_FILE, self.input_names,
            f"cuda:{args['model_instance_device_id']}" if gpu else "cpu",
            fp16=parameters(config).get("precision", "fp32") == "fp16",
        )

    def execute(self, requests: list) -> list:
        good, responses = parse_each(requests, self.input_names, lambda t: check_rows(t, self.input_names))
        if good:
            batch, counts = concat_rows(list(good.values()), self.input_names)
            scores = self.scorer(batch, self.scalar)
            for i, part in zip(good, np.split(scores, np.cumsum(counts)[:-1])):
                responses[i] = response({self.output_name: part.reshape(-1, 1)})
        return responses
