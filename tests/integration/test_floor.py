"""perf/floor.py on the small export: the whole funnel in process, every request ranked."""
from __future__ import annotations

from cascade.settings import Settings
from perf.floor import measure


async def test_floor_runs_the_whole_funnel_in_process(exported: Settings) -> None:
    result = await measure(exported.artifacts_dir, n_requests=30, warmup=5, unknown_fraction=0.1, k=5, seed=1)
    assert result["scored_by_rank"] == 1.0  # no stage is ever skipped in the floor
    assert 0 < result["wall_ms"]["p50"] <= result["wall_ms"]["p99"]
    assert result["cpu_ms_per_request"] > 0
    assert {"recall", "prerank+rank", "rerank"} <= set(result["stage_ms_p50"])  # one two-stage call, as the stack
    two_calls = await measure(exported.artifacts_dir, n_requests=10, warmup=2, unknown_fraction=0.1, k=5, seed=1,
                              two_stage=False)
    assert two_calls["scored_by_rank"] == 1.0 and {"prerank", "rank"} <= set(two_calls["stage_ms_p50"])
