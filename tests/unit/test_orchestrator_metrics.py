"""The orchestrator's Prometheus metrics across processes (prometheus_client's multiprocess mode)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).parents[2]


WORKER = """
import sys
from orchestrator.admission import Admission
from orchestrator.metrics import FunnelMetrics
m = FunnelMetrics()
m.observe_request("/v1/recommend", 200, 0.004)
m.count_shed()
door = Admission(4, 0.0)
door.in_flight = int(sys.argv[1])
m.watch_admission(door)
m.sample_admission(door)
m.set_active_versions({"prerank": 1, "rank": int(sys.argv[1])})
"""


def test_several_processes_metrics_add_up_in_multiprocess_mode(tmp_path) -> None:
    """CASCADE_WORKERS > 1: each process writes its series to PROMETHEUS_MULTIPROC_DIR, and /metrics
    in any of them shows all of them added up (the door's gauges summed, the versions per pid)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (2, 3):
        subprocess.run([sys.executable, "-c", WORKER, str(n)], env=env, check=True, cwd=ROOT)
    scrape = "from orchestrator.metrics import FunnelMetrics; print(FunnelMetrics().exposition()[0].decode())"
    text = subprocess.run([sys.executable, "-c", scrape], env=env, check=True, capture_output=True, text=True,
                          cwd=ROOT).stdout
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def value(name: str, **labels: str) -> list[float]:
        return [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    assert value("cascade_http_requests_total", path="/v1/recommend", status="200") == [2.0]
    assert value("cascade_shed_requests_total") == [2.0]
    assert value("cascade_http_request_duration_seconds_count", path="/v1/recommend") == [2.0]
    # the worker processes exited without marking themselves dead: their live gauges still count here
    assert value("cascade_in_flight_requests") == [5.0]
    assert sorted(value("cascade_model_active_version", scorer="rank")) == [2.0, 3.0]
