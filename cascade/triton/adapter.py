"""What every Python-backend adapter does with a batch of requests; runs only inside Triton's stub.

Each request is read and checked on its own: a bad one gets its own INVALID_ARG response while the
others of the same `execute` call are answered.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import triton_python_backend_utils as pb_utils

T = TypeVar("T")
R = TypeVar("R")


def model_config(args: dict[str, str]) -> dict:
    return json.loads(args["model_config"])


def version_dir(args: dict[str, str]) -> Path:
    return Path(args["model_repository"]) / args["model_version"]


def parameters(config: dict) -> dict[str, str]:
    return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}


def intra_op_threads(config: dict) -> int:
    """ONNX Runtime threads per run from the model config's `intra_op_threads` parameter (default 1)."""
    return int(parameters(config).get("intra_op_threads", "1"))


def parse_each(
    requests: list, names: list[str], parse: Callable[[dict[str, np.ndarray]], T]
) -> tuple[dict[int, T], list]:
    """Each request's tensors among `names` through `parse`: the parsed ones by request index, and a
    response list holding an INVALID_ARG error where `parse` raised ValueError (None elsewhere)."""
    parsed: dict[int, T] = {}
    responses: list = [None] * len(requests)
    for i, request in enumerate(requests):
        tensors = {n: pb_utils.get_input_tensor_by_name(request, n) for n in names}
        try:
            parsed[i] = parse({n: t.as_numpy() for n, t in tensors.items() if t is not None})
        except ValueError as err:
            responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(err), pb_utils.TritonError.INVALID_ARG))
    return parsed, responses


def response(tensors: dict[str, np.ndarray]) -> object:
    return pb_utils.InferenceResponse([pb_utils.Tensor(n, t) for n, t in tensors.items()])


def answer_each(
    requests: list, names: list[str], parse: Callable[[dict[str, np.ndarray]], T],
    score: Callable[[list[T]], list[R]], tensors: Callable[[R], dict[str, np.ndarray]],
) -> list:
    """Each request parsed on its own (`parse_each`), the good ones scored in one `score` call, each
    answered with `tensors` of its result."""
    parsed, responses = parse_each(requests, names, parse)
    for i, result in zip(parsed, score(list(parsed.values()))):
        responses[i] = response(tensors(result))
    return responses
