"""`make gpu-smoke`: the GPU path end to end, on a machine with CUDA; it fails (never skips) without.

    python -m perf.gpu_smoke --out perf/results/gpu_smoke.json [--backend python] [--work DIR]

1. a small export on the gpu profile (`CASCADE_TRITON_PROFILE=gpu`, scorers on `--backend`: `python`
   (torch CUDA, what nvidia-pytriton's tritonserver can run), `onnxruntime` or `tensorrt` in the NGC image);
2. the scorers in process on CUDA against the CPU profile's ONNX on held-out rows: FP32 within 1e-4,
   FP16 with Kendall tau >= 0.99 and delta AUC <= 0.0005, and p50 at batch 512, GPU against CPU;
3. the stack (`orchestrator.stack`: redis, tritonserver with KIND_GPU scorers, the orchestrator with
   recall on the GPU): both pipelines against the CPU ONNX (FP32 within 1e-4), then a short
   closed-loop load (`perf.loadgen`, 1/4/16 connections) with its degraded shares, and
   perf_analyzer on the rank pipeline where its binary runs;
4. recall: exact top-1,000 over 1M synthetic items on the GPU (`perf.bench_recall`), p50/p99;
5. every figure into `--out` (JSON). Exit 0 only when every check passed.

`--cpu-dry-run` checks the script's plumbing on a machine without a GPU: the same steps with the
scorers and recall on the CPU and the scorers' instances KIND_CPU. Its JSON says `dry_run`; it is
never the GPU check.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cascade.artifacts import ArtifactPaths
from cascade.metrics import kendall_tau
from cascade.servers.process import free_port
from cascade.settings import Settings
from cascade.specs import prerank_spec, rank_spec, triton_scorer
from cascade.triton.config import on_cpu, parse, render

SPECS = {"prerank": prerank_spec, "rank": rank_spec}
FP32_TOLERANCE = 1e-4
FP16_TAU = 0.99
BATCH = 512


def cuda_device() -> str | None:
    """The first CUDA device torch sees, by name; None without torch or CUDA."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def smoke_overrides(work: Path, backend: str) -> dict[str, object]:
    """A small export on the gpu profile, every server on a free port, everything under `work`."""
    return {
        "n_users": 2_000, "n_items": 20_000, "n_interactions": 200_000, "epochs": 1, "distill_epochs": 2,
        "retrieval_epochs": 3, "artifacts_dir": work / "artifacts", "model_repository": work / "model_repository",
        "ensemble_repository": work / "ensemble", "run_dir": work / "run", "triton_profile": "gpu",
        "gpu_scorer_backend": backend, "gpu_precision": "fp32", "triton_http_port": free_port(),
        "triton_grpc_port": free_port(), "triton_metrics_port": free_port(), "redis_port": free_port(), "port": free_port(),
    }


def environment(overrides: dict[str, object]) -> dict[str, str]:
    """The overrides as CASCADE_* variables, for the stack's and the tools' processes."""
    return {**os.environ, **{f"CASCADE_{name.upper()}": str(value) for name, value in overrides.items()}}


def scorer_checks(settings: Settings, rows_cap: int, device: str) -> dict:
    """Each scorer on CUDA (FP32, FP16) against the CPU profile's ONNX on the same held-out rows."""
    from export.eval_scorers import OnnxModel, score_rows
    from export.onnx_export import row_graph_path
    from export.tensorrt import HeldOut, compare_auc
    from cascade.triton.torch_rows import TorchRowScorer
    from perf.bench_gpu_scorers import timed_ms

    paths = ArtifactPaths(settings.artifacts_dir)
    held = HeldOut(settings, rows_cap)
    out = {}
    for name, spec_of in SPECS.items():
        names = triton_scorer(spec_of(settings.history_len)).input_names
        program = row_graph_path(paths.onnx(name).parent, name, ".pt2")
        cpu = OnnxModel(paths.onnx(name))
        gpu32, gpu16 = TorchRowScorer(program, names, device), TorchRowScorer(program, names, device, fp16=True)
        models = {"cpu": cpu, "gpu_fp32": lambda f, b=0, s=gpu32: s(f), "gpu_fp16": lambda f, b=0, s=gpu16: s(f)}
        scores, _ = score_rows(models, held.features, held.rows, 4_096)
        fp16 = compare_auc("fp16", scores["cpu"], scores["gpu_fp16"], held.labels)
        batch = {k: v.numpy() for k, v in held.features(held.rows[:BATCH]).items()}
        out[name] = {
            "rows": int(len(held.rows)),
            "fp32_max_abs_diff": float(np.max(np.abs(scores["gpu_fp32"] - scores["cpu"]))),
            "fp16_kendall_tau": float(kendall_tau(scores["cpu"], scores["gpu_fp16"])),
            "fp16": fp16.entry(),
            f"p50_ms_batch_{BATCH}": {"cpu_onnxruntime": timed_ms(lambda: cpu(batch), 50)[0],
                                      "gpu_fp32": timed_ms(lambda: gpu32(batch), 50)[0],
                                      "gpu_fp16": timed_ms(lambda: gpu16(batch), 50)[0]},
        }
        out[name]["passed"] = bool(out[name]["fp32_max_abs_diff"] <= FP32_TOLERANCE
                                   and out[name]["fp16_kendall_tau"] >= FP16_TAU and fp16.within_bar)
    return out


def pipeline_checks(settings: Settings, users: int = 5) -> dict:
    """Both pinned pipelines of the running tritonserver against the CPU ONNX on the same features."""
    import tritonclient.grpc as grpcclient

    from cascade.features import FeatureTables, as_rows, assemble_requests
    from cascade.triton.layout import pipeline_name
    from export.onnx_export import session
    from orchestrator.clients.triton import request_arrays

    paths = ArtifactPaths(settings.artifacts_dir)
    tables, histories = FeatureTables.load(paths.tables), np.load(paths.user_history)
    client = grpcclient.InferenceServerClient(settings.triton_grpc_url)
    rng, out = np.random.default_rng(0), {}
    for name, spec_of in SPECS.items():
        spec, worst = spec_of(settings.history_len), 0.0
        for user in range(users):
            items = rng.choice(tables.n_items, 1_000, replace=False)
            arrays = request_arrays(user, items, histories[user], 1_700_000_000)
            inputs = []
            for key, array in arrays.items():
                tensor = grpcclient.InferInput(key, list(array.shape), "INT64")
                tensor.set_data_from_numpy(array)
                inputs.append(tensor)
            served = client.infer(pipeline_name(name, 1), inputs).as_numpy("scores").reshape(-1)
            features, _ = assemble_requests(tables, [(user, items, histories[user], 1_700_000_000)])
            direct = session(paths.onnx(name)).run(["score"], as_rows(features, spec.input_names))[0]
            worst = max(worst, float(np.max(np.abs(served - direct))))
        out[name] = {"max_abs_diff": worst, "passed": worst <= FP32_TOLERANCE}
    return out


def load_test(settings: Settings, env: dict[str, str], results: Path) -> dict:
    """A short closed loop against the orchestrator; every level with its degraded share."""
    subprocess.run(
        [sys.executable, "-m", "perf.loadgen", "--url", f"http://{settings.host}:{settings.port}", "--users",
         f"0:{settings.n_users}", "--concurrency", "1,4,16", "--duration", "10", "--warmup", "50",
         "--results", str(results), "--prefix", "gpu_smoke"],
        env=env, check=True,
    )
    levels = json.loads((results / "gpu_smoke_run.json").read_text())["levels"]
    keep = ("level", "answered_rps", "p50_ms", "p99_ms", "shed", "degraded_share", "ranked_share")
    table = [{k: level.get(k) for k in keep} for level in levels]
    clean = [lv for lv in table if lv["p99_ms"] <= 50 and lv["degraded_share"] <= 0.01]
    return {"levels": table, "sustained_rps": max((lv["answered_rps"] for lv in clean), default=0.0)}


def perf_analyzer(settings: Settings, env: dict[str, str], results: Path) -> dict:
    """perf_analyzer (from the tritonclient wheel, `perf.run_triton`) on the rank pipeline, where its binary runs."""
    run = subprocess.run(
        [sys.executable, "-m", "perf.run_triton", "--url", settings.triton_grpc_url, "--profile", "gpu",
         "--artifacts", str(settings.artifacts_dir), "--models", "rank_pipeline", "--concurrency", "1,4,16",
         "--results", str(results), "--prefix", "gpu_smoke_triton"],
        env=env, capture_output=True, text=True,
    )
    return {"ran": run.returncode == 0, "tail": run.stdout[-2_000:] + run.stderr[-1_000:]}


def recall_bench(items: int, backend: str) -> dict:
    run = subprocess.run(
        [sys.executable, "-m", "perf.bench_recall", "--backend", backend, "--items", str(items), "--calls", "300"],
        capture_output=True, text=True,
    )
    return {"items": items, "backend": backend, "ran": run.returncode == 0, "output": run.stdout[-3_000:] + run.stderr[-1_000:]}


def scorers_on_cpu(model_root: Path) -> None:
    """--cpu-dry-run: the GPU scorers' configs with KIND_CPU instances, for a tritonserver without a GPU."""
    for name in SPECS:
        path = model_root / name / "config.pbtxt"
        path.write_text(render(on_cpu(parse(path.read_text()))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.gpu_smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("perf/results/gpu_smoke.json"))
    parser.add_argument("--backend", choices=("python", "onnxruntime", "tensorrt"), default="python")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cascade-gpu-smoke"))
    parser.add_argument("--held-out-rows", type=int, default=50_000)
    parser.add_argument("--recall-items", type=int, default=1_000_000)
    parser.add_argument("--cpu-dry-run", action="store_true", help="the plumbing on a machine without a GPU (never the GPU check)")
    args = parser.parse_args(argv)
    device = "cpu (dry run)" if args.cpu_dry_run else cuda_device()
    if device is None:
        print("gpu-smoke: no CUDA device (torch is missing or torch.cuda.is_available() is False); "
              "this check runs on a GPU machine and fails here rather than skip", file=sys.stderr)
        return 1
    from export.__main__ import run_export

    overrides = smoke_overrides(args.work.resolve(), args.backend)
    settings, env = Settings(**overrides), environment(overrides)
    report: dict = {"device": device, "dry_run": args.cpu_dry_run, "backend": args.backend,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    print(f"gpu-smoke on {device}: export ({settings.n_users} users, {settings.n_items} items, gpu profile, {args.backend})")
    run_export(settings)
    if args.backend == "tensorrt":
        subprocess.run([sys.executable, "-m", "export.tensorrt", "--precision", "fp16", "--install", "fp16"], env=env, check=True)
    print("gpu-smoke: scorers on CUDA against the CPU ONNX")
    report["scorers"] = scorer_checks(settings, args.held_out_rows, "cpu" if args.cpu_dry_run else "cuda")
    if args.cpu_dry_run:
        scorers_on_cpu(settings.model_repository)
    print("gpu-smoke: the stack (redis, tritonserver with KIND_GPU scorers, the orchestrator)")
    subprocess.run([sys.executable, "-m", "orchestrator.stack", "up"], env=env, check=True)
    try:
        report["pipelines"] = pipeline_checks(settings)
        report["load"] = load_test(settings, env, args.work / "results")
        report["perf_analyzer"] = perf_analyzer(settings, env, args.work / "results")
    finally:
        subprocess.run([sys.executable, "-m", "orchestrator.stack", "down"], env=env)
    print(f"gpu-smoke: recall over {args.recall_items:,} synthetic items")
    report["recall"] = recall_bench(args.recall_items, "torch-cpu" if args.cpu_dry_run else "torch-cuda")
    checks = [*(v["passed"] for v in report["scorers"].values()), *(v["passed"] for v in report["pipelines"].values()),
              report["load"]["sustained_rps"] > 0, report["recall"]["ran"]]
    report["passed"] = all(checks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("device", "passed")}), f"-> {args.out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
