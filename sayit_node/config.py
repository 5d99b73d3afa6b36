"""One Settings object for the whole node.

Sources, strongest first: CLI flags (passed as init kwargs), environment, `.env` in the
working directory, `config.toml` in the user config directory, defaults.

Names that existing SayIt deployments use keep their plain names (PORT, HOST, ...); every
other setting carries the SAYIT_ prefix in the environment. In config.toml every key is the
setting's field name (lower case, no prefix); tables such as [desktop] belong to other programs
and are skipped, but an unknown top-level key is an error that names it (a typo must not be
silently ignored). Every problem is raised as one SettingsError with a one-line message.
"""

from __future__ import annotations

import difflib
import os
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import platformdirs
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

APP_NAME = "sayit"


def config_file_path() -> Path:
    """Where the node (and the tray app) keep config.toml. SAYIT_CONFIG_FILE overrides."""
    override = os.environ.get("SAYIT_CONFIG_FILE")
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


def default_log_dir() -> Path:
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


class SettingsError(ValueError):
    """A setting the node cannot use (bad value, unreadable or unknown key in config.toml)."""


CommaList = Annotated[list[str], NoDecode]


def to_aliases(settings_cls: type[BaseSettings], values: dict[str, Any]) -> dict[str, Any]:
    """Field names (config.toml keys, CLI flags) -> the env names the model validates by.

    Each field is validated only by its env name so that unrelated variables such as the
    locale's LANGUAGE never leak into SAYIT_LANGUAGE. Unknown keys are dropped.
    """
    out = {}
    for key, value in values.items():
        field = settings_cls.model_fields.get(key.lower())
        if field is not None:
            out[field.validation_alias or key.lower()] = value
    return out


class ConfigTomlSource(PydanticBaseSettingsSource):
    """Reads config.toml; top-level keys only (tables are other programs' sections)."""

    def get_field_value(self, field, field_name):  # pragma: no cover - not used
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = config_file_path()
        if not path.is_file():
            return {}
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read {path}: {exc}") from exc
        values = {k: v for k, v in data.items() if not isinstance(v, dict)}
        known = self.settings_cls.model_fields
        for key in values:
            if key.lower() not in known:
                close = difflib.get_close_matches(key.lower(), known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise SettingsError(f"{path}: unknown setting '{key}'{hint}")
        return to_aliases(self.settings_cls, values)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # --- names existing deployments already use -------------------------------------------
    host: str = Field("127.0.0.1", validation_alias="HOST")
    port: int = Field(3000, ge=0, le=65535, validation_alias="PORT")
    allowed_origins: CommaList = Field(
        default_factory=list, validation_alias="ALLOWED_ORIGINS"
    )
    # Host names (besides its own names and addresses) this node answers to; "*" for any.
    allowed_hosts: CommaList = Field(
        default_factory=list, validation_alias="ALLOWED_HOSTS"
    )
    max_concurrent_chunks: int = Field(
        default_factory=lambda: max(1, os.cpu_count() or 1),
        ge=1,
        validation_alias="MAX_CONCURRENT_CHUNKS",
    )
    worker_id: str = Field(
        default_factory=socket.gethostname, validation_alias="WORKER_ID"
    )
    whisper_cache_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)) / "models",
        validation_alias="WHISPER_CACHE_DIR",
    )

    # --- SAYIT_ settings ---------------------------------------------------------------------
    model: str = Field("tiny.en", validation_alias="SAYIT_MODEL")
    # Diarization's speaker-embedding model: "ge2e" (shipped), an .onnx path, or a hub repo id.
    speaker_model: str = Field("ge2e", validation_alias="SAYIT_SPEAKER_MODEL")
    # "simulated" sleeps instead of transcribing: for scheduling tests and benchmarks only.
    engine: Literal["auto", "faster-whisper", "mlx", "simulated"] = Field(
        "auto", validation_alias="SAYIT_ENGINE"
    )
    # auto: CUDA when CTranslate2 sees a GPU, else the CPU (faster-whisper engine).
    device: Literal["auto", "cpu", "cuda"] = Field("auto", validation_alias="SAYIT_DEVICE")
    # auto: float16 on CUDA, int8 on the CPU.
    compute_type: str = Field("auto", validation_alias="SAYIT_COMPUTE_TYPE")
    # Chunks decoded together in one CTranslate2 call (faster-whisper); 1 = one chunk per call.
    batch_size: int = Field(8, ge=1, le=64, validation_alias="SAYIT_BATCH_SIZE")
    # Model workers sharing those chunks (each with cores / workers threads; at most the cores).
    batch_workers: int = Field(2, ge=1, le=64, validation_alias="SAYIT_BATCH_WORKERS")
    beam_size: int = Field(5, ge=1, le=20, validation_alias="SAYIT_BEAM_SIZE")
    language: str | None = Field(None, validation_alias="SAYIT_LANGUAGE")
    max_duration_minutes: float = Field(
        30, gt=0, validation_alias="SAYIT_MAX_DURATION_MINUTES"
    )
    max_upload_mb: int = Field(
        1024, gt=0, validation_alias="SAYIT_MAX_UPLOAD_MB"
    )
    retention_hours: float = Field(
        24, gt=0, validation_alias="SAYIT_RETENTION_HOURS"
    )
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
        validation_alias="SAYIT_DATA_DIR",
    )
    api_keys: CommaList = Field(
        default_factory=list, validation_alias="SAYIT_API_KEYS"
    )
    # Uploads are refused with 503 while the data directory has less free space than this.
    min_free_disk_mb: int = Field(
        500, ge=0, validation_alias="SAYIT_MIN_FREE_DISK_MB"
    )
    # Bounds on queued work (audio accepted and not transcribed yet) and on connections.
    max_queued_minutes: float = Field(240, gt=0, validation_alias="SAYIT_MAX_QUEUED_MINUTES")
    max_queued_minutes_per_client: float = Field(
        120, gt=0, validation_alias="SAYIT_MAX_QUEUED_MINUTES_PER_CLIENT"
    )
    max_concurrent_uploads: int = Field(32, ge=1, validation_alias="SAYIT_MAX_CONCURRENT_UPLOADS")
    max_event_streams: int = Field(32, ge=1, validation_alias="SAYIT_MAX_EVENT_STREAMS")
    log_dir: Path = Field(
        default_factory=default_log_dir, validation_alias="SAYIT_LOG_DIR"
    )
    # The node exits when this process id is gone (set by the tray app for its child node).
    parent_pid: int | None = Field(None, validation_alias="SAYIT_PARENT_PID")

    # --- federation -------------------------------------------------------------------------
    redis_url: str | None = Field(None, validation_alias="REDIS_URL")
    redis_host: str | None = Field(None, validation_alias="REDIS_HOST")
    redis_port: int = Field(6379, validation_alias="REDIS_PORT")
    redis_password: str | None = Field(None, validation_alias="REDIS_PASSWORD")
    cluster_secret: str | None = Field(None, validation_alias="SAYIT_CLUSTER_SECRET")
    host_redis: bool = Field(False, validation_alias="SAYIT_HOST_REDIS")
    redis_server_path: str = Field("redis-server", validation_alias="SAYIT_REDIS_SERVER")
    hosted_redis_port: int = Field(6390, validation_alias="SAYIT_HOSTED_REDIS_PORT")
    # New uploads get 503 when Redis memory would pass this budget (0: no budget).
    redis_memory_budget_mb: int = Field(0, ge=0, validation_alias="SAYIT_REDIS_MEMORY_BUDGET_MB")
    discovery: bool = Field(True, validation_alias="SAYIT_DISCOVERY")
    # Seconds per audio second for the simulated engine (0.01 = 100x real time).
    simulated_cost: float = Field(0.01, gt=0, validation_alias="SAYIT_SIMULATED_COST")

    @field_validator("allowed_origins", "allowed_hosts", "api_keys", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("device", mode="before")
    @classmethod
    def _device_lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("language", mode="before")
    @classmethod
    def _empty_language_is_auto(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "auto"):
            return None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls,
        init_settings,
        env_settings,
        dotenv_settings,
        file_secret_settings,
    ):
        return (init_settings, env_settings, dotenv_settings, ConfigTomlSource(settings_cls))

    @property
    def effective_redis_url(self) -> str | None:
        """REDIS_URL, or one built from the REDIS_HOST/PORT/PASSWORD names older deployments use."""
        if self.redis_url:
            return self.redis_url
        if self.redis_host:
            auth = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
            return f"redis://{auth}{self.redis_host}:{self.redis_port}/0"
        return None

    @property
    def concurrency_given(self) -> bool:
        """MAX_CONCURRENT_CHUNKS was set (else the engine says how many chunks keep it busy)."""
        return "max_concurrent_chunks" in self.model_fields_set

    @property
    def max_duration_seconds(self) -> float:
        return self.max_duration_minutes * 60.0

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def db_path(self) -> Path:
        return self.data_dir / "sayit.db"


def load_settings(**overrides: Any) -> Settings:
    """Build settings; `overrides` are CLI flags (None means "not given"). Raises SettingsError."""
    try:
        return Settings(**to_aliases(Settings, {k: v for k, v in overrides.items() if v is not None}))
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or "settings"
        value = first.get("input")
        shown = f"={value!r}" if isinstance(value, (str, int, float, bool)) else ""
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise SettingsError(f"invalid setting {name}{shown}: {first['msg']}{more}") from None
