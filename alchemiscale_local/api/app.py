"""``create_app(settings)``: the user API and the compute API in one ASGI app.

The app keeps no state that several worker processes must agree on: Neo4j and the object
store hold it. What is per process: the IdentityGate's 5 s cache of identity versions (each
worker sees a removed or changed identity within 5 s, the same bound as with one), the
dashboard's caches (keyed by what they cache, so never stale), service-owner bindings (never
change once made), and the /token failure counts (the budget is divided among ``workers``).
The reaper and strategist run in the one worker holding the background lease (``leader.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware

from alchemiscale_local import __version__
from alchemiscale_local.backends.objectstore import ObjectStore
from alchemiscale_local.backends.statestore import Neo4jStore
from alchemiscale_local.secretfiles import read_or_create_secret
from alchemiscale_local.settings import Settings
from alchemiscale_local.strategist import start_strategist

from . import (
    compat_compute,
    compat_managers,
    compat_taskhubs,
    routes_base,
    routes_compute,
    routes_files,
    routes_networks,
    routes_results,
    routes_strategies,
    routes_tasks,
)
from .auth import IdentityGate
from .auth import router as auth_router
from .errors import install_error_handlers
from .leader import LeaseKeeper, process_id
from .middleware import BodyMiddleware
from .ratelimit import FailureLimiter
from .reaper import reap_forever
from .tokencache import CachingTokenIssuer
from .ui import install as install_dashboard
from .worker_header import WorkerHeader

log = logging.getLogger(__name__)

JWT_SECRET_FILE = "jwt_secret"


def jwt_secret(settings: Settings) -> str:
    if settings.api.jwt_secret is not None:
        return settings.api.jwt_secret.get_secret_value()
    return read_or_create_secret(settings.secrets_dir / JWT_SECRET_FILE)


def create_app(
    settings: Settings,
    *,
    store: Neo4jStore | None = None,
    objects: ObjectStore | None = None,
    neo4j_auth: tuple[str, str, str] | None = None,
    workers: int = 1,
) -> FastAPI:
    """Build the app. Without ``store``, connect to ``neo4j_auth`` = (uri, user, password).

    ``workers``: how many processes serve this app behind one address (divides the /token
    failure budget; above one, responses name the worker in ``X-Alchemiscale-Worker``).
    """
    worker = process_id()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_store = store is None
        if own_store:
            if neo4j_auth is None:
                raise RuntimeError("create_app needs a store or neo4j_auth=(uri, user, password)")
            uri, user, password = neo4j_auth
            app.state.store = Neo4jStore.connect(uri, user, password, settings.neo4j.database)
        else:
            app.state.store = store
        app.state.objects = objects or ObjectStore.from_settings(settings.objectstore)
        try:
            app.state.store.initialize()
        except Exception as exc:  # start anyway: /check reports it and the reaper retries
            log.warning("could not initialise the state store schema yet: %s", exc)
        # Reaper and strategist: once per deployment, in the worker that holds the lease.
        lease = app.state.background_lease = LeaseKeeper(app.state.store, worker).start()
        reaper = asyncio.create_task(
            reap_forever(
                app.state.store, settings.api.reaper_interval_s, settings.api.service_ttl_s, lease.held
            )
        )
        # None without gufe
        strategist = start_strategist(app.state.store, app.state.objects, active=lease.held)
        try:
            yield
        finally:
            if strategist is not None:
                strategist.set()
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            await asyncio.to_thread(lease.stop)
            if own_store:
                app.state.store.close()

    app = FastAPI(
        title="alchemiscale-local",
        version=__version__,
        description="User and compute APIs of an alchemiscale-local deployment.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.tokens = CachingTokenIssuer(jwt_secret(settings), settings.api.token_ttl_s)
    app.state.identity_gate = IdentityGate()
    app.state.worker = worker
    app.state.token_limiter = FailureLimiter.for_workers(workers)
    install_error_handlers(app)
    app.add_middleware(GZipMiddleware, minimum_size=1000, compresslevel=5)
    app.add_middleware(BodyMiddleware, max_body_bytes=settings.api.max_body_bytes)
    if workers > 1:  # an opaque per-process name: which worker answered, for logs and tests
        app.add_middleware(WorkerHeader, worker=worker.rsplit(":", 1)[1])
    # First: every claim and result goes through it, and routing tries routes in order
    # (behind ~70 others it cost ~0.3 ms a request); its paths are all under /compute/.
    app.include_router(routes_compute.router)
    app.include_router(auth_router)
    app.include_router(routes_base.router)
    app.include_router(routes_networks.router, tags=["networks"])
    app.include_router(compat_compute.shared_router)  # before routes_tasks: compute tokens too
    app.include_router(routes_tasks.router, tags=["tasks"])
    app.include_router(routes_results.router, tags=["results"])
    app.include_router(routes_strategies.router)
    app.include_router(compat_compute.router)  # alchemiscale's compute paths (root)
    app.include_router(compat_taskhubs.router)  # alchemiscale's /taskhubs routes (root)
    app.include_router(compat_managers.router)  # alchemiscale's /computemanager routes (root)
    app.include_router(routes_files.router)
    install_dashboard(app)
    return app
