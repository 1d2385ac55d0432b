"""One settings tree for every part of a deployment.

Sources, lowest precedence first: class defaults < TOML file < environment
(``ALCHEMISCALE_LOCAL_`` prefix, ``__`` for nesting) < explicit keyword arguments
(what the CLI passes from its flags).

The TOML file is ``<config dir>/config.toml``; ``ALCHEMISCALE_LOCAL_CONFIG_FILE``
points elsewhere. Directories default to platformdirs locations.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

APP_NAME = "alchemiscale-local"
ENV_PREFIX = "ALCHEMISCALE_LOCAL_"

# The newest 5.26.x LTS release published on Maven Central for both artifacts.
NEO4J_VERSION = "5.26.30"


def default_config_file() -> Path:
    """Where the optional TOML settings file lives."""
    explicit = os.environ.get(f"{ENV_PREFIX}CONFIG_FILE")
    if explicit:
        return Path(explicit)
    config_dir = os.environ.get(f"{ENV_PREFIX}CONFIG_DIR")
    base = Path(config_dir) if config_dir else Path(platformdirs.user_config_dir(APP_NAME))
    return base / "config.toml"


def _default_runtime_dir() -> Path:
    # Without XDG_RUNTIME_DIR platformdirs warns and falls back to /tmp/runtime-<uid>;
    # the state dir is private to the user and survives the same way, so use it.
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(platformdirs.user_runtime_dir(APP_NAME))
    return Path(platformdirs.user_state_dir(APP_NAME)) / "run"


class Neo4jSettings(BaseModel):
    """How the state store's Neo4j is obtained."""

    launcher: Literal["auto", "jar", "docker", "external"] = "auto"
    version: str = NEO4J_VERSION
    uri: str | None = Field(None, description="Bolt URI, for the external launcher")
    user: str = "neo4j"
    password: SecretStr | None = Field(None, description="external launcher only; others generate one")
    database: str = "neo4j"
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="Bolt port; 0 picks a free one")
    heap: str = Field("512m", pattern=r"^\d+[kKmMgG]$")
    pagecache: str = Field("256m", pattern=r"^\d+[kKmMgG]$")
    transaction_timeout_s: int = Field(120, ge=1)
    java_home: Path | None = None
    docker_image: str = "neo4j:5.26-community"
    start_timeout_s: float = Field(180.0, gt=0)


class ObjectStoreSettings(BaseModel):
    """Where results live: any fsspec URL (``file://`` default, ``s3://bucket/prefix``)."""

    url: str | None = Field(None, description="defaults to file://<data dir>/objects")
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    profile: str | None = None


class APISettings(BaseModel):
    """The combined user + compute API process."""

    host: str = Field("127.0.0.1", description="bind address (`up --bind`); off loopback: HTTPS only")
    port: int = Field(0, ge=0, le=65535, description="0 picks a free one")
    # -- network exposure (launchers/tls.py) --
    tls_cert: Path | None = Field(None, description="PEM certificate (chain) to serve HTTPS with")
    tls_key: Path | None = Field(None, description="the certificate's PEM private key")
    insecure_http: bool = Field(False, description="allow plain HTTP on a non-loopback address (unsafe)")
    public_host: str | None = Field(
        None, description="host clients elsewhere use; default the bind address (0.0.0.0: primary address)"
    )

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _absolute_tls(cls, value: Path | None) -> Path | None:
        # the API process may run elsewhere than the `up` that named the files
        return value.expanduser().absolute() if value is not None else None

    jwt_secret: SecretStr | None = Field(None, description="generated and kept in a 0600 file if unset")
    token_ttl_s: int = Field(900, ge=10)
    max_body_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    reaper_interval_s: float = Field(5.0, gt=0)
    service_ttl_s: float = Field(30.0, gt=0, description="a compute service silent this long is expired")
    max_failures: int = Field(3, ge=1, description="deny a service after this many failures ...")
    failure_window_s: float = Field(3600.0, gt=0, description="... within this window")
    # The API's work per request is Python on one GIL per process: past the core count more
    # workers only contend; 4 caps the memory (~80 MB each) and Neo4j connections (a pool each),
    # and leaves cores to Neo4j and the compute services on the same host.
    workers: int = Field(
        default_factory=lambda: max(1, min(4, os.cpu_count() or 1)),
        ge=1,
        le=64,
        description="uvicorn worker processes on the API's one address (default: cores, at most 4)",
    )


#: what a task's shared/permanent files are kept by default: small analysis outputs
DEFAULT_KEEP_GLOBS = [
    "*.png", "*.svg", "*.pdf", "*.json", "*.npz", "*.npy", "*.csv", "*.tsv",
    "*.log", "*.txt", "*.out", "*.dat", "*.yaml", "*.yml", "*.md",
]  # fmt: skip

GiB = 1 << 30
MiB = 1 << 20


class ArtifactSettings(BaseModel):
    """What a compute service keeps of a task's files and log (uploaded next to its result).

    Globs match a file's name, or its path under the shared/permanent directory when they
    contain ``/``. Big trajectories and checkpoints are opt-in: add e.g. ``"*.nc"``, ``"*.chk"``
    to ``keep`` and raise the caps. The API enforces the caps and the quota for every service.
    """

    enabled: bool = True
    keep: list[str] = Field(default_factory=lambda: list(DEFAULT_KEEP_GLOBS))
    exclude: list[str] = Field(default_factory=list, description="globs never kept, even if kept above")
    max_file_bytes: int = Field(64 * MiB, ge=0, description="a bigger file is skipped")
    max_task_bytes: int = Field(256 * MiB, ge=0, description="per task attempt, log included")
    max_log_bytes: int = Field(16 * MiB, ge=0, description="a longer protocol log keeps its tail")
    quota_bytes: int = Field(20 * GiB, ge=0, description="all task files of the deployment")


class ComputeSettings(BaseModel):
    """Compute services and their pool (alchemiscale's names and defaults where it has them)."""

    gpus: str = Field("auto", description="'auto', 'none', or a comma list of device ids")
    per_gpu: int = Field(1, ge=1)
    cpu_services: int | None = Field(None, ge=0, description="None: one CPU service when no GPU is found")
    scopes: list[str] = Field(default_factory=lambda: ["*-*-*"])
    scopes_exclude: list[str] | None = Field(None, description="scopes never claimed from")
    protocols: list[str] | None = None
    claim_limit: int = Field(1, ge=1)
    idle_backoff_s: float = Field(1.0, gt=0)
    idle_backoff_max_s: float = Field(5.0, gt=0)
    heartbeat_interval_s: float = Field(5.0, gt=0)
    n_retries: int = Field(3, ge=0, description="per-ProtocolUnit retries, passed to execute_DAG")
    max_tasks: int | None = Field(None, ge=1, description="stop after this many tasks")
    max_time: float | None = Field(None, gt=0, description="seconds; claim nothing new after this")
    keep_shared: bool = Field(False, description="keep each task's shared directory after it ran")
    keep_scratch: bool = Field(False, description="keep each task's scratch directory after it ran")
    shared_basedir: Path | None = Field(None, description="default: <data dir>/<name>/compute")
    scratch_basedir: Path | None = Field(None, description="default: <data dir>/<name>/compute")
    loglevel: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="compute service log and the protocol process's log"
    )
    artifacts: ArtifactSettings = Field(default_factory=lambda: ArtifactSettings())

    @field_validator("loglevel", mode="before")
    @classmethod
    def _level_name(cls, value: Any) -> Any:
        # alchemiscale's templates say "WARN"; logging's canonical name is WARNING
        if isinstance(value, str):
            value = value.strip().upper()
            return "WARNING" if value == "WARN" else value
        return value

    restart_backoff_s: float = Field(1.0, gt=0)


class Settings(BaseSettings):
    """The resolved settings of one deployment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    name: str = Field("default", pattern=r"^[a-zA-Z][a-zA-Z0-9_]*$", description="deployment name")
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)))
    cache_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_cache_dir(APP_NAME)))
    config_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_config_dir(APP_NAME)))
    log_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_log_dir(APP_NAME)))
    runtime_dir: Path = Field(default_factory=lambda: _default_runtime_dir())
    neo4j: Neo4jSettings = Field(default_factory=lambda: Neo4jSettings())
    objectstore: ObjectStoreSettings = Field(default_factory=lambda: ObjectStoreSettings())
    api: APISettings = Field(default_factory=lambda: APISettings())
    compute: ComputeSettings = Field(default_factory=lambda: ComputeSettings())

    @field_validator("data_dir", "cache_dir", "config_dir", "log_dir", "runtime_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @model_validator(mode="after")
    def _absolute_basedirs(self) -> Settings:
        for name in ("shared_basedir", "scratch_basedir"):
            value = getattr(self.compute, name)
            if value is not None:
                setattr(self.compute, name, Path(value).expanduser().absolute())
        return self

    @model_validator(mode="after")
    def _default_object_url(self) -> Settings:
        if not self.objectstore.url:
            self.objectstore.url = (self.data_dir / "objects").as_uri()
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=default_config_file())
        return (init_settings, env_settings, toml)

    # -- derived locations -------------------------------------------------
    @property
    def deployment_dir(self) -> Path:
        """Per-deployment data: Neo4j store, object store, compute scratch."""
        return self.data_dir / self.name

    @property
    def neo4j_home(self) -> Path:
        return self.deployment_dir / "neo4j"

    @property
    def secrets_dir(self) -> Path:
        return self.config_dir / self.name

    @property
    def credentials_file(self) -> Path:
        """API URL + identities written by a deployment (0600)."""
        return self.secrets_dir / "credentials.json"

    @property
    def state_file(self) -> Path:
        """Pids and ports of a running deployment."""
        return self.runtime_dir / f"{self.name}.state.json"

    @property
    def jar_dir(self) -> Path:
        return self.cache_dir / "neo4j-jars" / self.neo4j.version


def load_settings(**overrides: Any) -> Settings:
    """Resolve settings; ``overrides`` (nested dicts allowed) win over file and env."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)


_SECRET_MASK = "********"


def masked_dump(settings: Settings, *, reveal: bool = False) -> dict[str, Any]:
    """The resolved settings as JSON-ready data, secrets masked (``reveal`` only for 0600 files)."""

    def walk(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value() if reveal else _SECRET_MASK
        if isinstance(value, BaseModel):
            return {k: walk(getattr(value, k)) for k in type(value).model_fields}
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return walk(settings)


def settings_from_file(path: Path) -> Settings:
    """Settings written by :func:`masked_dump` with ``reveal=True`` (how children inherit them)."""
    import json

    return Settings(**json.loads(Path(path).read_text()))
