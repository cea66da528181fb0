"""perf.soak's verdict: RSS growth per process under 10 %, Redis judged by its bound instead."""
from __future__ import annotations

from perf.soak import growth_table


def test_growth_is_per_process_and_redis_is_left_to_its_bound() -> None:
    first = {"orchestrator": 200.0, "stub:rank": 80.0, "redis-server": 10.0}
    last = {"orchestrator": 219.0, "stub:rank": 90.0, "redis-server": 300.0}
    rows = {r["process"]: r for r in growth_table(first, last)}
    assert set(rows) == {"orchestrator", "stub:rank"}
    assert rows["orchestrator"]["within_bar"] and round(rows["orchestrator"]["growth"], 3) == 0.095
    assert not rows["stub:rank"]["within_bar"]  # 12.5 %
