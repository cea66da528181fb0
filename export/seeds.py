"""`python -m export.seeds --seeds 7 8 9`: the rankers trained again under other seeds, on the export's data.

Only training is re-seeded (initialisation, shuffles, hidden user ids); the data, the split and the
feature tables are the export's settings' own. Per seed: the test AUCs of the teacher, the student
(its click head), the pre-ranker and the student's second head, and each ranker's best epoch; then
their mean and standard deviation across seeds. Writes `seeds.json` into <artifacts>/report (or
--out), with the commit that trained them, which `python -m export.evaluate` puts in its report.
Each seed's checkpoints live under <artifacts>/checkpoints/seed-<seed>, so an interrupted run resumes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cascade.artifacts import ArtifactPaths
from cascade.settings import Settings, settings_or_report
from export.checkpoints import Checkpoints
from export.datasets import prepare
from export.provenance import source_commit
from export.train import train_with

SEEDS_FILE = "seeds.json"
REPORTED = ("teacher_auc", "rank_auc", "prerank_auc", "rank_second_head_auc",
            "teacher_best_epoch", "rank_best_epoch", "prerank_best_epoch")


def read_seeds(path: Path) -> dict | None:
    """What `python -m export.seeds` wrote, or None when it has not been run."""
    return json.loads(path.read_text()) if path.exists() else None


def summarise(per_seed: dict[int, dict[str, float]]) -> dict[str, dict[str, float]]:
    """metric -> {mean, std (ddof 1; 0 for one seed), min, max} across seeds."""
    out = {}
    for metric in REPORTED:
        values = np.array([m[metric] for m in per_seed.values() if metric in m], np.float64)
        if len(values):
            out[metric] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                           "min": float(values.min()), "max": float(values.max())}
    return out


def run_seeds(settings: Settings, seeds: list[int]) -> dict:
    commit = source_commit()  # the code this run started from: HEAD may move while it trains
    paths = ArtifactPaths(settings.artifacts_dir)
    prepared = prepare(settings)
    dataset = prepared.dataset
    per_seed = {}
    for seed in seeds:
        run_config = settings.model_dump(mode="json") | {"dataset": dataset.name, "training_seed": seed}
        checkpoints = Checkpoints(paths.checkpoints / f"seed-{seed}", run_config)
        metrics = train_with(settings, prepared.tables, prepared.log, prepared.split, checkpoints, seed=seed).metrics
        per_seed[seed] = {k: metrics[k] for k in REPORTED if k in metrics}
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in per_seed[seed].items()), flush=True)
    return {"dataset": dataset.name, "teacher_members": settings.teacher_members, "source_commit": commit,
            "seeds": per_seed, "summary": summarise(per_seed)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.seeds", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--out", type=Path, help="output folder (default: <artifacts_dir>/report)")
    args = parser.parse_args(argv)
    settings = settings_or_report()
    if settings is None:
        return 2
    result = run_seeds(settings, args.seeds)
    out = args.out or ArtifactPaths(settings.artifacts_dir).root / "report"
    out.mkdir(parents=True, exist_ok=True)
    (out / SEEDS_FILE).write_text(json.dumps(result, indent=2) + "\n")
    for metric, s in result["summary"].items():
        print(f"{metric}: {s['mean']:.4f} ± {s['std']:.4f} (min {s['min']:.4f}, max {s['max']:.4f})")
    print(f"wrote {out / SEEDS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
