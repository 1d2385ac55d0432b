"""Request bodies of the API: the user API's live in :mod:`alchemiscale_local.wire` (re-exported)."""

from __future__ import annotations

from alchemiscale_local.wire import (
    MAX_BULK,
    ActionBody,
    ActionedBody,
    Body,
    BulkActionedBody,
    BulkCreateTasksBody,
    BulkResultsBody,
    ClaimBody,
    CreateTasksBody,
    LocationsBody,
    LooseTaskKeysBody,
    MaxRetriesBody,
    NetworksBody,
    NetworkStatesBody,
    NetworkSubmission,
    NetworkWeightsBody,
    PatternsBody,
    RestartPatternsBody,
    ServiceTasksBody,
    StrategyBody,
    TaskKeysBody,
    TaskPriorityBody,
    TaskStatusBody,
    WeightBody,
)

#: The compute API's body of task keys (its route's name for it).
TasksBody = ServiceTasksBody


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
    "LocationsBody",
    "LooseTaskKeysBody",
    "MaxRetriesBody",
    "NetworksBody",
    "NetworkStatesBody",
    "NetworkSubmission",
    "NetworkWeightsBody",
    "PatternsBody",
    "RestartPatternsBody",
    "ServiceTasksBody",
    "StrategyBody",
    "TaskKeysBody",
    "TaskPriorityBody",
    "TaskStatusBody",
    "TasksBody",
    "WeightBody",
]
