"""`export.evaluate` on a tiny real export: files, sections and ranges, scores equal to the ONNX model
run directly, a missing teacher, the latency bar, and clear errors on missing or foreign artefacts."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cascade.artifacts import ArtifactPaths
from cascade.features import FeatureTables, as_rows
from cascade.settings import Settings
from export.bars import judge
from export.datasets import load_dataset, split_log
from export.evaluate import ArtifactMismatch, EvalOptions, Evaluation, evaluate
from export.report import PLOTS, markdown
from export.train import RowFeatures


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    from export.__main__ import run_export

    tmp = tmp_path_factory.mktemp("evaluate")
    settings = Settings(
        n_users=200, n_items=400, n_interactions=20_000, n_categories=8, epochs=3, distill_epochs=3, retrieval_epochs=6,
        artifacts_dir=tmp / "a", model_repository=tmp / "m", ensemble_repository=tmp / "e",
        recall_ann_k=100, recall_popular_k=20, prerank_keep=40, rank_keep=20,
        distill_list_steps=30, distill_list_epochs=1,
    )
    run_export(settings)
    return settings


def _options(out: Path) -> EvalOptions:
    return EvalOptions(out_dir=out, retrieval_users=60, funnel_users=15, threads=1, tau_rows=300)


@pytest.fixture(scope="module")
def evaluation(exported: Settings, tmp_path_factory: pytest.TempPathFactory) -> Evaluation:
    return evaluate(exported, _options(tmp_path_factory.mktemp("report")))


def _in_unit_interval(value: float) -> bool:
    return value is not None and math.isfinite(value) and 0.0 <= value <= 1.0


def test_writes_report_json_markdown_and_plots(evaluation: Evaluation) -> None:
    for name in ("report.json", "report.md", *PLOTS.values()):
        assert (evaluation.out_dir / name).stat().st_size > 0, name
    # strict JSON: NaN would not parse
    report = json.loads((evaluation.out_dir / "report.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    for section in ("dataset", "settings", "manifest", "scorers", "retrieval", "funnel", "bars", "timings_s"):
        assert section in report, section
    assert report["dataset"]["n_items"] == 400 and report["dataset"]["n_held_out"] > 0
    assert all(v >= 0 for v in report["timings_s"].values())
    md = (evaluation.out_dir / "report.md").read_text()
    assert "## Bars" in md and all(p in md for p in PLOTS.values())


def test_scorer_metrics_cover_every_present_variant_in_range(exported: Settings, evaluation: Evaluation) -> None:
    scorers = evaluation.report["scorers"]
    onnx_dir = ArtifactPaths(exported.artifacts_dir).onnx("x").parent
    # The GPU profile's row graphs (`*.rows.onnx`) are the fp32 scorers reshaped (parity 1e-5 at export): not variants;
    # the user tower and the look-alike scorers (the export's and the look-alike evaluation's) score no items.
    present = {p.name.removesuffix(".onnx") for p in onnx_dir.glob("*.onnx") if not p.name.endswith(".rows.onnx")}
    present -= {"user_tower", "lookalike", "lookalike.eval"}
    assert set(scorers["variants"]) == present and {"rank", "prerank"} <= present
    assert not present & set(scorers["not_present"])
    assert scorers["n_rows"] == len(evaluation.rows) > 0
    for name, m in scorers["variants"].items():
        assert _in_unit_interval(m["auc"]) and _in_unit_interval(m["gauc"]), name
        assert 0.0 < m["logloss"] < 5.0, name
        assert len(evaluation.scores[name]) == len(evaluation.rows)
        assert _in_unit_interval(float(evaluation.scores[name].min())) and _in_unit_interval(float(evaluation.scores[name].max()))


def test_retrieval_and_funnel_numbers_in_range(exported: Settings, evaluation: Evaluation) -> None:
    retrieval, funnel = evaluation.report["retrieval"], evaluation.report["funnel"]
    assert retrieval["n_users"] > 0
    for channel in ("ann", "popular"):
        recalls = [retrieval[channel][f"recall@{k}"] for k in retrieval["ks"]]
        assert all(_in_unit_interval(r) for r in recalls), channel
        assert recalls == sorted(recalls), channel  # Recall@K never falls as K grows
        assert _in_unit_interval(retrieval[channel]["ndcg@10"])
    assert funnel["n_users"] == 15
    for key in ("funnel", "exhaustive"):
        assert _in_unit_interval(funnel[key]["ndcg@10"]) and _in_unit_interval(funnel[key]["recall@10"])
    assert _in_unit_interval(funnel["overlap@10"]) and _in_unit_interval(funnel["candidate_recall"])
    quotas = funnel["sizes"]["recall_quotas"]  # the served channel file's, with the settings' defaults
    assert quotas["ann"] == exported.recall_ann_k and quotas["popular"] == exported.recall_popular_k
    assert 0 < funnel["mean_candidates"] <= sum(quotas.values())  # the served merge, less the training items
    for name, figures in funnel["chains"].items():
        for key in ("graded_ndcg@10", "largest_category_share", "intra_list_diversity", "category_coverage"):
            assert _in_unit_interval(figures[key]), (name, key)
        assert 1 <= figures["distinct_categories"] <= 10, name
    assert funnel["chains"]["exhaustive"]["graded_ndcg@10"] == pytest.approx(1.0)
    assert funnel["chains"]["served"]["graded_ndcg@10"] == pytest.approx(funnel["graded_ndcg@10"])
    interval = funnel["graded_ndcg@10_interval"]  # users resampled; the funnel bar's note names it
    assert interval["point"] == pytest.approx(funnel["graded_ndcg@10"])
    assert 0.0 <= interval["low"] <= interval["point"] <= interval["high"] <= 1.0 + 1e-9
    funnel_bar = next(b for b in evaluation.report["bars"] if b["bar"].startswith("funnel NDCG@10"))
    assert f"95 % CI [{interval['low']:.4f}, {interval['high']:.4f}]" in funnel_bar["note"]
    channels = evaluation.report["channels"]
    assert channels["n_users"] == retrieval["n_users"]
    assert set(channels["channels"]) == {"ann", "item_to_item", "popular"}
    assert all(_in_unit_interval(c[f"recall@{k}"]) for c in channels["channels"].values() for k in (100, 200))
    assert _in_unit_interval(channels["multi_channel"]["recall@200"]) and sum(channels["multi_channel"]["quotas"].values()) == 200
    assert channels["best_split"]["recall@200"] >= channels["multi_channel"]["recall@200"] - 0.05  # the grid is coarser
    assert sum(channels["best_split"]["quotas"].values()) == 200
    best_single = max(c["recall@200"] for c in channels["channels"].values())
    assert channels["routing_ceiling"]["recall@200"] >= best_single  # each user's best is at least any one channel
    assert 0 <= channels["users_without_history"] <= channels["n_users"]
    assert channels["oracle"]["recall@200"] > best_single  # the generator's own probabilities (synthetic data)
    assert "oracle: the generator's own probabilities" in (evaluation.out_dir / "report.md").read_text()
    for name, ratio in channels["ratios"].items():
        assert ratio["low"] <= ratio["point"] <= ratio["high"] or np.isnan(ratio["point"]), name
    has_teacher = ArtifactPaths(exported.artifacts_dir).onnx("teacher").exists()
    assert funnel["exhaustive_scorer"] == ("teacher" if has_teacher else "rank")
    assert {b["met"] for b in evaluation.report["bars"]} <= {True, False, None}


def test_rank_scores_are_the_rank_onnx_on_row_features(exported: Settings, evaluation: Evaluation) -> None:
    paths = ArtifactPaths(exported.artifacts_dir)
    log = load_dataset(exported).interactions
    rows = evaluation.rows[:: max(1, len(evaluation.rows) // 20)][:20]
    features = {k: v.numpy() for k, v in RowFeatures(FeatureTables.load(paths.tables), log)(rows).items()}
    session = ort.InferenceSession(str(paths.onnx("rank")), providers=["CPUExecutionProvider"])
    direct = session.run(["score"], as_rows(features, [i.name for i in session.get_inputs()]))[0]
    got = evaluation.scores["rank"][np.searchsorted(evaluation.rows, rows)]
    assert np.max(np.abs(got - direct)) < 1e-6
    test = split_log(log, exported).test
    assert test[evaluation.rows].all()


def test_without_a_teacher_the_student_scores_exhaustively(exported: Settings, tmp_path: Path) -> None:
    root = tmp_path / "a"
    shutil.copytree(exported.artifacts_dir, root, ignore=shutil.ignore_patterns("teacher*.onnx", "report", "checkpoints"))
    result = evaluate(exported.model_copy(update={"artifacts_dir": root}), _options(tmp_path / "report"))
    assert result.report["funnel"]["exhaustive_scorer"] == "rank"
    assert "teacher" in result.report["scorers"]["not_present"]
    bars = {b["bar"]: b for b in result.report["bars"]}
    assert bars["student AUC ≥ 99% of teacher's"]["met"] is None
    assert "no teacher.onnx" in bars["funnel NDCG@10 ≥ 95% of exhaustive teacher ranking"]["note"]
    assert "the student stands in" in (tmp_path / "report" / "report.md").read_text()


def test_latency_rows_feed_the_cost_bar_and_a_table(evaluation: Evaluation) -> None:
    latency = [
        {"model": "teacher", "precision": "fp32", "batch": 512, "p50_ms": 10.0, "p99_ms": 12.0, "items_per_s": 50_000.0},
        {"model": "rank", "precision": "fp32", "batch": 512, "p50_ms": 1.5, "p99_ms": 2.0, "items_per_s": 300_000.0},
        {"model": "rank", "precision": "fp32", "batch": 64, "p50_ms": 1.0, "p99_ms": 1.5, "items_per_s": 60_000.0},
    ]
    costs = {"teacher": {"params": 1_000_000, "flops_per_item": 2_000_000}, "rank": {"params": 50_000, "flops_per_item": 100_000}}
    report = {**evaluation.report, "latency": latency, "model_costs": costs}
    bar = next(b for b in judge(report) if b["bar"] == "student at least 5x cheaper per item")
    assert bar["met"] is True and "6.00x" in bar["figure"] and "20.0x" in bar["note"]
    slow = [dict(r, items_per_s=100_000.0) if r["model"] == "rank" else r for r in latency]
    assert next(b for b in judge({**report, "latency": slow}) if "cheaper" in b["bar"])["met"] is False
    md = markdown({**report, "bars": judge(report)})
    assert "## Latency" in md and "## Model cost" in md


def test_missing_or_foreign_artefacts_are_named(exported: Settings, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="python -m export"):
        evaluate(exported.model_copy(update={"artifacts_dir": tmp_path / "empty"}), _options(tmp_path / "r"))
    with pytest.raises(ArtifactMismatch, match="other data"):
        evaluate(exported.model_copy(update={"seed": exported.seed + 1}), _options(tmp_path / "r"))


def test_diversity_and_channel_bars_judge_their_figures(evaluation: Evaluation) -> None:
    funnel = evaluation.report["funnel"]

    def bars(served: dict, dataset: str = "synthetic", multi: float = 0.4) -> dict[str, dict]:
        chains = {**funnel["chains"], "served": {**funnel["chains"]["served"], **served},
                  "reference": {**funnel["chains"]["reference"], "graded_ndcg@10": 0.9}}
        single = {"ann": {"recall@100": 0.2, "recall@200": 0.3}, "item_to_item": {"recall@100": 0.25, "recall@200": 0.28},
                  "popular": {"recall@100": 0.1, "recall@200": 0.15}}
        channels = {"n_users": 7, "channels": single, "multi_channel": {"recall@200": multi},
                    "best_split": {"recall@200": 0.45, "quotas": {"ann": 120, "popular": 80}},
                    "routing_ceiling": {"recall@200": 0.36},
                    "oracle": {"recall@200": 0.48},
                    "ratios": {"multi_channel/ann": {"point": multi / 0.3, "low": 1.01, "high": 1.62}}}
        report = {**evaluation.report, "dataset": {**evaluation.report["dataset"], "name": dataset},
                  "funnel": {**funnel, "chains": chains}, "channels": channels}
        return {b["bar"].split(" ")[0]: b for b in judge(report)}

    diverse = {"lists_with_4_categories": 1.0, "graded_ndcg@10": 0.89}
    got = bars(diverse)
    assert got["rerank:"]["met"] is True and "cost +1.11%" in got["rerank:"]["figure"]
    assert bars({**diverse, "graded_ndcg@10": 0.88})["rerank:"]["met"] is False  # 2.2 % below the reference
    assert bars({**diverse, "lists_with_4_categories": 0.95})["rerank:"]["met"] is False
    assert got["multi-channel"]["met"] is True and "ann 0.3" in got["multi-channel"]["figure"]  # 0.4 / 0.3
    assert "CI [1.01x, 1.62x]" in got["multi-channel"]["note"] and "7 held-out users" in got["multi-channel"]["note"]
    assert "(ann 120, popular 80) reaches 0.4500 = 1.50x" in got["multi-channel"]["note"]
    assert "each user's best channel in hindsight 0.3600 = 1.20x, the generator's oracle list 0.4800 = 1.60x" in (
        got["multi-channel"]["note"])
    assert bars(diverse, multi=0.35)["multi-channel"]["met"] is False
    assert got["ANN"]["met"] is True and "popular 0.1" in got["ANN"]["figure"]  # 2x popular on synthetic data
    movielens = bars(diverse, dataset="movielens100k")["ANN"]
    assert movielens["met"] is False and "item_to_item 0.25" in movielens["figure"]  # the better of the two


def test_the_models_learn(evaluation: Evaluation) -> None:
    """Fails when learning breaks: a teacher at chance, a student that stops following it, or a
    retriever no better than popularity."""
    report = evaluation.report
    variants = report["scorers"]["variants"]
    assert variants["teacher"]["auc"] > 0.65
    assert variants["rank"]["auc"] >= 0.97 * variants["teacher"]["auc"]
    metrics = report["manifest"]["metrics"]  # the teacher is an ensemble of two (conftest), each member trained
    assert metrics["teacher_best_epoch"] >= 1 and metrics["teacher_2_best_epoch"] >= 1
    assert report["retrieval"]["ann"]["recall@100"] > report["retrieval"]["popular"]["recall@100"]


def test_each_head_learns_its_own_objective_and_serving_mixes_them(evaluation: Evaluation) -> None:
    """The second head ranks the second label (a conversion, a subset of the clicks) better than the
    click head does; the served mix ranks both."""
    heads = evaluation.report["scorers"]["heads"]
    click, second, served = heads["rank: click head"], heads["rank: second head"], heads["rank"]
    print({name: {k: round(v, 4) for k, v in m.items()} for name, m in heads.items()})
    assert second["second_auc"] > 0.6 and second["second_auc"] > click["second_auc"]
    assert click["auc"] > 0.6 and served["auc"] > 0.6 and served["second_auc"] > 0.6
    assert "### Two objectives" in (evaluation.out_dir / "report.md").read_text()


def test_the_baselines_stand_beside_the_scorers_with_intervals(evaluation: Evaluation) -> None:
    report = evaluation.report
    baselines = report["baselines"]
    assert set(baselines["baselines"]) == {"popularity", "logistic_regression", "lightgbm"}
    assert baselines["n_rows"] == report["scorers"]["n_rows"]
    lead = report["scorers"]["intervals"]["teacher_minus_best_baseline"]
    assert lead["baseline"] == baselines["best"] and lead["auc"]["low"] <= lead["auc"]["point"] <= lead["auc"]["high"]
    teacher = report["scorers"]["intervals"]["teacher"]["auc"]
    assert teacher["point"] == pytest.approx(report["scorers"]["variants"]["teacher"]["auc"])
    gauc_lead = report["scorers"]["intervals"]["teacher_minus_best_gauc_baseline"]
    best_gauc = baselines["baselines"][baselines["best_gauc"]]["gauc"]["point"]
    assert gauc_lead["baseline"] == baselines["best_gauc"]
    assert gauc_lead["gauc"]["point"] == pytest.approx(report["scorers"]["variants"]["teacher"]["gauc"] - best_gauc)
    assert gauc_lead["gauc"]["low"] <= gauc_lead["gauc"]["point"] <= gauc_lead["gauc"]["high"]
    bars = {b["bar"]: b for b in report["bars"]}
    assert "teacher AUC ≥ best baseline's + 0.01" in bars and "lead 95 % CI" in bars["teacher GAUC ≥ best baseline's"]["note"]
    assert "## Baselines on the same rows" in (evaluation.out_dir / "report.md").read_text()
