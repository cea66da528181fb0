"""write_repositories -> config.pbtxt files parsed back, for both Triton profiles: batching, adapters,
fused pipelines (cpu), ensemble wiring (gpu), dtypes; publishing and pruning versions in each layout."""
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
    USER_SIDE,
    ModelSpec,
    TensorSpec,
    feature_assembly_spec,
    prerank_spec,
    rank_spec,
    triton_scorer,
)
from cascade.triton.config import ensemble_config, parse, render, triton_dtype
from cascade.triton.layout import (
    FEATURE_ASSEMBLY_ADAPTER,
    FUSED_ADAPTER,
    ONNX_ADAPTER,
    ONNX_FILE,
    PRERANK_ONNX_FILE,
    RANK_ONNX_FILE,
    TABLES_FILE,
    TWO_STAGE_ADAPTER,
    Profile,
)
from cascade.triton.layout import pipeline_name
from export.repository import prune_versions, publish_version, scorer_versions, write_repositories

L = 3
MAX_BATCH = 8
QUEUE_US = 300
INSTANCES = 2
# The scorers as Triton serves them: no user_row (their adapter derives it from the request boundaries).
SPECS = {"feature_assembly": feature_assembly_spec(L), "prerank": triton_scorer(prerank_spec(L)), "rank": triton_scorer(rank_spec(L))}
ADAPTERS = {"feature_assembly": FEATURE_ASSEMBLY_ADAPTER, "prerank": ONNX_ADAPTER, "rank": ONNX_ADAPTER}


@dataclass
class Repo:
    model_root: Path
    ensemble_root: Path
    written: list[Path]
    configs: dict[str, mc.ModelConfig]


def write(tables_path: Path, tmp_path: Path, profile: Profile) -> Repo:
    onnx = tmp_path / "dummy.onnx"
    onnx.write_bytes(b"not a real model")
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
    )
    configs = {p.parent.name: parse(p.read_text()) for p in written}
    return Repo(model_root, ensemble_root, written, configs)


@pytest.fixture
def repo(tiny_tables_path: Path, tmp_path: Path) -> Repo:
    """The GPU profile's layout: feature_assembly, the scorers, and ensembles calling them."""
    return write(tiny_tables_path, tmp_path, "gpu")


@pytest.fixture
def cpu(tiny_tables_path: Path, tmp_path: Path) -> Repo:
    """The CPU profile's layout: one fused Python-backend model per pipeline, no ensemble."""
    return write(tiny_tables_path, tmp_path, "cpu")


def by_name(entries) -> dict:
    return {e.name: e for e in entries}


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


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_every_model_batches_dynamically_with_an_instance_group(request: pytest.FixtureRequest, profile: str) -> None:
    repo = request.getfixturevalue({"cpu": "cpu", "gpu": "repo"}[profile])
    for name, config in repo.configs.items():
        assert config.max_batch_size == MAX_BATCH, name
        if config.platform == "ensemble":
            continue  # ensembles are scheduled by their steps
        assert config.HasField("dynamic_batching"), name
        assert list(config.dynamic_batching.preferred_batch_size) == [MAX_BATCH // 4, MAX_BATCH], name
        assert config.dynamic_batching.max_queue_delay_microseconds == QUEUE_US, name
        assert [(g.count, g.kind) for g in config.instance_group] == [(INSTANCES, mc.ModelInstanceGroup.KIND_CPU)]


def test_python_models_reexport_the_layout_adapters_and_carry_their_files(repo: Repo) -> None:
    for name, adapter in ADAPTERS.items():
        assert repo.configs[name].backend == "python"
        version_dir = repo.model_root / name / "1"
        lines = (version_dir / "model.py").read_text().splitlines()
        assert lines == [f"from {adapter} import TritonPythonModel  # noqa: F401"]
        # The adapter module exists (find_spec does not run it: it needs Triton's stub).
        assert importlib.util.find_spec(adapter) is not None
    assert (repo.model_root / "feature_assembly" / "1" / TABLES_FILE).is_file()
    for scorer in ("prerank", "rank"):
        assert (repo.model_root / scorer / "1" / ONNX_FILE).read_bytes() == b"not a real model"
        assert repo.configs[scorer].parameters["intra_op_threads"].string_value == "1"


def check_tensor(entry, spec: TensorSpec, per_candidate: bool) -> None:
    assert entry.data_type == triton_dtype(spec.dtype), spec.name
    assert list(entry.dims) == ([-1, *spec.dims] if per_candidate else list(spec.dims)), spec.name


def test_python_model_tensors_follow_the_specs(repo: Repo) -> None:
    for name, spec in SPECS.items():
        config = repo.configs[name]
        inputs, outputs = by_name(config.input), by_name(config.output)
        assert list(inputs) == spec.input_names
        assert list(outputs) == spec.output_names
        # feature_assembly takes the raw request (one user); user-side features travel once per
        # request, everything else (item side, scores) once per candidate.
        for t in spec.inputs:
            check_tensor(inputs[t.name], t, per_candidate=name != "feature_assembly" and t.name not in USER_SIDE)
        for t in spec.outputs:
            check_tensor(outputs[t.name], t, per_candidate=t.name not in USER_SIDE)


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_variable_dims_allow_ragged_batches(request: pytest.FixtureRequest, profile: str) -> None:
    repo = request.getfixturevalue({"cpu": "cpu", "gpu": "repo"}[profile])
    seen = 0
    for name, config in repo.configs.items():
        for entry in config.input:
            assert entry.allow_ragged_batch == (-1 in entry.dims), (name, entry.name)
            seen += -1 in entry.dims
    assert seen > 0


@pytest.mark.parametrize("version", [None, 1])
@pytest.mark.parametrize("scorer", ["prerank", "rank"])
def test_ensemble_wiring(repo: Repo, scorer: str, version: int | None) -> None:
    config = repo.configs[pipeline_name(scorer, version)]
    assert config.platform == "ensemble"
    ens_inputs, ens_outputs = by_name(config.input), by_name(config.output)
    assert list(ens_inputs) == [t.name for t in REQUEST_INPUTS]
    for t in REQUEST_INPUTS:
        check_tensor(ens_inputs[t.name], t, per_candidate=False)
    assert list(ens_outputs) == [PIPELINE_OUTPUT.name]
    check_tensor(ens_outputs[PIPELINE_OUTPUT.name], PIPELINE_OUTPUT, per_candidate=False)

    steps = config.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["feature_assembly", scorer]
    available = {name: entry.data_type for name, entry in ens_inputs.items()}  # ensemble tensor -> dtype
    for step in steps:
        model = repo.configs[step.model_name]  # the step's model is in the written repository
        model_inputs, model_outputs = by_name(model.input), by_name(model.output)
        assert set(step.input_map) <= set(model_inputs)
        assert set(step.input_map) == set(model_inputs), "every model input must be fed"
        assert set(step.output_map) <= set(model_outputs)
        for model_input, tensor in step.input_map.items():
            assert tensor in available, f"{step.model_name} reads {tensor}, produced by no earlier step"
            assert available[tensor] == model_inputs[model_input].data_type, tensor
        for model_output, tensor in step.output_map.items():
            assert tensor not in available, f"{tensor} produced twice"
            available[tensor] = model_outputs[model_output].data_type
    for name, entry in ens_outputs.items():
        assert available.get(name) == entry.data_type, name
    # The internal tensors are exactly what the scorer reads, named per pipeline.
    assert sorted(steps[1].input_map) == sorted(SPECS[scorer].input_names)
    assert all(v.startswith(f"{pipeline_name(scorer)}_") for v in steps[0].output_map.values())
    assert dict(steps[1].output_map) == {"score": PIPELINE_OUTPUT.name}
    # The plain pipeline follows the newest scorer version; the _v1 one calls version 1 only.
    assert [s.model_version for s in steps] == [-1, -1 if version is None else version]


def test_scorers_serve_every_version_present(repo: Repo) -> None:
    for scorer in ("prerank", "rank"):
        assert repo.configs[scorer].version_policy.HasField("all")
    assert repo.configs["feature_assembly"].version_policy.latest.num_versions == 1


def test_publishing_adds_the_next_version_and_its_pinned_pipeline(repo: Repo, tmp_path: Path) -> None:
    onnx = tmp_path / "v2.onnx"
    onnx.write_bytes(b"version two")
    assert publish_version(repo.model_root, repo.ensemble_root, "rank", onnx, "gpu") == 2
    assert publish_version(repo.model_root, repo.ensemble_root, "rank", onnx, "gpu") == 3
    assert scorer_versions(repo.model_root, "rank", "gpu") == [1, 2, 3]
    assert (repo.model_root / "rank" / "3" / ONNX_FILE).read_bytes() == b"version two"
    assert (repo.model_root / "rank" / "3" / "model.py").read_text() == (repo.model_root / "rank" / "1" / "model.py").read_text()
    pinned = parse((repo.ensemble_root / "rank_pipeline_v3" / "config.pbtxt").read_text())
    latest = repo.configs["rank_pipeline"]
    assert pinned.name == "rank_pipeline_v3" and [s.model_version for s in pinned.ensemble_scheduling.step] == [-1, 3]
    assert list(pinned.input) == list(latest.input) and list(pinned.output) == list(latest.output)
    assert scorer_versions(repo.model_root, "prerank", "gpu") == [1]  # the other scorer is untouched


def test_ensemble_config_rejects_a_scorer_needing_an_unproduced_tensor() -> None:
    assembly = feature_assembly_spec(L)
    greedy = ModelSpec(
        "greedy",
        (*SPECS["prerank"].inputs, TensorSpec("user_emb", np.float32, (8,))),
        prerank_spec(L).outputs,
    )
    with pytest.raises(ValueError, match=r"greedy needs \['user_emb'\], which feature_assembly does not produce"):
        ensemble_config("greedy_pipeline", assembly, greedy, MAX_BATCH)


def test_assembly_output_and_rank_input_agree_on_history_dims(repo: Repo) -> None:
    """ensemble_config checks names only, so the dims agree because one history_len built both."""
    hist = by_name(repo.configs["rank"].input)["hist_item"]
    assert list(hist.dims) == [L]  # once per request
    assembly_hist = by_name(repo.configs["feature_assembly"].output)["hist_item"]
    assert list(assembly_hist.dims) == list(hist.dims)


def test_rewriting_clears_old_models_but_keeps_readme(repo: Repo, tiny_tables_path: Path, tmp_path: Path) -> None:
    (repo.model_root / "README.md").write_text("keep me")
    (repo.model_root / "stale_model").mkdir()
    (repo.ensemble_root / "stray.txt").write_text("x")
    onnx = tmp_path / "dummy.onnx"
    write_repositories(
        repo.model_root, repo.ensemble_root, tiny_tables_path, {"rank": (SPECS["rank"], onnx)}, L, 4, 100, 1, profile="gpu"
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
def test_a_fused_pipeline_has_the_ensembles_inputs_and_output(cpu: Repo, repo: Repo, name: str) -> None:
    """The orchestrator calls either layout the same way: raw request in, `scores` out."""
    fused, ensemble = cpu.configs[name], repo.configs[name]
    assert list(by_name(fused.input)) == [t.name for t in REQUEST_INPUTS]
    for t in REQUEST_INPUTS:
        check_tensor(by_name(fused.input)[t.name], t, per_candidate=False)
    assert list(by_name(fused.output)) == [PIPELINE_OUTPUT.name]
    check_tensor(by_name(fused.output)[PIPELINE_OUTPUT.name], PIPELINE_OUTPUT, per_candidate=False)
    assert list(fused.input) == list(ensemble.input) and list(fused.output) == list(ensemble.output)
    assert fused.max_batch_size == ensemble.max_batch_size


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
