"""Keys in paths and queries, parsed once at the edge into ScopedKeys the token may see.

A route declares ``task: TaskKey`` (or ``NetworkKey``, ...): the path segment of that name is
parsed (400 with the parser's message when malformed) and checked against the token's scopes
(403), and the route receives a :class:`ScopedKey` it passes inward as it is. Keys in bodies
arrive parsed by :mod:`alchemiscale_local.wire`; :func:`need` checks their scope.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from alchemiscale_local.models import ScopedKey

from .auth import TokenData, any_token, compute_token, user_token


def need(token: TokenData, key: ScopedKey) -> ScopedKey:
    """``key`` if the token may see its scope (403 otherwise)."""
    token.require(key.scope)
    return key


def _task(task: Annotated[str, Path()], token: TokenData = Depends(user_token)) -> ScopedKey:
    return token.require_key(task)


def _network(network: Annotated[str, Path()], token: TokenData = Depends(user_token)) -> ScopedKey:
    return token.require_key(network)


def _transformation(
    transformation: Annotated[str, Path()], token: TokenData = Depends(user_token)
) -> ScopedKey:
    return token.require_key(transformation)


def _chemicalsystem(
    chemicalsystem: Annotated[str, Path()], token: TokenData = Depends(user_token)
) -> ScopedKey:
    return token.require_key(chemicalsystem)


def _scoped_key(scoped_key: Annotated[str, Path()], token: TokenData = Depends(user_token)) -> ScopedKey:
    return token.require_key(scoped_key)


def _extends(extends: str | None = None, token: TokenData = Depends(user_token)) -> ScopedKey | None:
    return token.require_key(extends) if extends else None


def _any_kind_task(task: Annotated[str, Path()], token: TokenData = Depends(any_token)) -> ScopedKey:
    return token.require_key(task)


def _compute_task(task: Annotated[str, Path()], token: TokenData = Depends(compute_token)) -> ScopedKey:
    return token.require_key(task)


def _compute_scoped_key(
    scoped_key: Annotated[str, Path()], token: TokenData = Depends(compute_token)
) -> ScopedKey:
    return token.require_key(scoped_key)


#: ``{task}`` of a user route.
TaskKey = Annotated[ScopedKey, Depends(_task)]
#: ``{network}`` of a user route.
NetworkKey = Annotated[ScopedKey, Depends(_network)]
#: ``{transformation}`` of a user route.
TransformationKey = Annotated[ScopedKey, Depends(_transformation)]
#: ``{chemicalsystem}`` of a user route.
ChemicalSystemKey = Annotated[ScopedKey, Depends(_chemicalsystem)]
#: ``{scoped_key}`` (any object) of a user route.
AnyKey = Annotated[ScopedKey, Depends(_scoped_key)]
#: ``?extends=`` (optional) of a user route.
ExtendsKey = Annotated[ScopedKey | None, Depends(_extends)]
#: ``{task}`` of a route both kinds of identity use.
AnyKindTaskKey = Annotated[ScopedKey, Depends(_any_kind_task)]
#: ``{task}`` of a compute route (compute token).
ComputeTaskKey = Annotated[ScopedKey, Depends(_compute_task)]
#: ``{scoped_key}`` (any object) of a compute route (compute token).
ComputeAnyKey = Annotated[ScopedKey, Depends(_compute_scoped_key)]
