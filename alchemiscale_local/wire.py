"""The wire contract: request bodies of the user and compute APIs, shared by the server and the clients.

Bodies follow alchemiscale 0.8's wire format so its own client works unchanged; keys in a
body may be ScopedKey strings or alchemiscale's ``{gufe_key, org, campaign, project}``
objects, and reach the routes as :class:`ScopedKey` objects (one validator: ``KeyIn``).
Nothing here imports gufe or the server's packages.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    model_validator,
)

from alchemiscale_local.models import InvalidIdentifier, ScopedKey

MAX_BULK = 100_000

#: JSON schema of a key in a body: its string or alchemiscale's object form.
_KEY_SCHEMA = {
    "anyOf": [
        {"type": "string", "description": "<Qualname>-<token>-<org>-<campaign>-<project>"},
        {
            "type": "object",
            "properties": {p: {"type": "string"} for p in ("gufe_key", "org", "campaign", "project")},
            "required": ["gufe_key", "org", "campaign", "project"],
        },
    ]
}


def _key(value: Any) -> ScopedKey:
    return ScopedKey.coerce(value)


def _key_or_none(value: Any) -> ScopedKey | None:
    """Bulk getters answer None for a key they cannot read, rather than refusing the batch."""
    if value is None:
        return None
    if not isinstance(value, (str, dict, ScopedKey)):
        raise ValueError("a scoped key must be a string or a {gufe_key, org, campaign, project} object")
    try:
        return ScopedKey.coerce(value)
    except (InvalidIdentifier, ValueError, KeyError, TypeError):
        return None


def _key_text(sk: ScopedKey | None) -> str | None:
    return None if sk is None else str(sk)


#: Our clients send a key as its string (the short form; both are accepted).
_AS_TEXT = PlainSerializer(_key_text, when_used="json")

#: A key in a body: a ScopedKey string or object; anything else is a 422.
KeyIn = Annotated[ScopedKey, BeforeValidator(_key), _AS_TEXT, WithJsonSchema(_KEY_SCHEMA)]
#: A key in a bulk getter's body: unreadable ones become None (answered with None).
LooseKey = Annotated[ScopedKey | None, BeforeValidator(_key_or_none), _AS_TEXT, WithJsonSchema(_KEY_SCHEMA)]

Keys = Annotated[list[KeyIn], Field(max_length=MAX_BULK)]
LooseKeys = Annotated[list[LooseKey], Field(max_length=MAX_BULK)]
Patterns = Annotated[list[str], Field(max_length=1000)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- networks ---------------------------------------------------------------------------------
class NetworkSubmission(BaseModel):
    """``POST /networks``: a network's keyed chain, its scope (``'org-campaign-project'`` or
    alchemiscale's ``{org, campaign, project}``) and its state. The values are typed loosely on
    purpose: the route and the store check them, with a 400 that names what is wrong."""

    network: Any
    scope: Any
    state: Any = "active"


class NetworksBody(Body):
    networks: Keys


class NetworkStatesBody(Body):
    networks: Keys
    states: Annotated[list[str], Field(max_length=MAX_BULK)]


class NetworkWeightsBody(Body):
    networks: Keys
    weights: Annotated[list[float], Field(max_length=MAX_BULK)]


class WeightBody(Body):
    """This project's form; alchemiscale posts the bare number (both accepted)."""

    weight: float = Field(ge=0, le=1)


class ActionedBody(Body):
    """``task_weights``: answer ``{key: weight}`` (True) or a list of keys (False, alchemiscale's default)."""

    task_weights: bool = True


class BulkActionedBody(Body):
    networks: Keys
    task_weights: bool = True


# -- tasks ------------------------------------------------------------------------------------
class TaskKeysBody(Body):
    tasks: Keys


class LooseTaskKeysBody(Body):
    tasks: LooseKeys


class ActionBody(Body):
    tasks: Keys
    weight: float | list[float] | None = None


class TaskStatusBody(Body):
    tasks: Keys
    status: str


class TaskPriorityBody(Body):
    tasks: Keys
    priority: int = Field(ge=1, le=2**63 - 1)


class CreateTasksBody(Body):
    count: int = Field(1, ge=1, le=10_000)
    extends: KeyIn | None = None


class BulkCreateTasksBody(Body):
    transformations: Keys
    extends: Annotated[list[KeyIn | None], Field(max_length=MAX_BULK)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_is_none(cls, data: Any) -> Any:
        # alchemiscale's client sends "" or null for "extends nothing"
        if isinstance(data, dict) and isinstance(data.get("extends"), list):
            data = {**data, "extends": [e or None for e in data["extends"]]}
        return data


# -- restart patterns -------------------------------------------------------------------------
class RestartPatternsBody(Body):
    patterns: Patterns
    num_allowed_restarts: int = Field(1, ge=1, le=1_000_000)


class MaxRetriesBody(Body):
    """alchemiscale names the count ``max_retries``; this project's client ``num_allowed_restarts``."""

    patterns: Patterns
    max_retries: int | None = Field(None, ge=1, le=1_000_000)
    num_allowed_restarts: int | None = Field(None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _one_count(self) -> MaxRetriesBody:
        if (self.max_retries is None) == (self.num_allowed_restarts is None):
            raise ValueError("give exactly one of max_retries or num_allowed_restarts")
        return self

    @property
    def count(self) -> int:
        return self.max_retries if self.max_retries is not None else self.num_allowed_restarts  # type: ignore[return-value]


class PatternsBody(Body):
    patterns: Patterns


# -- strategies -------------------------------------------------------------------------------
class StrategyBody(BaseModel):
    """``POST /networks/{network}/strategy``: the Strategy's keyed chain (null removes it) and the
    settable StrategyState fields. Other fields pass through, so the store names them when it
    refuses them (it also checks the values' ranges)."""

    model_config = ConfigDict(extra="allow")

    strategy: list | None
    max_tasks_per_transformation: StrictInt = 3
    task_scaling: StrictStr = "exponential"
    mode: StrictStr = "partial"
    sleep_interval: StrictInt = 3600

    def state(self) -> dict[str, Any]:
        """The StrategyState fields (every field but the strategy)."""
        return self.model_dump(exclude={"strategy"})


# -- compute API ------------------------------------------------------------------------------
class ServiceTasksBody(Body):
    """Tasks a compute service runs (``/compute/computeservice/{id}/tasks/unwanted``)."""

    tasks: Keys


class ClaimBody(Body):
    compute_service_id: str = Field(min_length=1, max_length=200)
    count: int = Field(1, ge=1, le=1000)
    scopes: Annotated[list[str], Field(max_length=1000)] = Field(default_factory=lambda: ["*-*-*"])
    protocols: Annotated[list[str], Field(max_length=1000)] | None = None
    scopes_exclude: Annotated[list[str], Field(max_length=1000)] | None = None


# -- task files (compute API) -----------------------------------------------------------------
class FileEntry(BaseModel):
    path: str = Field(min_length=1, max_length=900)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class SkippedEntry(BaseModel):
    path: str = Field(max_length=2000)
    size: int | None = Field(None, ge=0)
    reason: str = Field(max_length=2000)


class ManifestBody(BaseModel):
    """An attempt's kept files (``POST /compute/tasks/{task}/files/{pdr_key}/manifest``)."""

    ok: bool
    created: float
    files: list[FileEntry] = Field(default_factory=list, max_length=100_000)
    skipped: list[SkippedEntry] = Field(default_factory=list, max_length=10_000)
    log_size: int | None = Field(None, ge=0, description="the log's full size when only its tail was kept")
    upload_s: float | None = None


# -- results ----------------------------------------------------------------------------------
class BulkResultsBody(Body):
    transformations: Keys
    ok: bool | None = True


class LocationsBody(Body):
    locations: Annotated[list[str], Field(max_length=10_000)]


#: ``Accept`` of this project's client for result references as objects (alchemiscale: key strings).
REFS_MEDIA_TYPE = "application/vnd.alchemiscale-local.refs+json"
#: ``Accept`` for a result's raw zstd bytes (alchemiscale: ``["<zstd as latin-1>"]`` JSON).
ZSTD_MEDIA_TYPE = "application/zstd"
#: Qualname of the key standing for a stored result (alchemiscale's ProtocolDAGResultRef).
RESULT_REF_QUALNAME = "ProtocolDAGResultRef"


def result_ref_key(pdr_key: str, scope_parts: tuple[str, str, str]) -> str:
    """The ``ProtocolDAGResultRef-<token>-<scope>`` key of a stored result (its pdr token reused)."""
    token = pdr_key.split("-", 1)[1]
    return f"{RESULT_REF_QUALNAME}-{token}-" + "-".join(scope_parts)


def ref_token(segment: str) -> str | None:
    """The pdr token of a ``ProtocolDAGResultRef-...`` key; None for anything else (a bare pdr key)."""
    parts = segment.split("-")
    if len(parts) == 5 and parts[0] == RESULT_REF_QUALNAME:
        return parts[1]
    return None
