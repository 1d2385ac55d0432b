"""The network drawn as server-side SVG: nodes on a circle, transformations as (curved) edges.

No JavaScript library: the page polls edge statuses and only swaps each edge's CSS class.
Above ``MAX_EDGES`` transformations only the edges of the table's current page are drawn
(nodes are always drawn), so a 2,000-edge network stays a light page.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from markupsafe import Markup, escape

MAX_EDGES = 300
ORDER = ("running", "error", "waiting", "complete", "invalid", "deleted")


def edge_status(statuses: list[str]) -> str:
    """One colour per transformation: complete once any task completed, else the liveliest state."""
    present = set(statuses)
    if "complete" in present:
        return "complete"
    for s in ORDER:
        if s in present:
            return s
    return "none"


def render_svg(
    graph: dict[str, Any],
    statuses: dict[str, str],
    labels: dict[str, str],
    link: Any,
    focus: set[str] | None = None,
) -> tuple[Markup, int]:
    """(SVG markup, number of edges drawn). ``link(tf)`` gives an edge's URL; ``focus`` limits the
    edges drawn when the network has more than ``MAX_EDGES``."""
    nodes = graph["nodes"]
    edges = [e for e in graph["edges"] if e["a"] and e["b"]]
    if len(edges) > MAX_EDGES:
        edges = [e for e in edges if focus and e["tf"] in focus][:MAX_EDGES]
    n = max(len(nodes), 1)
    radius = max(140.0, n * 9.0)
    pad = 150.0
    size = 2 * (radius + pad)
    c = size / 2
    font = max(11.0, radius / 30.0)  # the SVG is scaled to the page: big graphs need bigger text
    pos = {}
    for i, node in enumerate(nodes):
        angle = 2 * math.pi * i / n - math.pi / 2
        pos[node["key"]] = (c + radius * math.cos(angle), c + radius * math.sin(angle), angle)

    parallel: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in edges:
        parallel[tuple(sorted((e["a"], e["b"])))].append(e)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size:.0f} {size:.0f}" '
        'class="graph" role="img" aria-label="network graph">'
    ]
    for (ka, kb), group in parallel.items():
        if ka not in pos or kb not in pos:
            continue
        (x1, y1, _), (x2, y2, _) = pos[ka], pos[kb]
        dx, dy = x2 - x1, y2 - y1
        length = math.hypot(dx, dy) or 1.0
        nx, ny = -dy / length, dx / length
        for j, e in enumerate(group):
            bend = (j - (len(group) - 1) / 2) * 28.0
            mx, my = (x1 + x2) / 2 + nx * bend, (y1 + y2) / 2 + ny * bend
            tf = e["tf"]
            status = statuses.get(tf, "none")
            title = escape(f"{e['name'] or tf}: {status}" + (f", ΔG {labels[tf]}" if labels.get(tf) else ""))
            parts.append(
                f'<a href="{escape(link(tf))}"><path id="edge-{escape(tf)}" class="e s-{status}" '
                f'd="M{x1:.1f},{y1:.1f} Q{2 * mx - (x1 + x2) / 2:.1f},{2 * my - (y1 + y2) / 2:.1f} '
                f'{x2:.1f},{y2:.1f}"><title>{title}</title></path></a>'
            )
            if labels.get(tf):
                parts.append(
                    f'<text class="el" x="{mx:.1f}" y="{my:.1f}" font-size="{font * 0.9:.0f}">{escape(labels[tf])}</text>'
                )
    for node in nodes:
        x, y, angle = pos[node["key"]]
        lx, ly = x + 12 * math.cos(angle), y + 12 * math.sin(angle)
        anchor = "start" if math.cos(angle) >= 0 else "end"
        parts.append(
            f'<circle class="n" cx="{x:.1f}" cy="{y:.1f}" r="6"><title>{escape(node["key"])}</title></circle>'
            f'<text class="nl" x="{lx:.1f}" y="{ly:.1f}" font-size="{font:.0f}" text-anchor="{anchor}">{escape(node["name"])}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts)), len(edges)
