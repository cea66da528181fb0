"""export.tensorrt without TensorRT: profile choice, calibration batching, trtexec's command line, the
AUC bar and manifest entry, lazy import, and the command (no builder; a stand-in trtexec script)."""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import stat
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from cascade.artifacts import Manifest
from cascade.settings import load_settings
from cascade.specs import feature_tensors, rank_spec
from export import tensorrt as builder
from export.calibrate import write_calibration_set

L = 5
RANK = builder.row_spec("rank", L)


def features(rows: int, history_len: int = L) -> dict[str, np.ndarray]:
    """Every feature tensor, row r holding r (so batches show their rows)."""
    out = {}
    for name, spec in feature_tensors(history_len).items():
        values = np.arange(rows).reshape(rows, *([1] * len(spec.dims)))
        out[name] = np.broadcast_to(values, (rows, *spec.dims)).astype(spec.dtype)
    return out


# --- profiles --------------------------------------------------------------------------------------
def test_profile_gives_every_row_graph_input_its_min_opt_max_shapes() -> None:
    profile = builder.optimisation_profile(RANK, (1, 200, 4096))
    assert list(profile) == ["user_cat", "user_num", "item_id", "item_cat", "item_num", "hist_item", "hist_cat", "ctx"]
    assert profile["user_cat"] == ((1, 4), (200, 4), (4096, 4))  # three fields and the user id
    assert profile["item_id"] == ((1,), (200,), (4096,))
    assert profile["hist_item"] == ((1, L), (200, L), (4096, L))
    assert profile["ctx"] == ((1, 2), (200, 2), (4096, 2))


@pytest.mark.parametrize(
    ("rows", "message"),
    [((0, 1, 2), ">= 1"), ((1, 5, 3), "min <= opt <= max"), ((4, 2, 8), "min <= opt <= max"), ((1, 2), "three integers")],
)
def test_profile_rejects_bad_row_counts(rows: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        builder.optimisation_profile(RANK, rows)


def test_profile_rejects_the_request_shaped_spec() -> None:
    with pytest.raises(ValueError, match="user_row"):
        builder.optimisation_profile(rank_spec(L), (1, 2, 3))


def test_profile_rows_come_from_the_funnel_sizes_and_the_gpu_row_cap() -> None:
    settings = load_settings(recall_ann_k=300, recall_i2i_k=50, recall_popular_k=20, prerank_keep=100, rank_keep=50,
                             gpu_max_rows=1000)
    assert builder.profile_rows("prerank", settings) == (1, 370, 1000)
    assert builder.profile_rows("rank", settings) == (1, 100, 1000)
    small = load_settings(recall_ann_k=300, recall_i2i_k=50, recall_popular_k=20, gpu_max_rows=64)
    assert builder.profile_rows("prerank", small) == (1, 64, 64)  # opt never above what Triton sends
    with pytest.raises(ValueError, match="unknown scorer"):
        builder.profile_rows("teacher", settings)


# --- calibration batching -------------------------------------------------------------------------
def test_calibration_batches_from_the_calibration_file_are_fixed_size_typed_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "calibration.npz"
    write_calibration_set(features(10), path)
    batches = builder.CalibrationBatcher.from_file(path, RANK, batch_size=4)
    got = list(batches)
    assert (len(batches), batches.rows_used, len(got)) == (2, 8, 2)  # rows 8 and 9 dropped
    for i, batch in enumerate(got):
        assert list(batch) == RANK.input_names
        for t in RANK.inputs:
            assert batch[t.name].shape == (4, *t.dims)
            assert batch[t.name].dtype == t.dtype and batch[t.name].flags.c_contiguous
        np.testing.assert_array_equal(batch["item_id"], np.arange(4 * i, 4 * i + 4))
        np.testing.assert_array_equal(batch["hist_item"][:, 0], np.arange(4 * i, 4 * i + 4))


def test_calibration_batches_name_what_is_wrong() -> None:
    rows = features(8)
    with pytest.raises(ValueError, match=r"lacks rank inputs \['ctx'\]"):
        builder.CalibrationBatcher({k: v for k, v in rows.items() if k != "ctx"}, RANK, 4)
    with pytest.raises(ValueError, match="different row counts"):
        builder.CalibrationBatcher({**rows, "item_id": rows["item_id"][:7]}, RANK, 4)
    with pytest.raises(ValueError, match="hist_item: per-row shape"):
        builder.CalibrationBatcher(features(8, history_len=3), RANK, 4)
    with pytest.raises(ValueError, match="fewer than one batch"):
        builder.CalibrationBatcher(rows, RANK, 9)


def test_calibration_cache_is_keyed_by_graph_rows_and_batch(tmp_path: Path) -> None:
    engine = tmp_path / "rank.int8.plan"
    cache = builder.calibration_cache_path(engine, "a" * 64, "b" * 64, 256)
    assert cache.parent == tmp_path and cache.name.startswith("rank.int8.") and cache.suffix == ".calib"
    assert cache == builder.calibration_cache_path(engine, "a" * 64, "b" * 64, 256)
    keys = (("c" * 64, "b" * 64, 256), ("a" * 64, "c" * 64, 256), ("a" * 64, "b" * 64, 128))
    others = {builder.calibration_cache_path(engine, *key) for key in keys}
    assert cache not in others and len(others) == 3


# --- trtexec ------------------------------------------------------------------------------------
def test_trtexec_command_line_for_fp16() -> None:
    profile = builder.optimisation_profile(RANK, (1, 200, 4096))
    argv = builder.trtexec_argv(Path("rank.rows.onnx"), Path("rank.fp16.plan"), "fp16", profile, 1 << 30)
    def shapes(n: int) -> str:
        return f"user_cat:{n}x4,user_num:{n}x3,item_id:{n},item_cat:{n},item_num:{n}x3,hist_item:{n}x{L},hist_cat:{n}x{L},ctx:{n}x2"

    assert argv == [
        "trtexec", "--onnx=rank.rows.onnx", "--saveEngine=rank.fp16.plan",
        f"--minShapes={shapes(1)}", f"--optShapes={shapes(200)}", f"--maxShapes={shapes(4096)}",
        "--memPoolSize=workspace:1024M", "--fp16", "--skipInference",
    ]


def test_trtexec_command_line_for_int8_takes_the_calibration_cache() -> None:
    profile = builder.optimisation_profile(RANK, (1, 2, 3))
    argv = builder.trtexec_argv(Path("r.onnx"), Path("r.plan"), "int8", profile, (3 << 19), Path("r.calib"))
    assert {"--int8", "--fp16", "--calib=r.calib", "--memPoolSize=workspace:2M"} <= set(argv)  # 1.5 MiB rounds up
    with pytest.raises(ValueError, match="calibration cache"):
        builder.trtexec_argv(Path("r.onnx"), Path("r.plan"), "int8", profile)
    with pytest.raises(ValueError, match="precision"):
        builder.trtexec_argv(Path("r.onnx"), Path("r.plan"), "fp32", profile)  # type: ignore[arg-type]


def test_trtexec_version_is_read_from_its_log() -> None:
    log = "&&&& RUNNING TensorRT.trtexec [TensorRT v100500]\n[10/01/2024-10:00:00] [I] TensorRT version: 10.5.0\n"
    assert builder.trtexec_version(log) == "10.5.0"
    assert builder.trtexec_version("no version here") == "unknown"


# --- AUC bar and manifest entry ---------------------------------------------------------------
def separated(swapped: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """10 positives over 100 negatives (1000 pairs): FP32 ranks every pair right, the engine gets
    `swapped` pairs wrong, so its AUC is lower by swapped / 1000."""
    labels = np.r_[np.zeros(100), np.ones(10)]
    fp32 = np.r_[np.arange(100.0), 100.0 + np.arange(10.0)]
    engine = fp32.copy()
    engine[100] = 99.5 - swapped  # the first positive below the top `swapped` negatives
    return fp32, engine, labels


@pytest.mark.parametrize(
    ("precision", "swapped", "met"), [("int8", 3, False), ("int8", 1, True), ("fp16", 1, False), ("fp16", 0, True)]
)
def test_auc_bar(precision: str, swapped: int, met: bool) -> None:
    comparison = builder.compare_auc(precision, *separated(swapped))
    assert comparison.fp32_auc == 1.0
    assert comparison.delta_auc == pytest.approx(swapped / 1000)
    assert comparison.bar == {"int8": 0.002, "fp16": 0.0005}[precision]
    assert comparison.within_bar is met


def test_auc_comparison_rejects_mismatched_lengths() -> None:
    fp32, engine, labels = separated(0)
    with pytest.raises(ValueError, match="differ in length"):
        builder.compare_auc("int8", fp32, engine[:-1], labels)


def build_settings(calibration: dict | None = None) -> builder.BuildSettings:
    profile = builder.optimisation_profile(RANK, (1, 200, 4096))
    return builder.BuildSettings("int8", 1 << 30, profile, "10.5.0", "tensorrt", "rank.rows.onnx", "f" * 64, 12.5, calibration)


def test_manifest_entry_records_build_settings_hash_and_quality(tmp_path: Path) -> None:
    engine = tmp_path / "rank.int8.plan"
    engine.write_bytes(b"serialized engine")
    calibration = {"file": "calibration.npz", "sha256": "c" * 64, "rows": 2048, "batch": 256, "cache": "x.calib",
                   "calibrator": "IInt8EntropyCalibrator2"}
    built = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    entry = builder.engine_entry(engine, build_settings(calibration), builder.compare_auc("int8", *separated(3)), built)
    assert entry["sha256"] == hashlib.sha256(b"serialized engine").hexdigest()
    assert (entry["file"], entry["precision"], entry["tensorrt_version"], entry["built"]) == (
        "rank.int8.plan", "int8", "10.5.0", "2025-01-02T03:04:05+00:00")
    assert entry["profile"]["hist_item"] == {"min": [1, L], "opt": [200, L], "max": [4096, L]}
    assert entry["calibration"] == calibration
    assert entry["auc"] == pytest.approx(0.997) and entry["fp32_auc"] == 1.0 and entry["bar"] == 0.002
    assert entry["delta_auc"] == pytest.approx(0.003) and entry["within_bar"] is False
    json.dumps(entry)  # goes into manifest.json as it is

    unmeasured = builder.engine_entry(engine, build_settings(calibration), "no TensorRT Python API", built)
    assert (unmeasured["auc"], unmeasured["within_bar"], unmeasured["bar"]) == (None, None, 0.002)
    assert unmeasured["not_measured"] == "no TensorRT Python API"


def manifest(**fields) -> Manifest:
    return Manifest(dataset="tiny", n_users=2, n_items=4, n_categories=3, history_len=L, embedding_dim=8,
                    model_versions={"rank": 1}, source_commit="abc", created="2025-01-01T00:00:00+00:00", **fields)


def test_a_manifest_written_before_engines_existed_still_loads(tmp_path: Path) -> None:
    data = asdict(manifest())
    del data["engines"]
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    assert Manifest.read(path).engines == {}


# --- lazy TensorRT and the command ------------------------------------------------------------------
def test_importing_the_module_does_not_import_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tensorrt.py").write_text("raise AssertionError('tensorrt imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.delitem(sys.modules, "export.tensorrt")
    importlib.import_module("export.tensorrt")
    assert "tensorrt" not in sys.modules


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError


@pytest.fixture
def exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An export's artefacts (manifest, rank row graph, calibration set) and a gpu-profile rank model."""
    artifacts, models = tmp_path / "artifacts", tmp_path / "models"
    (artifacts / "onnx").mkdir(parents=True)
    (artifacts / "onnx" / "rank.rows.onnx").write_bytes(b"row graph")
    write_calibration_set(features(16), artifacts / "calibration.npz")
    manifest().write(artifacts / "manifest.json")
    (models / "rank" / "1").mkdir(parents=True)
    (models / "rank" / "config.pbtxt").write_text('name: "rank"\nplatform: "tensorrt_plan"\n')
    for name, value in {"ARTIFACTS_DIR": artifacts, "MODEL_REPOSITORY": models, "HISTORY_LEN": L, "GPU_MAX_ROWS": 512}.items():
        monkeypatch.setenv(f"CASCADE_{name}", str(value))
    return tmp_path


def test_without_tensorrt_or_trtexec_the_command_fails_in_one_line(
    no_tensorrt: None, exported: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(builder.shutil, "which", lambda name: None)
    assert builder.main(["--scorers", "rank"]) == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("export.tensorrt: neither the TensorRT Python API") and "trtexec" in err
    assert Manifest.read(exported / "artifacts" / "manifest.json").engines == {}


@pytest.fixture
def fake_trtexec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `trtexec` on PATH that writes the engine it is asked for, logs a version and keeps its argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "trtexec"
    script.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/argv.txt"\n'
        'for arg in "$@"; do case "$arg" in --saveEngine=*) printf "plan bytes" > "${arg#--saveEngine=}";; esac; done\n'
        'echo "[I] TensorRT version: 10.5.0"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_trtexec_builds_records_and_installs_an_fp16_engine(
    no_tensorrt: None, exported: Path, fake_trtexec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert builder.main(["--precision", "fp16", "--scorers", "rank", "--install", "fp16"]) == 0
    out = capsys.readouterr().out
    engine = exported / "artifacts" / "engines" / "rank.fp16.plan"
    assert engine.read_bytes() == b"plan bytes"
    argv = (fake_trtexec / "argv.txt").read_text().splitlines()
    assert "--fp16" in argv and f"--saveEngine={engine}" in argv
    assert "--maxShapes=" + ",".join(f"{n}:512x{'x'.join(map(str, t.dims))}" if t.dims else f"{n}:512"
                                     for n, t in zip(RANK.input_names, RANK.inputs)) in argv

    entry = Manifest.read(exported / "artifacts" / "manifest.json").engines["rank.fp16"]
    assert (entry["builder"], entry["tensorrt_version"], entry["sha256"]) == (
        "trtexec", "10.5.0", hashlib.sha256(b"plan bytes").hexdigest())
    assert entry["profile"]["item_id"] == {"min": [1], "opt": [200], "max": [512]}
    assert entry["auc"] is None and "TensorRT Python API" in entry["not_measured"]
    assert (exported / "models" / "rank" / "1" / "model.plan").read_bytes() == b"plan bytes"
    assert "engine: rank.fp16 ->" in out and "auc: rank.fp16 not measured" in out and "install: rank.fp16 ->" in out


def test_int8_through_trtexec_needs_the_calibration_cache(
    no_tensorrt: None, exported: Path, fake_trtexec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert builder.main(["--precision", "int8", "--scorers", "rank", "--calibration-batch", "4"]) == 1
    err = capsys.readouterr().err
    assert "needs the calibration cache" in err and "Traceback" not in err
    assert not (exported / "artifacts" / "engines" / "rank.int8.plan").exists()
