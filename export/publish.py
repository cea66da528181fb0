"""`python -m export.publish rank --onnx FILE [--activate]`: a new version of a served scorer, while it serves.

1. The ONNX is checked: its inputs are the scorer's inputs (`cascade.specs`, names and dtypes), and it
   scores the export's calibration set (real training rows) with one finite score per row.
2. It is written as version N+1 of the scorer, with its pinned pipeline `<scorer>_pipeline_v<N+1>`, in
   the layout of CASCADE_TRITON_PROFILE (`export.repository.publish_version`; on `cpu` the pinned
   pipeline is a fused model carrying the ONNX and the feature tables). Nothing running changes yet.
3. Old versions are pruned from the repositories: all but the newest CASCADE_TRITON_VERSIONS_KEPT and
   those in use, which the orchestrator reports (GET /admin/models: the active version and the ones
   experiment arms pin). With no orchestrator answering, nothing is pruned.
4. `--activate`: the orchestrator is asked to move traffic (POST /admin/models/<scorer>/activate): it
   has Triton load the version through the model-control API, warms it, then points new requests at
   it; requests in flight finish on the old version. Without it, the command to do so is printed.

The default ONNX is the export's own file for the scorer (e.g. a retrained artifacts/onnx/rank.onnx; on
the gpu profile its row graph, artifacts/onnx/rank.rows.onnx, which only the onnxruntime backend publishes).
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from cascade.artifacts import ArtifactPaths
from cascade.features import as_rows
from cascade.settings import Settings, SettingsError, load_settings
from cascade.specs import ModelSpec, prerank_spec, rank_spec, triton_scorer
from cascade.triton.config import triton_dtype
from cascade.triton.layout import SCORERS
from export.calibrate import load_calibration_set
from export.onnx_export import row_graph_path, session
from export.repository import prune_versions, publish_version

ORT_TYPES = {"tensor(int64)": np.int64, "tensor(float)": np.float32, "tensor(int32)": np.int32}
SCORER_SPECS = {"prerank": prerank_spec, "rank": rank_spec}


def check_scorer_onnx(onnx_path: Path, spec: ModelSpec, calibration: dict[str, np.ndarray]) -> int:
    """Raise ValueError unless `onnx_path` takes exactly the inputs of `spec` (from which every
    Triton config of the scorer is rendered) and scores the calibration rows; return how many rows
    it scored."""
    if not onnx_path.exists():
        raise ValueError(f"{onnx_path} not found")
    wanted = {t.name: triton_dtype(t.dtype) for t in spec.inputs}
    sess = session(onnx_path)
    got = {}
    for i in sess.get_inputs():
        if i.type not in ORT_TYPES:
            raise ValueError(f"{onnx_path}: input {i.name} has type {i.type}, which no scorer input has")
        got[i.name] = triton_dtype(ORT_TYPES[i.type])
    if got != wanted:
        raise ValueError(f"{onnx_path}: inputs {sorted(got.items())} != {spec.name}'s inputs {sorted(wanted.items())}")
    scores = sess.run(None, as_rows(calibration, list(wanted)))[0]
    rows = len(next(iter(calibration.values())))
    if scores.shape[0] != rows or not np.isfinite(scores).all():
        raise ValueError(f"{onnx_path}: {scores.shape[0]} scores for {rows} calibration rows, finite: {bool(np.isfinite(scores).all())}")
    return rows


def orchestrator_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.port}"


def _admin_headers(settings: Settings) -> dict[str, str]:
    token = settings.admin_token
    return {"authorization": f"Bearer {token.get_secret_value()}"} if token is not None else {}


def _models_entry(settings: Settings, scorer: str, timeout_s: float) -> dict | None:
    """What the orchestrator reports of `scorer` (GET /admin/models); None if it does not answer."""
    request = urllib.request.Request(f"{orchestrator_url(settings)}/admin/models", headers=_admin_headers(settings))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())[scorer]
    except (OSError, ValueError, KeyError):
        return None


def versions_in_use(settings: Settings, scorer: str, timeout_s: float = 5.0) -> set[int] | None:
    """The active and pinned versions of `scorer` the orchestrator reports; None if it does not answer."""
    entry = _models_entry(settings, scorer, timeout_s)
    return None if entry is None else {int(entry["active"]), *(int(v) for v in entry.get("pinned", []))}


def active_version(settings: Settings, scorer: str, timeout_s: float = 5.0) -> int | None:
    """The version of `scorer` the orchestrator serves by default; None if it does not answer."""
    entry = _models_entry(settings, scorer, timeout_s)
    return None if entry is None else int(entry["active"])


def activate(settings: Settings, scorer: str, version: int, timeout_s: float = 180.0) -> dict:
    request = urllib.request.Request(
        f"{orchestrator_url(settings)}/admin/models/{scorer}/activate", method="POST",
        data=json.dumps({"version": version}).encode(), headers={"content-type": "application/json", **_admin_headers(settings)},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"the orchestrator refused: HTTP {err.code} {err.read().decode(errors='replace')}") from None


def publish(settings: Settings, scorer: str, onnx_path: Path | None) -> int:
    paths = ArtifactPaths(settings.artifacts_dir)
    gpu = settings.triton_profile == "gpu"  # the GPU profile serves row graphs: no user_row input
    onnx_path = onnx_path or (row_graph_path(paths.onnx(scorer).parent, scorer) if gpu else paths.onnx(scorer))
    calibration = load_calibration_set(paths.calibration)
    if calibration["hist_item"].shape[1] != settings.history_len:
        raise ValueError(f"{paths.calibration} does not match CASCADE_HISTORY_LEN={settings.history_len}")
    spec = SCORER_SPECS[scorer](settings.history_len)
    rows = check_scorer_onnx(onnx_path, triton_scorer(spec) if gpu else spec, calibration)
    version = publish_version(
        settings.model_repository, settings.ensemble_repository, scorer, onnx_path, settings.triton_profile
    )
    print(f"published {onnx_path} as {scorer} version {version} (scored {rows} calibration rows)")
    return version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.publish", description=__doc__.splitlines()[0])
    parser.add_argument("scorer", choices=SCORERS)
    parser.add_argument("--onnx", type=Path, help="the model to publish (default: the export's ONNX of the scorer)")
    parser.add_argument("--activate", action="store_true", help="then move the orchestrator's traffic to it")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        version = publish(settings, args.scorer, args.onnx)
    except (SettingsError, ValueError, FileNotFoundError) as err:
        print(f"not published: {err}", file=sys.stderr)
        return 2
    return prune_and_activate(settings, args.scorer, version, args.activate)


def prune_and_activate(settings: Settings, scorer: str, version: int, activate_now: bool) -> int:
    """Steps 3 and 4 after `version` of `scorer` was published; the command's exit status."""
    url = orchestrator_url(settings)
    in_use = versions_in_use(settings, scorer)
    if in_use is None:
        print(f"no orchestrator answered at {url}: no old version pruned (which ones are in use is unknown)")
    else:
        removed = prune_versions(
            settings.model_repository, settings.ensemble_repository, scorer, settings.triton_versions_kept,
            in_use | {version}, settings.triton_profile,
        )
        print(f"pruned {scorer} versions {removed} (in use: {sorted(in_use)})" if removed else "nothing to prune")
    if not activate_now:
        print(f"to serve it: curl -X POST {url}/admin/models/{scorer}/activate -d '{{\"version\": {version}}}' "
              "-H 'content-type: application/json'")
        return 0
    try:
        print(f"activated: {activate(settings, scorer, version)}")
    except (RuntimeError, OSError) as err:
        print(f"published but not activated: {err}", file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())
