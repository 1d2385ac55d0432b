"""The read-only web dashboard at ``/ui``: server-rendered pages that poll for updates.

``install(app)`` adds it to the API app; ``dashboard_login_url`` makes the one-time link that
``up`` prints. No JavaScript toolchain: Jinja2 templates, one small hand-written script, and
the network graph drawn as SVG on the server.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .session import LOGIN_TTL_S, NotLoggedIn, UsedLogins
from .session import dashboard_login_url as _login_url

__all__ = ["dashboard_login_url", "install"]


def dashboard_login_url(api_url: str, settings: Any, identifier: str, ttl_s: int = LOGIN_TTL_S) -> str:
    """One-time dashboard login link for ``identifier``, signed with the deployment's JWT secret."""
    from ..app import jwt_secret

    return _login_url(api_url, jwt_secret(settings), identifier, ttl_s)


def install(app: FastAPI) -> None:
    """Mount the dashboard on ``app`` (after ``app.state.tokens`` and settings are set)."""
    from ..app import jwt_secret
    from . import routes
    from .estimates import Estimates

    app.state.ui_secret = jwt_secret(app.state.settings)
    # burnt in Neo4j: a link works once across all workers (the store is set by the lifespan)
    app.state.ui_logins = UsedLogins(lambda: getattr(app.state, "store", None))
    app.state.ui_estimates = Estimates()
    app.state.ui_graphs = {}
    app.include_router(routes.router)

    @app.exception_handler(NotLoggedIn)
    async def not_logged_in(request: Request, exc: NotLoggedIn) -> Response:
        if request.url.path.startswith("/ui/api/"):
            return JSONResponse({"detail": exc.reason}, status_code=401, headers=routes.SECURITY_HEADERS)
        return routes._html(
            "message.html", 401, title="Not logged in", message=f"{exc.reason}. {routes.LOGIN_HELP}"
        )

    previous = app.exception_handlers.get(StarletteHTTPException)

    async def ui_http_error(request: Request, exc: Exception) -> Response:
        # dashboard pages get an HTML error page; the API (and /ui/api) keep their JSON errors
        if not isinstance(exc, StarletteHTTPException):
            raise exc
        path = request.url.path
        if path.startswith("/ui/") and not path.startswith("/ui/api/") and path != "/ui/login-link":
            return routes._html(
                "message.html", exc.status_code, title=f"Error {exc.status_code}", message=str(exc.detail)
            )
        if previous is not None:
            result = previous(request, exc)
            return await result if inspect.isawaitable(result) else result
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(StarletteHTTPException, ui_http_error)
