"""`python -m export.tensorrt`: TensorRT FP16 and INT8 engines of the scorers, for the GPU profile.

In: the row graphs of the export, `artifacts/onnx/<scorer>.rows.onnx` (inputs: those of
`triton_scorer(<scorer>_spec(L))`, each with a leading dynamic row dimension, one row per candidate;
output `score` [rows]). Out: `artifacts/engines/<scorer>.<precision>.plan`, and in the manifest
`engines["<scorer>.<precision>"]`: file, sha256, build settings and held-out AUC against FP32.
`--install PRECISION` copies each scorer's engine of that precision to the newest version directory
of its GPU-profile model as `model.plan` (`export.repository.versions_folder`), unless it missed
its AUC bar; the model's config.pbtxt is the repository writer's business, not this module's.

Builder: the TensorRT Python API when `import tensorrt` works, else `trtexec` on PATH, else the
command stops with a one-line error. TensorRT is imported inside the functions that use it, never
at import, so the profile choice, the calibration batching, the trtexec command line and the AUC
bar are unit-tested on machines without it. This module imports only numpy and what
`cascade.settings` / `export.repository` need, and runs on Python 3.10, as in the engines image
(docker/Dockerfile.engines: NGC TensorRT 24.10, the TensorRT release the Triton image serves; a
plan runs only on the TensorRT release and GPU model that built it).

Profiles: one per engine over the candidate dimension: min 1 row, opt the typical rows of one
request (pre-rank: every recall channel's default quota, CASCADE_RECALL_ANN_K + _I2I_K +
_POPULAR_K; rank: CASCADE_PRERANK_KEEP), max CASCADE_GPU_MAX_ROWS, the most rows Triton hands the
scorer in one execution (its max_batch_size); opt is capped at max. The other dims come from the spec.

INT64: the id inputs (user_cat, item_id, item_cat, hist_item, hist_cat, ctx) are int64, as the spec
and Triton's config say, and the graphs are not cast to int32. TensorRT takes INT64 network inputs
from 10.0 on: the Python API path refuses an older TensorRT with a message; through trtexec an older
one fails in its ONNX parser, and its output ends the error.

INT8: implicit quantization, the INT8 flag plus FP16 (layers without an INT8 kernel then run in
FP16, not FP32), calibrated by `IInt8EntropyCalibrator2` on artifacts/calibration.npz
(export/calibrate.py) in fixed batches of `--calibration-batch` rows, file order, the last partial
batch dropped; a calibration profile of exactly that shape, as TensorRT calibrates a dynamic-shape
network at its calibration profile. TensorRT 10.1+ deprecates calibrators for explicit Q/DQ graphs;
they still work. The calibration cache lies beside the engine, named by a hash of the graph's and
the calibration file's sha256 and the batch size: reused for the same graph and rows, never after a
re-export. trtexec cannot calibrate from data, so INT8 through trtexec needs that cache from an
earlier Python API build, and stops with a message without it.

Device buffers (calibration batches, the AUC check's engine runs): the CUDA runtime library through
ctypes (cudaMalloc/cudaMemcpy/cudaFree on libcudart, which every TensorRT image has), since the
engines image has none of cuda-python, cupy or a CUDA torch.

Quality: each engine scores held-out rows, chosen and assembled as `python -m export.evaluate`
does (export.eval_scorers.held_out_rows and score_rows, export.train.RowFeatures), beside its row
graph in FP32 ONNX Runtime: ΔAUC = AUC(fp32) - AUC(engine) must be ≤ 0.0005 for FP16 and ≤ 0.002
for INT8; a missed bar makes the command exit 1. Measured only with the TensorRT Python API and the
export's torch and onnxruntime importable; otherwise the entry's AUC fields are null, with the reason.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cascade.artifacts import ArtifactPaths, Manifest, sha256_file
from cascade.metrics import roc_auc
from cascade.settings import Settings, settings_or_report
from cascade.specs import SCORE, USER_ROW, ModelSpec, prerank_spec, rank_spec, triton_scorer
from cascade.triton.layout import PLAN_FILE, SCORERS
from export.repository import scorer_versions, versions_folder

Precision = Literal["fp16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp16", "int8")
AUC_BARS: dict[str, float] = {"fp16": 0.0005, "int8": 0.002}  # largest AUC drop against FP32
BUILDER_FLAGS: dict[str, tuple[str, ...]] = {"fp16": ("FP16",), "int8": ("INT8", "FP16")}  # trt.BuilderFlag names
DEFAULT_WORKSPACE_BYTES = 1 << 30
DEFAULT_CALIBRATION_BATCH = 256
HELD_OUT_ROWS = 100_000
HELD_OUT_BATCH = 8_192
TRTEXEC = "trtexec"
MIN_TENSORRT_MAJOR = 10  # INT64 network inputs

Shape = tuple[int, ...]
ProfileShapes = tuple[Shape, Shape, Shape]  # min, opt, max
SPECS: dict[str, Callable[[int], ModelSpec]] = {"prerank": prerank_spec, "rank": rank_spec}


# --- optimisation profiles -----------------------------------------------------------------------
def row_spec(scorer: str, history_len: int) -> ModelSpec:
    """The inputs of `scorer`'s row graph (and engine): its Triton inputs, without `user_row`."""
    if scorer not in SPECS:
        raise ValueError(f"unknown scorer {scorer!r}; the scorers are {', '.join(SPECS)}")
    return triton_scorer(SPECS[scorer](history_len))


def profile_rows(scorer: str, settings: Settings) -> tuple[int, int, int]:
    """(min, opt, max) rows of `scorer`'s profile: 1, one typical request's candidates (capped at
    max), CASCADE_GPU_MAX_ROWS (what Triton's dynamic batcher may put in one execution)."""
    typical = {
        "prerank": settings.recall_ann_k + settings.recall_i2i_k + settings.recall_popular_k,
        "rank": settings.prerank_keep,
    }
    if scorer not in typical:
        raise ValueError(f"unknown scorer {scorer!r}; the scorers are {', '.join(typical)}")
    return 1, min(typical[scorer], settings.gpu_max_rows), settings.gpu_max_rows


def optimisation_profile(spec: ModelSpec, rows: tuple[int, int, int]) -> dict[str, ProfileShapes]:
    """Each input's (min, opt, max) shape: the row dimension from `rows`, the rest the spec's dims."""
    if len(rows) != 3 or any(not isinstance(r, (int, np.integer)) or r < 1 for r in rows):
        raise ValueError(f"profile rows must be three integers >= 1 (min, opt, max), got {rows!r}")
    low, opt, high = (int(r) for r in rows)
    if not low <= opt <= high:
        raise ValueError(f"profile rows must satisfy min <= opt <= max, got min {low}, opt {opt}, max {high}")
    if USER_ROW in spec.inputs:
        raise ValueError(f"{spec.name}: an engine takes the row graph's inputs (triton_scorer(spec)), not {USER_ROW.name}")
    variable = [t.name for t in spec.inputs if -1 in t.dims]
    if variable:
        raise ValueError(f"{spec.name}: inputs {variable} have a variable per-row dim; a profile needs them fixed")
    return {t.name: ((low, *t.dims), (opt, *t.dims), (high, *t.dims)) for t in spec.inputs}


# --- calibration ---------------------------------------------------------------------------------
class CalibrationBatcher:
    """Fixed-size batches of a scorer's inputs from the calibration rows, in row order.

    Each batch is {input name: C-contiguous array of the spec's dtype, [batch_size, *dims]}. A
    TensorRT calibrator takes one batch shape, so the last partial batch is dropped (not padded:
    padding rows would enter the activation histograms)."""

    def __init__(self, features: dict[str, np.ndarray], spec: ModelSpec, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"calibration batch size must be >= 1, got {batch_size}")
        missing = [name for name in spec.input_names if name not in features]
        if missing:
            raise ValueError(f"calibration set lacks {spec.name} inputs {missing} (it has {sorted(features)})")
        rows = {t.name: len(features[t.name]) for t in spec.inputs}
        if len(set(rows.values())) != 1:
            raise ValueError(f"calibration tensors have different row counts: {rows}")
        for t in spec.inputs:
            if features[t.name].shape[1:] != t.dims:
                raise ValueError(f"calibration {t.name}: per-row shape {list(features[t.name].shape[1:])} != spec {list(t.dims)}")
        self.rows = next(iter(rows.values()))
        if self.rows < batch_size:
            raise ValueError(f"calibration set has {self.rows} rows, fewer than one batch of {batch_size}")
        self.spec, self.batch_size = spec, batch_size
        self._features = {t.name: features[t.name] for t in spec.inputs}

    @classmethod
    def from_file(cls, path: Path, spec: ModelSpec, batch_size: int) -> CalibrationBatcher:
        """The calibration set `export.calibrate.write_calibration_set` wrote (.npz, no pickle)."""
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `python -m export` first (it writes the calibration set)")
        with np.load(path, allow_pickle=False) as z:
            features = {name: z[name] for name in z.files}
        return cls(features, spec, batch_size)

    def __len__(self) -> int:
        return self.rows // self.batch_size

    @property
    def rows_used(self) -> int:
        return len(self) * self.batch_size

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for lo in range(0, self.rows_used, self.batch_size):
            yield {
                t.name: np.ascontiguousarray(self._features[t.name][lo : lo + self.batch_size], dtype=t.dtype)
                for t in self.spec.inputs
            }


def calibration_cache_path(engine: Path, onnx_sha256: str, calibration_sha256: str, batch_size: int) -> Path:
    """`<engine stem>.<key>.calib` beside the engine, `key` naming the graph, the rows and the batch."""
    key = hashlib.sha256(f"{onnx_sha256}:{calibration_sha256}:{batch_size}".encode()).hexdigest()[:16]
    return engine.with_name(f"{engine.stem}.{key}.calib")


def entropy_calibrator(batches: CalibrationBatcher, cache: Path) -> Any:
    """A `tensorrt.IInt8EntropyCalibrator2` over `batches`; reads `cache` when it exists (TensorRT
    then skips calibration) and writes it after calibrating. Imports TensorRT; needs a GPU."""
    trt = _import_tensorrt()
    buffers = _DeviceBuffers(_CudaRuntime())

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = iter(batches)
            self.buffers = buffers

        def get_batch_size(self) -> int:
            return batches.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None
            return [buffers.host_to_device(name, batch[name]) for name in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.exists() else None

        def write_calibration_cache(self, data: Any) -> None:
            cache.write_bytes(bytes(data))

    return EntropyCalibrator()


# --- trtexec ------------------------------------------------------------------------------------
def _shapes_arg(profile: dict[str, ProfileShapes], which: int) -> str:
    return ",".join(f"{name}:{'x'.join(str(d) for d in shapes[which])}" for name, shapes in profile.items())


def trtexec_argv(
    onnx: Path, engine: Path, precision: Precision, profile: dict[str, ProfileShapes],
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES, calibration_cache: Path | None = None, trtexec: str = TRTEXEC,
) -> list[str]:
    """trtexec's command line for the build `build_engine` makes with the Python API. INT8 takes the
    calibration cache (trtexec does not calibrate from data)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and calibration_cache is None:
        raise ValueError("INT8 through trtexec needs a calibration cache (--calib); trtexec cannot calibrate from data")
    mib = -(-workspace_bytes // (1 << 20))
    argv = [
        trtexec, f"--onnx={onnx}", f"--saveEngine={engine}",
        *(f"--{shapes}Shapes={_shapes_arg(profile, i)}" for i, shapes in enumerate(("min", "opt", "max"))),
        f"--memPoolSize=workspace:{mib}M",
        *(f"--{flag.lower()}" for flag in BUILDER_FLAGS[precision]),
    ]
    if calibration_cache is not None:
        argv.append(f"--calib={calibration_cache}")
    return [*argv, "--skipInference"]


def trtexec_version(output: str) -> str:
    """The TensorRT version trtexec's log names ("TensorRT version: 10.5.0"), or "unknown"."""
    match = re.search(r"TensorRT version:\s*([0-9][0-9.]*)", output)
    return match[1] if match else "unknown"


# --- building -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildSettings:
    """How an engine was built: what its manifest entry records besides its hash and its quality."""

    precision: Precision
    workspace_bytes: int
    profile: dict[str, ProfileShapes]
    tensorrt_version: str
    builder: str  # "tensorrt" (the Python API) | "trtexec"
    onnx: str  # the row graph's file name
    onnx_sha256: str
    seconds: float
    calibration: dict | None = None  # int8: file, sha256, rows, batch, cache, calibrator


def available_builder() -> str:
    """"tensorrt" when the Python API imports, else "trtexec" when it is on PATH; RuntimeError otherwise."""
    try:
        _import_tensorrt()
        return "tensorrt"
    except ImportError as err:
        reason = str(err)
    if shutil.which(TRTEXEC):
        return "trtexec"
    raise RuntimeError(
        f"neither the TensorRT Python API ({reason}) nor {TRTEXEC} on PATH: build the engines where TensorRT is, "
        "e.g. docker/Dockerfile.engines"
    )


def build_engine(
    onnx_path: Path, spec: ModelSpec, rows: tuple[int, int, int], precision: Precision, out_path: Path,
    calibration: Path | None = None, *, calibration_batch: int = DEFAULT_CALIBRATION_BATCH,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
) -> BuildSettings:
    """Build `out_path` from the row graph `onnx_path` (inputs `spec`, rows per `profile_rows`);
    INT8 is calibrated on the calibration set at `calibration`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    builder = available_builder()
    if not onnx_path.exists():
        raise FileNotFoundError(f"{onnx_path} not found: run `python -m export` first (it writes the row graphs)")
    profile = optimisation_profile(spec, rows)
    onnx_sha256 = sha256_file(onnx_path)
    calibrated, recorded = None, None
    if precision == "int8":
        if calibration is None:
            raise ValueError("INT8 needs the calibration set (artifacts/calibration.npz)")
        batches = CalibrationBatcher.from_file(calibration, spec, calibration_batch)
        calibration_sha256 = sha256_file(calibration)
        cache = calibration_cache_path(out_path, onnx_sha256, calibration_sha256, calibration_batch)
        calibrated = (batches, cache)
        recorded = {"file": calibration.name, "sha256": calibration_sha256, "rows": batches.rows_used,
                    "batch": calibration_batch, "cache": cache.name, "calibrator": "IInt8EntropyCalibrator2"}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if builder == "tensorrt":
        version = _build_with_api(onnx_path, out_path, precision, profile, workspace_bytes, calibrated)
    else:
        cache = calibrated[1] if calibrated else None
        if cache is not None and not cache.exists():
            raise RuntimeError(
                f"INT8 through trtexec needs the calibration cache {cache} (trtexec does not calibrate from data): "
                "build INT8 once with the TensorRT Python API on this graph and calibration set"
            )
        version = _build_with_trtexec(trtexec_argv(onnx_path, out_path, precision, profile, workspace_bytes, cache))
    seconds = time.perf_counter() - started
    return BuildSettings(precision, workspace_bytes, profile, version, builder, onnx_path.name, onnx_sha256, seconds, recorded)


def _build_with_api(
    onnx_path: Path, out_path: Path, precision: Precision, profile: dict[str, ProfileShapes], workspace_bytes: int,
    calibrated: tuple[CalibrationBatcher, Path] | None,
) -> str:
    """Parse, configure, build and serialise with the TensorRT Python API; returns its version."""
    trt = _import_tensorrt()
    if int(trt.__version__.split(".")[0]) < MIN_TENSORRT_MAJOR:
        raise RuntimeError(
            f"TensorRT {trt.__version__}: the scorers take INT64 inputs, which TensorRT accepts from "
            f"{MIN_TENSORRT_MAJOR}.0; use a TensorRT {MIN_TENSORRT_MAJOR}+ image (NGC 24.xx)"
        )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch: the only mode of TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    inputs = sorted(network.get_input(i).name for i in range(network.num_inputs))
    if inputs != sorted(profile):
        raise RuntimeError(f"{onnx_path}: inputs {inputs} are not the row graph's {sorted(profile)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    config.add_optimization_profile(_trt_profile(builder, profile))
    for flag in BUILDER_FLAGS[precision]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    calibrator = None
    if calibrated is not None:
        batches, cache = calibrated
        calibrator = entropy_calibrator(batches, cache)
        config.int8_calibrator = calibrator
        batch = (batches.batch_size,) * 3
        config.set_calibration_profile(_trt_profile(builder, optimisation_profile(batches.spec, batch)))
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.buffers.close()
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build {out_path.name}; its log above says why")
    with out_path.open("wb") as f:
        f.write(serialized)
    return str(trt.__version__)


def _trt_profile(builder: Any, profile: dict[str, ProfileShapes]) -> Any:
    trt_profile = builder.create_optimization_profile()
    for name, (low, opt, high) in profile.items():
        trt_profile.set_shape(name, low, opt, high)
    return trt_profile


def _build_with_trtexec(argv: list[str]) -> str:
    """Run trtexec; returns the TensorRT version its log names."""
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise RuntimeError(f"trtexec failed (exit {done.returncode}): {tail}")
    return trtexec_version(done.stdout + done.stderr)


def _import_tensorrt() -> Any:
    import tensorrt

    return tensorrt


# --- device buffers -----------------------------------------------------------------------------
class _CudaRuntime:
    """cudaMalloc / cudaMemcpy / cudaFree of libcudart, through ctypes."""

    HOST_TO_DEVICE, DEVICE_TO_HOST = 1, 2  # cudaMemcpyKind

    def __init__(self) -> None:
        import ctypes
        import ctypes.util

        self._c = ctypes
        errors = []
        for name in filter(None, (ctypes.util.find_library("cudart"), "libcudart.so", "libcudart.so.12")):
            try:
                self._lib = ctypes.CDLL(name)
                return
            except OSError as err:
                errors.append(str(err))
        raise RuntimeError(f"cannot load the CUDA runtime library (libcudart): {'; '.join(errors)}")

    def _call(self, function: str, *args: Any) -> None:
        status = getattr(self._lib, function)(*args)
        if status != 0:
            raise RuntimeError(f"{function} failed: CUDA error {status}")

    def malloc(self, nbytes: int) -> int:
        pointer = self._c.c_void_p()
        self._call("cudaMalloc", self._c.byref(pointer), self._c.c_size_t(max(nbytes, 1)))
        return int(pointer.value)

    def copy(self, destination: int, source: int, nbytes: int, kind: int) -> None:
        c = self._c
        self._call("cudaMemcpy", c.c_void_p(destination), c.c_void_p(source), c.c_size_t(nbytes), c.c_int(kind))

    def free(self, pointer: int) -> None:
        self._call("cudaFree", self._c.c_void_p(pointer))


class _DeviceBuffers:
    """One device buffer per tensor name, grown when a larger array comes; freed by `close`."""

    def __init__(self, cuda: _CudaRuntime) -> None:
        self._cuda = cuda
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (address, bytes)

    def reserve(self, name: str, nbytes: int) -> int:
        address, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if address:
                self._cuda.free(address)
            address, size = self._cuda.malloc(nbytes), nbytes
            self._buffers[name] = (address, size)
        return address

    def host_to_device(self, name: str, array: np.ndarray) -> int:
        address = self.reserve(name, array.nbytes)
        self._cuda.copy(address, array.ctypes.data, array.nbytes, _CudaRuntime.HOST_TO_DEVICE)
        return address

    def device_to_host(self, name: str, out: np.ndarray) -> np.ndarray:
        self._cuda.copy(out.ctypes.data, self._buffers[name][0], out.nbytes, _CudaRuntime.DEVICE_TO_HOST)
        return out

    def close(self) -> None:
        for address, _ in self._buffers.values():
            self._cuda.free(address)
        self._buffers.clear()


# --- quality ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AucComparison:
    """An engine's AUC against FP32's on the same held-out rows, and its precision's bar."""

    precision: str
    auc: float
    fp32_auc: float
    rows: int

    @property
    def bar(self) -> float:
        return AUC_BARS[self.precision]

    @property
    def delta_auc(self) -> float:
        """The AUC lost to the engine's precision (negative: it gained)."""
        return self.fp32_auc - self.auc

    @property
    def within_bar(self) -> bool:
        return bool(self.delta_auc <= self.bar)  # False when either AUC is NaN (one class)

    def entry(self) -> dict:
        return {"auc": self.auc, "fp32_auc": self.fp32_auc, "delta_auc": self.delta_auc, "bar": self.bar,
                "within_bar": self.within_bar, "held_out_rows": self.rows}


def compare_auc(precision: str, fp32_scores: np.ndarray, engine_scores: np.ndarray, labels: np.ndarray) -> AucComparison:
    if precision not in AUC_BARS:
        raise ValueError(f"precision must be one of {sorted(AUC_BARS)}, got {precision!r}")
    if not len(fp32_scores) == len(engine_scores) == len(labels):
        lengths = f"fp32 {len(fp32_scores)}, engine {len(engine_scores)}, labels {len(labels)}"
        raise ValueError(f"scores and labels differ in length: {lengths}")
    return AucComparison(precision, roc_auc(labels, engine_scores), roc_auc(labels, fp32_scores), len(labels))


def engine_entry(engine: Path, build: BuildSettings, quality: AucComparison | str, built: datetime) -> dict:
    """The manifest's `engines["<scorer>.<precision>"]`; `quality` is the comparison, or why there is none."""
    measured = quality.entry() if isinstance(quality, AucComparison) else {
        "auc": None, "fp32_auc": None, "delta_auc": None, "bar": AUC_BARS[build.precision], "within_bar": None,
        "held_out_rows": 0, "not_measured": quality,
    }
    return {
        "file": engine.name, "sha256": sha256_file(engine), "bytes": engine.stat().st_size,
        "precision": build.precision, "builder": build.builder, "tensorrt_version": build.tensorrt_version,
        "workspace_bytes": build.workspace_bytes, "onnx": build.onnx, "onnx_sha256": build.onnx_sha256,
        "profile": {name: {"min": list(s[0]), "opt": list(s[1]), "max": list(s[2])} for name, s in build.profile.items()},
        "calibration": build.calibration, "build_seconds": round(build.seconds, 3),
        "built": built.astimezone(timezone.utc).isoformat(timespec="seconds"), **measured,
    }


class EngineScorer:
    """An engine run by the TensorRT runtime, called like export.eval_scorers.OnnxModel (row tensors
    in, float32 scores out), so `score_rows` scores it beside the FP32 graph. Imports TensorRT."""

    def __init__(self, path: Path, spec: ModelSpec, max_rows: int) -> None:
        trt = _import_tensorrt()
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise RuntimeError(f"{path}: TensorRT {trt.__version__} cannot load this engine")
        self._context = self._engine.create_execution_context()
        self._buffers = _DeviceBuffers(_CudaRuntime())
        self.spec, self.max_rows = spec, max_rows

    def __call__(self, features: dict[str, np.ndarray], batch: int = HELD_OUT_BATCH) -> np.ndarray:
        n = len(features[self.spec.input_names[0]])
        step = min(batch, self.max_rows)
        parts = [self._run({name: features[name][lo : lo + step] for name in self.spec.input_names}) for lo in range(0, n, step)]
        return np.concatenate(parts) if parts else np.empty(0, np.float32)

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        for t in self.spec.inputs:
            array = np.ascontiguousarray(feed[t.name], dtype=t.dtype)
            self._context.set_input_shape(t.name, array.shape)
            self._context.set_tensor_address(t.name, self._buffers.host_to_device(t.name, array))
        scores = np.empty(len(feed[self.spec.input_names[0]]), np.float32)
        self._context.set_tensor_address(SCORE.name, self._buffers.reserve(SCORE.name, scores.nbytes))
        if not self._context.execute_async_v3(0):  # the default stream: the blocking copy back waits for it
            raise RuntimeError("TensorRT failed to run the engine")
        return self._buffers.device_to_host(SCORE.name, scores)

    def close(self) -> None:
        self._buffers.close()


class HeldOut:
    """Held-out rows, labels and their feature assembly, as `python -m export.evaluate` gets them.

    `load` imports the export's training side (torch) and ONNX Runtime: ImportError where they are
    missing, which the command reports as "AUC not measured"."""

    def __init__(self, settings: Settings, cap: int) -> None:
        from cascade.features import FeatureTables
        from export.datasets import load_dataset, split_log
        from export.eval_scorers import held_out_rows
        from export.train import RowFeatures

        paths = ArtifactPaths(settings.artifacts_dir)
        dataset, manifest = load_dataset(settings), Manifest.read(paths.manifest)
        if (dataset.name, dataset.n_users, dataset.n_items) != (manifest.dataset, manifest.n_users, manifest.n_items):
            raise ValueError(
                f"settings give dataset {dataset.name!r} ({dataset.n_users} users, {dataset.n_items} items), the export at "
                f"{paths.root} used {manifest.dataset!r} ({manifest.n_users}, {manifest.n_items}): set its CASCADE_* variables"
            )
        log = dataset.interactions
        test_mask = split_log(log, settings).test
        self.rows = held_out_rows(test_mask, cap, settings.seed)
        self.labels = log.label[self.rows]
        self.features = RowFeatures(FeatureTables.load(paths.tables), log)

    def compare(self, fp32_graph: Path, engines: dict[str, EngineScorer]) -> dict[str, AucComparison]:
        """Each engine (by precision) against `fp32_graph` in FP32 ONNX Runtime, on the same rows."""
        from export.eval_scorers import OnnxModel, score_rows

        models: dict[str, Any] = {"fp32": OnnxModel(fp32_graph), **engines}
        scores, _ = score_rows(models, self.features, self.rows, HELD_OUT_BATCH)
        return {p: compare_auc(p, scores["fp32"], scores[p], self.labels) for p in engines}


# --- the command ----------------------------------------------------------------------------------
def engine_file(paths: ArtifactPaths, scorer: str, precision: str) -> Path:
    return paths.root / "engines" / f"{scorer}.{precision}.plan"


def install_engine(engine: Path, model_root: Path, scorer: str) -> Path:
    """Copy `engine` as `model.plan` into the newest version directory of `scorer`'s GPU-profile model."""
    versions = scorer_versions(model_root, scorer, "gpu")
    folder = versions_folder(model_root, scorer, "gpu")
    if not versions:
        raise FileNotFoundError(f"{folder} has no version directory: run `CASCADE_TRITON_PROFILE=gpu python -m export` first")
    target = folder / str(versions[-1]) / PLAN_FILE
    shutil.copy2(engine, target)
    return target


@dataclass(frozen=True)
class Options:
    scorers: tuple[str, ...] = SCORERS
    precisions: tuple[Precision, ...] = PRECISIONS
    install: Precision | None = None
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES
    calibration_batch: int = DEFAULT_CALIBRATION_BATCH
    held_out_rows: int = HELD_OUT_ROWS


def build_all(settings: Settings, options: Options) -> tuple[Manifest, bool]:
    """Build, measure and record every (scorer, precision) engine; install one precision if asked.
    Returns the manifest and whether every measured engine met its AUC bar."""
    builder = available_builder()  # before reading anything: the one error this machine gives
    paths = ArtifactPaths(settings.artifacts_dir)
    manifest = Manifest.read(paths.manifest)
    held_out: HeldOut | str = "running an engine needs the TensorRT Python API (only trtexec here)"
    if builder == "tensorrt" and options.precisions:
        try:
            held_out = HeldOut(settings, options.held_out_rows)
        except ImportError as err:
            held_out = f"the AUC check needs the export's dependencies: {err}"
    all_met = True
    for scorer in options.scorers:
        entries = _build_scorer(settings, options, paths, scorer, held_out)
        all_met &= all(e["within_bar"] is not False for e in entries.values())
        manifest = replace(manifest, engines={**manifest.engines, **entries})
        manifest.write(paths.manifest)
    if options.install is not None:
        _install(settings, paths, manifest, options)
    return manifest, all_met


def _build_scorer(
    settings: Settings, options: Options, paths: ArtifactPaths, scorer: str, held_out: HeldOut | str
) -> dict[str, dict]:
    spec = row_spec(scorer, settings.history_len)
    rows = profile_rows(scorer, settings)
    builds = {}
    for precision in options.precisions:
        engine = engine_file(paths, scorer, precision)
        builds[precision] = build = build_engine(
            paths.onnx(f"{scorer}.rows"), spec, rows, precision, engine, paths.calibration,
            calibration_batch=options.calibration_batch, workspace_bytes=options.workspace_bytes,
        )
        print(f"engine: {scorer}.{precision} -> {engine} ({build.builder}, TensorRT {build.tensorrt_version}, "
              f"rows {'/'.join(map(str, rows))}, {build.seconds:.1f}s)", flush=True)
    quality: dict[str, AucComparison | str] = dict.fromkeys(builds, held_out) if isinstance(held_out, str) else {}
    if isinstance(held_out, HeldOut) and builds:
        runners = {p: EngineScorer(engine_file(paths, scorer, p), spec, rows[2]) for p in builds}
        try:
            quality.update(held_out.compare(paths.onnx(f"{scorer}.rows"), runners))
        finally:
            for runner in runners.values():
                runner.close()
    built = datetime.now(timezone.utc)
    entries = {}
    for precision, build in builds.items():
        engine = engine_file(paths, scorer, precision)
        entries[f"{scorer}.{precision}"] = entry = engine_entry(engine, build, quality[precision], built)
        print(f"auc: {scorer}.{precision} {_quality_line(entry)}", flush=True)
    return entries


def _quality_line(entry: dict) -> str:
    if entry["within_bar"] is None:
        return f"not measured ({entry['not_measured']})"
    verdict = "met" if entry["within_bar"] else "NOT MET"
    return (f"{entry['auc']:.4f} vs fp32 {entry['fp32_auc']:.4f} on {entry['held_out_rows']} held-out rows: "
            f"ΔAUC {entry['delta_auc']:+.4f}, bar {entry['bar']} {verdict}")


def _install(settings: Settings, paths: ArtifactPaths, manifest: Manifest, options: Options) -> None:
    for scorer in options.scorers:
        key, engine = f"{scorer}.{options.install}", engine_file(paths, scorer, options.install)
        entry = manifest.engines.get(key)
        if entry is None or not engine.exists():
            raise FileNotFoundError(f"no {key} engine to install: build it (--precision {options.install})")
        if entry["within_bar"] is False:
            raise RuntimeError(f"{key} missed its AUC bar (ΔAUC {entry['delta_auc']:.4f} > {entry['bar']}): not installed")
        print(f"install: {key} -> {install_engine(engine, settings.model_repository, scorer)}", flush=True)


def _names(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """argparse type: a comma-separated list of `allowed` names."""
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        unknown = [n for n in names if n not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(allowed)}, got {text!r}")
        return names
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.tensorrt", description=__doc__.splitlines()[0])
    parser.add_argument("--precision", type=_names(PRECISIONS), default=PRECISIONS, help="engines to build (default fp16,int8)")
    parser.add_argument("--scorers", type=_names(SCORERS), default=SCORERS, help="scorers to build (default prerank,rank)")
    parser.add_argument("--install", choices=PRECISIONS, help="copy that precision's engines into the model repository")
    parser.add_argument("--workspace-mib", type=int, default=DEFAULT_WORKSPACE_BYTES >> 20, help="builder workspace (default 1024)")
    parser.add_argument("--calibration-batch", type=int, default=DEFAULT_CALIBRATION_BATCH, help="INT8 calibration rows per batch")
    parser.add_argument("--held-out-rows", type=int, default=HELD_OUT_ROWS, help="held-out rows for the AUC check")
    args = parser.parse_args(argv)
    settings = settings_or_report()
    if settings is None:
        return 2
    options = Options(
        args.scorers, args.precision, args.install, args.workspace_mib << 20, args.calibration_batch, args.held_out_rows
    )
    try:
        _, all_met = build_all(settings, options)
    except (RuntimeError, ValueError, FileNotFoundError) as err:
        print(f"export.tensorrt: {err}", file=sys.stderr)
        return 1
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
