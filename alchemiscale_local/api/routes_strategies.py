"""Strategy routes of alchemiscale 0.8's user API: ``/networks/{network}/strategy[/state|/status|/awake]``.

The strategy travels and is stored as its keyed chain; the server never loads it (no gufe here).
The strategist loop (:mod:`alchemiscale_local.strategist`) runs it inside the deployment.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Response

from alchemiscale_local.backends.statestore import Neo4jStore
from alchemiscale_local.backends.statestore import strategies as st
from alchemiscale_local.backends.statestore.errors import InvalidInput, NotFound
from alchemiscale_local.models import ScopedKey

from .auth import TokenData, user_token
from .deps import get_store
from .keys import NetworkKey
from .schemas import StrategyBody

router = APIRouter(dependencies=[Depends(user_token)], tags=["strategies"])


def _network(network: ScopedKey) -> ScopedKey:
    if network.qualname != "AlchemicalNetwork":
        raise HTTPException(400, f"{network} is not an AlchemicalNetwork")
    return network


@router.post(
    "/networks/{network}/strategy", summary="Set (or with strategy null remove) a network's Strategy"
)
def set_network_strategy(
    network: NetworkKey,
    body: StrategyBody,
    store: Neo4jStore = Depends(get_store),
) -> str | None:
    net = _network(network)
    try:
        return st.set_network_strategy(store, net, body.strategy, body.state())
    except InvalidInput as exc:
        raise HTTPException(422, str(exc)) from None
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/networks/{network}/strategy", summary="The network's Strategy as a keyed chain (null if none)")
def get_network_strategy(
    network: NetworkKey, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> Response:
    chain = st.get_network_strategy_chain(store, _network(network))
    return Response(chain or "null", media_type="application/json")


@router.get("/networks/{network}/strategy/state", summary="The StrategyState (null if no strategy)")
def get_network_strategy_state(
    network: NetworkKey, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> dict | None:
    return st.get_network_strategy_state(store, _network(network))


@router.get("/networks/{network}/strategy/status", summary="awake, dormant or error (null if no strategy)")
def get_network_strategy_status(
    network: NetworkKey, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> str | None:
    state = st.get_network_strategy_state(store, _network(network))
    return state["status"] if state else None


@router.post("/networks/{network}/strategy/awake", summary="Wake a dormant or errored Strategy")
def set_network_strategy_awake(
    network: NetworkKey, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> str | None:
    return st.set_network_strategy_awake(store, _network(network))
