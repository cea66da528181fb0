"""Render every Triton config through the typed protobuf, from the tensor specs.

Two layouts of a pipeline (raw request in, `scores` out): the CPU profile's fused Python-backend
model (`fused_pipeline_config`), and the GPU profile's ensemble feature_assembly -> scorer
(`ensemble_config`).

Each served model takes one request per user: a batch dimension of 1, then a variable candidate
dimension for per-candidate tensors; per-request tensors (the raw request inputs, and the user-side
features between feature assembly and the scorers) have none. Ragged batching lets the dynamic
batcher hand requests with different candidate counts to one `execute` call, which concatenates
them (see cascade.triton.batching).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from cascade.specs import (
    LOOKALIKE_INPUTS,
    PIPELINE_OUTPUT,
    REQUEST_INPUTS,
    TWO_STAGE_INPUTS,
    TWO_STAGE_OUTPUTS,
    ModelSpec,
    TensorSpec,
)

_DTYPES = {np.int64: mc.TYPE_INT64, np.float32: mc.TYPE_FP32, np.int32: mc.TYPE_INT32}


def triton_dtype(dtype: type) -> int:
    return _DTYPES[dtype]


def _dims(spec: TensorSpec, per_candidate: bool) -> list[int]:
    return [-1, *spec.dims] if per_candidate else list(spec.dims)


def _input(spec: TensorSpec, per_candidate: bool) -> mc.ModelInput:
    dims = _dims(spec, per_candidate)
    return mc.ModelInput(name=spec.name, data_type=triton_dtype(spec.dtype), dims=dims, allow_ragged_batch=-1 in dims)


def _output(spec: TensorSpec, per_candidate: bool) -> mc.ModelOutput:
    return mc.ModelOutput(name=spec.name, data_type=triton_dtype(spec.dtype), dims=_dims(spec, per_candidate))


def python_model_config(
    spec: ModelSpec,
    per_request: frozenset[str],
    max_batch_size: int,
    max_queue_delay_us: int,
    instances: int,
    parameters: dict[str, str] | None = None,
    all_versions: bool = False,
) -> mc.ModelConfig:
    """A Python-backend model with dynamic batching and CPU instances; the inputs and outputs named in
    `per_request` have no candidate dimension.

    `all_versions`: Triton serves every version directory present, so a newly published version loads
    while the one in use still answers, and every pinned pipeline finds its version (`export.publish`
    adds versions and prunes old ones that nothing uses). Otherwise only the newest version.
    No queue policy: with one (REJECT on a per-request timeout), Triton 2.51's dynamic batcher held
    some requests for ~500 ms even at concurrency 1 (feature_assembly p99 1.6 ms -> 505 ms).
    """
    config = mc.ModelConfig(
        name=spec.name,
        backend="python",
        max_batch_size=max_batch_size,
        input=[_input(t, t.name not in per_request) for t in spec.inputs],
        output=[_output(t, t.name not in per_request) for t in spec.outputs],
        dynamic_batching=mc.ModelDynamicBatching(
            preferred_batch_size=sorted({max(1, max_batch_size // 4), max_batch_size}),
            max_queue_delay_microseconds=max_queue_delay_us,
        ),
        instance_group=[mc.ModelInstanceGroup(count=instances, kind=mc.ModelInstanceGroup.KIND_CPU)],
        version_policy=(
            mc.ModelVersionPolicy(all=mc.ModelVersionPolicy.All()) if all_versions
            else mc.ModelVersionPolicy(latest=mc.ModelVersionPolicy.Latest(num_versions=1))
        ),
    )
    for key, value in (parameters or {}).items():
        config.parameters[key].string_value = value
    return config


def _per_request_python_config(
    spec: ModelSpec, max_batch_size: int, max_queue_delay_us: int, instances: int, intra_op_threads: int
) -> mc.ModelConfig:
    """A Python-backend model whose every tensor is per request (candidates are a ragged dim of it)."""
    return python_model_config(
        spec, frozenset([*spec.input_names, *spec.output_names]), max_batch_size, max_queue_delay_us, instances,
        parameters={"intra_op_threads": str(intra_op_threads)},
    )


def fused_pipeline_config(
    name: str, max_batch_size: int, max_queue_delay_us: int, instances: int, intra_op_threads: int = 1
) -> mc.ModelConfig:
    """A pipeline as one Python-backend model (`cascade.triton.fused_model`): the ensemble's inputs
    and output, no candidate dimension of its own (the candidates are a ragged dim of the request)."""
    spec = ModelSpec(name, REQUEST_INPUTS, (PIPELINE_OUTPUT,))
    return _per_request_python_config(spec, max_batch_size, max_queue_delay_us, instances, intra_op_threads)


def two_stage_config(
    name: str, max_batch_size: int, max_queue_delay_us: int, instances: int, intra_op_threads: int = 1
) -> mc.ModelConfig:
    """Pre-rank -> top-k -> rank as one Python-backend model (`cascade.triton.two_stage_model`)."""
    spec = ModelSpec(name, TWO_STAGE_INPUTS, TWO_STAGE_OUTPUTS)
    return _per_request_python_config(spec, max_batch_size, max_queue_delay_us, instances, intra_op_threads)


def lookalike_config(
    name: str, max_batch_size: int, max_queue_delay_us: int, instances: int, intra_op_threads: int = 1
) -> mc.ModelConfig:
    """The look-alike scorer as a Python-backend model (`cascade.triton.lookalike_model`): a seed set's
    user ids, their embeddings (flat, [1, N x d]) and its candidates' ids ([1, N], [1, C]) in, a
    probability per candidate out. Requests the
    batcher gathers are scored one graph run each (two seed sets share no run); a run scores all of
    its request's candidates."""
    spec = ModelSpec(name, LOOKALIKE_INPUTS, (PIPELINE_OUTPUT,))
    return _per_request_python_config(spec, max_batch_size, max_queue_delay_us, instances, intra_op_threads)


def _ensemble_steps(name: str, assembly: ModelSpec, scorer: ModelSpec, scorer_version: int) -> list[mc.ModelEnsembling.Step]:
    """feature_assembly's outputs into the scorer's inputs, the scorer's output as `scores`."""
    assembly_outputs = set(assembly.output_names)
    missing = [n for n in scorer.input_names if n not in assembly_outputs]
    if missing:
        raise ValueError(f"{scorer.name} needs {missing}, which {assembly.name} does not produce")
    return [
        mc.ModelEnsembling.Step(
            model_name=assembly.name,
            model_version=-1,
            input_map={t.name: t.name for t in REQUEST_INPUTS},
            output_map={n: f"{name}_{n}" for n in scorer.input_names},
        ),
        mc.ModelEnsembling.Step(
            model_name=scorer.name,
            model_version=scorer_version,
            input_map={n: f"{name}_{n}" for n in scorer.input_names},
            output_map={scorer.output_names[0]: PIPELINE_OUTPUT.name},
        ),
    ]


def ensemble_config(
    name: str, assembly: ModelSpec, scorer: ModelSpec, max_batch_size: int, scorer_version: int = -1
) -> mc.ModelConfig:
    """feature_assembly -> scorer, exposing the raw request inputs and the scores.

    `scorer_version` -1 follows the scorer's newest loaded version; a number calls that version only
    (an ensemble's config holds for all its versions, so a pinned version needs an ensemble of its own).
    """
    return mc.ModelConfig(
        name=name,
        platform="ensemble",
        max_batch_size=max_batch_size,
        input=[_input(t, False) for t in REQUEST_INPUTS],
        output=[_output(PIPELINE_OUTPUT, False)],
        ensemble_scheduling=mc.ModelEnsembling(step=_ensemble_steps(name, assembly, scorer, scorer_version)),
    )


# --- the GPU profile: rows ------------------------------------------------------------------------
# A native backend (TensorRT, ONNX Runtime) batches rows: one row per candidate, every feature on
# every row. So feature assembly runs unbatched (max_batch_size 0: one request, its full shapes in and
# [n, ...] out), and the scorer batches the rows of the requests it is handed (max_batch_size = the
# most rows an execution takes), which the dynamic batcher concatenates. The ensemble joining them is
# unbatched like the request. A scalar per row travels as [n, 1] and is reshaped to [n] for the graph.
GpuScorerBackend = Literal["onnxruntime", "tensorrt", "python"]


def _request_input(spec: TensorSpec) -> mc.ModelInput:
    """A raw request tensor with its batch of one spelled out (an unbatched model's full shape)."""
    return mc.ModelInput(name=spec.name, data_type=triton_dtype(spec.dtype), dims=[1, *spec.dims])


def _row_tensor(kind: type[mc.ModelInput] | type[mc.ModelOutput], spec: TensorSpec):
    """A feature as a batching model's input or output: its per-row dims; a scalar per row is [1],
    reshaped to none for the graph."""
    if spec.dims:
        return kind(name=spec.name, data_type=triton_dtype(spec.dtype), dims=list(spec.dims))
    return kind(name=spec.name, data_type=triton_dtype(spec.dtype), dims=[1], reshape=mc.ModelTensorReshape(shape=[]))


def row_assembly_config(assembly: ModelSpec, instances: int) -> mc.ModelConfig:
    """feature_assembly for native scorers: unbatched, CPU, every feature [n, ...] (user side repeated)."""
    return mc.ModelConfig(
        name=assembly.name,
        backend="python",
        max_batch_size=0,
        input=[_request_input(t) for t in assembly.inputs],
        output=[mc.ModelOutput(name=t.name, data_type=triton_dtype(t.dtype), dims=[-1, *(t.dims or (1,))]) for t in assembly.outputs],
        instance_group=[mc.ModelInstanceGroup(count=instances, kind=mc.ModelInstanceGroup.KIND_CPU)],
    )


def gpu_scorer_config(
    scorer: ModelSpec,
    backend: GpuScorerBackend,
    max_rows: int,
    max_queue_delay_us: int,
    instances: int,
    precision: str = "fp16",
    kind: int = mc.ModelInstanceGroup.KIND_GPU,
) -> mc.ModelConfig:
    """A scorer on the GPU, batching rows (`scorer`: its Triton inputs, `cascade.specs.triton_scorer`).

    - `tensorrt`: `tensorrt_plan`, the engine `export.tensorrt` built (its own precision);
    - `onnxruntime`: `onnxruntime_onnx` on the CUDA execution provider, with the TensorRT accelerator
      at `precision` (it builds its engine at load);
    - `python`: the Python backend on torch (`cascade.triton.torch_scorer_model`) at `precision`,
      for tritonservers without those backends.
    All versions present are served, as on the CPU profile. `kind` is KIND_GPU; tests render
    KIND_CPU to run the Python scorer on a tritonserver without a GPU.
    """
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be fp32 or fp16, got {precision!r}")
    config = mc.ModelConfig(
        name=scorer.name,
        max_batch_size=max_rows,
        input=[_row_tensor(mc.ModelInput, t) for t in scorer.inputs],
        output=[_row_tensor(mc.ModelOutput, t) for t in scorer.outputs],
        dynamic_batching=mc.ModelDynamicBatching(max_queue_delay_microseconds=max_queue_delay_us),
        instance_group=[mc.ModelInstanceGroup(count=instances, kind=kind)],
        version_policy=mc.ModelVersionPolicy(all=mc.ModelVersionPolicy.All()),
    )
    if backend == "tensorrt":
        config.platform = "tensorrt_plan"
    elif backend == "onnxruntime":
        config.platform = "onnxruntime_onnx"
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add()
        accelerator.name = "tensorrt"
        accelerator.parameters["precision_mode"] = precision.upper()
        accelerator.parameters["max_workspace_size_bytes"] = str(1 << 30)
    elif backend == "python":
        config.backend = "python"
        config.parameters["precision"].string_value = precision
    else:
        raise ValueError(f"unknown GPU scorer backend {backend!r}: onnxruntime, tensorrt or python")
    return config


def row_ensemble_config(name: str, assembly: ModelSpec, scorer: ModelSpec, scorer_version: int = -1) -> mc.ModelConfig:
    """feature_assembly (rows) -> a GPU scorer, unbatched like the request: `scores` come back [n, 1]."""
    return mc.ModelConfig(
        name=name,
        platform="ensemble",
        max_batch_size=0,
        input=[_request_input(t) for t in REQUEST_INPUTS],
        output=[mc.ModelOutput(name=PIPELINE_OUTPUT.name, data_type=triton_dtype(PIPELINE_OUTPUT.dtype), dims=[-1, 1])],
        ensemble_scheduling=mc.ModelEnsembling(step=_ensemble_steps(name, assembly, scorer, scorer_version)),
    )


def on_cpu(config: mc.ModelConfig) -> mc.ModelConfig:
    """A copy of `config` with every instance group KIND_CPU: a GPU scorer's config for a tritonserver
    without a GPU (the integration test, `perf.gpu_smoke --cpu-dry-run`)."""
    copy = mc.ModelConfig()
    copy.CopyFrom(config)
    for group in copy.instance_group:
        group.kind = mc.ModelInstanceGroup.KIND_CPU
    return copy


def render(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def renamed(config: mc.ModelConfig, name: str) -> mc.ModelConfig:
    """A copy of `config` named `name` (a fused pipeline's pinned copy differs by name alone)."""
    copy = mc.ModelConfig()
    copy.CopyFrom(config)
    copy.name = name
    return copy


def pin_ensemble(config: mc.ModelConfig, name: str, member: str, version: int) -> mc.ModelConfig:
    """A copy of ensemble `config` named `name` whose step calling `member` calls `version` only."""
    pinned = renamed(config, name)
    steps = [step for step in pinned.ensemble_scheduling.step if step.model_name == member]
    if not steps:
        raise ValueError(f"ensemble {config.name} has no step calling {member}")
    for step in steps:
        step.model_version = version
    return pinned
