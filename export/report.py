"""An evaluation report on disk: report.json (everything), report.md (tables, bars) and PNG plots."""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from export.bars import LEADS, MIN_CATEGORIES
from export.baselines import baselines_markdown
from export.eval_channels import ANN_K, MULTI_CHANNEL_BUDGET

PLOTS = {"auc": "auc.png", "retrieval": "retrieval_recall.png", "funnel": "funnel_vs_exhaustive.png"}


def json_ready(value):
    """NaN and infinities become null (strict JSON); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) < 1e3 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _status(bar: dict) -> str:
    mark = {True: "**met**", False: "**not met**", None: "not measurable"}[bar["met"]]
    return mark + (" *" if bar["note"] else "")


def _bars_md(bars: list[dict]) -> str:
    notes = [f"\\* {b['bar']}: {b['note']}" for b in bars if b["note"]]
    return _table(["bar", "status", "figure"], [[b["bar"], _status(b), b["figure"]] for b in bars]) + (
        "\n\n" + "  \n".join(notes) if notes else ""
    )


def _scorers_md(scorers: dict) -> str:
    cols = ["auc", "gauc", "logloss", "mean_score", "rows_per_s", "kendall_tau_vs_fp32", "max_abs_diff_vs_fp32", "kendall_tau_vs_teacher"]
    rows = [[name, m["file"], *(m.get(c) for c in cols)] for name, m in scorers["variants"].items()]
    missing = ", ".join(f"`{n}`" for n in scorers["not_present"]) or "none"
    return (
        f"{scorers['n_rows']:,} held-out rows of {scorers['n_users']:,} users, positive rate {scorers['positive_rate']:.3f}; "
        "all scores from ONNX Runtime on the exported files. τ: Kendall tau-b on the first "
        f"{scorers['tau_rows']:,} rows.\n\n"
        + _table(["variant", "file", "AUC", "GAUC", "LogLoss", "mean score", "rows/s", "τ vs fp32", "max abs Δ vs fp32", "τ vs teacher"], rows)
        + f"\n\nNot present: {missing}."
    )


def _weights(weights: list[float] | None) -> str:
    return "–" if not weights else "(" + ", ".join(f"{w:.3g}" for w in weights) + ")"


def _heads_md(scorers: dict) -> str:
    """The student's two heads and the served mix, each against both labels."""
    heads = scorers.get("heads") or {}
    rows = [[name, m["auc"], m["gauc"], m["second_auc"], m["second_gauc"]] for name, m in heads.items()]
    return (
        f"The student ranks for two objectives (`cascade.heads`): the click head learns the label, the second head the "
        f"second label (positive rate {_fmt(scorers.get('second_positive_rate'), 3)} on these rows). Rank serves their "
        f"probabilities mixed by the weights (click, second) {_weights(scorers.get('head_weights'))} (CASCADE_RANK_HEAD_WEIGHTS); each head "
        "alone is the same ONNX graph with those weights overridden.\n\n"
        + _table(["scores", "AUC (label)", "GAUC (label)", "AUC (second label)", "GAUC (second label)"], rows)
    )


def _intervals_md(scorers: dict) -> str:
    """The served variants' 95 % intervals, and the teacher's lead over the best baselines by AUC and by GAUC."""
    intervals = scorers.get("intervals") or {}
    cell = lambda i: f"{i['point']:.4f} [{i['low']:.4f}, {i['high']:.4f}]"  # noqa: E731
    rows = [[name, *(cell(v[m]) for m in ("auc", "gauc", "logloss"))] for name, v in intervals.items()
            if name not in LEADS]
    leads = {intervals[key]["baseline"]: intervals[key] for key in LEADS if key in intervals}  # one row per baseline
    rows += [[f"teacher − {name}", *(cell(lead[m]) for m in ("auc", "gauc", "logloss"))] for name, lead in leads.items()]
    return _table(["variant", "AUC [95 % CI]", "GAUC [95 % CI]", "LogLoss [95 % CI]"], rows)


def _retrieval_md(retrieval: dict) -> str:
    keys = [f"recall@{k}" for k in retrieval["ks"]] + ["ndcg@10"]
    rows = [[channel, *(retrieval[channel][k] for k in keys)] for channel in ("ann", "popular")]
    return (
        f"{retrieval['n_users']:,} held-out users with positives they had not met in training; training items excluded.\n\n"
        + _table(["channel", *[k.replace("recall", "Recall").replace("ndcg", "NDCG") for k in keys]], rows)
    )


def _chain(chain: list[dict]) -> str:
    return " → ".join(", ".join([e["name"], *(f"{k} {v}" for k, v in e.items() if k != "name")]) for e in chain)


def _funnel_md(funnel: dict) -> str:
    sizes = funnel["sizes"]
    note = "" if funnel["exhaustive_scorer"] == "teacher" else " (no teacher.onnx in the export: the student stands in)"
    keys = ["ndcg@10", "recall@10", "hits@10", "ms_per_user"]
    rows = [[name, *(funnel[name][k] for k in keys)] for name in ("funnel", "exhaustive")]
    rows.append(["funnel / exhaustive", funnel["ndcg@10_ratio"], funnel["recall@10_ratio"], None, None])
    quotas = ", ".join(f"{name} {quota}" for name, quota in sizes["recall_quotas"].items() if quota)
    return (
        f"{funnel['n_users']:,} users. Exhaustive: `{funnel['exhaustive_scorer']}` scores the whole catalogue minus training items"
        f"{note}. Funnel: the orchestrator's own code in process (`export.served_funnel`): recall channels ({quotas}) → "
        f"exposure filter (the user's training items) → prerank keeps {sizes['prerank_keep']} → rank keeps "
        f"{sizes['rank_keep']} → rerank `{_chain(funnel['rerank_chain'])}` → top {sizes['top_k']}.\n\n"
        + _table(["", "NDCG@10", "Recall@10", "relevant items in all top 10s", "ms / user (in process)"], rows)
        + f"\n\nOverlap of the funnel's top 10 with the exhaustive top 10: {_fmt(funnel['overlap@10'])}; "
        f"exhaustive top 10 reaching the candidate set: {_fmt(funnel['exhaustive_top10_in_candidates'])}; "
        f"held-out positives in the candidate set (candidate recall): {_fmt(funnel['candidate_recall'])}; "
        f"mean candidates: {_fmt(funnel['mean_candidates'], 1)}.\n\n" + _diversity_md(funnel)
    )


def _diversity_md(funnel: dict) -> str:
    chains = funnel["chains"]
    names = {"served": f"served: {_chain(funnel['rerank_chain'])}", "reference": f"reference: {_chain(funnel['reference_chain'])}",
             "rank_order": "rank's order, no rerank", "exhaustive": f"exhaustive {funnel['exhaustive_scorer']}"}
    keys = ["graded_ndcg@10", "distinct_categories", "largest_category_share", f"lists_with_{MIN_CATEGORIES}_categories",
            "intra_list_diversity", "category_coverage"]
    rows = [[label, *(chains[name][k] for k in keys)] for name, label in names.items()]
    return (
        f"Diversity beside NDCG (`cascade.diversity`). Graded NDCG@10: against the exhaustive ranking; ≥ {MIN_CATEGORIES} "
        f"categories: the share of the {funnel['lists_allowing_diversity']} top 10s whose rerank candidates held "
        f"{MIN_CATEGORIES} categories or more; "
        "intra-list diversity: mean pairwise 1 − cosine of the item embeddings; coverage: the catalogue's categories "
        "found in any top 10.\n\n"
        + _table(["top 10s", "graded NDCG@10", "categories", "largest category share", f"≥ {MIN_CATEGORIES} categories",
                  "intra-list diversity", "category coverage"], rows)
    )


def _channels_md(channels: dict) -> str:
    def quotas(q: dict[str, int]) -> str:
        return ", ".join(f"{name} {quota}" for name, quota in q.items() if quota)

    budget = f"recall@{MULTI_CHANNEL_BUDGET}"
    rows = [[name, c["recall@100"], c[budget]] for name, c in channels["channels"].items()]
    rows.append([f"multi-channel, served proportions scaled to {MULTI_CHANNEL_BUDGET} ({quotas(channels['multi_channel']['quotas'])})",
                 None, channels["multi_channel"][budget]])
    split = channels["best_split"]
    rows.append([f"best split in hindsight, quotas in steps of {split['step']} ({quotas(split['quotas'])})", None, split[budget]])
    rows.append(["each user's best single channel in hindsight (routing ceiling)", None, channels["routing_ceiling"][budget]])
    has_oracle = "oracle" in channels
    if has_oracle:
        rows.append(["oracle: the generator's own probabilities, knowing each user's held-out rows", None,
                     channels["oracle"][budget]])
    ratios = [[name.replace("/", " / "), r["point"], f"[{_fmt(r['low'], 3)}, {_fmt(r['high'], 3)}]"]
              for name, r in channels["ratios"].items()]
    return (
        f"{channels['n_users']:,} held-out users (the retrieval users), each at its first held-out timestamp; every list is "
        "what `orchestrator.recall.RecallChannels` gives the funnel, training items excluded. Users with no training "
        f"event, for whom item-to-item has no history to start from: {channels['users_without_history']:,}. The best "
        "split in hindsight is chosen on these same users: the most any quotas reach with these lists, not a served "
        "figure. The routing ceiling sends each user to the one channel that recalls most for that user: the most any "
        "per-user choice of channel reaches."
        + (" The oracle ranks each user's items by the generator's probability of being a held-out positive, "
           "knowing the user's held-out rows (how many, when, under which interest): no list of its length can "
           "expect more." if has_oracle else "")
        + "\n\n"
        + _table(["channel", "Recall@100", f"Recall@{MULTI_CHANNEL_BUDGET}"], rows)
        + f"\n\nRatios the bars read (multi-channel{' and oracle' if has_oracle else ''} at "
        f"Recall@{MULTI_CHANNEL_BUDGET}, ANN at Recall@{ANN_K}), "
        "95 % intervals from resampling users:\n\n" + _table(["ratio", "point", "95 % CI"], ratios)
    )


def _seeds_md(seeds: dict, export_members: int | None, export_commit: str | None) -> str:
    """Each training seed's test AUCs and best epochs, then mean ± standard deviation; said plainly
    when the seeds' teacher had another number of members than the export's (seeds.json written
    before `teacher_members` existed trained a single teacher), and when another commit trained
    them (seeds.json written before it recorded its commit says none)."""
    metrics = list(seeds["summary"])
    rows = [[f"seed {seed}", *(m.get(k) for k in metrics)] for seed, m in seeds["seeds"].items()]
    rows.append(["mean ± sd", *(f"{s['mean']:.4f} ± {s['std']:.4f}" for s in seeds["summary"].values())])
    members, commit = seeds.get("teacher_members", 1), seeds.get("source_commit")
    caveats = []
    if export_members is not None and members != export_members:
        caveats.append(f"Each seed trained a teacher of {members} member(s), not the export's {export_members}: "
                       "these rows describe that other teacher and its student.")
    if export_commit is not None and commit != export_commit:
        caveats.append(f"The seeds ran on commit {commit or 'unknown (seeds.json from before it recorded one)'}, "
                       f"the export on {export_commit}: where training changed in between, these rows describe "
                       "models of the seeds' commit, not the export's.")
    caveat = "".join(f" **{c}**" for c in caveats)
    return ("The rankers trained again with other training seeds on the same data, split and tables "
            f"(torch AUCs on the test rows).{caveat}\n\n" + _table(["", *metrics], rows))


def _export_commit(report: dict) -> str | None:
    """The commit the export's manifest names; None without a manifest (or one from before it did)."""
    return (report.get("manifest") or {}).get("source_commit")


def _optional_md(report: dict) -> list[str]:
    parts = []
    if report.get("latency"):
        keys = ["model", "precision", "shape", "batch", "p50_ms", "p99_ms", "items_per_s"]
        parts += ["## Latency (perf/bench_models.py)", _table(keys, [[r.get(k) for k in keys] for r in report["latency"]])]
    if report.get("seeds"):
        members = report.get("settings", {}).get("teacher_members")
        parts += ["## Seeds (python -m export.seeds)", _seeds_md(report["seeds"], members, _export_commit(report))]
    if report.get("model_costs"):
        rows = [[name, c.get("params"), c.get("flops_per_item")] for name, c in report["model_costs"].items()]
        parts += ["## Model cost (manifest)", _table(["model", "params", "FLOPs per item"], rows)]
    return parts


def markdown(report: dict) -> str:
    d = report["dataset"]
    head = (
        f"# Cascade evaluation: {d['name']}\n\n"
        f"{d['n_users']:,} users, {d['n_items']:,} items, {d['n_interactions']:,} interactions "
        f"({d['n_train']:,} train, {d['n_held_out']:,} held out: the latest "
        f"{report['settings']['holdout_fraction']:.0%} of the log by time). Artefacts: `{report['artifacts_dir']}`"
        f" (export commit {_export_commit(report) or 'unknown'}). Created {report['created']}."
    )
    parts = [
        head, "## Bars", _bars_md(report["bars"]),
        "## Scorers on held-out interactions", _scorers_md(report["scorers"]), f"![AUC per variant]({PLOTS['auc']})",
        "### Bootstrap intervals (users resampled)", _intervals_md(report["scorers"]),
        *(["### Two objectives", _heads_md(report["scorers"])] if report["scorers"].get("heads") else []),
        *(["## Baselines on the same rows", "\n".join(baselines_markdown(report["baselines"]))] if report.get("baselines") else []),
        "## Retrieval: ANN vs most popular", _retrieval_md(report["retrieval"]), f"![Recall@K]({PLOTS['retrieval']})",
        "## Recall channels as served", _channels_md(report["channels"]),
        "## Funnel vs exhaustive", _funnel_md(report["funnel"]), f"![funnel vs exhaustive]({PLOTS['funnel']})",
        *_optional_md(report),
        "## Timings (seconds)", _table(["step", "seconds"], [[k, v] for k, v in report["timings_s"].items()]),
    ]
    return "\n\n".join(parts) + "\n"


def _bar_chart(path: Path, groups: list[str], series: dict[str, list[float]], ylabel: str, title: str) -> None:
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(groups) * len(series)), 3.6))
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [v if v is not None else 0.0 for v in values], width, label=label)
    ax.set_xticks(range(len(groups)), groups, rotation=20)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(report: dict, out_dir: Path) -> None:
    variants = report["scorers"]["variants"]
    _bar_chart(out_dir / PLOTS["auc"], list(variants), {m.upper(): [v[m] for v in variants.values()] for m in ("auc", "gauc")},
               "AUC", "Held-out AUC per scorer variant (ONNX Runtime)")
    retrieval = report["retrieval"]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for channel in ("ann", "popular"):
        ax.plot(retrieval["ks"], [retrieval[channel][f"recall@{k}"] for k in retrieval["ks"]], marker="o", label=channel)
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K")
    ax.set_title(f"Retrieval on {retrieval['n_users']} held-out users")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / PLOTS["retrieval"], dpi=110)
    plt.close(fig)
    funnel = report["funnel"]
    names = {"funnel": "funnel", "exhaustive": f"exhaustive {funnel['exhaustive_scorer']}"}
    _bar_chart(out_dir / PLOTS["funnel"], ["NDCG@10", "Recall@10"],
               {label: [funnel[key]["ndcg@10"], funnel[key]["recall@10"]] for key, label in names.items()},
               "metric", "Funnel vs exhaustive scoring")


def write_report(report: dict, out_dir: Path) -> list[Path]:
    """report.json, report.md and the plots under `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = json_ready(report)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(markdown(report))
    plot(report, out_dir)
    return [out_dir / "report.json", out_dir / "report.md", *(out_dir / p for p in PLOTS.values())]
