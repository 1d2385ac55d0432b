"""Request bodies of the API (responses are plain JSON: ScopedKey strings, lists, dicts)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

MAX_BULK = 100_000

Keys = Annotated[list[str], Field(max_length=MAX_BULK)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NetworksBody(Body):
    networks: Keys


class NetworkStatesBody(Body):
    networks: Keys
    states: Keys


class NetworkWeightsBody(Body):
    networks: Keys
    weights: Annotated[list[float], Field(max_length=MAX_BULK)]


class WeightBody(Body):
    weight: float = Field(ge=0, le=1)


class TasksBody(Body):
    tasks: Keys


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
    extends: str | None = None


class BulkCreateTasksBody(Body):
    transformations: Keys
    extends: list[str | None] | None = None


class RestartPatternsBody(Body):
    patterns: Annotated[list[str], Field(max_length=1000)]
    num_allowed_restarts: int = Field(1, ge=1, le=1_000_000)


class PatternsBody(Body):
    patterns: Annotated[list[str], Field(max_length=1000)]


class ClaimBody(Body):
    compute_service_id: str = Field(min_length=1, max_length=200)
    count: int = Field(1, ge=1, le=1000)
    scopes: Annotated[list[str], Field(max_length=1000)] = Field(default_factory=lambda: ["*-*-*"])
    protocols: Annotated[list[str], Field(max_length=1000)] | None = None
    scopes_exclude: Annotated[list[str], Field(max_length=1000)] | None = None


class BulkResultsBody(Body):
    transformations: Keys
    ok: bool | None = True


class LocationsBody(Body):
    locations: Annotated[list[str], Field(max_length=10_000)]
