"""Reduced-precision copies of the exported scorers: static INT8, dynamic INT8 and FP16.

`python -m export` writes them; `python -m export.quantize` writes them again for an existing
export (same calibration set) and updates its manifest, e.g. after a change to the settings below.

For `<name>.onnx` this writes, beside it, `<name>.int8.onnx` (ONNX Runtime static quantization,
calibrated on the calibration set of export/calibrate.py), `<name>.int8dyn.onnx` (dynamic,
weight-only: the fallback) and `<name>.fp16.onnx` (float16 weights and activations, float32
inputs/outputs). Each comes with a manifest entry recording how far its scores are from FP32 on
the calibration rows (max abs diff, Kendall tau-b). Those rows are the ones static INT8 was
calibrated on; quality on held-out rows is export/evaluate.py's job.

Static INT8 settings, measured (Kendall tau-b vs FP32 on 2048 held-out rows of a 1000-user
synthetic export with the distilled models; speed on 2 shared vCPUs, ORT 1.32, one thread):
- QOperator format, uint8 activations, int8 weights, per-channel weight scales (per-tensor:
  tau 0.9797 -> 0.9818 on the old DIN rank, matmuls only), min-max calibration (percentile: no better).
- Only STATIC_OP_TYPES are quantized: the matmuls, their Relus and the embedding Gathers (int8
  tables: files ~4x smaller, tau unchanged: teacher 0.9721 vs 0.9717 without, rank 0.9789 vs 0.9785).
  Left in float: the output Sigmoid (a uint8 score has 1/255 steps and the ties cost ranking
  agreement); the masked softmax path (Where/Softmax: the -1e4 padding mask sets the calibrated
  range, and quantizing it dropped the old rank's tau to 0.78); Add and Concat (one scale for a
  residual sum or for heterogeneous features: teacher tau 0.9721 -> 0.9551 with both). Quantizing
  Add/Concat too made the old rank up to 1.8x faster at 512 rows on a loaded machine (uint8
  attention input, a quarter of the memory traffic) but only ~1.15x on a quiet one; accuracy won.
- Matmuls fed by a Concat stay in float (`concat_fed_matmuls`): one uint8 scale for a row of
  heterogeneous features (small id embeddings beside counts and rates) rounds the embeddings away.
  MovieLens' rank, its embedding tables trained with weight decay 6: test AUC 0.7524 in FP32,
  0.7467 with them quantized, 0.7524 without (the tables' Gathers alone: 0.7524).
- `quant_pre_process` (symbolic shape inference + ORT's basic optimisations) first gave the same
  agreement and speed here, so it is not run.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from tqdm import tqdm

from cascade.features import as_rows
from cascade.metrics import kendall_tau
from cascade.specs import USER_ROW
from cascade.artifacts import ArtifactPaths, Manifest, sha256_file
from cascade.settings import settings_or_report
from export.calibrate import load_calibration_set
from export.eval_scorers import PRECISIONS
from export.onnx_export import session

QUANTIZED = ["teacher", "rank", "prerank"]  # the scorers an export makes reduced-precision copies of
STATIC_OP_TYPES = ("MatMul", "Gemm", "Relu", "Gather")
SUFFIXES = {**PRECISIONS, "fp16sim": ".fp16sim"}  # the evaluation and the benchmark look for PRECISIONS
INSERTED_CAST_PREFIX = "InsertedPrecisionFreeCast"  # ORT's name for the casts it adds around fp32-only kernels


def input_names(path: Path) -> list[str]:
    """The model's own inputs, as ONNX Runtime sees them."""
    return [i.name for i in session(path).get_inputs()]


class CalibrationBatches(CalibrationDataReader):
    """Feeds the calibration set in row batches, each holding only the inputs the model declares."""

    def __init__(self, calibration: dict[str, np.ndarray], names: list[str], batch: int) -> None:
        missing = sorted(set(names) - set(calibration) - {USER_ROW.name})
        if missing:
            raise ValueError(f"calibration set lacks model inputs {missing}")
        rows = len(calibration[names[0]])
        self._batches = iter(
            [as_rows({n: t[lo : lo + batch] for n, t in calibration.items()}, names) for lo in range(0, rows, batch)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def concat_fed_matmuls(path: Path) -> list[str]:
    """The MatMul and Gemm nodes of the graph at `path` that read a Concat's output."""
    graph = onnx.load(str(path), load_external_data=False).graph
    concat_outputs = {o for n in graph.node if n.op_type == "Concat" for o in n.output}
    return [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and concat_outputs.intersection(n.input)]


def quantize_static_int8(
    fp32: Path, out: Path, calibration: dict[str, np.ndarray], batch: int = 256, op_types: tuple[str, ...] = STATIC_OP_TYPES,
    keep_float: list[str] | None = None,
) -> Path:
    """Static INT8 (QOperator, uint8 activations, per-channel int8 weights) calibrated on
    `calibration`; the nodes in `keep_float` stay in float (default: `concat_fed_matmuls`)."""
    keep_float = concat_fed_matmuls(fp32) if keep_float is None else keep_float
    reader = CalibrationBatches(calibration, input_names(fp32), batch)
    with _quiet_root_logger():
        quantize_static(
            str(fp32), str(out), reader,
            quant_format=QuantFormat.QOperator, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=True, calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=list(op_types),
            nodes_to_exclude=keep_float, calibration_providers=["CPUExecutionProvider"],
        )
    return out


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ORT's quantizer warns on the root logger about every int64 shape tensor it leaves alone, and
    advises pre-processing (measured: no gain here); keep those out of the export's output."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_dynamic_int8(fp32: Path, out: Path) -> Path:
    """Dynamic INT8: int8 weights, activations quantized per batch at run time (no calibration)."""
    with _quiet_root_logger():
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
    return out


def convert_fp16(fp32: Path, out: Path) -> Path:
    """Float16 weights and activations; inputs and outputs stay float32 (keep_io_types)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True), str(out))
    return out


def fp16_runs_on_cpu(path: Path, calibration: dict[str, np.ndarray] | None = None, rows: int = 64) -> bool:
    """Whether ONNX Runtime's CPU EP loads the model and scores one batch to finite numbers.

    The batch is the first `rows` calibration rows, or zeros (valid ids: 0 is padding/unknown)."""
    try:
        names = input_names(path)
        feed = as_rows({n: t[:rows] for n, t in calibration.items()}, names) if calibration is not None else _zeros(path, rows)
        return bool(np.isfinite(session(path).run(None, feed)[0]).all())
    except Exception:  # noqa: BLE001 - any failure to load or run means "does not run"; the caller records it
        return False


def _zeros(path: Path, rows: int) -> dict[str, np.ndarray]:
    inputs = onnx.load(str(path), load_external_data=False).graph.input
    return {
        i.name: np.zeros([rows, *[d.dim_value for d in i.type.tensor_type.shape.dim[1:]]],
                         onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
        for i in inputs
    }


def ort_cpu_inserted_casts(path: Path) -> int:
    """How many casts ORT's CPU EP inserts to run fp16 tensors through float32-only kernels.

    0 means every node computes in float16; more means part of the graph really runs in float32
    on CPU (the weights and the tensors between those casts are still float16)."""
    with tempfile.TemporaryDirectory() as scratch:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(Path(scratch) / "optimized.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath).graph
    return sum(n.op_type == "Cast" and n.name.startswith(INSERTED_CAST_PREFIX) for n in graph.node)


def simulate_fp16_weights(fp32: Path, out: Path) -> Path:
    """Every float32 initializer rounded to float16 and back; compute stays float32.

    Measures float16 *weight* precision loss where a real fp16 graph cannot run. The exporter keeps
    every constant as an initializer, so that covers all weights."""
    model = onnx.load(str(fp32))
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16).astype(np.float32), init.name))
    onnx.save(model, str(out))
    return out


def agreement(fp32: Path, variant: Path, calibration: dict[str, np.ndarray]) -> dict[str, float]:
    """Max abs score difference and Kendall tau-b of the scores, variant vs FP32, on the calibration rows."""
    feed = as_rows(calibration, input_names(fp32))
    ref, got = (session(p).run(None, feed)[0].astype(np.float64) for p in (fp32, variant))
    return {"max_abs_diff": float(np.max(np.abs(got - ref))), "kendall_tau": kendall_tau(ref, got)}


def _entry(model: str, precision: str, path: Path, method: str, fp32: Path, calibration: dict[str, np.ndarray]) -> dict:
    return {
        "model": model, "precision": precision, "file": path.name, "bytes": path.stat().st_size,
        "sha256": sha256_file(path), "method": method, **agreement(fp32, path, calibration),
    }


def _int8_static(name: str, fp32: Path, calibration: dict[str, np.ndarray]) -> dict:
    """Static INT8, or dynamic INT8 in the same file when static quantization fails: the quantizer
    raises, or its model does not load or run (the entry says so under "fallback")."""
    out = fp32.with_name(name + SUFFIXES["int8"] + ".onnx")
    try:
        keep_float = concat_fed_matmuls(fp32)
        quantize_static_int8(fp32, out, calibration, keep_float=keep_float)
        method = (f"static QOperator U8S8 per-channel minmax on {len(next(iter(calibration.values())))} rows, ops "
                  f"{'/'.join(STATIC_OP_TYPES)}, float: {'/'.join(keep_float)}")
        return _entry(name, "int8", out, method, fp32, calibration)
    except Exception as err:  # noqa: BLE001 - the fallback is recorded, never silent
        tqdm.write(f"quantize: static INT8 of {name} failed ({err!r}); {out.name} is dynamic INT8 instead")
        quantize_dynamic_int8(fp32, out)
        return {**_entry(name, "int8", out, "dynamic (fallback)", fp32, calibration), "fallback": f"static failed: {err!r}"}


def _fp16(name: str, fp32: Path, calibration: dict[str, np.ndarray]) -> dict:
    """A real fp16 graph when ORT's CPU EP runs it, else the weight-rounding simulation."""
    out = convert_fp16(fp32, fp32.with_name(name + SUFFIXES["fp16"] + ".onnx"))
    if fp16_runs_on_cpu(out, calibration):
        entry = _entry(name, "fp16", out, "convert_float_to_float16(keep_io_types=True)", fp32, calibration)
        return {**entry, "ort_cpu_inserted_casts": ort_cpu_inserted_casts(out)}
    out.unlink()
    sim = simulate_fp16_weights(fp32, fp32.with_name(name + SUFFIXES["fp16sim"] + ".onnx"))
    entry = _entry(name, "fp16sim", sim, "float32 graph, initializers rounded to float16", fp32, calibration)
    return {**entry, "note": "the float16 graph does not run on ORT's CPU EP; this measures weight rounding only"}


def quantize_all(onnx_dir: Path, names: list[str], calibration: dict[str, np.ndarray]) -> dict[str, dict]:
    """Every reduced-precision variant of `<onnx_dir>/<name>.onnx`; entries keyed '<name><suffix>'."""
    entries: dict[str, dict] = {}
    bar = tqdm(names, desc="quantize", unit="model")
    for name in bar:
        fp32 = onnx_dir / f"{name}.onnx"
        bar.set_postfix_str(f"{name} int8")
        static = _int8_static(name, fp32, calibration)
        bar.set_postfix_str(f"{name} int8dyn")
        dynamic_path = quantize_dynamic_int8(fp32, fp32.with_name(name + SUFFIXES["int8dyn"] + ".onnx"))
        dynamic = _entry(name, "int8dyn", dynamic_path, "dynamic (weights int8, activations per batch)", fp32, calibration)
        bar.set_postfix_str(f"{name} fp16")
        half = _fp16(name, fp32, calibration)
        for entry in (static, dynamic, half):
            entries[name + SUFFIXES[entry["precision"]]] = entry
    return entries



def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m export.quantize", description=__doc__.splitlines()[0]).parse_args(argv)
    settings = settings_or_report()
    if settings is None:
        return 2
    paths = ArtifactPaths(settings.artifacts_dir)
    manifest = Manifest.read(paths.manifest)
    calibration = load_calibration_set(paths.calibration, manifest.calibration.get("sha256"))
    entries = quantize_all(paths.onnx("rank").parent, QUANTIZED, calibration)
    dataclasses.replace(manifest, quantized=entries).write(paths.manifest)
    for name, entry in entries.items():
        print(f"{name}: {entry['method']}; Kendall tau {entry['kendall_tau']:.4f}, max abs diff {entry['max_abs_diff']:.2e}")
    if settings.serve_precision != "fp32":
        print(f"note: the Triton repositories still hold the {settings.serve_precision} scorers of the export; "
              "run `python -m export` to rewrite them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
