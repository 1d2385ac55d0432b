"""Request bodies of the API: the user API's live in :mod:`alchemiscale_local.wire` (re-exported)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from alchemiscale_local.wire import (
    MAX_BULK,
    ActionBody,
    ActionedBody,
    Body,
    BulkActionedBody,
    BulkCreateTasksBody,
    BulkResultsBody,
    CreateTasksBody,
    LocationsBody,
    LooseTaskKeysBody,
    MaxRetriesBody,
    NetworksBody,
    NetworkStatesBody,
    NetworkWeightsBody,
    PatternsBody,
    RestartPatternsBody,
    TaskKeysBody,
    TaskPriorityBody,
    TaskStatusBody,
    WeightBody,
)

#: Keys as strings (the compute API's bodies).
Keys = Annotated[list[str], Field(max_length=MAX_BULK)]


class TasksBody(Body):
    """Task keys as strings (compute routes)."""

    tasks: Keys


class ClaimBody(Body):
    compute_service_id: str = Field(min_length=1, max_length=200)
    count: int = Field(1, ge=1, le=1000)
    scopes: Annotated[list[str], Field(max_length=1000)] = Field(default_factory=lambda: ["*-*-*"])
    protocols: Annotated[list[str], Field(max_length=1000)] | None = None
    scopes_exclude: Annotated[list[str], Field(max_length=1000)] | None = None


__all__ = [
    "MAX_BULK",
    "ActionBody",
    "ActionedBody",
    "Body",
    "BulkActionedBody",
    "BulkCreateTasksBody",
    "BulkResultsBody",
    "ClaimBody",
    "CreateTasksBody",
    "Keys",
    "LocationsBody",
    "LooseTaskKeysBody",
    "MaxRetriesBody",
    "NetworksBody",
    "NetworkStatesBody",
    "NetworkWeightsBody",
    "PatternsBody",
    "RestartPatternsBody",
    "TaskKeysBody",
    "TaskPriorityBody",
    "TaskStatusBody",
    "TasksBody",
    "WeightBody",
]
