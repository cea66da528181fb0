"""`python -m orchestrator.stack up|demo|down`: run the whole stack locally in the background.

`up` starts redis-server (unless CASCADE_REDIS_URL names one), tritonserver on the exported
repositories and the orchestrator under uvicorn, each detached with a pidfile under
CASCADE_RUN_DIR; `demo` sends a few requests and prints the answers; `down` stops all three.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from cascade.servers.process import ManagedProcess, pid_alive, stop_pid
from cascade.servers.redis import start_redis, unix_socket_url
from cascade.servers.triton import start_triton
from cascade.settings import Settings, settings_or_report
from orchestrator.metrics import MULTIPROCESS_ENV

SERVICES = ("orchestrator", "tritonserver", "redis-server")


def _pidfile(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def _record(settings: Settings, process: ManagedProcess) -> None:
    _pidfile(settings, process.name).write_text(str(process.pid))
    print(f"  {process.name:<13} pid {process.pid:<7} log {process.log_path}")


def _http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def up(settings: Settings) -> None:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    running = [n for n in SERVICES if _pidfile(settings, n).exists() and pid_alive(int(_pidfile(settings, n).read_text()))]
    if running:
        raise SystemExit(f"already running: {', '.join(running)}; stop them first with `make stop`")
    print("starting the stack:")
    env = dict(os.environ)
    if settings.redis_url is None:  # the orchestrator talks to it over a unix socket: less CPU than TCP
        socket = settings.run_dir / "redis.sock"
        url = unix_socket_url(socket)
        _record(settings, start_redis(settings.redis_port, settings.run_dir, unix_socket=socket if url else None))
        env["CASCADE_REDIS_URL"] = url or settings.effective_redis_url
    _record(settings, start_triton(
        [settings.model_repository, settings.ensemble_repository], settings.run_dir, settings.triton_host,
        settings.triton_http_port, settings.triton_grpc_port, settings.triton_metrics_port,
    ))
    if settings.request_id_secret is None:  # every worker signs and checks request ids alike, across restarts too
        env["CASCADE_REQUEST_ID_SECRET"] = request_id_secret(settings.run_dir)
    # One BLAS thread: requests run concurrently already, and OpenBLAS's extra threads spin for more
    # CPU than the exact ANN search's matrix-vector product they split (cascade.recall.exact).
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    if settings.workers > 1:  # every process's metrics in one /metrics (orchestrator.metrics)
        metrics_dir = settings.run_dir / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env[MULTIPROCESS_ENV] = str(metrics_dir)
    argv = [sys.executable, "-m", "uvicorn", "--factory", "orchestrator.app:create_app",
            "--host", settings.host, "--port", str(settings.port), "--log-level", "warning", "--no-access-log",
            "--loop", "uvloop", "--http", "httptools", "--no-proxy-headers", "--no-server-header",
            "--workers", str(settings.workers)]
    app = ManagedProcess("orchestrator", argv, settings.run_dir / "orchestrator.log", env)
    app.wait_ready(lambda: _http("GET", f"http://{settings.host}:{settings.port}/readyz")[0] == 200, 120)
    _record(settings, app)
    print(f"orchestrator ready on http://{settings.host}:{settings.port}")


def request_id_secret(run_dir: Path) -> str:
    """The stack's request-id secret: made once, kept (owner-only) under the run directory, so the
    answers given before a restart can still be labelled after it."""
    path = run_dir / "request_id_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


def demo(settings: Settings) -> None:
    base = f"http://{settings.host}:{settings.port}"
    for title, body in [
        ("user 1, k=10", {"user_id": 1, "k": 10}),
        ("user 1 again (exposure filter: no repeats)", {"user_id": 1, "k": 10}),
        ("cold-start user 10**9", {"user_id": 10**9, "k": 5}),
        ("bad request (k=0)", {"user_id": 1, "k": 0}),
    ]:
        status, answer = _http("POST", f"{base}/v1/recommend", body)
        print(f"\n== POST /v1/recommend {json.dumps(body)}  [{title}] -> HTTP {status}")
        if status != 200:
            print(f"   {answer.get('error')}")
            continue
        items = ", ".join(f"{i['item_id']}({i['category']},{i['channel']},{i['score']:.3f})" for i in answer["items"])
        print(f"   items (id(category,channel,score)): {items}")
        print("   latency ms: " + ", ".join(f"{k} {v:.2f}" for k, v in answer["latency_ms"].items()))
        print(f"   models {answer['model_versions']}  scored_by={answer['scored_by']}  cold_start={answer['cold_start']}"
              f"  degraded={answer['degraded']}")
    for title, path, body in [
        ("users most like users 1, 2 and 3", "/v1/lookalike", {"seed_user_ids": [1, 2, 3], "k": 5}),
        ("user 4 moves to central Manhattan", "/v1/users/4/location", {"lat": 40.7580, "lon": -73.9855}),
        ("...and is found there, nearest first", "/v1/lookalike",
         {"seed_user_ids": [1, 2, 3], "k": 5, "near": {"lat": 40.7580, "lon": -73.9855, "radius_km": 5}}),
        ("bad request (radius 80 km)", "/v1/lookalike",
         {"seed_user_ids": [1], "near": {"lat": 40.7, "lon": -74.0, "radius_km": 80}}),
    ]:
        status, answer = _http("POST", f"{base}{path}", body)
        print(f"\n== POST {path} {json.dumps(body)}  [{title}] -> HTTP {status}")
        if status != 200:
            print(f"   {answer.get('error')}")
        elif "users" in answer:
            users = ", ".join(f"{u['user_id']}(sim {u['similarity']:.3f}"
                              + (f", {u['distance_km']:.2f} km" if u["distance_km"] is not None else "") + f", {u['score']:.3f})"
                              for u in answer["users"])
            print(f"   users (id(similarity, distance, score)): {users or 'none'}")
            print("   latency ms: " + ", ".join(f"{k} {v:.2f}" for k, v in answer["latency_ms"].items()))
            print(f"   seeds {answer['n_seeds']}  model v{answer['model_version']}  scored_by={answer['scored_by']}"
                  f"  cold_start={answer['cold_start']}  degraded={answer['degraded']}")
        else:
            print(f"   {answer}")
    print(f"\n== GET /readyz -> {_http('GET', f'{base}/readyz')[1]}")
    print("\nThe stack keeps running; stop it with `make stop`.")


def down(settings: Settings) -> None:
    for name in SERVICES:
        path = _pidfile(settings, name)
        if not path.exists():
            continue
        pid = int(path.read_text())
        if pid_alive(pid):
            stop_pid(pid)
            print(f"stopped {name} (pid {pid})")
        path.unlink()


def main(argv: list[str]) -> int:
    commands = {"up": up, "demo": demo, "down": down}
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python -m orchestrator.stack {'|'.join(commands)}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    settings = settings_or_report()
    if settings is None:
        return 2
    commands[argv[0]](settings)
    if argv[0] == "up":
        print(f"stack up in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
