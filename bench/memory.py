"""``memory``: peak RSS of the API process while it takes a large network (report only)."""

from __future__ import annotations

import gzip
import json
import threading
import time
from typing import Any

import psutil

from alchemiscale_local.runtimes.toy.network import build_toy_network

from .common import ratio, record, target, timed
from .context import BenchContext, fresh_scope

NAME = "memory"
SIZE = 2000
QUICK_SIZE = 50
INTERVAL_S = 0.02
TOY = {"duration_s": 0.0, "repeats": 1}
MB = 2**20


class RssSampler:
    """Samples one process's RSS every ``interval`` seconds in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = INTERVAL_S) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.proc.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)


def run(ctx: BenchContext, quick: bool = False) -> dict[str, Any]:
    """Submit the large network while sampling the API process's RSS."""
    n = QUICK_SIZE if quick else SIZE
    machine = ctx.machine()
    chain = build_toy_network(n, name=f"bench network {n}", settings=TOY)
    text = json.dumps(chain).encode()
    wire = len(gzip.compress(text, compresslevel=5))  # what the client sends (gzip level 5)
    pid = ctx.dep.api.pid
    before = psutil.Process(pid).memory_info().rss
    scope = fresh_scope("benchmemory")
    with RssSampler(pid) as sampler:
        seconds, sk = timed(lambda: ctx.client.create_network(chain, scope, visualize=False))
        time.sleep(0.1)  # one more sample after the answer
    after = psutil.Process(pid).memory_info().rss
    ctx.cache.setdefault(f"network_{n}", (str(sk), chain))  # the fetch benchmark reads this one
    delta = sampler.peak - before
    return record(
        NAME,
        figure={
            "api_peak_rss_mb": sampler.peak / MB,
            "api_rss_growth_mb": delta / MB,
            "api_rss_after_mb": after / MB,
            "submit_s": seconds,
        },
        baseline={"json_mb": len(text) / MB, "gzip_wire_mb": wire / MB, "api_rss_before_mb": before / MB},
        ratio={"rss_growth_per_json_byte": ratio(delta, len(text))},
        target=target("report only", None, sampler.peak / MB, None),
        parameters={
            "transformations": n,
            "objects": len(chain),
            "sample_interval_s": INTERVAL_S,
            "samples": len(sampler.samples),
            "process": f"API (pid {pid}), children not counted",
        },
        machine=machine,
        quick=quick,
    )
