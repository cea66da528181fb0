"""Settings from CASCADE_* environment variables, and the artefact manifest they point at."""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from cascade.artifacts import MANIFEST_VERSION, ArtifactPaths, Manifest
from cascade.settings import EMBEDDING_DECAY, LOOKALIKE_LR, Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CASCADE_* variable from the calling shell may leak into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("CASCADE_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = Settings()
    assert (s.n_users, s.prerank_keep, s.rank_keep) == (5_000, 200, 50)
    assert s.rerank_chain == [{"name": "cover_categories", "min_categories": 4}, {"name": "truncate"}]
    assert s.triton_grpc_url == "127.0.0.1:8001"
    assert s.effective_redis_url == "redis://127.0.0.1:6379/0"


def test_embedding_decay_follows_the_data_source_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().embedding_weight_decay == EMBEDDING_DECAY["synthetic"]
    monkeypatch.setenv("CASCADE_DATA_SOURCE", "movielens")
    assert Settings().embedding_weight_decay == EMBEDDING_DECAY["movielens"] != EMBEDDING_DECAY["synthetic"]
    assert Settings(embedding_weight_decay=0.5).embedding_weight_decay == 0.5
    monkeypatch.setenv("CASCADE_EMBEDDING_WEIGHT_DECAY", "0.0")
    assert Settings().embedding_weight_decay == 0.0


def test_the_lookalike_learning_rate_follows_the_data_source_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().lookalike_lr == LOOKALIKE_LR["synthetic"]
    monkeypatch.setenv("CASCADE_DATA_SOURCE", "movielens")
    assert Settings().lookalike_lr == LOOKALIKE_LR["movielens"] != LOOKALIKE_LR["synthetic"]
    monkeypatch.setenv("CASCADE_LOOKALIKE_LR", "0.01")
    assert Settings().lookalike_lr == 0.01


def test_environment_overrides_with_type_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_N_USERS", "123")
    monkeypatch.setenv("CASCADE_HOLDOUT_FRACTION", "0.25")
    monkeypatch.setenv("CASCADE_ARTIFACTS_DIR", "/tmp/somewhere")
    monkeypatch.setenv("CASCADE_TRITON_HOST", "triton")
    monkeypatch.setenv("CASCADE_REDIS_URL", "redis://cache:6380/2")
    s = Settings()
    assert s.n_users == 123
    assert s.holdout_fraction == 0.25
    assert s.artifacts_dir == Path("/tmp/somewhere")
    assert s.triton_http_url == "triton:8000"
    assert s.effective_redis_url == "redis://cache:6380/2"


def test_env_names_are_case_insensitive_and_unknown_ones_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("cascade_n_items", "777")
    monkeypatch.setenv("CASCADE_NOT_A_SETTING", "whatever")
    assert Settings().n_items == 777


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.n_users = 10  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("CASCADE_N_USERS", "5", "n_users"),  # below ge=10
        ("CASCADE_N_USERS", "abc", "n_users"),
        ("CASCADE_HOLDOUT_FRACTION", "0.5", "holdout_fraction"),  # lt=0.5
        ("CASCADE_DATA_SOURCE", "csv", "data_source"),
        ("CASCADE_PORT", "70000", "port"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as err:
        Settings()
    # pydantic names the field (the variable is CASCADE_ + its upper-case name), not the variable.
    assert [e["loc"] for e in err.value.errors()] == [(field,)]
    assert field in str(err.value)


def test_rank_keep_above_prerank_keep_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_PRERANK_KEEP", "40")
    monkeypatch.setenv("CASCADE_RANK_KEEP", "41")
    with pytest.raises(ValidationError, match=r"CASCADE_RANK_KEEP \(41\) must not exceed CASCADE_PRERANK_KEEP \(40\)"):
        Settings()
    monkeypatch.setenv("CASCADE_RANK_KEEP", "40")
    assert Settings().rank_keep == 40  # equal is allowed


def test_rerank_chain_is_parsed_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_RERANK_CHAIN", '[{"name": "mmr", "lam": 0.5, "k": 10}, {"name": "truncate"}]')
    assert Settings().rerank_chain == [{"name": "mmr", "lam": 0.5, "k": 10}, {"name": "truncate"}]
    monkeypatch.setenv("CASCADE_RERANK_CHAIN", "[]")
    assert Settings().rerank_chain == []


def test_rerank_chain_bad_json_is_an_error_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_RERANK_CHAIN", '[{"name": "mmr"')
    with pytest.raises(SettingsError, match="rerank_chain"):
        Settings()


def test_artifact_paths_layout() -> None:
    paths = ArtifactPaths(Path("art"))
    assert paths.tables == Path("art/tables.npz")
    assert paths.faiss_index == Path("art/items.faiss")
    assert paths.onnx("rank") == Path("art/onnx/rank.onnx")


def manifest() -> Manifest:
    return Manifest(
        dataset="synthetic", n_users=10, n_items=50, n_categories=4, history_len=3, embedding_dim=8,
        model_versions={"rank": 1}, source_commit="abc", created="2024-01-01T00:00:00Z",
        metrics={"rank_auc": 0.7},
    )


def test_manifest_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    manifest().write(path)
    assert Manifest.read(path) == manifest()


def test_manifest_read_rejects_missing_and_old_versions(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    with pytest.raises(FileNotFoundError, match="python -m export"):
        Manifest.read(path)
    Manifest(**{**asdict(manifest()), "manifest_version": MANIFEST_VERSION + 1}).write(path)
    with pytest.raises(ValueError, match=f"manifest version {MANIFEST_VERSION + 1} != {MANIFEST_VERSION}"):
        Manifest.read(path)


def test_load_settings_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade.settings import SettingsError, load_settings

    monkeypatch.setenv("CASCADE_N_USERS", "five")
    with pytest.raises(SettingsError, match=r"CASCADE_N_USERS: .*'five'"):
        load_settings()


def test_synthetic_needs_five_interactions_per_user() -> None:
    with pytest.raises(ValidationError, match="CASCADE_N_INTERACTIONS"):
        Settings(n_users=1_000, n_interactions=4_000)


def test_admission_wait_must_fit_in_the_deadline() -> None:
    from cascade.settings import SettingsError as CascadeSettingsError, load_settings

    s = load_settings()
    assert (s.max_in_flight, s.admission_wait_ms, s.workers) == (3, 10.0, 2)
    with pytest.raises(CascadeSettingsError) as err:
        load_settings(admission_wait_ms=50.0)
    assert "CASCADE_ADMISSION_WAIT_MS" in str(err.value) and "CASCADE_REQUEST_DEADLINE_MS" in str(err.value)
    with pytest.raises(CascadeSettingsError) as err:
        load_settings(max_in_flight=0)
    assert "CASCADE_MAX_IN_FLIGHT" in str(err.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_a_loopback_orchestrator_may_leave_admin_open(host: str) -> None:
    assert Settings(host=host).admin_token is None


@pytest.mark.parametrize(("host", "token", "said"), [
    ("0.0.0.0", None, "unset"), ("10.1.2.3", "short-token", "11 bytes"), ("orchestrator.internal", "x" * 31, "31 bytes"),
])
def test_a_reachable_orchestrator_needs_an_admin_token_of_32_bytes(host: str, token: str | None, said: str) -> None:
    with pytest.raises(ValidationError, match=f"CASCADE_HOST={host} is reachable.*32 bytes or more \\(it is {said}\\)"):
        Settings(host=host, admin_token=token)
    assert Settings(host=host, admin_token="x" * 32).admin_token.get_secret_value() == "x" * 32


def test_a_set_but_empty_admin_token_is_refused() -> None:
    with pytest.raises(ValidationError, match="CASCADE_ADMIN_TOKEN is set but empty"):
        Settings(admin_token=" ")


def test_a_short_request_id_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="CASCADE_REQUEST_ID_SECRET must be 16 bytes or more"):
        Settings(request_id_secret="REPLACE-ME")
    assert Settings(request_id_secret="k" * 16).request_id_secret is not None
