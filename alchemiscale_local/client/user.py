"""``AlchemiscaleLocalClient``: the user client, with alchemiscale's method names and return shapes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from alchemiscale_local.models import ScopedKey

from . import display
from ._archives import ArchivesMixin
from ._files import TaskFilesMixin
from ._networks import NetworksMixin
from ._results import ResultsMixin
from ._strategies import StrategiesMixin
from ._tasks import TasksMixin
from .base import seg, sk_str
from .cache import DEFAULT_SIZE_LIMIT, ObjectCache
from .documents import gufe_available

SK = ScopedKey | str
DONE = frozenset({"complete", "error", "invalid", "deleted"})


class AlchemiscaleLocalClient(
    NetworksMixin, TasksMixin, ResultsMixin, ArchivesMixin, TaskFilesMixin, StrategiesMixin
):
    """Client of the user API.

    Credentials: explicit ``api_url``/``identifier``/``key``, else ``ALCHEMISCALE_LOCAL_URL``,
    ``ALCHEMISCALE_LOCAL_ID``, ``ALCHEMISCALE_LOCAL_KEY``, else the ``user`` section of the
    deployment's credentials file. Methods take ScopedKeys (or their strings) and return
    ScopedKeys; bulk methods return lists in input order with None where an item failed.

    Args:
        return_gufe: return gufe objects (True), keyed chains (False), or decide by whether
            gufe is importable (None). See :class:`~.base.BaseClient` for the other options.
        cache_directory, cache_size_limit, use_local_cache: as alchemiscale's, a disk cache
            (diskcache, LRU) of immutable objects: networks, transformations, chemical systems
            and results. Default ``$XDG_CACHE_HOME/alchemiscale-local``, 1 GiB, on. Entries are
            kept per identity and API URL, so one identity never reads what another fetched.
    """

    credentials_section = "user"

    def __init__(
        self,
        api_url: str | None = None,
        identifier: str | None = None,
        key: str | None = None,
        *,
        return_gufe: bool | None = None,
        cache_directory: str | Path | None = None,
        cache_size_limit: int = DEFAULT_SIZE_LIMIT,
        use_local_cache: bool = True,
        **options: Any,
    ) -> None:
        available = gufe_available()
        if return_gufe and not available:
            raise ImportError("return_gufe=True needs gufe installed")
        super().__init__(api_url, identifier, key, **options)
        self._as_gufe = available if return_gufe is None else bool(return_gufe)
        self._cache = ObjectCache(cache_directory, cache_size_limit, use_local_cache)

    def _cache_key(self, key: str) -> str:
        return f"{self.identifier}@{self.api_url}/{key}"

    def close(self) -> None:
        self._cache.close()
        super().close()

    def wait(
        self, network: SK, timeout: float | None = None, poll: float = 1.0, visualize: bool = True
    ) -> dict[str, int]:
        """Block until no actioned task of the network is waiting or running.

        Counts every task of the network that is finished (complete, error, invalid, deleted),
        however long ago, plus the actioned ones still to run: a network that finished before
        the call returns its counts at once. Tasks that were never actioned and still wait do
        not count (nothing would run them). Returns the final counts by status, e.g.
        ``{"complete": 9, "error": 1}``. Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        key = sk_str(network)
        with display.progress(f"waiting for {key.split('-', 2)[0]}", None, visualize) as advance:
            done_before = 0
            while True:
                # actioned first, network counts last: a task finishing in between shows as
                # pending (one more poll), never as missing
                actioned = list(self._post(f"/networks/{seg(key)}/tasks/actioned"))
                statuses = self.get_tasks_status(actioned) if actioned else []
                pending = [t for t, s in zip(actioned, statuses, strict=False) if s not in DONE]
                finished = {s: n for s, n in self._get(f"/networks/{seg(key)}/status").items() if s in DONE}
                done = sum(finished.values())
                _set_total(advance, done + len(pending))
                advance(done - done_before)
                done_before = done
                if not pending:
                    return finished
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"{len(pending)} of {done + len(pending)} actioned tasks of {key} "
                        f"still pending after {timeout} s"
                    )
                wait = poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
                time.sleep(wait)


def _set_total(advance: Any, total: int) -> None:
    """Update the bar's total (the number of tracked tasks grows as tasks get actioned)."""
    setter = getattr(advance, "set_total", None)
    if setter is not None:
        setter(total)
