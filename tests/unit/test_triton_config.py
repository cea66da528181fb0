"""write_repositories -> config.pbtxt files parsed back, for both Triton profiles: batching, adapters,
fused pipelines (cpu); KIND_GPU scorers on each GPU backend, rows and ensemble wiring (gpu); dtypes;
publishing and pruning versions in each layout."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from cascade.specs import (
    PIPELINE_OUTPUT,
    REQUEST_INPUTS,
    TWO_STAGE_INPUTS,
    TWO_STAGE_OUTPUTS,
    ModelSpec,
    TensorSpec,
    feature_assembly_spec,
    prerank_spec,
    rank_spec,
    triton_scorer,
)
from cascade.triton.config import GpuScorerBackend, gpu_scorer_config, parse, render, row_ensemble_config, triton_dtype
from cascade.triton.layout import (
    FEATURE_ASSEMBLY_ADAPTER,
    FUSED_ADAPTER,
    LOOKALIKE_ADAPTER,
    ONNX_FILE,
    PRERANK_ONNX_FILE,
    PROGRAM_FILE,
    RANK_ONNX_FILE,
    TABLES_FILE,
    TORCH_SCORER_ADAPTER,
    TWO_STAGE_ADAPTER,
    USERS_FILE,
    Profile,
)
from cascade.triton.layout import lookalike_name, pipeline_name
from export.repository import GpuScorers, prune_versions, publish_version, scorer_versions, write_lookalike, write_repositories

L = 3
MAX_BATCH = 8
MAX_ROWS = 512
QUEUE_US = 300
INSTANCES = 2
# The scorers as Triton serves them: no user_row.
SPECS = {"feature_assembly": feature_assembly_spec(L), "prerank": triton_scorer(prerank_spec(L)), "rank": triton_scorer(rank_spec(L))}
KIND_GPU, KIND_CPU = mc.ModelInstanceGroup.KIND_GPU, mc.ModelInstanceGroup.KIND_CPU


@dataclass
class Repo:
    model_root: Path
    ensemble_root: Path
    written: list[Path]
    configs: dict[str, mc.ModelConfig]


def write(tables_path: Path, tmp_path: Path, profile: Profile, backend: GpuScorerBackend = "onnxruntime") -> Repo:
    onnx = tmp_path / "dummy.onnx"
    onnx.write_bytes(b"not a real model")
    row_onnx, program = tmp_path / "dummy.rows.onnx", tmp_path / "dummy.rows.pt2"
    row_onnx.write_bytes(b"a row graph")
    program.write_bytes(b"a torch program")
    model_root, ensemble_root = tmp_path / profile / "models", tmp_path / profile / "ensembles"
    written = write_repositories(
        model_root,
        ensemble_root,
        tables_path,
        {"prerank": (SPECS["prerank"], onnx), "rank": (SPECS["rank"], onnx)},
        history_len=L,
        max_batch_size=MAX_BATCH,
        max_queue_delay_us=QUEUE_US,
        instances=INSTANCES,
        profile=profile,
        gpu=GpuScorers(backend, "fp16", MAX_ROWS, {s: (row_onnx, program) for s in ("prerank", "rank")}),
    )
    configs = {p.parent.name: parse(p.read_text()) for p in written}
    return Repo(model_root, ensemble_root, written, configs)


@pytest.fixture
def repo(tiny_tables_path: Path, tmp_path: Path) -> Repo:
    """The GPU profile's layout: feature_assembly (rows), the scorers on the GPU, ensembles calling them."""
    return write(tiny_tables_path, tmp_path, "gpu")


@pytest.fixture
def cpu(tiny_tables_path: Path, tmp_path: Path) -> Repo:
    """The CPU profile's layout: one fused Python-backend model per pipeline, no ensemble."""
    return write(tiny_tables_path, tmp_path, "cpu")


def by_name(entries) -> dict:
    return {e.name: e for e in entries}


def check_tensor(entry, spec: TensorSpec, per_candidate: bool) -> None:
    assert entry.data_type == triton_dtype(spec.dtype), spec.name
    assert list(entry.dims) == ([-1, *spec.dims] if per_candidate else list(spec.dims)), spec.name


def full_dims(entry, max_batch_size: int) -> list[int]:
    """What Triton sees of a tensor: its dims with the batch dimension in front where the model batches."""
    return ([-1] if max_batch_size > 0 else []) + list(entry.dims)


def test_the_expected_models_and_ensembles_are_written(repo: Repo) -> None:
    assert sorted(repo.configs) == [
        "feature_assembly", "prerank", "prerank_pipeline", "prerank_pipeline_v1", "rank", "rank_pipeline", "rank_pipeline_v1",
    ]
    for path in repo.written:
        assert repo.configs[path.parent.name].name == path.parent.name
    assert {p.parent.parent for p in repo.written} == {repo.model_root, repo.ensemble_root}
    pipelines = [pipeline_name(s, v) for s in ("prerank", "rank") for v in (None, 1)]
    assert sorted(p.name for p in repo.ensemble_root.iterdir()) == sorted(pipelines)
    for pipeline in pipelines:
        assert (repo.ensemble_root / pipeline / "1").is_dir()


def test_cpu_models_batch_dynamically_with_a_cpu_instance_group(cpu: Repo) -> None:
    for name, config in cpu.configs.items():
        assert config.max_batch_size == MAX_BATCH, name
        assert config.HasField("dynamic_batching"), name
        assert list(config.dynamic_batching.preferred_batch_size) == [MAX_BATCH // 4, MAX_BATCH], name
        assert config.dynamic_batching.max_queue_delay_microseconds == QUEUE_US, name
        assert [(g.count, g.kind) for g in config.instance_group] == [(INSTANCES, KIND_CPU)]


def test_gpu_scorers_batch_rows_on_kind_gpu_and_feature_assembly_runs_unbatched_on_the_cpu(repo: Repo) -> None:
    for scorer in ("prerank", "rank"):
        config = repo.configs[scorer]
        assert config.max_batch_size == MAX_ROWS
        assert config.dynamic_batching.max_queue_delay_microseconds == QUEUE_US
        assert [(g.count, g.kind) for g in config.instance_group] == [(INSTANCES, KIND_GPU)]
        assert config.version_policy.HasField("all")
    assembly = repo.configs["feature_assembly"]
    assert assembly.backend == "python" and assembly.max_batch_size == 0 and not assembly.HasField("dynamic_batching")
    assert [(g.count, g.kind) for g in assembly.instance_group] == [(INSTANCES, KIND_CPU)]
    for pipeline in ("prerank_pipeline", "rank_pipeline_v1"):
        assert repo.configs[pipeline].platform == "ensemble" and repo.configs[pipeline].max_batch_size == 0


@pytest.mark.parametrize(
    ("backend", "platform", "files"),
    [
        ("onnxruntime", "onnxruntime_onnx", {ONNX_FILE: b"a row graph"}),
        ("tensorrt", "tensorrt_plan", {}),  # the engine builder installs model.plan
        ("python", "", {PROGRAM_FILE: b"a torch program"}),
    ],
)
def test_each_gpu_backend_gets_its_platform_and_version_files(
    backend: GpuScorerBackend, platform: str, files: dict, tiny_tables_path: Path, tmp_path: Path
) -> None:
    r = write(tiny_tables_path, tmp_path, "gpu", backend)
    for scorer in ("prerank", "rank"):
        config = r.configs[scorer]
        assert config.platform == platform and config.backend == ("python" if backend == "python" else "")
        assert [g.kind for g in config.instance_group] == [KIND_GPU]
        version_dir = r.model_root / scorer / "1"
        got = {p.name: p.read_bytes() for p in version_dir.iterdir() if p.name != "model.py"}
        assert got == files
        has_adapter = (version_dir / "model.py").exists()
        assert has_adapter == (backend == "python")
        if has_adapter:
            assert (version_dir / "model.py").read_text().splitlines() == [
                f"from {TORCH_SCORER_ADAPTER} import TritonPythonModel  # noqa: F401"
            ]
            assert config.parameters["precision"].string_value == "fp16"
        if backend == "onnxruntime":
            (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
            assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    assert importlib.util.find_spec(TORCH_SCORER_ADAPTER) is not None
    assert (r.model_root / "feature_assembly" / "1" / "model.py").read_text().splitlines() == [
        f"from {FEATURE_ASSEMBLY_ADAPTER} import TritonPythonModel  # noqa: F401"
    ]
    assert (r.model_root / "feature_assembly" / "1" / TABLES_FILE).is_file()


def test_gpu_scorer_config_refuses_an_unknown_backend_or_precision() -> None:
    with pytest.raises(ValueError, match="unknown GPU scorer backend 'tflite'"):
        gpu_scorer_config(SPECS["rank"], "tflite", MAX_ROWS, QUEUE_US, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="precision must be fp32 or fp16"):
        gpu_scorer_config(SPECS["rank"], "onnxruntime", MAX_ROWS, QUEUE_US, 1, precision="int4")


def test_gpu_tensors_follow_the_specs_one_row_per_candidate(repo: Repo) -> None:
    """feature_assembly: the raw request (its batch of one spelled out) in, every feature [n, ...]
    out (a scalar per row as [n, 1]); a scorer: per-row dims, a scalar per row reshaped to none."""
    assembly = repo.configs["feature_assembly"]
    for t, entry in zip(SPECS["feature_assembly"].inputs, assembly.input):
        assert (entry.name, entry.data_type, list(entry.dims)) == (t.name, triton_dtype(t.dtype), [1, *t.dims])
    for t, entry in zip(SPECS["feature_assembly"].outputs, assembly.output):
        assert (entry.name, entry.data_type, list(entry.dims)) == (t.name, triton_dtype(t.dtype), [-1, *(t.dims or (1,))])
    for scorer in ("prerank", "rank"):
        config = repo.configs[scorer]
        assert [e.name for e in config.input] == SPECS[scorer].input_names
        for t, entry in zip(SPECS[scorer].inputs, config.input):
            assert entry.data_type == triton_dtype(t.dtype) and not entry.allow_ragged_batch
            assert list(entry.dims) == (list(t.dims) or [1]), t.name
            assert entry.HasField("reshape") == (t.dims == ()) and list(entry.reshape.shape) == []
        (score,) = config.output
        assert (score.name, list(score.dims), score.HasField("reshape")) == ("score", [1], True)


@pytest.mark.parametrize("version", [None, 1])
@pytest.mark.parametrize("scorer", ["prerank", "rank"])
def test_ensemble_wiring(repo: Repo, scorer: str, version: int | None) -> None:
    config = repo.configs[pipeline_name(scorer, version)]
    assert config.platform == "ensemble"
    ens_inputs, ens_outputs = by_name(config.input), by_name(config.output)
    assert list(ens_inputs) == [t.name for t in REQUEST_INPUTS]
    for t in REQUEST_INPUTS:
        assert list(ens_inputs[t.name].dims) == [1, *t.dims] and ens_inputs[t.name].data_type == triton_dtype(t.dtype)
    assert list(ens_outputs) == [PIPELINE_OUTPUT.name]

    steps = config.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["feature_assembly", scorer]
    # ensemble tensor -> (dtype, the full shape Triton sees): every hand-over must agree on both
    available = {name: (e.data_type, full_dims(e, config.max_batch_size)) for name, e in ens_inputs.items()}
    for step in steps:
        model = repo.configs[step.model_name]  # the step's model is in the written repository
        model_inputs, model_outputs = by_name(model.input), by_name(model.output)
        assert set(step.input_map) == set(model_inputs), "every model input must be fed"
        assert set(step.output_map) <= set(model_outputs)
        for model_input, tensor in step.input_map.items():
            assert tensor in available, f"{step.model_name} reads {tensor}, produced by no earlier step"
            entry = model_inputs[model_input]
            assert available[tensor] == (entry.data_type, full_dims(entry, model.max_batch_size)), tensor
        for model_output, tensor in step.output_map.items():
            assert tensor not in available, f"{tensor} produced twice"
            entry = model_outputs[model_output]
            available[tensor] = (entry.data_type, full_dims(entry, model.max_batch_size))
    for name, entry in ens_outputs.items():
        assert available.get(name) == (entry.data_type, full_dims(entry, config.max_batch_size)), name
    # The internal tensors are exactly what the scorer reads, named per pipeline.
    assert sorted(steps[1].input_map) == sorted(SPECS[scorer].input_names)
    assert all(v.startswith(f"{pipeline_name(scorer)}_") for v in steps[0].output_map.values())
    assert dict(steps[1].output_map) == {"score": PIPELINE_OUTPUT.name}
    # The plain pipeline follows the newest scorer version; the _v1 one calls version 1 only.
    assert [s.model_version for s in steps] == [-1, -1 if version is None else version]


def test_publishing_adds_the_next_version_and_its_pinned_pipeline(repo: Repo, tmp_path: Path) -> None:
    onnx = tmp_path / "v2.rows.onnx"
    onnx.write_bytes(b"version two")
    assert publish_version(repo.model_root, repo.ensemble_root, "rank", onnx, "gpu") == 2
    assert publish_version(repo.model_root, repo.ensemble_root, "rank", onnx, "gpu") == 3
    assert scorer_versions(repo.model_root, "rank", "gpu") == [1, 2, 3]
    assert sorted(p.name for p in (repo.model_root / "rank" / "3").iterdir()) == [ONNX_FILE]
    assert (repo.model_root / "rank" / "3" / ONNX_FILE).read_bytes() == b"version two"
    pinned = parse((repo.ensemble_root / "rank_pipeline_v3" / "config.pbtxt").read_text())
    latest = repo.configs["rank_pipeline"]
    assert pinned.name == "rank_pipeline_v3" and [s.model_version for s in pinned.ensemble_scheduling.step] == [-1, 3]
    assert list(pinned.input) == list(latest.input) and list(pinned.output) == list(latest.output)
    assert scorer_versions(repo.model_root, "prerank", "gpu") == [1]  # the other scorer is untouched


@pytest.mark.parametrize("backend", ["tensorrt", "python"])
def test_publishing_an_onnx_is_refused_where_the_gpu_scorer_is_no_onnx_model(
    backend: GpuScorerBackend, tiny_tables_path: Path, tmp_path: Path
) -> None:
    r = write(tiny_tables_path, tmp_path, "gpu", backend)
    with pytest.raises(ValueError, match="publishing on the gpu profile takes a row graph for onnxruntime_onnx"):
        publish_version(r.model_root, r.ensemble_root, "rank", tmp_path / "dummy.rows.onnx", "gpu")
    assert scorer_versions(r.model_root, "rank", "gpu") == [1]


def test_ensemble_config_rejects_a_scorer_needing_an_unproduced_tensor() -> None:
    assembly = feature_assembly_spec(L)
    greedy = ModelSpec(
        "greedy",
        (*SPECS["prerank"].inputs, TensorSpec("user_emb", np.float32, (8,))),
        prerank_spec(L).outputs,
    )
    with pytest.raises(ValueError, match=r"greedy needs \['user_emb'\], which feature_assembly does not produce"):
        row_ensemble_config("greedy_pipeline", assembly, greedy)


def test_the_gpu_profile_needs_its_scorers_backend(tiny_tables_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the gpu profile needs its scorers' backend"):
        write_repositories(tmp_path / "m", tmp_path / "e", tiny_tables_path, {}, L, 4, 100, 1, profile="gpu")


def test_rewriting_clears_old_models_but_keeps_readme(repo: Repo, tiny_tables_path: Path, tmp_path: Path) -> None:
    (repo.model_root / "README.md").write_text("keep me")
    (repo.model_root / "stale_model").mkdir()
    (repo.ensemble_root / "stray.txt").write_text("x")
    onnx = tmp_path / "dummy.onnx"
    gpu = GpuScorers("onnxruntime", "fp16", MAX_ROWS, {"rank": (onnx, onnx)})
    write_repositories(
        repo.model_root, repo.ensemble_root, tiny_tables_path, {"rank": (SPECS["rank"], onnx)}, L, 4, 100, 1,
        profile="gpu", gpu=gpu,
    )
    assert sorted(p.name for p in repo.model_root.iterdir()) == ["README.md", "feature_assembly", "rank"]
    assert sorted(p.name for p in repo.ensemble_root.iterdir()) == ["rank_pipeline", "rank_pipeline_v1"]
    assert (repo.model_root / "README.md").read_text() == "keep me"


# --- the CPU profile: fused pipelines ---

FUSED = [pipeline_name(s, v) for s in ("prerank", "rank") for v in (None, 1)]


def test_cpu_profile_writes_one_fused_model_per_pipeline_and_no_ensemble(cpu: Repo) -> None:
    assert sorted(cpu.configs) == sorted([*FUSED, "two_stage_p1_r1"])
    # The scorers' versions in the model repository, the pinned pipelines in the ensemble repository.
    assert sorted(p.name for p in cpu.model_root.iterdir()) == ["prerank_pipeline", "rank_pipeline"]
    assert sorted(p.name for p in cpu.ensemble_root.iterdir()) == ["prerank_pipeline_v1", "rank_pipeline_v1", "two_stage_p1_r1"]
    for name in FUSED:
        config = cpu.configs[name]
        assert config.name == name and config.backend == "python" and config.platform == ""
        assert not config.HasField("ensemble_scheduling"), name
        assert config.parameters["intra_op_threads"].string_value == "1"
        assert config.version_policy.latest.num_versions == 1
        version_dir = (cpu.ensemble_root if name.endswith("_v1") else cpu.model_root) / name / "1"
        assert (version_dir / "model.py").read_text().splitlines() == [f"from {FUSED_ADAPTER} import TritonPythonModel  # noqa: F401"]
        assert (version_dir / ONNX_FILE).read_bytes() == b"not a real model"
        assert (version_dir / TABLES_FILE).is_file()
    assert importlib.util.find_spec(FUSED_ADAPTER) is not None


def test_cpu_profile_writes_the_two_stage_model_of_the_exported_pair(cpu: Repo, tiny_tables_path: Path) -> None:
    config, pipeline = cpu.configs["two_stage_p1_r1"], cpu.configs["rank_pipeline_v1"]
    assert config.backend == "python" and not config.HasField("ensemble_scheduling")
    assert [t.name for t in config.input] == [t.name for t in TWO_STAGE_INPUTS]
    assert [t.name for t in config.output] == [t.name for t in TWO_STAGE_OUTPUTS]
    for spec in TWO_STAGE_INPUTS:
        check_tensor(by_name(config.input)[spec.name], spec, per_candidate=False)
    for spec in TWO_STAGE_OUTPUTS:
        check_tensor(by_name(config.output)[spec.name], spec, per_candidate=False)
    # batched like the pipelines it replaces
    assert config.max_batch_size == pipeline.max_batch_size and config.dynamic_batching == pipeline.dynamic_batching
    assert config.instance_group == pipeline.instance_group and config.parameters == pipeline.parameters
    version_dir = cpu.ensemble_root / "two_stage_p1_r1" / "1"
    assert (version_dir / "model.py").read_text().splitlines() == [f"from {TWO_STAGE_ADAPTER} import TritonPythonModel  # noqa: F401"]
    assert (version_dir / PRERANK_ONNX_FILE).read_bytes() == (version_dir / RANK_ONNX_FILE).read_bytes() == b"not a real model"
    assert (version_dir / TABLES_FILE).read_bytes() == tiny_tables_path.read_bytes()
    assert importlib.util.find_spec(TWO_STAGE_ADAPTER) is not None


def test_publishing_pairs_the_new_version_with_every_version_of_the_other_scorer(cpu: Repo, tmp_path: Path) -> None:
    onnx = tmp_path / "v2.onnx"
    onnx.write_bytes(b"prerank two")
    assert publish_version(cpu.model_root, cpu.ensemble_root, "prerank", onnx, "cpu") == 2
    onnx.write_bytes(b"rank two")
    assert publish_version(cpu.model_root, cpu.ensemble_root, "rank", onnx, "cpu") == 2
    pairs = sorted(p.name for p in cpu.ensemble_root.iterdir() if p.name.startswith("two_stage_"))
    assert pairs == ["two_stage_p1_r1", "two_stage_p1_r2", "two_stage_p2_r1", "two_stage_p2_r2"]
    expected = {"p1_r2": (b"not a real model", b"rank two"), "p2_r1": (b"prerank two", b"not a real model"),
                "p2_r2": (b"prerank two", b"rank two")}
    for pair, (prerank, rank) in expected.items():
        folder = cpu.ensemble_root / f"two_stage_{pair}" / "1"
        assert ((folder / PRERANK_ONNX_FILE).read_bytes(), (folder / RANK_ONNX_FILE).read_bytes()) == (prerank, rank)
        assert parse((folder.parent / "config.pbtxt").read_text()).name == f"two_stage_{pair}"


@pytest.mark.parametrize("name", FUSED)
def test_a_fused_pipeline_takes_what_the_gpu_ensemble_takes(cpu: Repo, repo: Repo, name: str) -> None:
    """The orchestrator calls either layout the same way: raw request tensors of the same full shapes
    ([1, ...]) in, `scores` out (read as flat bytes: [1, n] from a fused pipeline, [n, 1] from an ensemble)."""
    fused, ensemble = cpu.configs[name], repo.configs[name]
    assert list(by_name(fused.input)) == [t.name for t in REQUEST_INPUTS] == list(by_name(ensemble.input))
    for t in REQUEST_INPUTS:
        check_tensor(by_name(fused.input)[t.name], t, per_candidate=False)
        assert [1, *full_dims(by_name(fused.input)[t.name], fused.max_batch_size)[1:]] == list(by_name(ensemble.input)[t.name].dims)
    assert list(by_name(fused.output)) == [PIPELINE_OUTPUT.name] == list(by_name(ensemble.output))
    check_tensor(by_name(fused.output)[PIPELINE_OUTPUT.name], PIPELINE_OUTPUT, per_candidate=False)


def test_cpu_publishing_adds_a_version_of_the_pipeline_and_a_pinned_copy_with_the_tables(cpu: Repo, tmp_path: Path) -> None:
    onnx = tmp_path / "v2.onnx"
    onnx.write_bytes(b"version two")
    assert scorer_versions(cpu.model_root, "rank", "cpu") == [1]
    assert publish_version(cpu.model_root, cpu.ensemble_root, "rank", onnx, "cpu") == 2
    assert publish_version(cpu.model_root, cpu.ensemble_root, "rank", onnx, "cpu") == 3
    assert scorer_versions(cpu.model_root, "rank", "cpu") == [1, 2, 3]
    tables = (cpu.model_root / "rank_pipeline" / "1" / TABLES_FILE).read_bytes()
    for folder in (cpu.model_root / "rank_pipeline" / "3", cpu.ensemble_root / "rank_pipeline_v3" / "1"):
        assert (folder / ONNX_FILE).read_bytes() == b"version two"
        assert (folder / TABLES_FILE).read_bytes() == tables
        assert (folder / "model.py").read_text() == (cpu.model_root / "rank_pipeline" / "1" / "model.py").read_text()
    pinned = parse((cpu.ensemble_root / "rank_pipeline_v3" / "config.pbtxt").read_text())
    expected = parse(render(cpu.configs["rank_pipeline"]))
    expected.name = "rank_pipeline_v3"
    assert pinned == expected
    assert sorted(p.name for p in cpu.model_root.iterdir()) == ["prerank_pipeline", "rank_pipeline"]
    assert scorer_versions(cpu.model_root, "prerank", "cpu") == [1]


@pytest.mark.parametrize(("profile", "latest"), [("gpu", ["rank_pipeline"]), ("cpu", [])])
def test_pruning_keeps_the_newest_and_those_in_use(
    profile: Profile, latest: list[str], tiny_tables_path: Path, tmp_path: Path
) -> None:
    """Every version but the newest two and those in use goes, with its pinned pipeline (the GPU
    profile's unpinned ensemble stays; the CPU profile keeps its unpinned pipeline in the model root)."""
    r = write(tiny_tables_path, tmp_path, profile)
    onnx = tmp_path / "next.onnx"
    onnx.write_bytes(b"next")
    for _ in range(4):
        publish_version(r.model_root, r.ensemble_root, "rank", onnx, profile)  # versions 2..5
    assert prune_versions(r.model_root, r.ensemble_root, "rank", keep=2, in_use={2}, profile=profile) == [1, 3]
    assert scorer_versions(r.model_root, "rank", profile) == [2, 4, 5]
    assert sorted(p.name for p in r.ensemble_root.iterdir() if p.name.startswith("rank_")) == [
        *latest, "rank_pipeline_v2", "rank_pipeline_v4", "rank_pipeline_v5",
    ]
    two_stage = sorted(p.name for p in r.ensemble_root.iterdir() if p.name.startswith("two_stage_"))
    assert two_stage == ([] if profile == "gpu" else ["two_stage_p1_r2", "two_stage_p1_r4", "two_stage_p1_r5"])


def test_versions_are_read_where_the_profile_keeps_them(cpu: Repo) -> None:
    with pytest.raises(FileNotFoundError, match="profile gpu"):
        scorer_versions(cpu.model_root, "rank", "gpu")


def test_the_lookalike_scorer_is_a_cpu_model_of_its_own_taking_user_ids(tmp_path: Path) -> None:
    onnx, users = tmp_path / "lookalike.onnx", tmp_path / "users.npz"
    onnx.write_bytes(b"graph")
    users.write_bytes(b"users")
    path = write_lookalike(tmp_path / "ensemble", 2, onnx, users, MAX_BATCH, QUEUE_US, INSTANCES)
    assert path == tmp_path / "ensemble" / lookalike_name(2) / "config.pbtxt" and lookalike_name(2) == "lookalike_v2"
    config = parse(path.read_text())
    assert config.name == "lookalike_v2" and config.backend == "python" and config.max_batch_size == MAX_BATCH
    assert [(i.name, i.data_type, list(i.dims), i.allow_ragged_batch) for i in config.input] == [
        ("seed_ids", mc.TYPE_INT64, [-1], True), ("seed_embeddings", mc.TYPE_FP32, [-1], True),
        ("candidate_ids", mc.TYPE_INT64, [-1], True),
    ]
    assert [(o.name, o.data_type) for o in config.output] == [(PIPELINE_OUTPUT.name, mc.TYPE_FP32)]
    assert config.instance_group[0].kind == KIND_CPU and config.instance_group[0].count == INSTANCES
    version = path.parent / "1"
    assert (version / "model.py").read_text().startswith(f"from {LOOKALIKE_ADAPTER} import TritonPythonModel")
    assert (version / ONNX_FILE).read_bytes() == b"graph" and (version / USERS_FILE).read_bytes() == b"users"
