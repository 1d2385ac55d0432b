"""Map typed errors to JSON ``{"detail": ...}`` responses; bad input never becomes a 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from neo4j.exceptions import ServiceUnavailable, SessionExpired

from alchemiscale_local.backends import objectstore as obj
from alchemiscale_local.backends.statestore import errors as st
from alchemiscale_local.models import InvalidIdentifier

log = logging.getLogger(__name__)

STATUS_BY_ERROR: list[tuple[type[BaseException], int]] = [
    (st.NotFound, 404),
    (st.InvalidTransition, 409),
    (st.Conflict, 409),
    (st.Forbidden, 403),
    (st.InvalidInput, 400),
    (st.Unavailable, 503),
    (InvalidIdentifier, 400),
    (obj.ObjectNotFound, 404),
    (obj.ObjectExists, 409),
    (obj.InvalidPath, 400),
    (obj.ObjectTooLarge, 413),
    (obj.ObjectStoreUnavailable, 503),
    (ServiceUnavailable, 503),
    (SessionExpired, 503),
]


def install_error_handlers(app: FastAPI) -> None:
    for exc_type, status in STATUS_BY_ERROR:
        app.add_exception_handler(exc_type, _handler(status))  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


def _handler(status: int):
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        detail = str(exc) or exc.__class__.__name__
        if status == 503:
            detail = f"backing service unavailable: {detail}"
            log.warning("%s %s -> 503: %s", request.method, request.url.path, detail)
        headers = {"Retry-After": "2"} if status == 503 else None
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    return handle


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": f"internal error: {exc.__class__.__name__}"}, status_code=500)
