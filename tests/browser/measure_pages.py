"""Load time and weight of each dashboard page with a 2,000-transformation toy network.

    python -m tests.browser.measure_pages [--transformations 2000] [--runs 5]

Starts an ephemeral deployment (jar Neo4j, API, one CPU service), submits the network, runs
part of it (some tasks fail on purpose), then loads every page in headless Chromium and prints
the median load time (navigation start to the load event) and the bytes on the wire (HTML plus
CSS and JS, gzip as served) and decoded. Writes ``tests/artifacts/page-metrics.json``. Not a
test: timings belong here, not in asserts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from urllib.parse import quote

from alchemiscale_local.api.ui import dashboard_login_url
from alchemiscale_local.runtimes.toy.network import build_toy_network
from tests.waiting import wait_for

from .conftest import ARTIFACTS, CHROMIUM_ARGS, chromium_path, start_deployment

_TIMING = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource');
  const sum = (f) => res.reduce((a, r) => a + r[f], 0);
  return {load_ms: nav.loadEventEnd - nav.startTime, dom_ms: nav.domContentLoadedEventEnd - nav.startTime,
          html_wire: nav.encodedBodySize, html_bytes: nav.decodedBodySize,
          sub_wire: sum('encodedBodySize'), sub_bytes: sum('decodedBodySize'),
          nodes: document.getElementsByTagName('*').length};
}"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transformations", type=int, default=2000)
    parser.add_argument("--actioned", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    # failing tasks on purpose: keep the service from being denied claims for them
    dep = start_deployment(api={"max_failures": 1_000_000})
    try:
        client = dep.client()
        t0 = time.monotonic()
        chain = build_toy_network(
            args.transformations, name="bench 2000", settings={"duration_s": 0.0, "fail_rate": 0.1}
        )
        net = client.create_network(chain, "bench-dashboard-big")
        tfs = client.get_network_transformations(net)
        tasks = client.create_transformations_tasks(tfs)
        client.action_tasks(tasks[: args.actioned], net)
        print(f"submitted {len(tfs)} transformations in {time.monotonic() - t0:.1f} s", flush=True)
        wait_for(
            lambda: (
                sum(
                    v
                    for k, v in client.get_network_status(net, visualize=False).items()
                    if k in ("complete", "error")
                )
                >= args.actioned
            ),
            900,
            "the actioned tasks",
            poll=2.0,
        )
        failed = client.get_network_tasks(net, status="error")
        n = quote(str(net), safe="")
        pages = {
            "overview": "/ui/",
            "network (page 1 of 40, graph)": f"/ui/networks/{n}",
            "network (sorted by errors)": f"/ui/networks/{n}?sort=error&desc=1",
            "network (page 40)": f"/ui/networks/{n}?page=40",
            "transformation": f"/ui/transformations/{quote(str(tfs[0]), safe='')}",
            "task (a failure)": f"/ui/tasks/{quote(str(failed[0]), safe='')}",
            "compute": "/ui/compute",
            "network JSON poll": f"/ui/api/networks/{n}",
        }
        results = {}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(dashboard_login_url(dep.api_url, dep.settings, dep.credentials["user"]["identifier"]))
            for name, path in pages.items():
                if path.startswith("/ui/api/"):
                    samples = []
                    for _ in range(args.runs):
                        start = time.perf_counter()
                        resp = page.request.get(dep.api_url + path, headers={"Accept-Encoding": "gzip"})
                        body = resp.body()
                        samples.append((time.perf_counter() - start) * 1000)
                    results[name] = {"load_ms": statistics.median(samples), "json_bytes": len(body)}
                    continue
                runs = []
                for i in range(args.runs):
                    page.goto(dep.api_url + path, wait_until="load")
                    m = page.evaluate(_TIMING)
                    m["cold"] = i == 0
                    runs.append(m)
                warm = runs[1:] or runs
                results[name] = {
                    "load_ms_first": round(runs[0]["load_ms"]),
                    "load_ms_median": round(statistics.median(r["load_ms"] for r in warm)),
                    "html_wire_bytes": runs[-1]["html_wire"],
                    "html_bytes": runs[-1]["html_bytes"],
                    "css_js_wire_bytes_first": runs[0]["sub_wire"],
                    "css_js_bytes": runs[0]["sub_bytes"],
                    "dom_elements": runs[-1]["nodes"],
                }
            browser.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "page-metrics.json").write_text(json.dumps(results, indent=2))
        for name, r in results.items():
            print(f"{name:32s} {json.dumps(r)}")
    finally:
        dep.stop()


if __name__ == "__main__":
    main()
