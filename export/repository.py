"""Write the Triton repositories (models and ensembles) from code; nothing in them is hand-made."""
from __future__ import annotations

import shutil
from pathlib import Path

from cascade.specs import ModelSpec, feature_assembly_spec
from cascade.triton.config import ensemble_config, python_model_config, render
from cascade.triton.layout import FEATURE_ASSEMBLY_ADAPTER, ONNX_ADAPTER, ONNX_FILE, TABLES_FILE

PIPELINES = {"prerank": "prerank_pipeline", "rank": "rank_pipeline"}
KEEP = {"README.md"}


def clear_repository(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for child in root.iterdir():
        if child.name not in KEEP:
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def _write_model(root: Path, name: str, config_text: str, adapter: str, files: dict[str, Path], version: int) -> None:
    version_dir = root / name / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    (root / name / "config.pbtxt").write_text(config_text)
    (version_dir / "model.py").write_text(f"from {adapter} import TritonPythonModel  # noqa: F401\n")
    for target, source in files.items():
        shutil.copy2(source, version_dir / target)


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
) -> list[Path]:
    """Lay out feature_assembly, every scorer and one pipeline per scorer; return the config paths."""
    clear_repository(model_root)
    clear_repository(ensemble_root)
    assembly = feature_assembly_spec(history_len)
    batching = dict(max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us, instances=instances)
    _write_model(
        model_root, assembly.name, render(python_model_config(assembly, False, **batching)),
        FEATURE_ASSEMBLY_ADAPTER, {TABLES_FILE: tables_path}, version,
    )
    for name, (spec, onnx_path) in scorers.items():
        config = python_model_config(spec, True, **batching, parameters={"intra_op_threads": "1"})
        _write_model(model_root, name, render(config), ONNX_ADAPTER, {ONNX_FILE: onnx_path}, version)
        pipeline = PIPELINES[name]
        (ensemble_root / pipeline / "1").mkdir(parents=True, exist_ok=True)
        (ensemble_root / pipeline / "config.pbtxt").write_text(render(ensemble_config(pipeline, assembly, spec, max_batch_size)))
    return sorted([*model_root.glob("*/config.pbtxt"), *ensemble_root.glob("*/config.pbtxt")])
