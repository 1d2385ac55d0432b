"""Access to the app's shared parts from a request."""

from __future__ import annotations

from fastapi import Request

from alchemiscale_local.backends.objectstore import ObjectStore
from alchemiscale_local.backends.statestore import Neo4jStore
from alchemiscale_local.settings import Settings


def get_store(request: Request) -> Neo4jStore:
    return request.app.state.store


def get_objects(request: Request) -> ObjectStore:
    return request.app.state.objects


def get_settings(request: Request) -> Settings:
    return request.app.state.settings
