"""Strategies as alchemiscale 0.8 has them: a real stratocaster strategy on a real gufe network.

The strategist thread inside the live API (started by the app's lifespan) proposes, creates and
actions tasks; alchemiscale's own SynchronousComputeService runs them; the strategy goes
dormant once its stop condition holds. Skips without gufe or stratocaster.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

gufe = pytest.importorskip("gufe", reason="needs the science env (real gufe)")
stratocaster = pytest.importorskip("stratocaster", reason="needs stratocaster (../shared/wheels)")

from stratocaster.strategies import ConnectivityStrategy  # noqa: E402

from alchemiscale_local.client import AlchemiscaleLocalClient as Client  # noqa: E402
from alchemiscale_local.runtimes.toy import build_toy_network  # noqa: E402
from tests.plugins.api_server import CLIENT_OPTIONS  # noqa: E402


@pytest.fixture
def client(api_server) -> Client:
    ident, key = api_server.credentials["user"]
    return Client(api_server.url, ident, key, **CLIENT_OPTIONS)


@pytest.fixture
def network(client):
    scope = f"org1-strat-p{uuid.uuid4().hex[:8]}"
    chain = build_toy_network(2, name=f"strategy {scope}", settings={"repeats": 1})
    net = client.create_network(chain, scope, visualize=False)
    return scope, net


def _wait(predicate, timeout: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return value


def test_connectivity_strategy_drives_a_network_to_dormant(api_server, client, network, tmp_path):
    scope, net = network
    strategy = ConnectivityStrategy(ConnectivityStrategy._settings_cls(max_runs=1, decay_rate=0.5))
    assert client.get_network_strategy_status(net) is None
    sk = client.set_network_strategy(
        net, strategy, max_tasks_per_transformation=2, task_scaling="linear", sleep_interval=1
    )
    assert sk.gufe_key == strategy.key and str(sk.scope) == scope
    assert client.get_network_strategy(net) == strategy
    assert client.get_network_strategy_status(net) == "awake"

    # The strategist (in the API process) creates and actions tasks as alchemiscale would:
    # linear scaling, int(1 + w * max) per transformation for the resolved weight w.
    tfs = client.get_network_transformations(net)
    weights = strategy.propose(client.get_network(net, visualize=False), {}).resolve()
    expected = {str(tf): min(int(1 + weights[tf.gufe_key] * 2), 2) for tf in tfs}
    total = sum(expected.values())
    assert total >= 2
    actioned = _wait(
        lambda: len(a := api_server.store.get_network_actioned_tasks(str(net))) == total and a,
        what=f"the strategist to action {total} tasks",
    )
    per_tf = {}
    for info in api_server.store.get_tasks(list(actioned)):
        per_tf[info["transformation"]] = per_tf.get(info["transformation"], 0) + 1
    assert per_tf == expected

    # alchemiscale's own compute service runs them.
    from alchemiscale.compute.service import SynchronousComputeService
    from alchemiscale.compute.settings import ComputeServiceSettings
    from alchemiscale.models import Scope as AScope

    ident, key = api_server.credentials["compute"]
    service = SynchronousComputeService(
        ComputeServiceSettings(
            api_url=api_server.url,
            identifier=ident,
            key=key,
            name="strategysvc",
            shared_basedir=tmp_path / "shared",
            scratch_basedir=tmp_path / "scratch",
            sleep_interval=1,
            deep_sleep_interval=1,
            scopes=[AScope.from_str(scope)],
            claim_limit=2,
            client_cache_directory=tmp_path / "cache",
            loglevel="WARNING",
        )
    )
    thread = threading.Thread(target=service.start, daemon=True)
    thread.start()
    # The strategy re-plans as results arrive (a transformation whose tasks finish early can
    # get another, as in alchemiscale); it goes dormant once every transformation has max_runs
    # results and nothing actioned is left.
    try:
        _wait(
            lambda: (
                client.get_network_strategy_status(net) == "dormant"
                and not api_server.store.get_network_actioned_tasks(str(net))
            ),
            timeout=300,
            what="the strategy to go dormant with nothing left to run",
        )
    finally:
        service.stop()
        thread.join(timeout=60)
    assert client.get_tasks_status(list(actioned)) == ["complete"] * total
    for tf in tfs:
        assert len(api_server.store.get_transformation_results(str(tf), ok=True)) >= 1  # max_runs
    state = client.get_network_strategy_state(net)
    get = state.get if isinstance(state, dict) else lambda f: getattr(state, f)
    n_results = sum(len(api_server.store.get_transformation_results(str(tf), ok=True)) for tf in tfs)
    # It went dormant once every transformation had a result (later results may wake it again).
    assert len(tfs) <= get("last_iteration_result_count") <= n_results and get("iterations") >= 2
    # A dormant strategy makes no tasks: one more strategist pass (real, in-process) changes nothing.
    from alchemiscale_local.strategist import Strategist

    before = {str(tf): len(api_server.store.get_transformation_tasks(str(tf))) for tf in tfs}
    Strategist(api_server.store, api_server.objects).execute(
        net,
        api_server.store._read("MATCH (s:NetworkStrategy {network: $n}) RETURN s.chain AS c", n=str(net))[0][
            "c"
        ],
        {**(state if isinstance(state, dict) else state.to_dict())},
    )
    assert {str(tf): len(api_server.store.get_transformation_tasks(str(tf))) for tf in tfs} == before
    assert client.get_network_strategy_status(net) == "dormant"
    # Removing it leaves no state.
    assert client.set_network_strategy(net, None) is None
    assert client.get_network_strategy_status(net) is None and client.get_network_strategy(net) is None


def test_failing_strategy_is_error_until_woken(api_server, client, network):
    """A chain that is no Strategy (a transformation) fails in propose: status error with the
    exception recorded; set_network_strategy_awake clears it."""
    _, net = network
    tf = client.get_network_transformations(net)[0]
    not_a_strategy = client.get_transformation(tf, visualize=False)
    client.set_network_strategy(net, not_a_strategy, sleep_interval=3600)
    _wait(lambda: client.get_network_strategy_status(net) == "error", what="error status")
    state = client.get_network_strategy_state(net)
    exception = state["exception"] if isinstance(state, dict) else state.exception
    assert exception[0] == "AttributeError" and "propose" in exception[1]
    assert str(client.set_network_strategy_awake(net)) == str(net)
    # Awake, error cleared; with sleep_interval 3600 the strategist leaves it alone for an hour.
    state = client.get_network_strategy_state(net)
    status = state["status"] if isinstance(state, dict) else state.status
    cleared = state["exception"] if isinstance(state, dict) else state.exception
    assert status == "awake" and cleared is None


def test_bad_strategy_requests_are_4xx(client, network):
    _, net = network
    from alchemiscale_local.client.errors import ClientError

    with pytest.raises(ClientError, match="mode"):
        client.set_network_strategy(
            net, ConnectivityStrategy(ConnectivityStrategy._settings_cls(max_runs=1)), mode="sometimes"
        )
    with pytest.raises(ClientError, match="task_scaling"):
        client.set_network_strategy(
            net, ConnectivityStrategy(ConnectivityStrategy._settings_cls(max_runs=1)), task_scaling="cubic"
        )
    assert client.get_network_strategy_status(net) is None


def test_official_client_strategy_calls(api_server, network):
    """alchemiscale's AlchemiscaleClient: the five strategy calls."""
    pytest.importorskip("alchemiscale.interface.client")
    from alchemiscale.interface.client import AlchemiscaleClient
    from alchemiscale.models import ScopedKey as AScopedKey
    from alchemiscale.storage.models import StrategyState

    _, net = network
    ident, key = api_server.credentials["user"]
    official = AlchemiscaleClient(api_server.url, ident, key, use_local_cache=False, max_retries=1)
    anet = AScopedKey.from_str(str(net))
    strategy = ConnectivityStrategy(ConnectivityStrategy._settings_cls(max_runs=3))
    sk = official.set_network_strategy(anet, strategy, mode="disabled", sleep_interval=3600)
    assert isinstance(sk, AScopedKey) and sk.gufe_key == strategy.key
    assert official.get_network_strategy(anet) == strategy
    state = official.get_network_strategy_state(anet)
    assert isinstance(state, StrategyState) and state.mode == "disabled" and state.sleep_interval == 3600
    assert official.get_network_strategy_status(anet) == "awake"
    assert official.set_network_strategy_awake(anet) == anet
    assert official.set_network_strategy(anet, None) is None
    assert official.get_network_strategy_status(anet) is None
