"""The API server: one uvicorn process serving the user and compute APIs.

``start_api`` spawns ``python -m alchemiscale_local.launchers.api_server`` and waits
for ``/ping``; the module's ``main`` is that process.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import httpx

from alchemiscale_local.settings import Settings, settings_from_file

from .ownership import MARKER_ENV, marker
from .processes import ProcessRecord, find, free_port, python_env, python_module, spawn
from .tls import api_url_for, client_verify, server_options


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


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from alchemiscale_local.api import create_app

    parser = argparse.ArgumentParser(description="alchemiscale-local API server (started by `up`)")
    parser.add_argument("--settings-file", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from_file(Path(args.settings_file))
    neo = settings.neo4j
    if not neo.uri or neo.password is None:
        parser.error("the settings file has no neo4j.uri / neo4j.password")
    app = create_app(settings, neo4j_auth=(neo.uri, neo.user, neo.password.get_secret_value()))
    uvicorn.run(
        app,
        host=settings.api.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        **server_options(settings),  # ssl_certfile/ssl_keyfile off loopback (launchers/tls.py)
    )


if __name__ == "__main__":
    main()
