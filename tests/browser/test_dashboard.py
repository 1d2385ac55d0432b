"""The dashboard in a real headless Chromium against a live deployment running a toy network.

The ToyProtocol is a toy (its numbers are not chemistry); ``fail_on`` makes one transformation
fail so there is a real traceback to open.
"""

from __future__ import annotations

import functools
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import expect

from alchemiscale_local.api.ui import dashboard_login_url
from alchemiscale_local.runtimes.toy.network import build_toy_network
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SCOPE = "demo-browser-dashboard"
# generous: the shared CI machine can be slow, and a cold first query takes a while
get = functools.partial(httpx.get, timeout=120)
post = functools.partial(httpx.post, timeout=120)
N_TF = 6


@pytest.fixture(scope="module")
def toy(deployment):
    """A toy network whose tasks exist but are not actioned yet (so they stay waiting)."""
    chain = build_toy_network(N_TF, name="browser demo", settings={"duration_s": 1.0})
    names = sorted(d["name"] for _, d in chain if d.get("__qualname__") == "Transformation")
    bad = names[0]
    chain = build_toy_network(N_TF, name="browser demo", settings={"duration_s": 1.0, "fail_on": [bad]})
    client = deployment.client()
    net = client.create_network(chain, SCOPE)
    tfs = client.get_network_transformations(net)
    tasks = client.create_transformations_tasks(tfs)
    return {"client": client, "net": str(net), "tfs": [str(t) for t in tfs], "tasks": tasks, "bad": bad}


def login_url(deployment, identifier: str | None = None) -> str:
    ident = identifier or deployment.credentials["user"]["identifier"]
    return dashboard_login_url(deployment.api_url, deployment.settings, ident)


def ui(deployment, path: str) -> str:
    return f"{deployment.api_url}/ui{path}"


def logged_in_page(browser, deployment, identifier: str | None = None):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(120_000)  # the machine may be busy; no timing is asserted here
    page = ctx.new_page()
    page.goto(login_url(deployment, identifier))
    return page


def test_no_page_without_login(deployment, toy, browser, artifacts):
    net = quote(toy["net"], safe="")
    tf = quote(toy["tfs"][0], safe="")
    task = quote(str(toy["tasks"][0]), safe="")
    paths = [
        "/",
        "/compute",
        f"/networks/{net}",
        f"/transformations/{tf}",
        f"/tasks/{task}",
        "/static/dashboard.js",
        "/static/dashboard.css",
        "/api/",
        "/api/compute",
        f"/api/networks/{net}",
        f"/api/transformations/{tf}",
        f"/api/tasks/{task}",
        f"/tasks/{task}/files/ProtocolDAGResult-{'0' * 32}/protocol.log",
    ]
    user_token = post(
        f"{deployment.api_url}/token",
        json={
            "identifier": deployment.credentials["user"]["identifier"],
            "key": deployment.credentials["user"]["key"],
        },
    ).json()["access_token"]
    for path in paths:
        for cookies in ({}, {"alchemiscale_ui": user_token}, {"alchemiscale_ui": "garbage"}):
            resp = get(ui(deployment, path), cookies=cookies, follow_redirects=False)
            # an API bearer token is no session cookie, and nothing of the network shows
            assert resp.status_code == 401, (path, cookies, resp.status_code)
            assert "browser demo" not in resp.text and toy["net"] not in resp.text
    # the login link works once: the second use is refused
    link = login_url(deployment)
    first = get(link, follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/ui/"
    cookie = first.cookies["alchemiscale_ui"]
    assert "httponly" in first.headers["set-cookie"].lower()
    assert "samesite=strict" in first.headers["set-cookie"].lower()
    assert get(link, follow_redirects=False).status_code == 401
    # the session cookie is no API bearer token either
    resp = get(
        f"{deployment.api_url}/networks/{net}/transformations", headers={"Authorization": f"Bearer {cookie}"}
    )
    assert resp.status_code == 401
    page = browser.new_page()
    page.set_default_timeout(120_000)
    page.goto(ui(deployment, "/"))
    assert "Not logged in" in page.inner_text("h1")
    page.screenshot(path=str(artifacts / "login-required.png"))
    page.close()


def test_overview_network_and_live_completion(deployment, toy, browser, artifacts):
    page = logged_in_page(browser, deployment)
    assert page.url.endswith("/ui/")
    page.wait_for_selector("text=browser demo")
    row = page.locator("tr", has_text="browser demo")
    assert f"{N_TF} transformations" in row.inner_text()
    page.screenshot(path=str(artifacts / "overview-waiting.png"), full_page=True)

    page.click("text=browser demo")
    page.wait_for_selector("#tf-table")
    assert page.locator("#tf-table tbody tr").count() == N_TF
    assert page.locator("svg.graph path.e").count() == N_TF
    assert page.locator("#tf-table tbody tr[data-status=waiting]").count() == N_TF
    # a marker that a reload would wipe: the page must update itself
    page.evaluate("window.__notReloaded = true")
    toy["client"].action_tasks(toy["tasks"], toy["net"])
    # the CSP forbids eval, so wait with selector-based expectations (no wait_for_function)
    expect(page.locator("#tf-table tbody tr[data-status=complete]")).to_have_count(N_TF - 1, timeout=180_000)
    expect(page.locator("#tf-table tbody tr[data-status=error]")).to_have_count(1, timeout=60_000)
    assert page.evaluate("window.__notReloaded === true")
    # edges in the graph were recoloured in place, and estimates are shown for the toy
    expect(page.locator("svg.graph path.e.s-complete")).to_have_count(N_TF - 1, timeout=30_000)
    assert page.locator("#tf-table td.num", has_text="kcal/mol").count() == N_TF - 1
    page.reload()  # labels on the graph come with a render
    assert page.locator("svg.graph text.el").count() == N_TF - 1
    page.screenshot(path=str(artifacts / "network.png"), full_page=True)

    page.goto(ui(deployment, "/"))
    page.wait_for_selector("text=browser demo")
    page.screenshot(path=str(artifacts / "overview.png"), full_page=True)
    page.context.close()


def test_failure_traceback_and_task_page(deployment, toy, browser, artifacts):
    client = toy["client"]
    client.action_tasks(toy["tasks"], toy["net"])  # idempotent: the test also runs alone
    wait_for(
        lambda: client.get_network_status(toy["net"], visualize=False).get("error") == 1, 180, "the failure"
    )
    page = logged_in_page(browser, deployment)
    page.goto(ui(deployment, f"/networks/{quote(toy['net'], safe='')}?sort=error&desc=1"))
    link = page.locator("#tf-table a.fail").first
    assert "ToyFailure" in link.inner_text()
    link.click()
    page.wait_for_selector("pre.tb")
    assert "ToyFailure" in page.inner_text("pre.tb")
    assert toy["bad"] in page.inner_text("pre.tb")
    assert "error" in page.inner_text("#task-status")
    # a failed attempt keeps what the protocol wrote: its log and the toy's plot, shown inline
    kept = page.inner_text("#kept-files")
    assert "protocol.log" in kept and "toy_plot.png" in kept, kept
    plot = page.locator("figure.plot img").first
    expect(plot).to_be_visible()
    # visible comes before loaded: poll until the browser has decoded it (a broken image never is)
    wait_for(lambda: plot.evaluate("img => img.complete && img.naturalWidth > 0"), 60, "the plot to load")
    log_url = page.locator("#kept-files a", has_text="protocol.log").first.get_attribute("href")
    assert log_url and page.request.get(ui(deployment, log_url.removeprefix("/ui"))).ok
    page.screenshot(path=str(artifacts / "task-failure.png"), full_page=True)

    page.click("text=" + toy["bad"])  # the task's transformation
    page.wait_for_selector("text=Failures")
    assert page.locator("a.fail").count() == 1
    page.screenshot(path=str(artifacts / "transformation.png"), full_page=True)
    page.context.close()


def test_compute_page(deployment, toy, browser, artifacts):
    page = logged_in_page(browser, deployment)
    page.goto(ui(deployment, "/compute"))
    page.wait_for_selector(".svc")
    text = page.inner_text("main")
    assert "none (CPU)" in text and "ok" in page.inner_text("#r-health")
    services = deployment.compute_services()
    assert services and services[0]["identifier"] in text
    # log tail of the service, read by the API from the deployment's log dir
    assert page.locator(".svc details pre.log").count() == len(services)
    # an opened log stays open while the page updates itself
    page.click(".svc details summary")
    marker = page.locator("body").get_attribute("data-updated")
    expect(page.locator("body")).not_to_have_attribute("data-updated", marker or "", timeout=30_000)
    assert page.locator(".svc details[open] pre.log").count() == 1
    page.screenshot(path=str(artifacts / "compute.png"), full_page=True)
    page.context.close()


def test_user_without_scope_sees_nothing(deployment, toy, browser):
    deployment.store.add_identity("outsider", "user", scopes=["other-*-*"], replace=True)
    page = logged_in_page(browser, deployment, "outsider")
    page.wait_for_selector("text=No networks in your scopes yet.")
    assert "browser demo" not in page.content()
    for path in (
        f"/networks/{quote(toy['net'], safe='')}",
        f"/tasks/{quote(str(toy['tasks'][0]), safe='')}",
        f"/transformations/{quote(toy['tfs'][0], safe='')}",
    ):
        resp = page.goto(ui(deployment, path))
        assert resp.status == 404
        assert "browser demo" not in page.content() and "toy_rbfe" not in page.content()
        api = page.request.get(ui(deployment, "/api" + path))
        assert api.status == 404
    # the compute page shows the services but not the tasks of other scopes, nor logs
    page.goto(ui(deployment, "/compute"))
    assert "toy_rbfe" not in page.content() and "pre" not in page.inner_html("#r-services")
    page.context.close()


def test_login_link_from_api_for_a_user_token(deployment, browser):
    creds = deployment.credentials["user"]
    token = post(
        f"{deployment.api_url}/token", json={"identifier": creds["identifier"], "key": creds["key"]}
    ).json()["access_token"]
    url = post(f"{deployment.api_url}/ui/login-link", headers={"Authorization": f"Bearer {token}"})
    assert url.status_code == 200
    page = browser.new_page()
    page.set_default_timeout(120_000)
    page.goto(url.json()["url"])
    assert page.url.endswith("/ui/") and "Networks" in page.inner_text("h1")
    page.close()
    assert post(f"{deployment.api_url}/ui/login-link").status_code == 401


def test_large_network_is_paged_and_drawn_in_part(deployment, browser, artifacts):
    client = deployment.client()
    chain = build_toy_network(2000, name="big 2000", settings={"duration_s": 0.0})
    net = client.create_network(chain, "demo-browser-big")
    client.create_transformations_tasks(client.get_network_transformations(net))
    page = logged_in_page(browser, deployment)
    page.goto(ui(deployment, f"/networks/{quote(str(net), safe='')}"))
    # 50 rows per page, the graph keeps all 64 ligands but draws only this page's edges
    expect(page.locator("#tf-table tbody tr")).to_have_count(50)
    assert "2000 transformations · page 1 of 40" in page.inner_text(".pager")
    assert page.locator("svg.graph path.e").count() == 50
    assert page.locator("svg.graph circle.n").count() == 64
    first = page.locator("#tf-table tbody tr").first.get_attribute("data-sk")
    page.click("#next-page")
    expect(page.locator(".pager")).to_contain_text("page 2 of 40")
    assert page.locator("#tf-table tbody tr").first.get_attribute("data-sk") != first
    page.click("#tf-table thead a:has-text('transformation')")  # name, descending
    expect(page.locator(".pager")).to_contain_text("page 1 of 40")
    names = page.locator("#tf-table tbody tr td:first-child").all_inner_texts()
    assert names == sorted(names, reverse=True)
    page.screenshot(path=str(artifacts / "network-2000.png"))
    page.context.close()


def test_expired_or_foreign_links_and_revoked_identities(deployment):
    from alchemiscale_local.api.app import jwt_secret
    from alchemiscale_local.api.ui.session import dashboard_login_url as signed_url

    secret = jwt_secret(deployment.settings)
    expired = signed_url(deployment.api_url, secret, deployment.credentials["user"]["identifier"], ttl_s=-5)
    assert get(expired, follow_redirects=False).status_code == 401
    forged = signed_url(
        deployment.api_url,
        "another-secret-that-is-not-the-deployments-0123456789",
        deployment.credentials["user"]["identifier"],
    )
    assert get(forged, follow_redirects=False).status_code == 401
    # a compute identity cannot log in to the dashboard
    compute = signed_url(deployment.api_url, secret, deployment.credentials["compute"]["identifier"])
    assert get(compute, follow_redirects=False).status_code == 401
    # a session ends once its identity is disabled (within the identity gate's recheck interval)
    deployment.store.add_identity("short-lived", "user", scopes=["*-*-*"], replace=True)
    resp = get(login_url(deployment, "short-lived"), follow_redirects=False)
    cookies = {"alchemiscale_ui": resp.cookies["alchemiscale_ui"]}
    assert get(ui(deployment, "/api/"), cookies=cookies).status_code == 200
    deployment.store.set_identity_disabled("short-lived", True)
    wait_for(
        lambda: get(ui(deployment, "/api/"), cookies=cookies).status_code == 401,
        30,
        "the disabled identity's session to be refused",
    )
    # and once its scopes change: the session carries the identity's version, as API tokens do
    deployment.store.add_identity("narrowed", "user", scopes=["*-*-*"], replace=True)
    resp = get(login_url(deployment, "narrowed"), follow_redirects=False)
    cookies = {"alchemiscale_ui": resp.cookies["alchemiscale_ui"]}
    assert get(ui(deployment, "/api/"), cookies=cookies).status_code == 200
    deployment.store.set_identity_scopes("narrowed", ["other-*-*"])
    wait_for(
        lambda: get(ui(deployment, "/api/"), cookies=cookies).status_code == 401,
        30,
        "the narrowed identity's old session to be refused",
    )
