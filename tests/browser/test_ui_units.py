"""Dashboard pieces that need no browser or server: tokens, edge colours, the SVG graph."""

from __future__ import annotations

import time

import pytest
from fastapi import HTTPException

from alchemiscale_local.api.auth import TokenIssuer
from alchemiscale_local.api.ui.graph import MAX_EDGES, edge_status, render_svg
from alchemiscale_local.api.ui.session import UsedLogins, login_token

SECRET = "unit-test-secret-0123456789abcdef0123456789"


def test_login_token_is_no_bearer_token():
    issuer = TokenIssuer(SECRET, 60)
    with pytest.raises(HTTPException) as err:
        issuer.verify(login_token(SECRET, "alice"))
    assert err.value.status_code == 401


def test_used_logins_accept_each_jti_once():
    used = UsedLogins()
    exp = time.time() + 60
    assert used.consume("a", exp) is True
    assert used.consume("a", exp) is False
    assert used.consume("b", exp) is True


@pytest.mark.parametrize(
    ("statuses", "colour"),
    [
        ([], "none"),
        (["waiting"], "waiting"),
        (["waiting", "running"], "running"),
        (["error", "waiting"], "error"),
        (["error", "complete"], "complete"),
        (["deleted"], "deleted"),
    ],
)
def test_edge_status(statuses, colour):
    assert edge_status(statuses) == colour


def _graph(n_edges: int, name: str = "t") -> dict:
    nodes = [{"key": f"N-{i}", "name": f"lig{i}"} for i in range(10)]
    edges = [
        {"tf": f"T-{i}", "name": f"{name}{i}", "a": f"N-{i % 10}", "b": f"N-{(i + 1) % 10}"}
        for i in range(n_edges)
    ]
    return {"nodes": nodes, "edges": edges}


def test_svg_escapes_names_and_labels():
    graph = _graph(2, name="<script>alert(1)</script>")
    graph["nodes"][0]["name"] = '"><img src=x onerror=alert(1)>'
    svg, drawn = render_svg(graph, {"T-0": "complete"}, {"T-0": "1.00 ± 0.10"}, lambda tf: f"/ui/t/{tf}")
    assert drawn == 2
    assert "<script>" not in svg and "<img" not in svg
    assert "&lt;script&gt;" in svg and "1.00 ± 0.10" in svg
    assert 'class="e s-complete"' in svg and 'class="e s-none"' in svg


def test_svg_draws_only_the_focus_above_the_limit():
    graph = _graph(MAX_EDGES + 50)
    focus = {f"T-{i}" for i in range(0, 100, 2)}
    svg, drawn = render_svg(graph, {}, {}, lambda tf: "#", focus=focus)
    assert drawn == 50 and svg.count("<path ") == 50
    assert svg.count("<circle ") == 10  # every node is still drawn
    small, drawn_all = render_svg(_graph(20), {}, {}, lambda tf: "#")
    assert drawn_all == 20
