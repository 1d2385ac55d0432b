"""The API server: uvicorn serving the user and compute APIs on one address.

``start_api`` spawns ``python -m alchemiscale_local.launchers.api_server`` and waits
for ``/ping``; the module's ``main`` is that process. With ``settings.api.workers`` = 1 it
serves the app itself; with N > 1 it is uvicorn's supervisor of N worker processes (restarted
when one dies), each building the app from the settings file through :func:`worker_app`.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from alchemiscale_local.settings import Settings, settings_from_file

from .ownership import MARKER_ENV, marker
from .processes import ProcessRecord, find, free_port, python_env, python_module, spawn
from .tls import api_url_for, client_verify, server_options

log = logging.getLogger(__name__)


class APIStartError(RuntimeError):
    pass


def api_url(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://{host}:{port}"


def start_api(
    settings: Settings, settings_file: Path, *, port: int | None = None, timeout: float = 60.0
) -> tuple[ProcessRecord, str]:
    """Start the API process on settings.api.host and a free port (unless set); return (record, url).

    ``settings_file`` (0600) holds the resolved settings with ``neo4j.uri/user/password`` filled in.
    """
    port = port or settings.api.port or free_port(settings.api.host)
    log_path = settings.log_dir / settings.name / "api.log"
    argv = python_module(
        "alchemiscale_local.launchers.api_server", "--settings-file", str(settings_file), "--port", str(port)
    )
    proc, record = spawn("api", argv, log_path, env=python_env({MARKER_ENV: marker(settings)}))
    url = api_url_for(settings.api, port)  # https when settings.api.tls_cert is set
    verify = client_verify(settings.api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise APIStartError(
                f"the API process exited with status {proc.returncode}; see {log_path}:\n{_tail(log_path)}"
            )
        try:
            if httpx.get(f"{url}/ping", timeout=1.0, verify=verify).status_code == 200:
                return record, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise APIStartError(
        f"the API did not answer on {url} within {timeout:.0f} s; see {log_path}:\n{_tail(log_path)}"
    )


def api_alive(record: ProcessRecord) -> bool:
    return find(record) is not None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# How the supervisor tells its workers where the settings are (uvicorn's factory takes no args).
SETTINGS_ENV = "ALCHEMISCALE_LOCAL_API_SETTINGS_FILE"
SUPERVISOR_ENV = "ALCHEMISCALE_LOCAL_API_SUPERVISOR_PID"
WORKER_FACTORY = "alchemiscale_local.launchers.api_server:worker_app"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _app(settings: Settings, workers: int) -> Any:
    from alchemiscale_local.api import create_app

    neo = settings.neo4j
    assert neo.uri and neo.password is not None  # checked by main()
    auth = (neo.uri, neo.user, neo.password.get_secret_value())
    return create_app(settings, neo4j_auth=auth, workers=workers)


def worker_app() -> Any:
    """uvicorn's factory in each worker process: the app from the supervisor's settings file."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    _die_with_supervisor()
    settings = settings_from_file(Path(os.environ[SETTINGS_ENV]))
    return _app(settings, settings.api.workers)


def _die_with_supervisor() -> None:
    """SIGKILL this worker when the supervisor dies, however it dies: orphaned workers would
    keep the port, and the deployment could not start the API on it again."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    if str(os.getppid()) != os.environ.get(SUPERVISOR_ENV):  # it died before the prctl
        os._exit(1)


def _recount_task_files(settings: Settings) -> None:
    """Count the task-file quota from a listing again, once per API start (not per worker): the
    count lives in Neo4j, and files deleted by hand while the API was down must free their room."""
    from alchemiscale_local.backends.objectstore import ObjectStore
    from alchemiscale_local.backends.statestore import Neo4jStore

    neo = settings.neo4j
    assert neo.uri and neo.password is not None
    try:
        store = Neo4jStore.connect(neo.uri, neo.user, neo.password.get_secret_value(), neo.database)
        try:
            store.forget_taskfile_usage(ObjectStore.from_settings(settings.objectstore).url)
        finally:
            store.close()
    except Exception as exc:  # the API starts anyway; the count made before is kept
        log.warning("could not reset the task-file count: %s", exc)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from alchemiscale_local.api.app import jwt_secret

    parser = argparse.ArgumentParser(description="alchemiscale-local API server (started by `up`)")
    parser.add_argument("--settings-file", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    settings = settings_from_file(Path(args.settings_file))
    neo = settings.neo4j
    if not neo.uri or neo.password is None:
        parser.error("the settings file has no neo4j.uri / neo4j.password")
    _recount_task_files(settings)
    workers = settings.api.workers
    if workers > 1:
        jwt_secret(settings)  # made once here: N workers must not each generate their own
        os.environ[SETTINGS_ENV] = str(Path(args.settings_file).resolve())
        os.environ[SUPERVISOR_ENV] = str(os.getpid())
        log.info("serving the API with %d worker processes", workers)
    uvicorn.run(
        WORKER_FACTORY if workers > 1 else _app(settings, 1),
        factory=workers > 1,
        workers=workers,
        host=settings.api.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        **server_options(settings),  # ssl_certfile/ssl_keyfile off loopback (launchers/tls.py)
    )


if __name__ == "__main__":
    main()
