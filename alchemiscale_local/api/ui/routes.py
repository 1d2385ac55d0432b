"""The ``/ui`` routes: HTML pages, the JSON each page polls, login and static files.

Every route but ``/ui/login`` needs the session cookie (``POST /ui/login-link`` a user bearer
token). Pages are read-only: GET only, nothing here writes to the state store.
"""

from __future__ import annotations

import datetime as _dt
import time
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from alchemiscale_local.backends.statestore import dashboard as q
from alchemiscale_local.models import InvalidIdentifier, ScopedKey

from ..auth import TokenData, user_token
from ..routes_files import stream_kept_file, task_manifests
from . import views
from .session import COOKIE, SESSION_TTL_S, Session, current_session, dashboard_login_url, redeem_login

router = APIRouter(prefix="/ui", include_in_schema=False)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


def _ago(ts: float | None) -> str:
    if ts is None:
        return "-"
    s = max(0.0, time.time() - ts)
    if s < 90:
        return f"{s:.0f} s ago"
    if s < 5400:
        return f"{s / 60:.0f} min ago"
    return f"{s / 3600:.1f} h ago"


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


env = Environment(
    loader=PackageLoader("alchemiscale_local.api.ui", "templates"), autoescape=select_autoescape()
)
env.filters.update(ago=_ago, when=_when, duration=_duration, size=_size, q=lambda s: quote(str(s), safe=""))
env.globals["statuses"] = q.STATUSES


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


STATIC = {name: _static(name) for name in ("dashboard.css", "dashboard.js")}


def _html(template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    return HTMLResponse(
        env.get_template(template).render(**ctx), status_code=status, headers=SECURITY_HEADERS
    )


def _json(data: Any) -> JSONResponse:
    return JSONResponse(data, headers=SECURITY_HEADERS)


def _regions(template: str, names: list[str], **ctx: Any) -> dict[str, str]:
    module = env.get_template(template).make_module(ctx)
    return {name: str(getattr(module, f"{name}_region")()) for name in names}


def _session(request: Request) -> Session:
    return current_session(request)


def _visible(session: Session, key: str, qualname: str | tuple[str, ...]) -> ScopedKey:
    """The key if it parses, has the right class and is in the session's scopes; 404 otherwise
    (a network outside the scopes is indistinguishable from one that does not exist)."""
    allowed = (qualname,) if isinstance(qualname, str) else qualname
    try:
        sk = ScopedKey.from_str(key)
    except (InvalidIdentifier, ValueError):
        raise HTTPException(404, "no such object") from None
    if sk.qualname not in allowed or not session.token.allows(sk.scope):
        raise HTTPException(404, "no such object in your scopes")
    return sk


def _base(request: Request, session: Session, page: str, title: str) -> dict[str, Any]:
    return {"me": session.identifier, "nav": page, "title": title, "root": "/ui"}


def net_link(tf: str) -> str:
    return f"/ui/transformations/{quote(tf, safe='')}"


# -- login ------------------------------------------------------------------------------------
@router.get("/login")
def login(request: Request, token: str = Query("", max_length=4096)) -> Response:
    if not token:
        return _html("message.html", 401, title="Not logged in", message=LOGIN_HELP)
    try:
        session_jwt = redeem_login(request, request.app.state.ui_secret, token)
    except HTTPException as exc:
        return _html(
            "message.html", exc.status_code, title="Login failed", message=f"{exc.detail}. {LOGIN_HELP}"
        )
    resp = RedirectResponse("/ui/", status_code=303, headers=SECURITY_HEADERS)
    resp.set_cookie(
        COOKIE,
        session_jwt,
        max_age=SESSION_TTL_S,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return resp


LOGIN_HELP = (
    "Open the one-time login link that `alchemiscale-local up` prints, or get a new one from "
    "POST /ui/login-link with a user bearer token"
)


@router.get("/logout")
def logout() -> Response:
    resp = _html("message.html", 200, title="Logged out", message="You are logged out. " + LOGIN_HELP)
    resp.delete_cookie(COOKIE, path="/ui")
    return resp


@router.post("/login-link", summary="A one-time dashboard login link for the calling user")
def login_link(request: Request, token: TokenData = Depends(user_token)) -> dict[str, str]:
    base = str(request.base_url).rstrip("/")
    return {"url": dashboard_login_url(base, request.app.state.ui_secret, token.identifier)}


# -- static ---------------------------------------------------------------------------------------
@router.get("/static/{name}")
def static(name: str, _: Session = Depends(_session)) -> Response:
    if name not in STATIC:
        raise HTTPException(404, "no such file")
    headers = {**SECURITY_HEADERS, "Cache-Control": "private, max-age=300"}
    return Response(STATIC[name], media_type=STATIC_TYPES[name[name.rfind(".") :]], headers=headers)


# -- overview ---------------------------------------------------------------------------------------
@router.get("/")
async def overview_page(request: Request, session: Session = Depends(_session)) -> Response:
    ctx = await run_in_threadpool(views.overview, request.app.state.store, session)
    return _html("overview.html", **_base(request, session, "overview", "Networks"), **ctx)


@router.get("/api/")
async def overview_json(request: Request, session: Session = Depends(_session)) -> Response:
    ctx = await run_in_threadpool(views.overview, request.app.state.store, session)
    return _json({"regions": _regions("overview.html", ["networks"], **ctx), "count": len(ctx["networks"])})


# -- network ------------------------------------------------------------------------------------------
def _network_ctx(
    request: Request, session: Session, network: str, page: int, sort: str, desc: bool, graph: bool
):
    sk = _visible(session, network, "AlchemicalNetwork")
    if sort not in q.SORT_COLUMNS:
        raise HTTPException(400, f"sort must be one of {sorted(q.SORT_COLUMNS)}")
    state = request.app.state
    ctx = views.network(
        state.store,
        state.objects,
        state.ui_estimates,
        state.ui_graphs,
        str(sk),
        page=page,
        sort=sort,
        desc=desc,
        link=net_link,
        with_graph=graph,
    )
    if ctx is None:
        raise HTTPException(404, "no such object in your scopes")

    def href(**change: Any) -> str:
        params = {"page": page, "sort": sort, "desc": int(desc), **change}
        return "?" + urlencode(params)

    ctx["href"] = href
    return ctx


@router.get("/networks/{network}")
async def network_page(
    request: Request,
    network: str,
    page: int = Query(1, ge=1, le=100000),
    sort: str = "name",
    desc: bool = False,
    session: Session = Depends(_session),
) -> Response:
    ctx = await run_in_threadpool(_network_ctx, request, session, network, page, sort, desc, True)
    return _html("network.html", **_base(request, session, "network", ctx["net"]["name"] or network), **ctx)


@router.get("/api/networks/{network}")
async def network_json(
    request: Request,
    network: str,
    page: int = Query(1, ge=1, le=100000),
    sort: str = "name",
    desc: bool = False,
    session: Session = Depends(_session),
) -> Response:
    ctx = await run_in_threadpool(_network_ctx, request, session, network, page, sort, desc, False)
    regions = _regions("network.html", ["summary", "table"], **ctx)
    return _json({"regions": regions, "classes": ctx["edge_classes"], "counts": ctx["net"]["counts"]})


# -- transformation ---------------------------------------------------------------------------------
def _tf_ctx(request: Request, session: Session, transformation: str) -> dict[str, Any]:
    sk = _visible(session, transformation, ("Transformation", "NonTransformation"))
    state = request.app.state
    ctx = views.transformation(state.store, state.objects, state.ui_estimates, sk)
    if ctx is None:
        raise HTTPException(404, "no such object in your scopes")
    # network keys read from the graph: parsed for their scope
    ctx["networks"] = [n for n in ctx["networks"] if session.token.allows(ScopedKey.from_str(n).scope)]
    return ctx


@router.get("/transformations/{transformation}")
async def transformation_page(request: Request, transformation: str, session: Session = Depends(_session)):
    ctx = await run_in_threadpool(_tf_ctx, request, session, transformation)
    return _html("transformation.html", **_base(request, session, "transformation", ctx["tf"]["name"]), **ctx)


@router.get("/api/transformations/{transformation}")
async def transformation_json(request: Request, transformation: str, session: Session = Depends(_session)):
    ctx = await run_in_threadpool(_tf_ctx, request, session, transformation)
    return _json({"regions": _regions("transformation.html", ["body"], **ctx)})


# -- task ---------------------------------------------------------------------------------------------
def _task_ctx(request: Request, session: Session, task: str) -> dict[str, Any]:
    sk = _visible(session, task, "Task")
    ctx = views.task(request.app.state.store, str(sk))
    if ctx is None:
        raise HTTPException(404, "no such object in your scopes")
    return ctx


def _kept_files(request: Request, task: str) -> list[dict[str, Any]]:
    """What the task's attempts kept (its log, plots, analysis files), newest attempt first."""
    sk = ScopedKey.from_str(task)  # the key of a task page already shown (read from the graph)
    base = f"/ui/tasks/{quote(task, safe='')}/files"
    out = []
    for manifest in reversed(task_manifests(request.app.state.objects, sk)):
        for entry in manifest.get("files", []):
            url = f"{base}/{quote(manifest['pdr_key'], safe='')}/{quote(entry['path'])}"
            out.append({**entry, "pdr_key": manifest["pdr_key"], "ok": manifest.get("ok"), "url": url})
    return out


# Served inline only as these types; anything else downloads (never rendered as HTML or SVG here).
INLINE_TYPES = {".png": "image/png", ".log": "text/plain; charset=utf-8", ".txt": "text/plain; charset=utf-8"}


@router.get("/tasks/{task}/files/{pdr_key}/{path:path}")
async def task_file(
    request: Request, task: str, pdr_key: str, path: str, session: Session = Depends(_session)
):
    sk = _visible(session, task, "Task")
    suffix = path[path.rfind(".") :].lower() if "." in path.rsplit("/", 1)[-1] else ""
    media = INLINE_TYPES.get(suffix, "application/octet-stream")
    headers = {**SECURITY_HEADERS, "Cache-Control": "private, max-age=3600"}  # kept files never change
    if media == "application/octet-stream":
        headers["Content-Disposition"] = "attachment"
    return await run_in_threadpool(
        stream_kept_file, request.app.state.objects, sk, pdr_key, path, media, headers
    )


@router.get("/tasks/{task}")
async def task_page(request: Request, task: str, session: Session = Depends(_session)):
    ctx = await run_in_threadpool(_task_ctx, request, session, task)
    files = await run_in_threadpool(_kept_files, request, ctx["task"]["key"])
    return _html("task.html", **_base(request, session, "task", "Task"), **ctx, files=files)


@router.get("/api/tasks/{task}")
async def task_json(request: Request, task: str, session: Session = Depends(_session)):
    ctx = await run_in_threadpool(_task_ctx, request, session, task)
    return _json({"regions": _regions("task.html", ["body"], **ctx), "status": ctx["task"]["status"]})


# -- compute ----------------------------------------------------------------------------------------
def _compute_ctx(request: Request, session: Session) -> dict[str, Any]:
    state = request.app.state
    return views.compute(state.store, state.objects, state.settings, session)


@router.get("/compute")
async def compute_page(request: Request, session: Session = Depends(_session)):
    ctx = await run_in_threadpool(_compute_ctx, request, session)
    return _html("compute.html", **_base(request, session, "compute", "Compute"), **ctx)


@router.get("/api/compute")
async def compute_json(request: Request, session: Session = Depends(_session)):
    ctx = await run_in_threadpool(_compute_ctx, request, session)
    return _json({"regions": _regions("compute.html", ["services", "health"], **ctx)})
