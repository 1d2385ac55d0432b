"""User-client methods for tasks: creation, actioning, status, priority, status summaries."""

from __future__ import annotations

from typing import Any, Literal

from alchemiscale_local.models import Scope, ScopedKey
from alchemiscale_local.wire import (
    ActionBody,
    ActionedBody,
    BulkActionedBody,
    BulkCreateTasksBody,
    CreateTasksBody,
    LooseTaskKeysBody,
    NetworksBody,
    TaskKeysBody,
    TaskPriorityBody,
    TaskStatusBody,
)

from . import display
from ._wire import wire_body
from .base import BaseClient, batched, seg, sk_str, to_sk

SK = ScopedKey | str


class TasksMixin(BaseClient):
    """Tasks and status summaries."""

    # -- creation -------------------------------------------------------------------------
    def create_tasks(self, transformation: SK, extends: SK | None = None, count: int = 1) -> list[ScopedKey]:
        """Create ``count`` waiting tasks on a transformation (optionally extending a task); not actioned."""
        body = wire_body(CreateTasksBody, count=count, extends=extends)
        got = self._post(f"/transformations/{seg(transformation)}/tasks", body, idempotent=False)
        return [ScopedKey.from_str(k) for k in got]

    def create_transformations_tasks(
        self, transformations: list[SK], extends: list[SK | None] | None = None, *, batch_size: int = 1000
    ) -> list[ScopedKey]:
        """One task per listed transformation (repeat one for several); ``extends`` is a parallel list."""
        tfs = list(transformations)
        exts = list(extends) if extends is not None else None
        if exts is not None and len(exts) != len(tfs):
            raise ValueError("extends must have the same length as transformations")
        out: list[ScopedKey] = []
        for start in range(0, len(tfs), batch_size):
            body = wire_body(
                BulkCreateTasksBody,
                transformations=tfs[start : start + batch_size],
                extends=exts[start : start + batch_size] if exts is not None else None,
            )
            got = self._post("/bulk/transformations/tasks/create", body, idempotent=False)
            out.extend(ScopedKey.from_str(k) for k in got)
        return out

    # -- lookups --------------------------------------------------------------------------
    def query_tasks(self, scope: Scope | str | None = None, status: str | None = None) -> list[ScopedKey]:
        """Tasks in the accessible scopes (within ``scope``), optionally with one status."""
        return self._keys("/tasks", scope=str(scope) if scope is not None else None, status=status)

    def get_network_tasks(self, network: SK, status: str | None = None) -> list[ScopedKey]:
        """All tasks of the network's transformations, actioned or not."""
        return self._keys(f"/networks/{seg(network)}/tasks", status=status)

    def get_task_networks(self, task: SK) -> list[ScopedKey]:
        return self._keys(f"/tasks/{seg(task)}/networks")

    def get_transformation_tasks(
        self,
        transformation: SK,
        extends: SK | None = None,
        return_as: Literal["list", "graph"] = "list",
        status: str | None = None,
    ) -> Any:
        """Tasks of a transformation; ``extends`` restricts to tasks extending that one.

        ``return_as='graph'`` gives a networkx DiGraph with an edge task -> extended task.
        """
        if return_as not in ("list", "graph"):
            raise ValueError("return_as must be 'list' or 'graph'")
        ext = sk_str(extends) if extends is not None else None
        if return_as == "list":
            return self._keys(f"/transformations/{seg(transformation)}/tasks", extends=ext, status=status)
        import networkx as nx

        got = self._get(
            f"/transformations/{seg(transformation)}/tasks", extends=ext, status=status, return_as="graph"
        )
        graph = nx.DiGraph()
        for task, parent in got.items():
            graph.add_node(ScopedKey.from_str(task))
            if parent is not None:
                graph.add_edge(ScopedKey.from_str(task), ScopedKey.from_str(parent))
        return graph

    def get_task_transformation(self, task: SK) -> ScopedKey:
        return ScopedKey.from_str(self._get(f"/tasks/{seg(task)}/transformation"))

    # -- actioning ------------------------------------------------------------------------
    def action_tasks(
        self,
        tasks: list[SK],
        network: SK,
        weight: float | list[float] | None = None,
        *,
        batch_size: int = 1000,
    ) -> list[ScopedKey | None]:
        """Add tasks to the network's hub (None for tasks that cannot be actioned there).

        A non-None ``weight`` (one number, or one per task) also re-weights tasks already actioned.
        """
        keys = list(tasks)
        if isinstance(weight, list) and len(weight) != len(keys):
            raise ValueError("weight must be one number or one per task")
        out: list[ScopedKey | None] = []
        for start in range(0, len(keys), batch_size):
            w = weight[start : start + batch_size] if isinstance(weight, list) else weight
            got = self._post(
                f"/networks/{seg(network)}/tasks/action",
                wire_body(ActionBody, tasks=keys[start : start + batch_size], weight=w),
            )
            out.extend(to_sk(k) for k in got)
        return out

    def cancel_tasks(self, tasks: list[SK], network: SK, *, batch_size: int = 1000) -> list[ScopedKey | None]:
        """Remove tasks from the network's hub (None for tasks that were not actioned there)."""
        out: list[ScopedKey | None] = []
        for chunk in batched(list(tasks), batch_size):
            got = self._post(f"/networks/{seg(network)}/tasks/cancel", wire_body(TaskKeysBody, tasks=chunk))
            out.extend(to_sk(k) for k in got)
        return out

    def get_network_actioned_tasks(self, network: SK, task_weights: bool = False) -> Any:
        """Actioned tasks: a list, or ``{task: weight}`` with ``task_weights=True``."""
        got = self._post(
            f"/networks/{seg(network)}/tasks/actioned", wire_body(ActionedBody, task_weights=True)
        )
        weights = {ScopedKey.from_str(k): w for k, w in got.items()}
        return weights if task_weights else list(weights)

    def get_networks_actioned_tasks(
        self, networks: list[SK], task_weights: bool = False, *, batch_size: int = 1000
    ) -> list[Any]:
        """:meth:`get_network_actioned_tasks` for several networks, in input order."""
        out: list[Any] = []
        for chunk in batched(list(networks), batch_size):
            body = wire_body(BulkActionedBody, networks=chunk, task_weights=True)
            got = self._post("/bulk/networks/tasks/actioned", body)
            for group in got:
                weights = {ScopedKey.from_str(k): w for k, w in group.items()}
                out.append(weights if task_weights else list(weights))
        return out

    def get_task_actioned_networks(self, task: SK, task_weights: bool = False) -> Any:
        """Networks whose hub actions the task: a list, or ``{network: weight}``."""
        got = self._post(f"/tasks/{seg(task)}/networks/actioned", wire_body(ActionedBody, task_weights=True))
        weights = {ScopedKey.from_str(k): w for k, w in got.items()}
        return weights if task_weights else list(weights)

    # -- status and priority ----------------------------------------------------------------
    def set_tasks_status(
        self, tasks: list[SK], status: str, batch_size: int = 1000
    ) -> list[ScopedKey | None]:
        """Set tasks to waiting, invalid or deleted; None for each task that cannot take the status."""
        out: list[ScopedKey | None] = []
        for chunk in batched(list(tasks), batch_size):
            got = self._post(
                "/bulk/tasks/status/set", wire_body(TaskStatusBody, tasks=chunk, status=str(status))
            )
            out.extend(to_sk(k) for k in got)
        return out

    def get_tasks_status(self, tasks: list[SK], batch_size: int = 1000) -> list[str | None]:
        """Each task's status; None for missing or inaccessible tasks."""
        out: list[str | None] = []
        for chunk in batched(list(tasks), batch_size):
            out.extend(self._post("/bulk/tasks/status/get", wire_body(LooseTaskKeysBody, tasks=chunk)))
        return out

    def set_tasks_priority(
        self, tasks: list[SK], priority: int, batch_size: int = 1000
    ) -> list[ScopedKey | None]:
        """Set the priority (1 .. 2**63-1; lower runs first); None for missing tasks."""
        out: list[ScopedKey | None] = []
        for chunk in batched(list(tasks), batch_size):
            got = self._post(
                "/bulk/tasks/priority/set", wire_body(TaskPriorityBody, tasks=chunk, priority=priority)
            )
            out.extend(to_sk(k) for k in got)
        return out

    def get_tasks_priority(self, tasks: list[SK], batch_size: int = 1000) -> list[int | None]:
        out: list[int | None] = []
        for chunk in batched(list(tasks), batch_size):
            out.extend(self._post("/bulk/tasks/priority/get", wire_body(LooseTaskKeysBody, tasks=chunk)))
        return out

    # -- status summaries -------------------------------------------------------------------
    def get_scope_status(
        self, scope: Scope | str | None = None, visualize: bool = True, network_state: str | None = "active"
    ) -> dict[str, int]:
        """Task counts by status in the accessible sub-scopes of ``scope``.

        Only tasks of networks in ``network_state`` count (None: every task).
        """
        scope_s = str(scope) if scope is not None else "*-*-*"
        counts = self._get(f"/scopes/{scope_s}/status", network_state=network_state)
        if visualize:
            display.print_status(f"scope {scope_s}", counts)
        return counts

    def get_network_status(self, network: SK, visualize: bool = True) -> dict[str, int]:
        """Task counts by status over the network's transformations, actioned or not."""
        counts = self._get(f"/networks/{seg(network)}/status")
        if visualize:
            display.print_status(f"network {network}", counts)
        return counts

    def get_networks_status(self, networks: list[SK], *, batch_size: int = 1000) -> list[dict[str, int]]:
        out: list[dict[str, int]] = []
        for chunk in batched(list(networks), batch_size):
            out.extend(self._post("/bulk/networks/status", wire_body(NetworksBody, networks=chunk)))
        return out

    def get_transformation_status(self, transformation: SK, visualize: bool = True) -> dict[str, int]:
        counts = self._get(f"/transformations/{seg(transformation)}/status")
        if visualize:
            display.print_status(f"transformation {transformation}", counts)
        return counts
