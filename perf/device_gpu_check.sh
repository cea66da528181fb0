#!/usr/bin/env bash
# The GPU checks that fit one call on a lent H200 (the `device` tool), within its image: torch CUDA,
# numpy, onnx, onnxruntime (CPU), pytest; no tritonserver, faiss or TensorRT there. The tests'
# conftest needs pydantic, pytest-asyncio and redis (with pytest and pluggy at matching versions), carried as wheels in .whl/ (perf/README.md, "GPU checks on a lent H200").
#   1. tests/gpu under --require-cuda: torch recall on CUDA (overlap with the CPU's exact search,
#      concurrent searches), the row graph on CUDA against CPU ONNX (FP32 1e-4, FP16 tau);
#   2. scorer p50/p99 at 512 candidates: CPU ONNX Runtime against the row graph on CUDA, FP32 and FP16;
#   3. exact top-1,000 recall over 1M synthetic items on CUDA (and on the CPU, for scale), and
#      top-20 over 1M on CUDA (issue 12's user look-alike search at that size).
# Everything lands in $OUT (the device tool brings it back). Exit status: the GPU tests'.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
python3 -c "import torch, numpy, onnxruntime; print('torch', torch.__version__, 'numpy', numpy.__version__, 'onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())" 2>&1 | tee -a "$OUT/gpu.txt"
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python3 -m pytest -q tests/gpu -p no:cacheprovider -p pytest_asyncio.plugin --require-cuda 2>&1 | tee "$OUT/gpu_tests.log"
tests=$?
python3 -m perf.bench_gpu_scorers --device cuda --rows 512 --json "$OUT/scorers.json" 2>&1 | tee "$OUT/scorers.log"
python3 -m perf.bench_recall --backend torch-cuda --items 1000000 --calls 300 2>&1 | tee "$OUT/recall_1m_cuda.txt"
python3 -m perf.bench_recall --backend torch-cuda --items 1000000 --k 20 --calls 300 2>&1 | tee "$OUT/recall_1m_k20_cuda.txt"
python3 -m perf.bench_recall --backend exact-cpu --items 1000000 --calls 20 2>&1 | tee "$OUT/recall_1m_cpu.txt"
exit $tests
