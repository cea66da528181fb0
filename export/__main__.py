"""`python -m export`: data -> features -> train -> ONNX (+parity) -> FAISS -> Triton repositories."""
from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch

from cascade.artifacts import ArtifactPaths, Manifest, sha256_file
from cascade.history import latest_histories
from cascade.settings import Settings, settings_or_report
from cascade.specs import prerank_spec, rank_spec, teacher_spec, user_tower_spec
from export.datasets import prepare
from export.faiss_index import build_index, item_embeddings, write_index
from export.item_to_item import write_item_to_item
from export.model_cost import onnx_cost
from export.provenance import source_commit
from export.onnx_export import check_parity, check_row_parity, export_onnx, export_row_graphs
from export.quantize import QUANTIZED, quantize_all
from export.lookalike import export_lookalike
from export.repository import GpuScorers, write_lookalike, write_repositories
from export.calibrate import calibration_features, write_calibration_set
from export.checkpoints import Checkpoints
from export.train import RowFeatures, train_with

MODEL_VERSION = 1
ROLES = {
    "teacher": "teacher ranker (DIN attention + DCN-v2), offline only",
    "rank": "student ranker distilled from the teacher, served as Triton `rank`",
    "prerank": "COLD-style pre-ranker distilled from the student, served as Triton `prerank`",
    "user_tower": "two-tower user side, run in the orchestrator for ANN recall",
    "lookalike": "RALM-style seed-set scorer, served as Triton `lookalike_v<N>` (POST /v1/lookalike)",
}
TRAINING_FIELDS = {
    "data_source", "seed", "n_users", "n_items", "n_interactions", "n_categories", "history_len",
    "holdout_fraction", "valid_fraction", "epochs", "teacher_members", "teacher_patience", "patience", "distill_epochs", "retrieval_epochs", "batch_size", "retrieval_batch_size", "embedding_weight_decay", "hidden_user_ids", "distill_temperature", "distill_label_weight", "distill_hint_weight",
    "second_head_loss_weight", "rank_head_weights", "distill_list_rows", "distill_list_size", "distill_list_temperature",
    "distill_list_weight", "distill_list_steps", "distill_list_epochs", "recall_ann_k",
}


def run_export(settings: Settings) -> Manifest:
    started = time.perf_counter()
    commit = source_commit()  # the code this run started from: HEAD may move while it trains
    paths = ArtifactPaths(settings.artifacts_dir)
    paths.root.mkdir(parents=True, exist_ok=True)
    prepared = prepare(settings)
    dataset, log, split, train_log, tables = prepared.dataset, prepared.log, prepared.split, prepared.train_log, prepared.tables
    train_mask = split.train
    tables.save(paths.tables)
    np.save(paths.user_history, latest_histories(train_log, dataset.n_users, settings.history_len))
    print(f"data: {dataset.name}, {dataset.n_users} users, {dataset.n_items} items, {len(log)} interactions "
          f"({int(train_mask.sum())} train), positive rate {log.label.mean():.3f}")

    run_config = settings.model_dump(include=TRAINING_FIELDS) | {"dataset": dataset.name}
    trained = train_with(settings, tables, log, split, Checkpoints(paths.checkpoints, run_config))
    sample_rows = np.flatnonzero(split.test)[:512]
    sample = {k: v.numpy() for k, v in RowFeatures(tables, log)(sample_rows).items()}
    L = settings.history_len
    models = {
        "teacher": (trained.teacher, teacher_spec(L)),
        "prerank": (trained.prerank, prerank_spec(L)),
        "rank": (trained.student, rank_spec(L)),
        "user_tower": (trained.two_tower.user_tower, user_tower_spec(L, trained.two_tower.out_dim)),
    }
    parity = {}
    for name, (model, spec) in models.items():
        export_onnx(model, spec, sample, paths.onnx(name))
        parity[name] = check_parity(model, spec, sample, paths.onnx(name))
        print(f"onnx: {name} -> {paths.onnx(name)}, parity max abs diff {parity[name]:.2e}")
    row_graphs = {}  # the GPU profile's: one row per candidate, as native backends take them
    for name in ("prerank", "rank"):
        model, spec = models[name]
        row_graphs[name] = export_row_graphs(model, spec, sample, paths.onnx(name).parent)
        parity[f"{name}.rows"] = check_row_parity(spec, sample, paths.onnx(name), row_graphs[name][0])
        print(f"onnx: {name} rows -> {row_graphs[name][0].name} + {row_graphs[name][1].name}, "
              f"parity with the request graph {parity[f'{name}.rows']:.2e}")

    paths.weights("rank", MODEL_VERSION).parent.mkdir(parents=True, exist_ok=True)
    torch.save(trained.student.state_dict(), paths.weights("rank", MODEL_VERSION))
    calibration = calibration_features(tables, log, train_mask, settings.calibration_rows, settings.seed)
    calibration_entry = write_calibration_set(calibration, paths.calibration)
    quantized = quantize_all(paths.onnx("rank").parent, QUANTIZED, calibration)
    served = {n: paths.onnx(n if settings.serve_precision == "fp32" else f"{n}.{settings.serve_precision}")
              for n in ("prerank", "rank")}
    model_entries = {
        name: {"file": paths.onnx(name).name, "sha256": sha256_file(paths.onnx(name)), "role": ROLES[name],
               **onnx_cost(paths.onnx(name))}
        for name in models
    }

    embeddings = item_embeddings(trained.two_tower, tables)
    np.save(paths.item_embeddings, embeddings)
    write_index(build_index(embeddings), paths.faiss_index)
    item_to_item_entry = write_item_to_item(train_log, dataset.n_items, settings, paths.item_to_item)
    lookalike_entry = export_lookalike(settings, dataset, log, train_mask, split.valid, tables, paths)
    parity["lookalike"] = lookalike_entry["parity_max_abs_diff"]
    model_entries["lookalike"] = {"file": paths.onnx("lookalike").name, "sha256": sha256_file(paths.onnx("lookalike")),
                                  "role": ROLES["lookalike"]}
    print(f"look-alike: {paths.onnx('lookalike')}, {paths.users.name} ({lookalike_entry['users_located']} of "
          f"{dataset.n_users} users located), {paths.user_index.name}; validation Recall@100 by epoch "
          + ", ".join(f"{r:.3f}" for r in lookalike_entry["validation_recall@100_by_epoch"]))
    configs = write_repositories(
        settings.model_repository, settings.ensemble_repository, paths.tables,
        {n: (models[n][1], served[n]) for n in ("prerank", "rank")},
        L, settings.max_batch_size, settings.max_queue_delay_us, settings.model_instances, MODEL_VERSION,
        profile=settings.triton_profile,
        gpu=GpuScorers(settings.gpu_scorer_backend, settings.gpu_precision, settings.gpu_max_rows, row_graphs),
    )
    configs.append(write_lookalike(
        settings.ensemble_repository, MODEL_VERSION, paths.onnx("lookalike"), paths.users,
        settings.max_batch_size, settings.max_queue_delay_us, settings.model_instances,
    ))
    manifest = Manifest(
        dataset=dataset.name, n_users=dataset.n_users, n_items=dataset.n_items, n_categories=dataset.n_categories,
        history_len=L, embedding_dim=int(embeddings.shape[1]),
        model_versions={"prerank": MODEL_VERSION, "rank": MODEL_VERSION, "user_tower": MODEL_VERSION, "lookalike": MODEL_VERSION},
        source_commit=commit, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        metrics=trained.metrics, train_seconds=trained.seconds, parity_max_abs_diff=parity,
        models=model_entries, quantized=quantized, calibration=calibration_entry,
        served={n: p.name for n, p in served.items()}, item_to_item=item_to_item_entry, lookalike=lookalike_entry,
    )
    manifest.write(paths.manifest)
    print(f"triton: wrote {len(configs)} configs under {settings.model_repository}/ and {settings.ensemble_repository}/")
    print("metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in trained.metrics.items()))
    print("cost per item: " + ", ".join(f"{n} {e['flops_per_item']:,} FLOPs / {e['params']:,} params" for n, e in model_entries.items() if "flops_per_item" in e))
    print("quantized: " + ", ".join(f"{k} tau {e['kendall_tau']:.3f}" for k, e in quantized.items()))
    print(f"serving: {', '.join(f'{n} <- {p.name}' for n, p in served.items())}")
    print("train seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in trained.seconds.items())
          + f"; whole export {time.perf_counter() - started:.1f}s")
    return manifest


def main() -> int:
    settings = settings_or_report()
    if settings is None:
        return 2
    run_export(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
