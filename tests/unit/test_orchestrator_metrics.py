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
m.count_recall({"ann": 5}, "none")  # into the tally, which publish flushes
m.publish(door)
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
    assert value("cascade_recall_candidates_total", channel="ann") == [10.0]
    # the worker processes exited without marking themselves dead: their live gauges still count here
    assert value("cascade_in_flight_requests") == [5.0]
    assert sorted(value("cascade_model_active_version", scorer="rank")) == [2.0, 3.0]


def test_a_flushed_tally_reads_as_direct_calls() -> None:
    """The funnel's hooks count into a tally (plain dicts), flushed into the Prometheus children at
    scrape time: the exposition is the one the same direct inc/observe calls give."""
    from prometheus_client import generate_latest
    from orchestrator.metrics import FunnelMetrics

    tallied, direct = FunnelMetrics(), FunnelMetrics()
    stages = [("recall", 0.0004), ("rank", 0.003), ("rank", 0.0031), ("rerank", 2.5), ("rerank", 7.0), ("rank", 0.0)]
    for stage, seconds in stages:
        tallied.observe_stage(stage, seconds, "a")
        tallied.count_candidates(stage, 1200, 200, "a")
        direct.stage_seconds.labels(stage, "a").observe(seconds)
        direct.stage_candidates.labels(stage, "in", "a").observe(1200)
        direct.stage_candidates.labels(stage, "out", "a").observe(200)
    tallied.count_recall({"ann": 700, "popular": 3}, "a")
    tallied.count_exposure_filter(1000, 990, "a")
    tallied.count_exposure_filter(0, 0, "a")
    tallied.observe_triton("two_stage", 1, "a", 0.002, None)
    tallied.count_arm("exp", "a")
    direct.recall_candidates.labels("ann", "a").inc(700)
    direct.recall_candidates.labels("popular", "a").inc(3)
    direct.exposure_checked.labels("a").inc(1000)
    direct.exposure_filtered.labels("a").inc(10)
    direct.exposure_ratio.labels("a").observe(0.01)
    direct.exposure_ratio.labels("a").observe(0.0)
    direct.triton_seconds.labels("two_stage", "1", "a").observe(0.002)
    direct.arm_requests.labels("exp", "a").inc()
    assert tallied.registry.get_sample_value("cascade_stage_duration_seconds_count", {"stage": "rank", "arm": "a"}) == 0
    assert counts(tallied.exposition()[0]) == counts(generate_latest(direct.registry))
    assert counts(tallied.exposition()[0]) == counts(generate_latest(direct.registry))  # a second flush adds nothing
    assert tallied.registry.get_sample_value("cascade_stage_duration_seconds_count", {"stage": "rank", "arm": "a"}) == 3


def counts(exposition: bytes) -> list[tuple[str, tuple, float]]:
    """Every sample but the creation times, which differ between two registries."""
    return sorted(
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for f in text_string_to_metric_families(exposition.decode()) for s in f.samples if not s.name.endswith("_created")
    )
