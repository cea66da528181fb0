"""The bars the models must clear, judged on an evaluation report (see export.evaluate).

Each bar is met (True), missed (False) or not measurable (None: what it needs was not produced),
always with the figure it was judged on. The latency bar reads the benchmark perf/bench_models.py
writes (`latency.json`: a list of {model, precision, batch, p50_ms, p99_ms, items_per_s}).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

LATENCY_FILE = "latency.json"
LATENCY_BATCH = 512
FEW_HITS = 30  # below this many relevant items in the top 10s, the funnel/exhaustive ratio is noise
MULTI_CHANNEL_GAIN = 1.3  # the served channels merged at an equal budget over the best channel alone
ANN_OVER_POPULAR = 2.0  # on synthetic data; on MovieLens ANN need only match the better of popular and item-to-item
MIN_CATEGORIES = 4  # in a top 10, where the rerank's candidates hold that many
MAX_NDCG_COST = 0.02  # the served rerank chain's graded NDCG@10 below the reference chain's, at most


@dataclass(frozen=True)
class Bar:
    bar: str
    met: bool | None
    figure: str
    note: str = ""


def read_latency(path: Path) -> list[dict] | None:
    """The benchmark's rows, or None when it has not been run."""
    return json.loads(path.read_text()) if path.exists() else None


def model_costs(manifest: dict | None) -> dict[str, dict]:
    """name -> {params, flops_per_item} from the manifest's `models` (a dict by name or a list with names)."""
    models = (manifest or {}).get("models") or {}
    if isinstance(models, list):
        models = {m.get("name", str(i)): m for i, m in enumerate(models)}
    keys = ("params", "flops_per_item")
    return {name: {k: m[k] for k in keys if k in m} for name, m in models.items() if isinstance(m, dict) and any(k in m for k in keys)}


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _auc(report: dict, variant: str) -> float | None:
    return _finite(report["scorers"]["variants"].get(variant, {}).get("auc"))


def _ratio_bar(name: str, a: tuple[str, float | None], b: tuple[str, float | None], least: float, missing: str) -> Bar:
    """Bar met when a / b >= least."""
    (a_name, a_value), (b_name, b_value) = (a[0], _finite(a[1])), (b[0], _finite(b[1]))
    if a_value is None or b_value is None or b_value == 0:
        return Bar(name, None, missing)
    ratio = a_value / b_value
    shown = f"{ratio:.2f}x (needs ≥ {least:g}x)" if least > 1 else f"{ratio:.2%} (needs ≥ {least:.0%})"
    return Bar(name, ratio >= least, f"{a_name} {a_value:.4g} / {b_name} {b_value:.4g} = {shown}")


def _int8_bars(report: dict) -> list[Bar]:
    name = "INT8 student AUC within 0.002 of FP32"
    fp32 = _auc(report, "rank")
    bars = []
    for variant in ("rank.int8", "rank.int8dyn"):
        value = _auc(report, variant)
        if value is not None and fp32 is not None:
            delta = value - fp32
            bars.append(Bar(f"{name} ({variant})", abs(delta) <= 0.002, f"{variant} {value:.4f} vs rank {fp32:.4f}: Δ {delta:+.4f}"))
    return bars or [Bar(name, None, "no rank.int8.onnx / rank.int8dyn.onnx present")]


TEACHER_LEAD = 0.01  # the teacher's AUC over the best baseline's, at least
# the teacher's paired leads in the report's intervals -> which baseline: the baselines' "best" by AUC, "best_gauc" by GAUC
LEADS = {"teacher_minus_best_baseline": "best", "teacher_minus_best_gauc_baseline": "best_gauc"}


def _baseline_bars(report: dict) -> list[Bar]:
    """The teacher against the baselines on the same rows: AUC ahead of the best by TEACHER_LEAD (with
    the bootstrap interval of the lead), GAUC at least the best baseline's GAUC."""
    section = report.get("baselines")
    teacher = report["scorers"]["variants"].get("teacher")
    auc_name, gauc_name = f"teacher AUC ≥ best baseline's + {TEACHER_LEAD:g}", "teacher GAUC ≥ best baseline's"
    if not section or teacher is None:
        return [Bar(auc_name, None, "no baselines or no teacher.onnx"), Bar(gauc_name, None, "no baselines or no teacher.onnx")]
    baselines = section["baselines"]
    best_auc, best_gauc = section["best"], section["best_gauc"]  # `export.baselines.summarise`'s picks
    intervals = report["scorers"].get("intervals", {})
    lead = intervals.get("teacher_minus_best_baseline", {}).get("auc")
    lead_note = f"lead 95 % CI [{lead['low']:+.4f}, {lead['high']:+.4f}]" if lead else ""
    gauc_lead = intervals.get("teacher_minus_best_gauc_baseline", {}).get("gauc")
    gauc_note = f"lead 95 % CI [{gauc_lead['low']:+.4f}, {gauc_lead['high']:+.4f}] (paired, users resampled)" if gauc_lead else ""
    auc, base_auc = teacher["auc"], baselines[best_auc]["auc"]["point"]
    gauc, base_gauc = teacher["gauc"], baselines[best_gauc]["gauc"]["point"]
    return [
        Bar(auc_name, auc >= base_auc + TEACHER_LEAD, f"teacher {auc:.4f} vs {best_auc} {base_auc:.4f}: {auc - base_auc:+.5f}", lead_note),
        Bar(gauc_name, gauc >= base_gauc, f"teacher {gauc:.4f} vs {best_gauc} {base_gauc:.4f}: {gauc - base_gauc:+.5f}", gauc_note),
    ]


def _funnel_bar(report: dict) -> Bar:
    """Judged on the graded NDCG@10: the funnel's top 10 scored with the exhaustive ranking's own
    probabilities as gains, so the exhaustive top 10 is the ideal. Held-out positives are too few
    per user on these data for a stable ratio; that ratio is reported beside it."""
    funnel = report["funnel"]
    graded = funnel["graded_ndcg@10"]
    scorer = funnel["exhaustive_scorer"]
    met = None if graded is None or np.isnan(graded) else graded >= 0.95
    figure = f"graded NDCG@10 of the funnel against exhaustive {scorer}: {graded:.4f}"
    held = (funnel["funnel"]["ndcg@10"], funnel["exhaustive"]["ndcg@10"])
    hits = (funnel["funnel"]["hits@10"], funnel["exhaustive"]["hits@10"])
    notes = [f"held-out positives: funnel NDCG@10 {held[0]:.4f} vs exhaustive {held[1]:.4f} "
             f"({hits[0]} vs {hits[1]} hits over {funnel['n_users']} users)"]
    interval = funnel["graded_ndcg@10_interval"]
    notes.insert(0, f"graded NDCG@10 95 % CI [{interval['low']:.4f}, {interval['high']:.4f}] (users resampled)")
    if scorer != "teacher":
        notes.append("judged against exhaustive rank (the student): no teacher.onnx in the export")
    if min(hits) < FEW_HITS:
        notes.append("too few held-out hits for the held-out ratio to mean much")
    return Bar("funnel NDCG@10 ≥ 95% of exhaustive teacher ranking", met, figure, "; ".join(notes))


def _channel_bar(report: dict, bar: Bar, ratio: str) -> Bar:
    """`bar` with the bootstrap interval of its ratio and the users it was judged on."""
    section = report["channels"]
    interval = section["ratios"].get(ratio)
    shown = f"ratio 95 % CI [{interval['low']:.2f}x, {interval['high']:.2f}x]; " if interval else ""
    return Bar(bar.bar, bar.met, bar.figure, f"{shown}the served recall channels on {section['n_users']:,} held-out users, "
               "training items excluded")


def _multi_channel_bar(report: dict) -> Bar:
    """The served channels merged with their quotas scaled to 200 against each channel's own top 200;
    the note adds the best quota split in hindsight, the most any quotas reach with these lists,
    each user's best channel in hindsight, the most any routing of users to channels reaches, and on
    synthetic data the oracle list, the most any list can expect."""
    section = report["channels"]
    single = {name: _finite(c["recall@200"]) for name, c in section["channels"].items()}
    best = max(single, key=lambda name: single[name] or 0.0, default="none")
    bar = _channel_bar(report, _ratio_bar(
        f"multi-channel recall Recall@200 ≥ {MULTI_CHANNEL_GAIN:g}x the best single channel",
        ("multi-channel", section["multi_channel"]["recall@200"]), (best, single.get(best)), MULTI_CHANNEL_GAIN,
        "no channel recalled a held-out positive in its top 200",
    ), f"multi_channel/{best}")
    ceiling = _finite(section["best_split"]["recall@200"])
    if ceiling is None or not single.get(best):
        return bar
    quotas = ", ".join(f"{name} {q}" for name, q in section["best_split"]["quotas"].items() if q)
    routed = section["routing_ceiling"]["recall@200"]
    oracle = section.get("oracle", {}).get("recall@200")
    bound = f", the generator's oracle list {oracle:.4f} = {oracle / single[best]:.2f}x" if oracle is not None else ""
    return Bar(bar.bar, bar.met, bar.figure, f"{bar.note}; the best split in hindsight ({quotas}) reaches "
               f"{ceiling:.4f} = {ceiling / single[best]:.2f}x, each user's best channel in hindsight "
               f"{routed:.4f} = {routed / single[best]:.2f}x{bound}")


def _ann_bar(report: dict) -> Bar:
    """On synthetic data ANN must beat popularity twice over; on MovieLens (1,682 items, where a few
    hundred popular ones take most clicks, so popularity and co-occurrence are hard to beat) it must
    match the better of them."""
    recall = {name: _finite(c["recall@100"]) for name, c in report["channels"]["channels"].items()}
    if not report["dataset"]["name"].startswith("movielens"):
        return _channel_bar(report, _ratio_bar(
            f"ANN Recall@100 ≥ {ANN_OVER_POPULAR:g}x popular", ("ANN", recall.get("ann")), ("popular", recall.get("popular")),
            ANN_OVER_POPULAR, "popular Recall@100 is 0 or undefined",
        ), "ann/popular")
    others = [name for name in ("popular", "item_to_item") if name in recall]
    best = max(others, key=lambda name: recall[name] or 0.0, default="popular")
    return _channel_bar(report, _ratio_bar(
        "ANN Recall@100 ≥ the better of popular and item-to-item", ("ANN", recall.get("ann")), (best, recall.get(best)),
        1.0, "popular and item-to-item Recall@100 are 0 or undefined",
    ), f"ann/{best}")


def _diversity_bar(report: dict) -> Bar:
    """Every top 10 whose rerank candidates held MIN_CATEGORIES categories holds them, at a graded
    NDCG@10 at most MAX_NDCG_COST below the reference chain's (the default before the choice)."""
    funnel = report["funnel"]
    served, reference = funnel["chains"]["served"], funnel["chains"]["reference"]
    name = f"rerank: ≥ {MIN_CATEGORIES} categories in a top 10 where the candidates allow, NDCG@10 cost ≤ {MAX_NDCG_COST:.0%}"
    share, ndcg, reference_ndcg = (_finite(v) for v in (
        served[f"lists_with_{MIN_CATEGORIES}_categories"], served["graded_ndcg@10"], reference["graded_ndcg@10"]))
    if share is None or ndcg is None or not reference_ndcg:
        return Bar(name, None, f"no top 10 whose candidates held {MIN_CATEGORIES} categories, or no graded NDCG@10")
    cost = 1.0 - ndcg / reference_ndcg
    figure = (f"{share:.1%} of {funnel['lists_allowing_diversity']} lists hold ≥ {MIN_CATEGORIES} categories "
              f"(mean {served['distinct_categories']:.2f}); graded NDCG@10 {ndcg:.4f} vs reference {reference_ndcg:.4f}: "
              f"cost {cost:+.2%}")
    return Bar(name, share >= 1.0 and cost <= MAX_NDCG_COST, figure, f"reference chain: {funnel['reference_chain']}")


def _latency_bar(report: dict) -> Bar:
    name = "student at least 5x cheaper per item"
    costs = report.get("model_costs") or {}
    flops = [costs.get(m, {}).get("flops_per_item") for m in ("teacher", "rank")]
    note = f"FLOPs per item: teacher {flops[0]:,.0f}, rank {flops[1]:,.0f} ({flops[0] / flops[1]:.1f}x)" if all(flops) else ""
    rows = report.get("latency") or []
    ips = {
        r["model"]: r["items_per_s"] for r in rows
        if str(r.get("precision", "")).lower() == "fp32" and r.get("batch") == LATENCY_BATCH and r.get("model") in ("teacher", "rank")
        and r.get("shape", "rows") == "rows"  # distinct users per row: the per-item cost without shared histories
    }
    if not rows:
        return Bar(name, None, f"{LATENCY_FILE} not present (run perf/bench_models.py)", note)
    bar = _ratio_bar(name, ("rank items/s", ips.get("rank")), ("teacher items/s", ips.get("teacher")), 5.0,
                     f"no fp32 teacher and rank rows at batch {LATENCY_BATCH} in {LATENCY_FILE}")
    return Bar(bar.bar, bar.met, bar.figure, note)


def judge(report: dict) -> list[dict]:
    """Every bar, as JSON-ready dicts, in the order the report shows them."""
    bars = [
        *_baseline_bars(report),
        _ratio_bar("student AUC ≥ 99% of teacher's", ("rank", _auc(report, "rank")), ("teacher", _auc(report, "teacher")),
                   0.99, "teacher.onnx not present"),
        *_int8_bars(report),
        _ratio_bar("pre-ranker AUC within 3% of student's", ("prerank", _auc(report, "prerank")), ("rank", _auc(report, "rank")),
                   0.97, "rank or prerank AUC undefined"),
        _funnel_bar(report),
        _diversity_bar(report),
        _multi_channel_bar(report),
        _ann_bar(report),
        _latency_bar(report),
    ]
    return [asdict(b) for b in bars]
