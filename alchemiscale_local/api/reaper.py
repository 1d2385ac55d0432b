"""Background expiry of silent compute services, run inside the API process.

Unlike alchemiscale (which expires only inside heartbeat handlers), this runs on
an interval whether or not any heartbeat arrives. Every API worker runs the loop; only the
holder of the background lease (``leader.py``) reaps in a round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

from alchemiscale_local.backends.statestore import Neo4jStore

log = logging.getLogger(__name__)


async def reap_forever(
    store: Neo4jStore, interval_s: float, ttl_s: float, active: Callable[[], bool] = lambda: True
) -> None:
    # After a restart of this process, give live services one TTL to heartbeat again
    # before anything is judged silent: the API being away is not the services' fault.
    await asyncio.sleep(ttl_s)
    while True:
        if not active():  # another worker holds the lease and reaps; look again soon
            await asyncio.sleep(min(interval_s, 1.0))
            continue
        try:
            expired = await run_in_threadpool(store.expire_computeservices, ttl_s)
        except Exception as exc:  # Neo4j down: try again next round
            log.warning("reaper: could not expire compute services: %s", exc)
            expired = []
        for identifier in expired:
            log.warning(
                "reaper: expired silent compute service %s; its running tasks are waiting again", identifier
            )
        await asyncio.sleep(interval_s)
