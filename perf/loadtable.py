"""What one load level measured, and the table, CSV and JSON both load tools write from it.

Columns: level, answered req/s (200s per second), p50/p90/p99 ms, shed (503), other non-2xx,
transport errors, degraded % and ranked % (of the 200s), CPU ms per answer for the whole stack,
for each of its processes and for the generator, and machine-wide CPU use.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from perf.stackcpu import LevelCpu, role_order


@dataclass(frozen=True)
class LevelResult:
    level: float  # concurrency (closed loop) or intended request rate (open loop)
    duration_s: float  # the window the counts were taken over
    ok: int  # 200 answers
    shed: int  # 503 answers
    other: int  # other non-2xx answers (and 200s whose body could not be read)
    errors: int  # no answer at all: timeouts, resets, refused connections
    degraded: int  # 200s with a non-empty `degraded`
    ranked: int  # 200s with `scored_by == "rank"`
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    cpu: LevelCpu
    extra: dict = field(default_factory=dict)  # what only one tool measures

    @property
    def rps(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def share(self, count: int) -> float | None:
        return count / self.ok if self.ok else None

    def as_dict(self) -> dict:
        return {
            "level": self.level, "duration_s": round(self.duration_s, 3), "answered_rps": round(self.rps, 2),
            "ok": self.ok, "shed": self.shed, "other_non2xx": self.other, "transport_errors": self.errors,
            "degraded": self.degraded, "ranked": self.ranked,
            "degraded_share": self.share(self.degraded), "ranked_share": self.share(self.ranked),
            "p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "p99_ms": self.p99_ms,
            "cpu": self.cpu.as_dict(self.ok), **self.extra,
        }


def roles(results: list[LevelResult]) -> list[str]:
    return sorted({r for res in results for r in res.cpu.processes_s}, key=role_order)


def _num(x: float | None, digits: int) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _cells(res: LevelResult, names: list[str]) -> list[str]:
    per_ms = lambda s: None if not res.ok else 1000.0 * s / res.ok  # noqa: E731
    return [
        f"{res.level:g}", f"{res.rps:.1f}", _num(res.p50_ms, 2), _num(res.p90_ms, 2), _num(res.p99_ms, 2),
        str(res.shed), str(res.other), str(res.errors), _pct(res.share(res.degraded)), _pct(res.share(res.ranked)),
        _num(per_ms(res.cpu.stack_s), 2),
        *(_num(per_ms(res.cpu.processes_s[n]) if n in res.cpu.processes_s else None, 2) for n in names),
        _num(per_ms(res.cpu.generator_s), 2), _pct(res.cpu.machine_busy),
    ]


def _header(load_name: str, names: list[str]) -> list[str]:
    return [load_name, "req/s", "p50 ms", "p90 ms", "p99 ms", "shed", "non-2xx", "errors", "degraded %", "ranked %",
            "stack CPU ms/ans", *(f"{n} ms/ans" for n in names), "generator ms/ans", "machine CPU %"]


def format_load_table(results: list[LevelResult], load_name: str = "concurrency") -> str:
    """Markdown, one row per level. CPU columns are CPU milliseconds per 200 answer."""
    names = roles(results)
    head = _header(load_name, names)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    lines += ["| " + " | ".join(_cells(r, names)) + " |" for r in sorted(results, key=lambda r: r.level)]
    return "\n".join(lines)


def to_levels_csv(results: list[LevelResult], load_name: str = "concurrency") -> str:
    """The table's columns as CSV (– for no value)."""
    names = roles(results)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_header(load_name, names))
    writer.writerows(_cells(r, names) for r in sorted(results, key=lambda r: r.level))
    return out.getvalue()


def write_results(directory: Path, prefix: str, results: list[LevelResult], note: dict,
                  load_name: str = "concurrency") -> list[Path]:
    """`<prefix>_table.md`, `<prefix>_levels.csv` and `<prefix>_run.json` (the note plus every number per level)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        directory / f"{prefix}_table.md": format_load_table(results, load_name) + "\n",
        directory / f"{prefix}_levels.csv": to_levels_csv(results, load_name),
        directory / f"{prefix}_run.json": json.dumps({**note, "levels": [r.as_dict() for r in results]}, indent=2) + "\n",
    }
    for path, text in files.items():
        path.write_text(text)
    return list(files)
