"""alchemiscale 0.8.0's own ``AlchemiscaleClient``, unchanged, against a live local API.

Its user-guide flow with real gufe objects (the toy protocol is a real gufe Protocol, run by
gufe's ``execute_DAG``): submit a network, read it back, create, action, cancel, prioritise and
re-status tasks, weights, restart patterns, run the tasks (one transformation fails on
purpose) and read results (gufe ProtocolResult), failures and archives. Every call is checked
against what alchemiscale's own server answers (its interface/api.py); the table of calls is
written to ``<client>-calls.md`` in the test's tmp dir and printed on failure. Our own client
runs the same flow with the same expectations (item 4 of issue 11: same signatures and answers).

Needs the science env with alchemiscale installed ``--no-deps`` (``.ci/requirements-alchemiscale.txt``,
installed by ``.ci/science-python``); skips without it. Strategy calls are the compute/strategy
side's (tests of their own).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gufe", reason="needs gufe (the science env)")
pytest.importorskip(
    "alchemiscale", reason="needs alchemiscale 0.8 (pip install --no-deps alchemiscale==0.8.0)"
)

import alchemiscale  # noqa: E402
import alchemiscale.models  # noqa: E402
import gufe  # noqa: E402
import networkx as nx  # noqa: E402
from gufe.protocols import ProtocolDAGResult, ProtocolResult  # noqa: E402

import alchemiscale_local  # noqa: E402
from alchemiscale_local.runtimes.base import ExecutionRequest  # noqa: E402
from alchemiscale_local.runtimes.toy import ToyRuntime, build_toy_network  # noqa: E402
from tests.plugins.api_server import USER  # noqa: E402

pytestmark = [pytest.mark.timeout(900)]


class Calls:
    """Runs each call, compares with what alchemiscale answers, keeps a row per call."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    def check(self, name: str, fn: Callable[[], Any], ok: Callable[[Any], bool] | None = None) -> Any:
        try:
            got = fn()
        except Exception as exc:  # a raising call is a row of the table, not the end of the flow
            self.rows.append((name, f"raised {type(exc).__name__}: {str(exc)[:160]}"))
            return None
        if ok is not None and not ok(got):
            self.rows.append((name, f"unexpected: {got!r}"[:200]))
        else:
            self.rows.append((name, "OK"))
        return got

    def table(self) -> str:
        lines = ["| call | result |", "|---|---|"]
        lines += [f"| `{n}` | {r} |" for n, r in self.rows]
        return "\n".join(lines)

    @property
    def failed(self) -> list[tuple[str, str]]:
        return [r for r in self.rows if r[1] != "OK"]


def _toy_network(scope_tag: str, fail_name: str | None) -> gufe.AlchemicalNetwork:
    settings = {"repeats": 2, "fail_on": [fail_name] if fail_name else []}
    chain = build_toy_network(2, name=f"alchemiscale flow {scope_tag}", settings=settings)
    return gufe.AlchemicalNetwork.from_keyed_chain([tuple(e) for e in chain])


def _run(compute_client: Any, tasks: list, scope: str, workdir: Path) -> None:
    """Claim and run the actioned tasks with the toy runtime (gufe's execute_DAG), push the results."""
    service = f"svc-{uuid.uuid4().hex[:8]}"
    compute_client.register(service)
    claimed = compute_client.claim_tasks(service, count=len(tasks), scopes=[scope])
    assert {str(t) for t in claimed} == {str(t) for t in tasks}
    for task in claimed:
        inputs = compute_client.get_task_inputs(task)
        outcome = ToyRuntime().execute(
            ExecutionRequest(str(task), inputs["transformation"], None, workdir / task.gufe_key)
        )
        compute_client.push_result(task, service, outcome.pdr_key, outcome.ok, outcome.result)
    compute_client.deregister(service)


#: (client class, Scope, ScopedKey): alchemiscale's own, and ours run through the same flow
CLIENTS = {
    "alchemiscale": (
        alchemiscale.AlchemiscaleClient,
        alchemiscale.models.Scope,
        alchemiscale.models.ScopedKey,
    ),
    "alchemiscale_local": (
        alchemiscale_local.AlchemiscaleClient,
        alchemiscale_local.Scope,
        alchemiscale_local.ScopedKey,
    ),
}


@pytest.mark.parametrize("which", list(CLIENTS))
def test_alchemiscale_client_user_flow(which, api_server, compute_client, tmp_path) -> None:  # noqa: PLR0915
    """The same calls and answers through alchemiscale's client and through ours."""
    AlchemiscaleClient, Scope, ScopedKey = CLIENTS[which]  # noqa: N806
    tag = uuid.uuid4().hex[:8]
    scope = Scope("alch", "flow", f"p{tag}")
    first = _toy_network(tag, None)
    fail_name = sorted(first.edges, key=lambda t: t.name)[1].name
    network = _toy_network(tag, fail_name)
    client = AlchemiscaleClient(
        api_server.url,
        USER[0],
        USER[1],
        cache_directory=tmp_path / "cache",
        max_retries=1,
        retry_base_seconds=1.01,
        retry_max_seconds=1.5,
    )
    c = Calls()
    eq = lambda want: lambda got: got == want  # noqa: E731

    # -- identity, submission, documents --------------------------------------------------
    c.check("get_scopes", client.get_scopes, lambda got: [str(s) for s in got] == ["*-*-*"])
    c.check("list_scopes", client.list_scopes, lambda got: [str(s) for s in got] == ["*-*-*"])
    c.check("get_info", client.get_info, lambda got: isinstance(got, dict))
    if which == "alchemiscale":
        c.check("_api_check", client._api_check)
    else:
        c.check("check", client.check, lambda got: got == {"statestore": "ok", "objectstore": "ok"})
    net = c.check(
        "create_network",
        lambda: client.create_network(network, scope, visualize=False),
        lambda got: isinstance(got, ScopedKey) and got.gufe_key == network.key and got.scope == scope,
    )
    assert net is not None, c.table()
    c.check("check_exists", lambda: client.check_exists(net), eq(True))
    c.check("query_networks", lambda: client.query_networks(scope=scope), eq([net]))
    c.check(
        "query_networks(name regex)",
        lambda: client.query_networks(name="alchemiscale flow.*", scope=scope),
        eq([net]),
    )
    c.check("query_networks(state regex)", lambda: client.query_networks(scope=scope, state="in.*"), eq([]))
    c.check("get_network", lambda: client.get_network(net, visualize=False), eq(network))
    tfs = c.check(
        "get_network_transformations",
        lambda: client.get_network_transformations(net),
        lambda got: {t.gufe_key for t in got} == {t.key for t in network.edges},
    )
    by_name = {client.get_transformation(t, visualize=False).name: t for t in tfs}
    tf_ok = next(t for n, t in by_name.items() if n != fail_name)
    tf_fail = by_name[fail_name]
    tf_obj = next(t for t in network.edges if t.key == tf_ok.gufe_key)
    c.check("get_transformation", lambda: client.get_transformation(tf_ok, visualize=False), eq(tf_obj))
    css = c.check(
        "get_network_chemicalsystems",
        lambda: client.get_network_chemicalsystems(net),
        lambda got: {s.gufe_key for s in got} == {n.key for n in network.nodes},
    )
    cs = sorted(css)[0]
    cs_obj = next(n for n in network.nodes if n.key == cs.gufe_key)
    c.check("get_chemicalsystem", lambda: client.get_chemicalsystem(cs, visualize=False), eq(cs_obj))
    c.check("get_chemicalsystem_networks", lambda: client.get_chemicalsystem_networks(cs), eq([net]))
    c.check(
        "get_chemicalsystem_transformations",
        lambda: client.get_chemicalsystem_transformations(cs),
        lambda got: (
            {t.gufe_key for t in got} == {t.key for t in network.edges if cs_obj in (t.stateA, t.stateB)}
        ),
    )
    c.check("get_transformation_networks", lambda: client.get_transformation_networks(tf_ok), eq([net]))
    c.check(
        "get_transformation_chemicalsystems",
        lambda: client.get_transformation_chemicalsystems(tf_ok),
        lambda got: {s.gufe_key for s in got} == {tf_obj.stateA.key, tf_obj.stateB.key},
    )
    c.check(
        "query_transformations", lambda: sorted(client.query_transformations(scope=scope)), eq(sorted(tfs))
    )
    c.check(
        "query_chemicalsystems", lambda: sorted(client.query_chemicalsystems(scope=scope)), eq(sorted(css))
    )

    # -- network state and weight ---------------------------------------------------------
    c.check("get_network_state", lambda: client.get_network_state(net), eq("active"))
    c.check("set_network_state", lambda: client.set_network_state(net, "inactive"), eq(net))
    c.check("get_networks_state", lambda: client.get_networks_state([net]), eq(["inactive"]))
    c.check("set_networks_state", lambda: client.set_networks_state([net], ["active"]), eq([net]))
    c.check("get_network_weight", lambda: client.get_network_weight(net), eq(0.5))
    c.check("set_network_weight", lambda: client.set_network_weight(net, 0.7), eq(net))
    c.check("get_networks_weight", lambda: client.get_networks_weight([net]), eq([0.7]))
    c.check("set_networks_weight", lambda: client.set_networks_weight([net], [0.5]), eq([net]))

    # -- tasks ------------------------------------------------------------------------------
    tasks = c.check("create_tasks", lambda: client.create_tasks(tf_ok, count=2), lambda got: len(got) == 2)
    ext = c.check(
        "create_tasks(extends=)",
        lambda: client.create_tasks(tf_ok, extends=tasks[0]),
        lambda got: len(got) == 1,
    )[0]
    (failing,) = c.check(
        "create_transformations_tasks",
        lambda: client.create_transformations_tasks([tf_fail]),
        lambda got: len(got) == 1 and isinstance(got[0], ScopedKey),
    )
    spare = client.create_tasks(tf_fail)[0]
    everything = {*tasks, ext, failing, spare}
    c.check(
        "get_transformation_tasks",
        lambda: client.get_transformation_tasks(tf_ok),
        lambda got: set(got) == {*tasks, ext},
    )
    c.check(
        "get_transformation_tasks(return_as=graph)",
        lambda: client.get_transformation_tasks(tf_ok, return_as="graph"),
        lambda g: (
            isinstance(g, nx.DiGraph) and set(g.nodes) == {*tasks, ext} and set(g.edges) == {(ext, tasks[0])}
        ),
    )
    c.check(
        "get_transformation_tasks(extends=)",
        lambda: client.get_transformation_tasks(tf_ok, extends=tasks[0]),
        eq([ext]),
    )
    c.check("get_task_transformation", lambda: client.get_task_transformation(ext), eq(tf_ok))
    c.check("query_tasks", lambda: set(client.query_tasks(scope=scope)), eq(everything))
    c.check(
        "query_tasks(status=)", lambda: set(client.query_tasks(scope=scope, status="waiting")), eq(everything)
    )
    c.check("get_network_tasks", lambda: set(client.get_network_tasks(net)), eq(everything))
    c.check("get_task_networks", lambda: client.get_task_networks(ext), eq([net]))

    to_run = [*tasks, failing]
    c.check("action_tasks", lambda: client.action_tasks([*to_run, ext], net), eq([*to_run, ext]))
    c.check(
        "action_tasks(weight=list)",
        lambda: client.action_tasks(to_run, net, weight=[0.5, 0.5, 0.5]),
        eq(to_run),
    )
    c.check(
        "get_network_actioned_tasks", lambda: set(client.get_network_actioned_tasks(net)), eq({*to_run, ext})
    )
    c.check(
        "get_network_actioned_tasks(task_weights=True)",
        lambda: client.get_network_actioned_tasks(net, task_weights=True),
        lambda got: set(got) == {*to_run, ext} and all(w == 0.5 for w in got.values()),
    )
    c.check(
        "get_networks_actioned_tasks",
        lambda: client.get_networks_actioned_tasks([net]),
        lambda got: len(got) == 1 and set(got[0]) == {*to_run, ext},
    )
    c.check("get_task_actioned_networks", lambda: client.get_task_actioned_networks(ext), eq([net]))
    c.check(
        "get_task_actioned_networks(task_weights=True)",
        lambda: client.get_task_actioned_networks(ext, task_weights=True),
        eq({net: 0.5}),
    )
    c.check("cancel_tasks", lambda: client.cancel_tasks([ext], net), eq([ext]))
    c.check("get_tasks_priority", lambda: client.get_tasks_priority(to_run), eq([10, 10, 10]))
    c.check("set_tasks_priority", lambda: client.set_tasks_priority(to_run, 5), eq(to_run))
    c.check("get_tasks_status", lambda: client.get_tasks_status([ext, spare]), eq(["waiting", "waiting"]))
    c.check("set_tasks_status", lambda: client.set_tasks_status([spare], "invalid"), eq([spare]))
    c.check(
        "set_tasks_status(cannot change)",
        lambda: client.set_tasks_status([spare, ext], "waiting"),
        eq([None, ext]),
    )
    counts = {"waiting": 4, "invalid": 1}
    c.check("get_scope_status", lambda: client.get_scope_status(scope, visualize=False), eq(counts))
    c.check("get_network_status", lambda: client.get_network_status(net, visualize=False), eq(counts))
    c.check("get_networks_status", lambda: client.get_networks_status([net]), eq([counts]))
    c.check(
        "get_transformation_status",
        lambda: client.get_transformation_status(tf_ok, visualize=False),
        eq({"waiting": 3}),
    )

    # -- restart patterns -----------------------------------------------------------------
    c.check(
        "add_task_restart_patterns",
        lambda: client.add_task_restart_patterns(net, ["never matches"], 3),
        eq(net),
    )
    c.check(
        "get_task_restart_patterns", lambda: client.get_task_restart_patterns(net), eq({"never matches": 3})
    )
    c.check(
        "set_task_restart_patterns_allowed_restarts",
        lambda: client.set_task_restart_patterns_allowed_restarts(net, ["never matches"], 5),
    )
    c.check(
        "get_task_restart_patterns(after set)",
        lambda: client.get_task_restart_patterns(net),
        eq({"never matches": 5}),
    )
    client.add_task_restart_patterns(net, ["also never"], 1)
    c.check("remove_task_restart_patterns", lambda: client.remove_task_restart_patterns(net, ["also never"]))
    c.check("clear_task_restart_patterns", lambda: client.clear_task_restart_patterns(net))
    c.check("get_task_restart_patterns(after clear)", lambda: client.get_task_restart_patterns(net), eq({}))

    # -- run, then results and failures -----------------------------------------------------
    _run(compute_client, to_run, str(scope), tmp_path / "work")
    c.check(
        "get_tasks_status(after run)",
        lambda: client.get_tasks_status(to_run),
        eq(["complete", "complete", "error"]),
    )
    c.check(
        "get_transformation_results",
        lambda: client.get_transformation_results(tf_ok, visualize=False),
        lambda got: isinstance(got, ProtocolResult) and got.get_estimate() is not None,
    )
    c.check(
        "get_transformation_results(ProtocolDAGResults)",
        lambda: client.get_transformation_results(tf_ok, return_as="ProtocolDAGResults", visualize=False),
        lambda got: len(got) == 2 and all(isinstance(p, ProtocolDAGResult) and p.ok() for p in got),
    )
    c.check(
        "get_transformation_results(ProtocolResults)",
        lambda: client.get_transformation_results(tf_ok, return_as="ProtocolResults", visualize=False),
        lambda got: len(got) == 2 and all(isinstance(p, ProtocolResult) for p in got),
    )
    c.check(
        "get_transformation_failures",
        lambda: client.get_transformation_failures(tf_fail, visualize=False),
        lambda got: len(got) == 1 and not got[0].ok() and got[0].protocol_unit_failures,
    )
    c.check(
        "get_task_results",
        lambda: client.get_task_results(tasks[0], visualize=False),
        lambda got: len(got) == 1 and got[0].ok(),
    )
    c.check("get_task_failures", lambda: client.get_task_failures(tasks[0], visualize=False), eq([]))
    c.check(
        "get_task_failures(failed task)",
        lambda: client.get_task_failures(failing, visualize=False),
        lambda got: len(got) == 1 and not got[0].ok(),
    )
    c.check(
        "get_network_results",
        lambda: client.get_network_results(net, visualize=False),
        lambda got: set(got) == set(tfs) and isinstance(got[tf_ok], ProtocolResult) and got[tf_fail] is None,
    )
    c.check(
        "get_network_failures",
        lambda: client.get_network_failures(net, visualize=False),
        lambda got: set(got) == set(tfs) and len(got[tf_fail]) == 1 and got[tf_ok] == [],
    )
    c.check(
        "get_network_archive",
        lambda: client.get_network_archive(net, visualize=False),
        lambda got: type(got).__name__ == "AlchemicalArchive",
    )
    c.check(
        "get_network_archives",
        lambda: client.get_network_archives([net], visualize=False),
        lambda got: len(got) == 1 and type(got[0]).__name__ == "AlchemicalArchive",
    )

    table = c.table()
    (tmp_path / f"{which}-calls.md").write_text(table + "\n")
    print(table)
    assert not c.failed, f"{len(c.failed)} of {len(c.rows)} calls differ from alchemiscale:\n{table}"
