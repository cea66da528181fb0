"""Python-backend adapter scoring rows with torch on the GPU: the GPU profile's scorer where the
tritonserver has no TensorRT or ONNX Runtime backend (nvidia-pytriton's build has the Python backend
alone).

The version directory holds the row graph as a torch.export program (`export.onnx_export.export_row_graphs`).
Each request brings its candidates' rows; all requests of one `execute` are concatenated, scored in
one call on the instance's device (in float16 under autocast when the config's `precision` is
fp16), and split back. Runs only inside Triton's Python stub; torch is imported there.
"""
from __future__ import annotations

import numpy as np

from cascade.triton.adapter import model_config, parameters, parse_each, response, version_dir
from cascade.triton.batching import check_rows, concat_rows
from cascade.triton.layout import PROGRAM_FILE


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        import torch

        config = model_config(args)
        gpu = args.get("model_instance_kind") == "GPU"
        if gpu and not torch.cuda.is_available():
            raise RuntimeError("a KIND_GPU scorer instance, but torch sees no CUDA device")
        self.torch = torch
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if gpu else "cpu")
        self.module = torch.export.load(str(version_dir(args) / PROGRAM_FILE)).module().to(self.device)
        self.fp16 = parameters(config).get("precision", "fp32") == "fp16" and self.device.type == "cuda"
        self.input_names = [i["name"] for i in config["input"]]
        self.scalar = {i["name"] for i in config["input"] if "reshape" in i}  # one value per row
        self.output_name = config["output"][0]["name"]

    def execute(self, requests: list) -> list:
        good, responses = parse_each(requests, self.input_names, lambda t: check_rows(t, self.input_names))
        if good:
            batch, counts = concat_rows(list(good.values()), self.input_names, self.scalar)
            torch = self.torch
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
                inputs = [torch.from_numpy(batch[n]).to(self.device, non_blocking=True) for n in self.input_names]
                scores = self.module(*inputs).float().cpu().numpy()
            for i, part in zip(good, np.split(scores, np.cumsum(counts)[:-1])):
                responses[i] = response({self.output_name: part.reshape(-1, 1)})
        return responses
