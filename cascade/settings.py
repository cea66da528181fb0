"""The one typed settings object. Every knob is an environment variable `CASCADE_<FIELD>`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CASCADE_", extra="ignore", frozen=True)

    # --- data and training -------------------------------------------------------------
    data_source: Literal["synthetic", "movielens"] = "synthetic"
    seed: int = 7
    n_users: int = Field(5_000, ge=10)
    n_items: int = Field(20_000, ge=50)
    n_interactions: int = Field(500_000, ge=1_000)
    n_categories: int = Field(40, ge=2)
    history_len: int = Field(50, ge=1, le=512)
    holdout_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(1024, ge=16)
    cache_dir: Path = Path.home() / ".cache" / "cascade"

    # --- artefacts ---------------------------------------------------------------------
    artifacts_dir: Path = Path("artifacts")
    model_repository: Path = Path("model_repository")
    ensemble_repository: Path = Path("ensemble")
    triton_profile: Literal["cpu", "gpu"] = "cpu"
    max_batch_size: int = Field(64, ge=1)
    max_queue_delay_us: int = Field(500, ge=0)
    model_instances: int = Field(1, ge=1)

    # --- servers -----------------------------------------------------------------------
    triton_host: str = "127.0.0.1"
    triton_http_port: int = Field(8000, ge=1, le=65535)
    triton_grpc_port: int = Field(8001, ge=1, le=65535)
    triton_metrics_port: int = Field(8002, ge=1, le=65535)
    redis_url: str | None = None
    redis_port: int = Field(6379, ge=1, le=65535)
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    run_dir: Path = Path("run")

    # --- funnel ------------------------------------------------------------------------
    recall_ann_k: int = Field(1_000, ge=1)
    recall_popular_k: int = Field(200, ge=0)
    prerank_keep: int = Field(200, ge=1)
    rank_keep: int = Field(50, ge=1)
    rerank_chain: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"name": "mmr", "lam": 0.7}, {"name": "truncate"}],
        description="operators applied in order; JSON in CASCADE_RERANK_CHAIN",
    )
    exposure_ttl_s: int = Field(1_800, ge=1)
    exposure_max_items: int = Field(2_000, ge=1)
    triton_timeout_s: float = Field(2.0, gt=0.0)
    max_body_bytes: int = Field(16_384, ge=256)

    @model_validator(mode="after")
    def _funnel_sizes_shrink(self) -> "Settings":
        if self.rank_keep > self.prerank_keep:
            raise ValueError(
                f"CASCADE_RANK_KEEP ({self.rank_keep}) must not exceed CASCADE_PRERANK_KEEP ({self.prerank_keep})"
            )
        return self

    @property
    def triton_grpc_url(self) -> str:
        return f"{self.triton_host}:{self.triton_grpc_port}"

    @property
    def triton_http_url(self) -> str:
        return f"{self.triton_host}:{self.triton_http_port}"

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"
