"""What each dashboard page shows: plain dicts built from the state store (no HTTP here)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from alchemiscale_local.backends.statestore import dashboard as q
from alchemiscale_local.models import Scope, ScopedKey

from .estimates import Estimates, label
from .graph import MAX_EDGES, edge_status, render_svg
from .session import Session

PAGE_SIZE = 50
RATE_WINDOW_S = 600.0
LOG_LINES = 30
_SERVICE_SUFFIX = re.compile(r"-[0-9a-f]{32}\Z")


def visible_scopes(session: Session) -> list[Scope]:
    return session.token.visible(Scope())


def _rate(row: dict[str, Any], now: float) -> tuple[float | None, float | None]:
    """(results per minute over the last ten minutes, minutes left at that rate)."""
    done, first = row.get("recent_done") or 0, row.get("recent_first")
    if not done or first is None:
        return None, None
    window = min(RATE_WINDOW_S, max(60.0, now - first))
    per_min = done / (window / 60.0)
    left = row["counts"]["waiting"] + row["counts"]["running"]
    return per_min, (left / per_min if left else 0.0)


def _decorate(row: dict[str, Any], now: float) -> dict[str, Any]:
    row["rate"], row["eta_min"] = _rate(row, now)
    row["total_tasks"] = sum(row["counts"].values())
    row["scope"] = str(ScopedKey.from_str(row["sk"]).scope)
    return row


def overview(store: Any, session: Session) -> dict[str, Any]:
    now = time.time()
    rows = q.networks_overview(store, visible_scopes(session), now - RATE_WINDOW_S)
    return {"networks": [_decorate(r, now) for r in rows]}


def network(
    store: Any,
    objects: Any,
    estimates: Estimates,
    graphs: dict[str, Any],
    sk: str,
    *,
    page: int,
    sort: str,
    desc: bool,
    link: Any,
    with_graph: bool = True,
) -> dict[str, Any] | None:
    now = time.time()
    summary = q.network_overview(store, sk, now - RATE_WINDOW_S)
    if summary is None:
        return None
    _decorate(summary, now)
    total, rows = q.network_transformations(
        store, sk, sort=sort, desc=desc, skip=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
    )
    page_keys = [r["sk"] for r in rows]
    est = estimates.get(store, objects, page_keys) if page_keys else {}
    for r in rows:
        r["estimate"] = est.get(r["sk"])
        r["label"] = label(r["estimate"])
        r["status"] = edge_status([s for s, n in r["counts"].items() for _ in range(min(n, 1))])
        tb = (r["last_failure"] or {}).get("tracebacks") or []
        r["failure_line"] = _last_line(tb[-1]) if tb else ""
    statuses = {tf: edge_status(ss) for tf, ss in q.edge_statuses(store, sk).items()}
    # above MAX_EDGES only the page's edges are drawn, so only they need their colour polled
    drawn = statuses if len(statuses) <= MAX_EDGES else {k: statuses.get(k, "none") for k in page_keys}
    ctx: dict[str, Any] = {
        "net": summary,
        "rows": rows,
        "total": total,
        "page": page,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "sort": sort,
        "desc": desc,
        "edge_classes": {f"edge-{tf}": f"e s-{s}" for tf, s in drawn.items()},
        "svg": "",
        "drawn": 0,
        "n_edges": len(statuses),
        "n_nodes": 0,
    }
    if with_graph:
        graph = graphs.get(sk)
        if graph is None:  # a network's structure never changes: build it once
            graph = graphs[sk] = q.network_graph(store, sk)
        labels = {r["sk"]: r["label"] for r in rows if r["label"]}
        ctx["svg"], ctx["drawn"] = render_svg(graph, statuses, labels, link, focus=set(page_keys))
        ctx["n_edges"] = len(graph["edges"])
        ctx["n_nodes"] = len(graph["nodes"])
    return ctx


def transformation(store: Any, objects: Any, estimates: Estimates, tf: ScopedKey) -> dict[str, Any] | None:
    sk = str(tf)
    tasks = q.transformation_tasks(store, sk)
    rows = store._read(
        "MATCH (tf:GufeTokenizable {_scoped_key: $k}) RETURN tf.name AS name, tf._qualname AS q", k=sk
    )
    if not rows:
        return None
    failures = store.get_transformation_results(tf, ok=False)
    for f in failures:
        f["line"] = _last_line((f.get("tracebacks") or [""])[-1])
    est = estimates.get(store, objects, [sk]).get(sk)
    return {
        "tf": {"sk": sk, "name": rows[0]["name"] or sk, "qualname": rows[0]["q"]},
        "tasks": tasks,
        "results": store.get_transformation_results(tf, ok=True),
        "failures": failures,
        "estimate": est,
        "label": label(est),
        "networks": store.get_transformation_networks(tf),
    }


def task(store: Any, sk: str) -> dict[str, Any] | None:
    detail = q.task_detail(store, sk)
    if detail is None:
        return None
    history: list[dict[str, Any]] = [{"at": detail["created_at"], "what": "created", "by": detail["creator"]}]
    for i, r in enumerate(detail["results"], 1):
        r["attempt"] = i
        history.append(
            {
                "at": r["created_at"],
                "what": "complete" if r["ok"] else "error",
                "by": r["creator"],
                "attempt": i,
            }
        )
    if detail["status"] == "running" and detail.get("claimed_at"):
        history.append({"at": detail["claimed_at"], "what": "running", "by": detail["claimed_by"]})
    history.sort(key=lambda h: h["at"] or 0)
    return {"task": detail, "history": history, "now": time.time()}


def compute(store: Any, objects: Any, settings: Any, session: Session) -> dict[str, Any]:
    now = time.time()
    services = q.services(store)
    for svc in services:
        for run in svc["running"]:
            run["visible"] = session.token.allows(ScopedKey.from_str(run["task"]).scope)
            run["runtime_s"] = now - run["since"] if run.get("since") else None
        svc["log"] = _log_tail(settings, svc["identifier"]) if session.sees_everything else None
    health = {}
    for name, probe in (("Neo4j (state store)", store.check), ("object store", objects.check)):
        try:
            probe()
            health[name] = "ok"
        except Exception as exc:  # any failure is shown with its message
            health[name] = f"failing: {exc}"
    return {"services": services, "health": health, "logs_shown": session.sees_everything}


def _log_tail(settings: Any, identifier: str) -> list[str] | None:
    """Last lines of a service's log when it runs under this deployment (``compute-<name>.log``)."""
    name = _SERVICE_SUFFIX.sub("", identifier)
    logs = Path(settings.log_dir) / settings.name
    # the service's identifier holds its name with '-' turned into '_' (compute.service._safe)
    found = [p for p in logs.glob("compute-*.log") if _safe(p.stem.removeprefix("compute-")) == name]
    if not found or found[0].name.endswith(".stderr.log"):
        return None
    path = found[0]
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 16384))
            return fh.read().decode("utf-8", "replace").splitlines()[-LOG_LINES:]
    except OSError:
        return None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_.@" else "_" for c in name)[:80]


def _last_line(traceback_text: str) -> str:
    lines = [ln for ln in (traceback_text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""
