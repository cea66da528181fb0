"""Write the Triton repositories (models and ensembles) from code; nothing in them is hand-made.

Each scorer gets two pipelines, both taking the raw request and returning `scores`:
`<scorer>_pipeline` (serves the newest version, for perf runs and clients that do not care) and
`<scorer>_pipeline_v<N>` (version N only, which is what the orchestrator calls). How a pipeline is
built depends on the Triton profile (`Settings.triton_profile`):

- `cpu`: one fused Python-backend model (`cascade.triton.fused_model`: feature assembly and ONNX
  Runtime in one stub process) with its `model.onnx` and `tables.npz`. `<scorer>_pipeline`, in the
  model repository, holds every version of the scorer as a version directory (the newest is served);
  the pinned `<scorer>_pipeline_v<N>` go to the ensemble repository, like the GPU profile's. No
  ensemble, and no standalone feature_assembly or scorer model (see perf/README.md for why).
- `gpu`: an ensemble in the ensemble repository, feature_assembly -> the scorer model, whose version
  directories are the scorer's versions (every one present is served). feature_assembly (Python,
  CPU) writes every feature on every candidate's row; the scorer batches rows on the GPU as
  `Settings.gpu_scorer_backend` says: the row ONNX on onnxruntime_onnx (CUDA, TensorRT accelerator),
  a TensorRT engine (tensorrt_plan, installed by `python -m export.tensorrt --install`), or the row
  graph's torch program on the Python backend (`cascade.triton.torch_scorer_model`).

Either way the model repository holds the scorers' versions and the ensemble repository the pinned
pipelines the orchestrator calls. On `cpu` the ensemble repository also holds a two-stage model
`two_stage_p<P>_r<R>` (`cascade.triton.two_stage_model`: pre-rank version P -> top-k -> rank version
R in one call) for every pair of versions present, which the orchestrator calls instead of the two
pinned pipelines when it has that pair loaded.

`publish_version` adds version N+1 of a scorer and its pinned pipeline (and on `cpu` its two-stage
models) next to the running ones; Triton loads them on the model-control API's load call.
`prune_versions` removes old versions, their pipelines and two-stage models, that nothing uses.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from cascade.specs import ModelSpec, feature_assembly_spec, triton_scorer
from cascade.triton.config import (
    GpuScorerBackend,
    fused_pipeline_config,
    gpu_scorer_config,
    lookalike_config,
    parse,
    pin_ensemble,
    render,
    renamed,
    row_assembly_config,
    row_ensemble_config,
    two_stage_config,
)
from cascade.triton.layout import (
    FEATURE_ASSEMBLY_ADAPTER,
    FUSED_ADAPTER,
    LOOKALIKE_ADAPTER,
    ONNX_FILE,
    PINNED_PIPELINE_VERSION,
    PROGRAM_FILE,
    PRERANK_ONNX_FILE,
    RANK_ONNX_FILE,
    SCORERS,
    TABLES_FILE,
    TORCH_SCORER_ADAPTER,
    TWO_STAGE_ADAPTER,
    USERS_FILE,
    Profile,
    lookalike_name,
    pipeline_name,
    two_stage_name,
    two_stage_versions,
)

KEEP = {"README.md"}


@dataclass(frozen=True)
class GpuScorers:
    """What the gpu profile serves its scorers with (`cascade.triton.config.gpu_scorer_config`)."""

    backend: GpuScorerBackend
    precision: str
    max_rows: int
    row_graphs: dict[str, tuple[Path, Path]]  # scorer -> (row ONNX, row torch program), `export_row_graphs`

    def files(self, scorer: str) -> tuple[str | None, dict[str, Path]]:
        """The adapter (Python backend only) and the files of a scorer's version directory. A
        TensorRT version directory starts empty: `python -m export.tensorrt --install` puts the
        engine there."""
        onnx, program = self.row_graphs[scorer]
        if self.backend == "onnxruntime":
            return None, {ONNX_FILE: onnx}
        if self.backend == "python":
            return TORCH_SCORER_ADAPTER, {PROGRAM_FILE: program}
        return None, {}


def clear_repository(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for child in root.iterdir():
        if child.name not in KEEP:
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def _write_version(root: Path, name: str, adapter: str | None, files: dict[str, Path], version: int) -> None:
    """A version directory: `files`, and for a Python-backend model (`adapter`) its model.py."""
    version_dir = root / name / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    if adapter is not None:
        (version_dir / "model.py").write_text(f"from {adapter} import TritonPythonModel  # noqa: F401\n")
    for target, source in files.items():
        shutil.copy2(source, version_dir / target)


def _write_model(root: Path, name: str, config_text: str, adapter: str | None, files: dict[str, Path], version: int) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / "config.pbtxt").write_text(config_text)
    _write_version(root, name, adapter, files, version)


def _write_ensemble(root: Path, config_text: str, name: str) -> Path:
    (root / name / str(PINNED_PIPELINE_VERSION)).mkdir(parents=True, exist_ok=True)
    path = root / name / "config.pbtxt"
    path.write_text(config_text)
    return path


def _write_two_stage(
    ensemble_root: Path, versions: tuple[int, int], onnx: tuple[Path, Path], tables_path: Path, pipeline: mc.ModelConfig
) -> None:
    """The two-stage model for (pre-rank version, rank version), batched like the fused `pipeline`."""
    config = two_stage_config(
        two_stage_name(*versions), pipeline.max_batch_size, pipeline.dynamic_batching.max_queue_delay_microseconds,
        pipeline.instance_group[0].count, int(pipeline.parameters["intra_op_threads"].string_value),
    )
    files = {PRERANK_ONNX_FILE: onnx[0], RANK_ONNX_FILE: onnx[1], TABLES_FILE: tables_path}
    _write_model(ensemble_root, config.name, render(config), TWO_STAGE_ADAPTER, files, PINNED_PIPELINE_VERSION)


def versions_folder(model_root: Path, scorer: str, profile: Profile) -> Path:
    """Where the version directories of `scorer` live: its fused `<scorer>_pipeline` on the CPU
    profile, the scorer model on the GPU profile."""
    return model_root / (pipeline_name(scorer) if profile == "cpu" else scorer)


def write_repositories(
    model_root: Path,
    ensemble_root: Path,
    tables_path: Path,
    scorers: dict[str, tuple[ModelSpec, Path]],
    history_len: int,
    max_batch_size: int,
    max_queue_delay_us: int,
    instances: int,
    version: int = 1,
    *,
    profile: Profile,
    gpu: GpuScorers | None = None,
) -> list[Path]:
    """Lay out every scorer's pipelines for `profile` (and, on `gpu`, feature_assembly and the
    scorer models, served as `gpu` says); return the config paths."""
    clear_repository(model_root)
    clear_repository(ensemble_root)
    batching = dict(max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us, instances=instances)
    if profile == "cpu":
        for name, (_, onnx_path) in scorers.items():
            files = {ONNX_FILE: onnx_path, TABLES_FILE: tables_path}
            latest = fused_pipeline_config(pipeline_name(name), **batching)
            _write_model(model_root, latest.name, render(latest), FUSED_ADAPTER, files, version)
            pinned = renamed(latest, pipeline_name(name, version))
            _write_model(ensemble_root, pinned.name, render(pinned), FUSED_ADAPTER, files, PINNED_PIPELINE_VERSION)
        if set(SCORERS) <= set(scorers):
            onnx = (scorers["prerank"][1], scorers["rank"][1])
            _write_two_stage(ensemble_root, (version, version), onnx, tables_path, latest)
    else:
        if gpu is None:
            raise ValueError("the gpu profile needs its scorers' backend and row graphs (GpuScorers)")
        assembly = feature_assembly_spec(history_len)
        _write_model(
            model_root, assembly.name, render(row_assembly_config(assembly, instances)),
            FEATURE_ASSEMBLY_ADAPTER, {TABLES_FILE: tables_path}, version,
        )
        for name, (onnx_spec, _) in scorers.items():
            spec = triton_scorer(onnx_spec)
            config = gpu_scorer_config(spec, gpu.backend, gpu.max_rows, max_queue_delay_us, instances, gpu.precision)
            _write_model(model_root, name, render(config), *gpu.files(name), version)
            latest = row_ensemble_config(pipeline_name(name), assembly, spec)
            _write_ensemble(ensemble_root, render(latest), latest.name)
            pinned = pin_ensemble(latest, pipeline_name(name, version), name, version)
            _write_ensemble(ensemble_root, render(pinned), pinned.name)
    return sorted([*model_root.glob("*/config.pbtxt"), *ensemble_root.glob("*/config.pbtxt")])


def write_lookalike(
    ensemble_root: Path, version: int, onnx_path: Path, users_path: Path, max_batch_size: int, max_queue_delay_us: int,
    instances: int,
) -> Path:
    """The look-alike scorer's version `version` as its own model `lookalike_v<N>` (CPU, either profile)."""
    config = lookalike_config(lookalike_name(version), max_batch_size, max_queue_delay_us, instances)
    _write_model(ensemble_root, config.name, render(config), LOOKALIKE_ADAPTER,
                 {ONNX_FILE: onnx_path, USERS_FILE: users_path}, PINNED_PIPELINE_VERSION)
    return ensemble_root / config.name / "config.pbtxt"


def scorer_versions(model_root: Path, scorer: str, profile: Profile) -> list[int]:
    """The version directories of `scorer`, ascending."""
    folder = versions_folder(model_root, scorer, profile)
    if not (folder / "config.pbtxt").exists():
        raise FileNotFoundError(f"{folder}/config.pbtxt not found: run `python -m export` first (profile {profile})")
    return sorted(int(d.name) for d in folder.iterdir() if d.is_dir() and d.name.isdigit())


def publish_version(model_root: Path, ensemble_root: Path, scorer: str, onnx_path: Path, profile: Profile) -> int:
    """Add `onnx_path` as the next version of `scorer`, with its pinned pipeline; return the version.

    On `cpu` both carry the tables of the newest version already there. Nothing running changes
    until Triton is asked to load the new pipeline (and, on `gpu`, `scorer`).
    """
    versions = scorer_versions(model_root, scorer, profile)
    version = max(versions, default=0) + 1
    folder = versions_folder(model_root, scorer, profile)
    if profile == "cpu":
        files = {ONNX_FILE: onnx_path, TABLES_FILE: folder / str(versions[-1]) / TABLES_FILE}
        pinned = renamed(parse((folder / "config.pbtxt").read_text()), pipeline_name(scorer, version))
        _write_version(model_root, folder.name, FUSED_ADAPTER, files, version)
        _write_model(ensemble_root, pinned.name, render(pinned), FUSED_ADAPTER, files, PINNED_PIPELINE_VERSION)
        _publish_two_stage(model_root, ensemble_root, scorer, version, onnx_path, files[TABLES_FILE], pinned)
    else:
        platform = parse((folder / "config.pbtxt").read_text()).platform
        if platform != "onnxruntime_onnx":
            raise ValueError(
                f"publishing on the gpu profile takes a row graph for onnxruntime_onnx; {scorer} is served by "
                f"{platform or 'the python backend'}: re-export, or build its engine with `python -m export.tensorrt`"
            )
        latest = parse((ensemble_root / pipeline_name(scorer) / "config.pbtxt").read_text())
        pinned = pin_ensemble(latest, pipeline_name(scorer, version), scorer, version)
        _write_version(model_root, scorer, None, {ONNX_FILE: onnx_path}, version)
        _write_ensemble(ensemble_root, render(pinned), pinned.name)
    return version


def _publish_two_stage(
    model_root: Path, ensemble_root: Path, scorer: str, version: int, onnx_path: Path, tables_path: Path,
    pipeline: mc.ModelConfig,
) -> None:
    """A two-stage model pairing the new `version` of `scorer` with each version of the other scorer."""
    (other,) = [s for s in SCORERS if s != scorer]
    other_folder = versions_folder(model_root, other, "cpu")
    if not (other_folder / "config.pbtxt").exists():
        return
    for w in scorer_versions(model_root, other, "cpu"):
        theirs = other_folder / str(w) / ONNX_FILE
        pair, onnx = ((version, w), (onnx_path, theirs)) if scorer == "prerank" else ((w, version), (theirs, onnx_path))
        _write_two_stage(ensemble_root, pair, onnx, tables_path, pipeline)


def prune_versions(
    model_root: Path, ensemble_root: Path, scorer: str, keep: int, in_use: set[int], profile: Profile
) -> list[int]:
    """Remove the version directories of `scorer` (and their pinned pipelines) other than the newest
    `keep` and those `in_use`; return the removed versions. Triton drops them on its next load."""
    versions = scorer_versions(model_root, scorer, profile)
    kept = set(versions[-keep:]) | in_use
    removed = [v for v in versions if v not in kept]
    folder = versions_folder(model_root, scorer, profile)
    for v in removed:
        shutil.rmtree(folder / str(v))
        shutil.rmtree(ensemble_root / pipeline_name(scorer, v), ignore_errors=True)
    position = SCORERS.index(scorer)
    for model in ensemble_root.iterdir() if removed else ():
        pair = two_stage_versions(model.name)
        if pair is not None and pair[position] in removed:
            shutil.rmtree(model)
    return removed
