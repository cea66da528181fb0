"""The one typed settings object. Every knob is an environment variable `CASCADE_<FIELD>`."""
from __future__ import annotations

import ipaddress
import math
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cascade.experiments import parse_experiments
from cascade import heads

# p99 budget of each funnel stage, in the order the funnel runs them (the exposure read comes first: recall
# needs the live clicks it brings); HTTP, serialisation and slack take the rest (orchestrator.deadlines).
DEFAULT_STAGE_BUDGETS_MS = {
    "exposure_filter": 2.0, "recall": 5.0, "prerank": 8.0, "rank": 12.0, "rerank": 2.0, "exposure_write": 2.0,
}


MIN_ADMIN_TOKEN_BYTES = 32

# Each data source's embedding weight decay, chosen on validation AUC. MovieLens-100k (~80k training
# rows) overfits its id embeddings after one epoch at 0.2: 6.0 lifted the teacher's validation AUC
# from 0.731 to 0.739 and its test AUC from 0.746 to 0.756 (3.0: 0.739 / 0.753; 12.0: 0.738 / 0.754).
EMBEDDING_DECAY = {"synthetic": 0.2, "movielens": 6.0}
# Each data source's look-alike scorer learning rate, chosen on validation Recall@100 over training
# seeds 7/8/9. At 1e-3 the MovieLens scorer peaks within its first epoch and falls (best 0.245 / 0.211 /
# 0.217); 3e-4: 0.313 / 0.438 / 0.501. Synthetic data still climbs at epoch 20 at 3e-4 (0.453 against
# 0.500 at 1e-3, seed 7).
LOOKALIKE_LR = {"synthetic": 1e-3, "movielens": 3e-4}
PER_SOURCE = {"embedding_weight_decay": EMBEDDING_DECAY, "lookalike_lr": LOOKALIKE_LR}  # unset: the data source's own


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) is this machine alone: 127.0.0.0/8, ::1, localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # another name: it may resolve anywhere
        return False


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
    holdout_fraction: float = Field(0.1, gt=0.0, lt=0.5, description="the latest rows held out for test (a global time cut)")
    valid_fraction: float = Field(
        0.1, gt=0.0, lt=0.5, description="the rows before the test cut held out for validation (early stopping)",
    )
    epochs: int = Field(20, ge=1, description="teacher epochs at most: training stops once validation AUC has not risen for `teacher_patience` epochs")
    teacher_patience: int = Field(
        4, ge=1, description="epochs without a better validation AUC before a teacher member's training stops (it keeps "
        "its best epoch). Longer than `patience`: on MovieLens-100k two of three members' validation AUC fell for two "
        "epochs and then rose above its old best (0.7380 at epoch 2, 0.7416 at epoch 7)",
    )
    teacher_members: int = Field(
        3, ge=1, description="teachers trained under their own seeds; the teacher is the mean of their logits "
        "(cascade.models.teacher.TeacherEnsemble). 1: a single teacher",
    )
    distill_epochs: int = Field(20, ge=1, description="student and pre-ranker epochs at most, stopped the same way")
    patience: int = Field(2, ge=1, description="epochs without a better validation AUC before the student's or the pre-ranker's training stops (it keeps its best epoch)")
    retrieval_epochs: int = Field(10, ge=1, description="two-tower epochs")
    batch_size: int = Field(256, ge=16, description="the rankers' mini-batch (MovieLens: 256 over 1,024 gave the teacher +0.004 test AUC)")
    retrieval_batch_size: int = Field(1_024, ge=16, description="the two-tower's mini-batch: its in-batch softmax takes the batch's other items as negatives")
    embedding_weight_decay: float = Field(
        EMBEDDING_DECAY["synthetic"], ge=0.0, description="AdamW weight decay on the rankers' embedding tables (ids "
        "overfit within an epoch without it); unset: the data source's own (EMBEDDING_DECAY)",
    )
    hidden_user_ids: float = Field(
        0.3, ge=0.0, lt=1.0, description="the share of training rows whose user id is hidden behind the unknown bucket (how a cold-start user looks)",
    )
    distill_temperature: float = Field(2.0, gt=0.0)
    distill_label_weight: float = Field(0.5, ge=0.0, le=1.0)
    distill_hint_weight: float = Field(0.1, ge=0.0)
    distill_list_rows: int = Field(32, ge=0, description="rows of a step in the student's listwise phase (export.lists), each with a candidate list; 0: no such phase")
    distill_list_size: int = Field(100, ge=2, description="items per list: 64 % from the user's two-tower top CASCADE_RECALL_ANN_K (half of them the student's own best there), the rest from the catalogue")
    distill_list_temperature: float = Field(0.5, gt=0.0, description="softmax temperature of the list loss (lower: the teacher's top weighs more)")
    distill_list_weight: float = Field(3.0, ge=0.0, description="the list loss's weight beside the pointwise distillation loss")
    distill_list_steps: int = Field(500, ge=1, description="steps per epoch of the listwise phase")
    distill_list_epochs: int = Field(
        8, ge=1, description="listwise epochs at most: the phase stops once `patience` epochs bring no better graded NDCG@10 "
        "on the validation lists, and keeps its best epoch. At 4 the synthetic export's phase was cut while still rising "
        "(0.9682, 0.9726, 0.9743, 0.9757); MovieLens-100k's peaked at epoch 3")
    calibration_rows: int = Field(2_048, ge=16)
    rank_head_weights: str = Field(
        heads.DEFAULT, description="'click,second': how the served rank score mixes its click and second head "
        "(cascade.heads); the export bakes it in, and a serving process started with it set overrides that",
    )
    second_head_loss_weight: float = Field(
        0.5, ge=0.0, description="the student's second-head BCE beside its distillation loss",
    )
    cache_dir: Path = Path.home() / ".cache" / "cascade"

    # --- artefacts ---------------------------------------------------------------------
    artifacts_dir: Path = Path("artifacts")
    model_repository: Path = Path("model_repository")
    ensemble_repository: Path = Path("ensemble")
    triton_profile: Literal["cpu", "gpu"] = "cpu"
    gpu_scorer_backend: Literal["onnxruntime", "tensorrt", "python"] = Field(
        "onnxruntime", description="how the gpu profile serves a scorer: onnxruntime_onnx on the CUDA execution provider "
        "with the TensorRT accelerator; tensorrt_plan (engines from `python -m export.tensorrt --install`); or the "
        "Python backend on torch CUDA (tritonservers without those backends, e.g. nvidia-pytriton's)",
    )
    gpu_precision: Literal["fp32", "fp16"] = Field(
        "fp16", description="what the gpu profile's onnxruntime (TensorRT accelerator) and python scorers compute in",
    )
    gpu_max_rows: int = Field(
        4096, ge=1, description="the gpu profile's scorers batch candidate rows: at most this many per execution",
    )
    serve_precision: Literal["fp32", "int8"] = Field("fp32", description="which ONNX the CPU profile's scorers serve")
    max_batch_size: int = Field(64, ge=1)
    max_queue_delay_us: int = Field(100, ge=0, description="dynamic batching delay; for the fused CPU pipelines 0/100/500 us tie at 4-8 concurrent calls and 500 us adds ~0.5 ms p50 at 1 (perf/README.md)")
    model_instances: int = Field(1, ge=1)
    triton_versions_kept: int = Field(
        2, ge=1, description="python -m export.publish keeps this many newest versions of a scorer, plus those in use"
    )

    # --- servers -----------------------------------------------------------------------
    triton_host: str = "127.0.0.1"
    triton_http_port: int = Field(8000, ge=1, le=65535)
    triton_grpc_port: int = Field(8001, ge=1, le=65535)
    triton_metrics_port: int = Field(8002, ge=1, le=65535)
    redis_url: str | None = None
    redis_port: int = Field(6379, ge=1, le=65535)
    redis_cluster: bool = Field(
        False, description="CASCADE_REDIS_URL names one node of a Redis Cluster: clients route each key to its node "
        "(a user's keys share one hash tag, orchestrator/clients/keys.py)",
    )
    host: str = "127.0.0.1"
    admin_token: SecretStr | None = Field(
        None, description="bearer token the /admin endpoints require; unset: they are open, which only a loopback "
        "CASCADE_HOST allows (otherwise it must be 32 bytes or more)"
    )
    port: int = Field(8080, ge=1, le=65535)
    request_id_secret: SecretStr | None = Field(
        None, description="signs the request ids answers carry, so feedback labels are kept only for answers this "
        "service gave (cascade.request_ids); every process and replica must share it (the local stack keeps one "
        "under its run directory); unset: a random one per process",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_file: Path | None = Field(None, description="JSON log lines to this file, rotated; unset: stdout")
    log_max_bytes: int = Field(10 << 20, ge=1 << 16, description="the log file's size before it rotates")
    log_backups: int = Field(5, ge=1, description="rotated log files kept")
    workers: int = Field(
        2, ge=1, description="orchestrator processes `make demo` starts (uvicorn --workers); they share the active "
        "scorer versions and recall reloads through Redis and one /metrics (2 by measurement on 2 cores, perf/README.md)",
    )
    run_dir: Path = Path("run")

    # --- funnel ------------------------------------------------------------------------
    recall_ann_k: int = Field(1_000, ge=1)
    recall_popular_k: int = Field(200, ge=0)
    recall_config: Path = Field(Path("config/recall.toml"), description="recall channels TOML; re-read on POST /admin/reload-recall")
    recall_i2i_window: int = Field(5, ge=2, description="item-to-item: co-clicks within this many consecutive positives")
    recall_i2i_neighbours: int = Field(50, ge=1, description="item-to-item: neighbours kept per item")
    recall_threads: int = Field(2, ge=1, description="threads running the ANN channel beside the event loop")
    recall_i2i_k: int = Field(200, ge=0, description="item-to-item quota when the recall file names none")
    popular_decay_tau_s: float = Field(86_400.0, gt=0.0, description="trending clicks decay as exp(-age / tau)")
    popular_refresh_s: float = Field(5.0, gt=0.0, description="how often the trending list is re-read from Redis")
    faiss_nprobe: int = Field(32, ge=1, description="IVF lists probed per query (IVF indexes only)")
    prerank_keep: int = Field(200, ge=1)
    rank_keep: int = Field(50, ge=1)
    two_stage: bool = Field(
        True, description="call pre-rank and rank as one Triton call where Triton has the two-stage model of the "
        "request's versions (the cpu profile); false: always two calls",
    )
    rerank_chain: list[dict[str, Any]] = Field(
        # rank order, with the best item of each missing category at the end of the top 10 where the
        # list holds fewer than 4; chosen by `python -m export.choose_rerank` (README, "Rerank")
        default_factory=lambda: [{"name": "cover_categories", "min_categories": 4}, {"name": "truncate"}],
        description="operators applied in order; JSON in CASCADE_RERANK_CHAIN",
    )
    experiments: list[dict[str, Any]] = Field(
        default_factory=list,
        description='A/B experiments, JSON in CASCADE_EXPERIMENTS: [{"name", "arms": [{"name", "weight", '
        '"rerank_chain"?, "model_versions"?}]}]; the first one is in force. PUT /admin/experiments '
        'replaces them while serving: kept in Redis (cascade:experiments), taken over this variable at start, and '
        'followed by every process within versions_poll_s',
    )
    exposure_ttl_s: int = Field(1_800, ge=1)
    exposure_max_items: int = Field(2_000, ge=1)
    long_exposure_ttl_s: int = Field(7 * 86_400, ge=1, description="real impressions and clicks (POST /v1/feedback)")
    long_exposure_max_items: int = Field(5_000, ge=1)
    live_sequence_ttl_s: int = Field(7 * 86_400, ge=1, description="the clicks sequence POST /v1/feedback keeps per user")
    feedback_dedup_ttl_s: int = Field(2 * 86_400, ge=1, description="how long a feedback event_id is remembered")
    sample_log: bool = Field(True, description="log each answer's feature tensors and versions to the samples stream")
    sample_log_max_len: int = Field(100_000, ge=1, description="samples stream length (trimmed approximately)")
    sample_log_max_bytes: int = Field(
        256 << 20, ge=1 << 16, description="samples stream size in bytes of its entries (trimmed approximately): "
        "the stream keeps at most this many bytes' worth of entries, or sample_log_max_len of them, whichever is fewer",
    )
    label_ttl_s: int = Field(2 * 86_400, ge=1, description="how long feedback labels of a served sample are kept")
    dwell_positive_ms: int = Field(10_000, ge=0, description="a served item with this much dwell is a positive, click or not")
    feedback_max_body_bytes: int = Field(131_072, ge=256, description="body limit of POST /v1/feedback (500 events)")
    feedback_rate_per_s: float = Field(200.0, gt=0.0, description="feedback events a client may send per second, sustained")
    feedback_burst: int = Field(2_000, ge=1, description="feedback events a client may send at once (its bucket's size)")
    feedback_client_header: str | None = Field(
        None, description="the header naming the client for the feedback rate limit, set by a trusted proxy "
        "(e.g. x-client-id); unset: the peer address",
    )
    triton_timeout_s: float = Field(2.0, gt=0.0, description="warm-up and readiness calls; requests use stage budgets")
    triton_infer_protocol: Literal["http", "grpc"] = Field(
        "http", description="how the orchestrator sends scoring calls: HTTP with binary tensors (less client CPU per "
        "call, perf/README.md) or gRPC; model control always uses gRPC",
    )
    triton_reconnect_backoff_ms: int = Field(
        1_000, ge=10, description="longest wait between gRPC reconnect attempts while Triton is down"
    )
    max_body_bytes: int = Field(16_384, ge=256)
    admin_max_body_bytes: int = Field(
        262_144, ge=256, description="body limit of PUT /admin/experiments (8 experiments of 16 arms, names up to 64 characters)",
    )

    # --- look-alike audiences (POST /v1/lookalike) --------------------------------------
    lookalike_epochs: int = Field(20, ge=1, description="look-alike scorer epochs at most (the best validation Recall@100 is kept)")
    lookalike_lr: float = Field(
        LOOKALIKE_LR["synthetic"], gt=0.0, description="the look-alike scorer's Adam learning rate; unset: the data source's own (LOOKALIKE_LR)",
    )
    lookalike_valid_tasks: int = Field(300, ge=1, description="validation tasks the look-alike scorer's training stops on")
    lookalike_max_seeds: int = Field(500, ge=1, le=4_096, description="seed users a request may name; an item's latest likers up to this")
    lookalike_pool: int = Field(1_000, ge=1, description="candidates the look-alike scorer scores per request")
    lookalike_nearby_max: int = Field(
        1_000, ge=1, description="users within a request's radius read from Redis GEO, nearest first (1,000 over 2,000 "
        "by measurement: at concurrency 4 with half the requests near a city, 280 over 205 answers/s, p99 30 over 37 ms)",
    )
    lookalike_distance_weight: float = Field(0.6, ge=0.0, description="the blend: distance_weight x closeness + similarity_weight x similarity")
    lookalike_similarity_weight: float = Field(0.4, ge=0.0)
    lookalike_distance_scale_km: float = Field(5.0, gt=0.0, description="closeness = 1 - d / scale, clipped to [0, 1]")
    lookalike_cold_radius_km: float = Field(
        25.0, gt=0.0, le=50.0, description="cold start without a place asked for: candidates near the seeds' centroid within this",
    )
    lookalike_deadline_ms: float = Field(50.0, gt=0.0, description="a look-alike request's deadline; its scorer call gets what is left")
    lookalike_embedding_ttl_s: int = Field(3_600, ge=1, description="a live user's re-embedding stays in Redis this long")
    lookalike_refresh_s: float = Field(2.0, gt=0.0, description="how often users with new clicks are re-embedded")
    lookalike_refresh_batch: int = Field(256, ge=1, description="users re-embedded per user-tower call")

    # --- deadlines ---------------------------------------------------------------------
    request_deadline_ms: float = Field(50.0, gt=0.0, description="the whole request's deadline")
    stage_budgets_ms: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_STAGE_BUDGETS_MS),
        description='per-stage budgets; JSON in CASCADE_STAGE_BUDGETS_MS, e.g. {"rank": 20}: stages not named keep their default',
    )
    deadline_slack: bool = Field(
        True, description="a stage may also spend what the deadline has left beyond the budgets of the stages after it "
        "(earlier stages' unspent budgets, the unbudgeted part); false: exactly its budget. Replaces "
        "CASCADE_DEADLINE_ROLLOVER, which gave only the earlier stages' unspent budgets",
    )

    versions_poll_s: float = Field(
        0.5, gt=0.0, description="how often each orchestrator process reads the shared active scorer versions, "
        "experiments and recall reloads (Redis) and follows a change another process made",
    )

    # --- admission -----------------------------------------------------------------------
    max_in_flight: int = Field(
        3, ge=1, description="recommend requests each orchestrator process works on at once; more wait for a slot "
        "(3 per process with 2 processes, by measurement on 2 cores, perf/README.md)"
    )
    admission_wait_ms: float = Field(
        10.0, ge=0.0, description="how long a request may wait for a slot (it counts against its deadline); "
        "after that it is shed: 503 with Retry-After",
    )
    lookalike_max_in_flight: int = Field(
        2, ge=1, description="look-alike requests each orchestrator process works on at once; more wait for a slot "
        "(CASCADE_ADMISSION_WAIT_MS), then are shed",
    )

    @model_validator(mode="before")
    @classmethod
    def _data_source_defaults(cls, data: Any) -> Any:
        """An unset PER_SOURCE field takes the data source's own value."""
        if not isinstance(data, dict):
            return data
        source = data.get("data_source", "synthetic")
        return {**data, **{name: values[source] for name, values in PER_SOURCE.items()
                           if data.get(name) is None and source in values}}

    @field_validator("stage_budgets_ms", mode="before")
    @classmethod
    def _known_stages_positive_budgets(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # pydantic reports the wrong type
        unknown = sorted(str(stage) for stage in set(value) - set(DEFAULT_STAGE_BUDGETS_MS))
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; the stages are {', '.join(DEFAULT_STAGE_BUDGETS_MS)}")
        budgets = dict(DEFAULT_STAGE_BUDGETS_MS)
        for stage, ms in value.items():
            if isinstance(ms, bool) or not isinstance(ms, (int, float, str)):
                raise ValueError(f"{stage}: budget must be a number of milliseconds, got {ms!r}")
            try:
                budgets[stage] = float(ms)
            except ValueError:
                raise ValueError(f"{stage}: budget must be a number of milliseconds, got {ms!r}") from None
            if not math.isfinite(budgets[stage]) or budgets[stage] <= 0:
                raise ValueError(f"{stage}: budget must be a finite number of milliseconds > 0, got {ms!r}")
        return budgets

    @field_validator("rank_head_weights")
    @classmethod
    def _two_head_weights(cls, value: str) -> str:
        heads.parse_head_weights(value)
        return value

    @property
    def head_weights(self) -> tuple[float, float]:
        return heads.parse_head_weights(self.rank_head_weights)

    @field_validator("experiments", mode="before")
    @classmethod
    def _valid_experiments(cls, value: Any) -> Any:
        parse_experiments(value)  # ValueError naming the experiment and arm; load_settings names the variable
        return value

    @model_validator(mode="after")
    def _admin_guarded_off_loopback(self) -> "Settings":
        """An orchestrator others can reach takes operator calls (version switches, reloads) only with
        a real secret: a token of 32 bytes or more."""
        token = self.admin_token.get_secret_value() if self.admin_token is not None else ""
        if self.admin_token is not None and not token.strip():
            raise ValueError("CASCADE_ADMIN_TOKEN is set but empty: unset it (loopback only) or give it 32 bytes or more")
        if not is_loopback(self.host) and len(token.encode()) < MIN_ADMIN_TOKEN_BYTES:
            raise ValueError(
                f"CASCADE_HOST={self.host} is reachable from other machines: CASCADE_ADMIN_TOKEN must be set to "
                f"{MIN_ADMIN_TOKEN_BYTES} bytes or more (it is {'unset' if self.admin_token is None else f'{len(token.encode())} bytes'}), "
                "or bind to 127.0.0.1"
            )
        return self

    @model_validator(mode="after")
    def _request_id_secret_long_enough(self) -> "Settings":
        if self.request_id_secret is not None and len(self.request_id_secret.get_secret_value().encode()) < 16:
            raise ValueError("CASCADE_REQUEST_ID_SECRET must be 16 bytes or more (or unset: a random one per process)")
        return self

    @model_validator(mode="after")
    def _funnel_sizes_shrink(self) -> "Settings":
        if self.rank_keep > self.prerank_keep:
            raise ValueError(
                f"CASCADE_RANK_KEEP ({self.rank_keep}) must not exceed CASCADE_PRERANK_KEEP ({self.prerank_keep})"
            )
        if self.data_source == "synthetic" and self.n_interactions < 5 * self.n_users:
            raise ValueError(
                f"CASCADE_N_INTERACTIONS ({self.n_interactions}) must be at least 5 x CASCADE_N_USERS "
                f"({5 * self.n_users}): the generator gives every user five interactions or more"
            )
        if self.admission_wait_ms >= self.request_deadline_ms:
            raise ValueError(
                f"CASCADE_ADMISSION_WAIT_MS ({self.admission_wait_ms:g}) must be shorter than CASCADE_REQUEST_DEADLINE_MS "
                f"({self.request_deadline_ms:g}): the wait counts against the deadline"
            )
        planned = sum(self.stage_budgets_ms.values())
        if planned > self.request_deadline_ms:
            raise ValueError(
                f"CASCADE_STAGE_BUDGETS_MS add up to {planned:g} ms, more than CASCADE_REQUEST_DEADLINE_MS "
                f"({self.request_deadline_ms:g} ms)"
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


class SettingsError(ValueError):
    pass


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with errors that name the CASCADE_* variable at fault."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            variable = "CASCADE_" + "_".join(str(p) for p in e["loc"]).upper() if e["loc"] else "settings"
            problems.append(f"{variable}: {e['msg']} (got {e.get('input')!r})" if e["loc"] else f"{variable}: {e['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems)) from None


def settings_or_report() -> Settings | None:
    """For command-line tools: the settings, or None after printing what is wrong to stderr (exit 2)."""
    try:
        return load_settings()
    except SettingsError as err:
        print(err, file=sys.stderr)
        return None
