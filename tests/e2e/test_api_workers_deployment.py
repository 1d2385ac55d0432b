"""`up --api-workers 2` as a person runs it: two worker processes serve the API's one address,
a SIGKILLed API supervisor takes its workers along (none keeps the port) and the deployment
brings the API back on the same port, and `down` leaves no worker behind.
"""

from __future__ import annotations

import os
import signal

import httpx
import psutil
import pytest

from alchemiscale_local.api.worker_header import HEADER
from tests.e2e.test_cli_deployment import deployment_processes, env, run, state_of  # noqa: F401
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.one_env]


def workers_of(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children()
    except psutil.Error:
        return []
    out = []
    for p in children:
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "multiprocessing.spawn" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass
    return out


def alive(procs: list[psutil.Process]) -> bool:
    """Whether any of ``procs`` still runs (a zombie does not count)."""
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            pass
    return False


def answering_workers(url: str, tries: int = 200) -> set[str]:
    """Which workers answer /ping over fresh connections (stops once two have)."""
    seen: set[str] = set()
    for _ in range(tries):
        resp = httpx.get(f"{url}/ping", timeout=30)
        assert resp.status_code == 200
        seen.add(resp.headers[HEADER])
        if len(seen) == 2:
            break
    return seen


def test_up_with_two_api_workers_heals_and_stops_cleanly(env):  # noqa: F811
    try:
        out = run(env, "up", "--detach", "--api-workers", "2", "--gpus", "none", "--cpu-services", "0").stdout
        assert "is up" in out
        state = state_of(env)
        url, api_pid = state["api_url"], state["api"]["pid"]
        first = wait_for(lambda: len(w := workers_of(api_pid)) == 2 and w, 120, "two API workers")
        assert len(answering_workers(url)) == 2
        assert "serving the API with 2 worker processes" in run(env, "logs", "api").stdout

        # The supervisor dies hard: its workers die with it (PR_SET_PDEATHSIG), so the port is
        # free and the deployment's supervisor starts the API again where clients look for it.
        os.kill(api_pid, signal.SIGKILL)
        wait_for(lambda: not alive(first), 60, "the old workers to die")
        healed = wait_for(
            lambda: (s := state_of(env)) and s["api"]["pid"] != api_pid and s, 120, "the API to be restarted"
        )
        assert healed["api_url"] == url
        again = wait_for(
            lambda: len(w := workers_of(healed["api"]["pid"])) == 2 and w, 120, "two new workers"
        )
        assert len(answering_workers(url)) == 2
        api_log = run(env, "logs", "api").stdout
        assert "Traceback" not in api_log, api_log

        run(env, "down")
        assert state_of(env) is None
        wait_for(lambda: not alive(again), 30, "no API worker left after down")
        wait_for(lambda: not deployment_processes(env), 30, "no process left after down")
    finally:  # a failed check must not leave the deployment running
        if state_of(env) is not None:
            run(env, "down", check=False)
