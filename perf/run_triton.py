"""Run perf_analyzer over gRPC against every Triton model and pipeline of an export.

    python -m perf.run_triton --start-server --model-repository M --ensemble-repository E --artifacts A
    python -m perf.run_triton --url 127.0.0.1:8001 --artifacts A

For each model and each concurrency level, one perf_analyzer run (`--concurrency-range c:c`,
time windows of --window-ms, stable when three windows agree within --stability %, at most
--max-trials windows). The default models are the profile's (`--profile`, CASCADE_TRITON_PROFILE):
on `cpu` the fused pipelines, on `gpu` feature_assembly and the ensemble pipelines.
With `--start-server`, each level also reports the server's CPU milliseconds per inference:
tritonserver's and its Python stubs' CPU time over the inferences Triton counted (perf.server_cpu).
A level that does not stabilise is retried once with windows twice as long
and a looser 50 % threshold; if that fails too it is left out and reported. perf_analyzer's
request-count mode is not used as a fallback: it reports count / whole seconds as throughput.

Writes `<results>/<prefix>_<model>.csv` (perf_analyzer's columns, see perf.csvfmt), a markdown
table, a throughput-vs-p99 plot and a JSON note of the run; perf_analyzer's own CSVs and logs,
the input data and the server log go to `<results>/raw/` (git-ignored).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from perf.csvfmt import Row, format_table, from_csv, to_csv
from perf.input_data import MODELS, write_input_data
from perf.loopback import require_loopback_host
from perf.perf_analyzer import PerfAnalyzer, locate
from perf.plot import plot_throughput_latency
from perf.server_cpu import cpu_ms_per_inference, sample
from perf.stackcpu import load_average

PROFILE_MODELS = {
    "cpu": ["prerank_pipeline", "rank_pipeline", "two_stage_p1_r1"],  # the default export's version pair
    "gpu": ["feature_assembly", "prerank_pipeline", "rank_pipeline"],  # the scorers batch rows: through the pipelines
}
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class LevelResult:
    model: str
    concurrency: int
    row: Row | None
    attempt: str  # "stable", "loose" or "failed"
    seconds: float
    detail: str = ""
    cpu_ms_per_infer: float | None = None  # server CPU per inference, when run_triton started the server


@dataclass
class RunConfig:
    window_ms: int = 1000
    stability: int = 20
    max_trials: int = 5
    timeout_s: float = 60.0
    extra_args: list[str] = field(default_factory=list)


def parse_levels(text: str) -> list[int]:
    """'1,2,4,8' or perf_analyzer's 'start:end:step' -> sorted distinct levels."""
    if ":" in text:
        parts = [int(p) for p in text.split(":")]
        start = parts[0]
        end = parts[1] if len(parts) > 1 else start
        step = parts[2] if len(parts) > 2 else 1
        levels = list(range(start, end + 1, step)) if step > 0 else []
    else:
        levels = [int(p) for p in text.split(",") if p.strip()]
    if not levels or min(levels) < 1:
        raise ValueError(f"bad concurrency levels {text!r}")
    return sorted(set(levels))


def perf_args(model: str, url: str, data: Path, level: int, window_ms: int, stability: int, trials: int, csv: Path) -> list[str]:
    return [
        "-m", model, "-i", "grpc", "-u", url, "-b", "1",
        "--input-data", str(data),
        "--concurrency-range", f"{level}:{level}",
        "--measurement-mode", "time_windows", "-p", str(window_ms),
        "-s", str(stability), "-r", str(trials),
        "-f", str(csv),
    ]


def measure_level(pa: PerfAnalyzer, model: str, url: str, data: Path, level: int, cfg: RunConfig, raw: Path) -> LevelResult:
    started = time.perf_counter()
    attempts = [("stable", cfg.window_ms, cfg.stability, cfg.max_trials), ("loose", 2 * cfg.window_ms, 50, 4)]
    detail = ""
    for name, window, stability, trials in attempts:
        stem = raw / f"{model}_c{level}_{name}"
        csv_path, log_path = stem.with_suffix(".csv"), stem.with_suffix(".log")
        csv_path.unlink(missing_ok=True)
        args = perf_args(model, url, data, level, window, stability, trials, csv_path) + cfg.extra_args
        try:
            proc = pa.run(args, capture_output=True, text=True, timeout=cfg.timeout_s)
            output, rc = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as err:
            partial = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x for x in (err.stdout, err.stderr) if x)
            output, rc = f"{partial}\ntimed out after {cfg.timeout_s:.0f}s", -1
        log_path.write_text(" ".join(["perf_analyzer", *args]) + "\n\n" + str(output))
        rows = from_csv(csv_path.read_text()) if csv_path.exists() else []
        if rc == 0 and rows:
            return LevelResult(model, level, rows[0], name, time.perf_counter() - started)
        lines = [ln for ln in str(output).splitlines() if ln.strip()]
        detail = f"{name}: rc={rc}: {lines[-1] if lines else 'no output'} (log {log_path})"
        if "stable" not in str(output).lower():  # a real error (bad input, model missing): no point retrying
            break
    return LevelResult(model, level, None, "failed", time.perf_counter() - started, detail)


def ready_models(url: str, wanted: list[str]) -> tuple[list[str], list[str]]:
    import tritonclient.grpc as grpcclient

    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(url)
    try:
        if not client.is_server_live():
            raise SystemExit(f"Triton at {url} is not live")
        ready = [m for m in wanted if client.is_model_ready(m)]
    except InferenceServerException as err:
        raise SystemExit(f"cannot reach Triton over gRPC at {url}: {err}") from None
    finally:
        client.close()
    return ready, [m for m in wanted if m not in ready]


def machine_note() -> dict:
    cpu = "unknown"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu_count": os.cpu_count(), "cpu": cpu, "gpu": bool(shutil.which("nvidia-smi")),
            "platform": platform.platform(), "python": platform.python_version()}


def run(args: argparse.Namespace) -> int:
    levels = parse_levels(args.concurrency)
    args.models = args.models or PROFILE_MODELS[args.profile]
    results_dir: Path = args.results
    raw: Path = args.raw or results_dir / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    pa = locate()
    data = write_input_data(args.artifacts, raw / "input_data", args.models, args.entries, args.prerank_candidates,
                            args.rank_candidates, args.seed, unbatched=args.profile == "gpu")
    server, work_dir = None, None
    if args.start_server:
        from cascade.servers.process import free_port
        from cascade.servers.triton import start_triton

        work_dir = Path(tempfile.mkdtemp(prefix="cascade-perf-triton-"))
        grpc_port = free_port()
        print(f"starting tritonserver on {args.model_repository} + {args.ensemble_repository} (gRPC 127.0.0.1:{grpc_port})")
        server = start_triton([args.model_repository, args.ensemble_repository], work_dir, "127.0.0.1",
                              free_port(), grpc_port, free_port())
        url = f"127.0.0.1:{grpc_port}"
    else:
        url = args.url
        require_loopback_host(url.rsplit(":", 1)[0])
    cfg = RunConfig(args.window_ms, args.stability, args.max_trials, args.timeout, args.pa_arg or [])
    outcomes: list[LevelResult] = []
    started, load_before = time.perf_counter(), load_average()
    stats_client = None
    try:
        models, absent = ready_models(url, args.models)
        if absent:
            print(f"warning: not ready on {url}, skipped: {', '.join(absent)}", file=sys.stderr)
        if server is not None:
            import tritonclient.grpc as grpcclient

            stats_client = grpcclient.InferenceServerClient(url)
        for model in models:
            for level in levels:
                before = sample(server.pid, stats_client, model) if stats_client else None
                res = measure_level(pa, model, url, data[model], level, cfg, raw)
                if before is not None:
                    res.cpu_ms_per_infer = cpu_ms_per_inference(before, sample(server.pid, stats_client, model))
                outcomes.append(res)
                what = f"{res.row.throughput:.1f} infer/s, p50 {res.row.p50_us} us, p99 {res.row.p99_us} us" if res.row else res.detail
                if res.cpu_ms_per_infer is not None:
                    what += f", server CPU {res.cpu_ms_per_infer:.2f} ms/infer"
                print(f"  {model:<17} c={level:<3} {res.attempt:<6} {res.seconds:5.1f}s  {what}", flush=True)
    finally:
        if stats_client is not None:
            stats_client.close()
        if server is not None:
            server.stop()
            shutil.copy2(work_dir / "tritonserver.log", raw / "tritonserver.log")
            shutil.rmtree(work_dir, ignore_errors=True)
    by_model = {m: [o.row for o in outcomes if o.model == m and o.row] for m in dict.fromkeys(o.model for o in outcomes)}
    results_dir.mkdir(parents=True, exist_ok=True)
    for model, rows in by_model.items():
        (results_dir / f"{args.prefix}_{model}.csv").write_text(to_csv(rows))
    table = format_table(by_model)
    (results_dir / f"{args.prefix}_table.md").write_text(table + "\n")
    plot = plot_throughput_latency(by_model, results_dir / f"{args.prefix}_throughput_p99.png",
                                   f"Triton over gRPC (perf_analyzer), {os.cpu_count()} CPU cores")
    note = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_note(),
        "load_average_1_5_15min": {"before": load_before, "after": load_average()},
        "url": "started by run_triton" if args.start_server else url,
        "concurrency": levels,
        "input": {"entries": args.entries, "prerank_candidates": args.prerank_candidates, "rank_candidates": args.rank_candidates},
        "profile": args.profile,
        "perf_analyzer": {"binary": str(pa.binary), "window_ms": cfg.window_ms, "stability_pct": cfg.stability,
                          "max_trials": cfg.max_trials, "extra_args": cfg.extra_args},
        "levels": [{"model": o.model, "concurrency": o.concurrency, "attempt": o.attempt, "seconds": round(o.seconds, 1),
                    **({"detail": o.detail} if o.detail else {}),
                    **({"server_cpu_ms_per_infer": round(o.cpu_ms_per_infer, 3)} if o.cpu_ms_per_infer is not None else {})}
                   for o in outcomes],
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    manifest = args.artifacts / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        note["export"] = {k: m.get(k) for k in ("dataset", "n_users", "n_items", "history_len", "source_commit")}
    (results_dir / f"{args.prefix}_run.json").write_text(json.dumps(note, indent=2) + "\n")
    print()
    print(table)
    loose = [f"{o.model} c={o.concurrency}" for o in outcomes if o.attempt == "loose"]
    failed = [f"{o.model} c={o.concurrency}" for o in outcomes if o.attempt == "failed"]
    if loose:
        print(f"\nstabilised only with the loose threshold (50 %, {2 * cfg.window_ms} ms windows): {', '.join(loose)}")
    if failed:
        print(f"\nno measurement: {', '.join(failed)} (see logs under {raw})", file=sys.stderr)
    print(f"\nCSVs, table, plot ({plot.name}) and run note in {results_dir}; raw logs in {raw}; "
          f"{note['total_seconds']:.0f}s in all")
    return 1 if failed or not outcomes else 0


def build_parser() -> argparse.ArgumentParser:
    from cascade.settings import Settings

    s = Settings()
    p = argparse.ArgumentParser(prog="python -m perf.run_triton", description=__doc__.split("\n\n")[0])
    where = p.add_argument_group("server")
    where.add_argument("--url", default=s.triton_grpc_url, help="gRPC host:port of a running Triton (loopback only)")
    where.add_argument("--start-server", action="store_true", help="start tritonserver on free ports for the run")
    where.add_argument("--model-repository", type=Path, default=s.model_repository)
    where.add_argument("--ensemble-repository", type=Path, default=s.ensemble_repository)
    data = p.add_argument_group("input data")
    data.add_argument("--artifacts", type=Path, default=s.artifacts_dir, help="the export's artefacts (real ids)")
    data.add_argument("--profile", choices=sorted(PROFILE_MODELS), default=s.triton_profile,
                      help="the repositories' Triton profile: picks the default --models")
    data.add_argument("--models", nargs="+", default=None,
                      help=f"any of {', '.join(sorted(MODELS))} or two_stage_p<P>_r<R>; default: the profile's")
    data.add_argument("--entries", type=int, default=8)
    data.add_argument("--prerank-candidates", type=int, default=500)
    data.add_argument("--rank-candidates", type=int, default=200)
    data.add_argument("--seed", type=int, default=0)
    meas = p.add_argument_group("measurement")
    meas.add_argument("--concurrency", default="1,2,4,8", help="'1,2,4,8' or 'start:end:step'")
    meas.add_argument("--window-ms", type=int, default=1000, help="perf_analyzer -p")
    meas.add_argument("--stability", type=int, default=20, help="perf_analyzer -s (percent)")
    meas.add_argument("--max-trials", type=int, default=5, help="perf_analyzer -r")
    meas.add_argument("--timeout", type=float, default=60.0, help="seconds before one perf_analyzer run is killed")
    meas.add_argument("--pa-arg", action="append", help="extra perf_analyzer argument (repeat; e.g. --pa-arg=--shape=...)")
    out = p.add_argument_group("output")
    out.add_argument("--results", type=Path, default=RESULTS)
    out.add_argument("--raw", type=Path, default=None, help="default <results>/raw")
    out.add_argument("--prefix", default="triton")
    return p


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through run()'s finally, which stops the server it started


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
