"""The browser page end to end: a real ``clrec serve`` process on an artifact trained on the
bundled ml-latest-small, driven by Playwright in Debian's headless Chromium. The page opens,
shows an API error clearly without a key, lists and selects a user, renders their history and
recommendations (the API's own ranking), similar items, links the evaluation report, and adds
a brand-new item from its title and description that then shows in the user's
recommendations. A full-page screenshot is kept in ``test-artifacts/`` (git-ignored).

Skips with a reason when the ``playwright`` package or a Chromium binary is missing
(``.ci/run`` installs Debian's ``chromium`` as root; ``$CLREC_TEST_CHROMIUM`` names another).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from clrec.serving.artifact import load_artifact
from clrec.serving.settings import default_database_url
from live_server import Server, create_key

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"  # kept after the run; ignored by git (its own .gitignore)
CHROMIUM_ENV = "CLREC_TEST_CHROMIUM"
# Flags that run Chromium as root on a closed network (shared/STACK.md, "Browser tests");
# Playwright adds --headless itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NEW_ITEM = "browser-new-1"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module", autouse=True)
def chromium() -> str:
    """``$CLREC_TEST_CHROMIUM``, else Debian's ``chromium`` on PATH; skips without one (or
    without the playwright package) before anything is trained."""
    pytest.importorskip(
        "playwright.sync_api", reason="the browser test needs the playwright package (dev extra)"
    )
    named = os.environ.get(CHROMIUM_ENV)
    if named:
        if not Path(named).is_file():
            pytest.skip(f"${CHROMIUM_ENV}={named} does not exist")
        return named
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    pytest.skip(
        "no Chromium binary: install Debian's chromium (`apt-get install -y chromium`; .ci/run "
        f"does it as root) or set ${CHROMIUM_ENV} to a Chromium executable"
    )


@pytest.fixture(scope="module")
def artifact_dir(ml_small_served: Path) -> Path:
    """A short tags-only clrec run on ml-latest-small with its HTML report, exported."""
    return ml_small_served


def test_the_page_explores_recommendations_and_places_a_new_item(
    chromium: str, artifact_dir: Path, tmp_path: Path, servers: list[Server]
) -> None:
    from playwright import sync_api

    art = load_artifact(artifact_dir)
    db_url = default_database_url(tmp_path / "service")
    token = create_key(db_url, "page", "read,write").stdout.strip()
    server = Server(artifact_dir, db_url, tmp_path / "server.log")
    servers.append(server)
    base = f"http://127.0.0.1:{server.port}"
    user = art.user_ids[5]
    status, expected = server.request("GET", f"/v1/users/{user}/recommendations?k=10", token=token)
    assert status == 200
    expected_ids = [item["id"] for item in expected["items"]]
    status, history = server.request("GET", f"/v1/users/{user}/history?limit=100", token=token)
    assert status == 200
    explain = f"/v1/users/{user}/explain/{expected_ids[0]}?k=5&counterfactuals=3"
    status, why = server.request("GET", explain, token=token)
    assert status == 200 and why["contributions"], why

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / ".gitignore").write_text("*\n")
    shot = ARTIFACTS / "browser-page.png"
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh profile
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1500, "height": 1100},
        )
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        try:
            _explore(page, base, token, user, expected_ids, history, art)
            _explanation(page, why)
            page.screenshot(path=str(shot), full_page=True)
            _rerank_switch(page, base, user)
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "browser-page-failure.png"), full_page=True)
            print(f"screenshot of the failure: {ARTIFACTS / 'browser-page-failure.png'}")
            raise
        finally:
            context.close()
    assert not problems, problems
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")

    # the page's item is the service's: recommendable for the user through the API as well
    status, placed = server.request("GET", f"/v1/users/{user}/recommendations?k=100", token=token)
    assert status == 200 and NEW_ITEM in [item["id"] for item in placed["items"]]


def _explore(
    page: Any,
    base: str,
    token: str,
    user: str,
    expected_ids: list[str],
    history: dict[str, Any],
    art: Any,
) -> None:
    from playwright.sync_api import expect

    response = page.goto(f"{base}/")
    assert response is not None and response.ok and page.url == f"{base}/ui/"
    expect(page.locator("#service-status")).to_contain_text("ready")
    expect(page.locator("#service-status")).to_contain_text(f"{art.n_items} items")
    # no ranking stage in this artifact: the re-ranking switch is off and says why
    expect(page.locator("#rerank")).to_be_disabled()
    expect(page.locator("#rerank-note")).to_contain_text("no ranking stage")

    # the evaluation report of the loaded model is linked, and served
    report = page.locator("#report-link")
    expect(report).to_be_visible()
    answer = page.request.get(f"{base}/report")
    assert answer.ok and "<html" in answer.text().lower()

    # without a key, the API's answer is shown: status and detail
    page.fill("#user-search", user)
    page.click("#user-form button[type=submit]")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-status")).to_have_text("401 Unauthorized")
    expect(page.locator("#error-detail")).to_contain_text("API key")

    # with the key (kept in sessionStorage): search, choose the user
    page.fill("#api-key", token)
    page.click("#key-form button[type=submit]")
    expect(page.locator("#error")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('clrec.apiKey')") == token
    page.fill("#user-search", user)
    chip = page.locator(f'#user-matches button[data-user="{user}"]')
    chip.click()
    expect(chip).to_have_class("chosen")

    # recommendations: the API's top 10 in its order, with scores; the history beside them
    recs = page.locator("#rec-list li")
    expect(recs).to_have_count(10)
    assert [recs.nth(i).get_attribute("data-id") for i in range(10)] == expected_ids
    expect(recs.first.locator(".meta")).to_contain_text("score")
    shown = page.locator("#history-list li")
    expect(shown).to_have_count(len(history["items"]))
    expect(shown.first.locator(".title")).to_have_text(history["items"][0]["title"])
    expect(page.locator("#history-count")).to_contain_text(str(history["total"]))

    # the most similar items of any item
    recs.first.locator("button.action").click()
    expect(page.locator("#similar-list li")).to_have_count(10)
    expect(page.locator("#similar-note")).to_contain_text(expected_ids[0])

    # an API error on a bad request: k beyond the service's max-k
    page.fill("#k", "500")
    page.dispatch_event("#k", "change")
    expect(page.locator("#error-status")).to_have_text("422 Unprocessable Content")
    expect(page.locator("#error-detail")).to_contain_text("k")
    page.fill("#k", "10")
    page.dispatch_event("#k", "change")
    expect(recs).to_have_count(10)
    page.click("#error-close")

    # a new item from its title and description, like the user's top recommendation
    top = art.catalogue.iloc[art.item_index[expected_ids[0]]]
    year = str(top["title"]).rsplit("(", 1)[-1]
    page.fill("#item-id", NEW_ITEM)
    page.fill("#field-title", f"A Film Nobody Has Seen ({year}")
    if isinstance(top["tags"], str):
        page.fill("#field-tags", ", ".join(str(top["tags"]).split("|")))
    page.click("#item-fields details summary")
    page.fill("#field-genres", str(top["genres"]))
    page.click("#item-submit")
    placement = page.locator("#placement.landed")
    expect(placement).to_contain_text(f"for user {user} it lands at rank")
    rank = int(placement.get_attribute("data-rank") or 0)
    print(f"the new item lands at rank {rank} for user {user}")
    assert 1 <= rank <= 100, f"the new item lands at rank {rank}: beyond the page's list"
    added = page.locator(f'#rec-list li[data-id="{NEW_ITEM}"]')
    expect(added).to_have_count(1)
    expect(added).to_have_class("new")
    expect(added.locator(".rank")).to_have_text(str(rank))
    expect(added.locator(".title")).to_contain_text("A Film Nobody Has Seen")
    expect(page.locator("#error")).to_be_hidden()


def _explanation(page: Any, why: dict[str, Any]) -> None:
    """ "why?" on the top recommendation opens "because you liked …": the API's contributors
    in its order, each one's share of the score and the rank without it; again closes it."""
    from playwright.sync_api import expect

    top = page.locator("#rec-list > li").first
    button = top.locator("button.why-button")
    button.click()
    panel = top.locator(".why")
    expect(panel.locator(".why-head")).to_contain_text(f"rank {why['rank']}")
    if any(c["contribution"] > 0 for c in why["contributions"]):
        expect(panel.locator(".why-head")).to_contain_text("Because you liked")
    rows = panel.locator(".why-list li")
    expect(rows).to_have_count(len(why["contributions"]))
    for n, contribution in enumerate(why["contributions"]):
        row = rows.nth(n)
        assert row.get_attribute("data-id") == contribution["id"]
        share = 100 * contribution["contribution"] / abs(why["score"])
        expect(row.locator(".why-share")).to_contain_text(f"{share:.0f} % of the score")
        without = row.locator(".why-without")
        if contribution["rank_without"] is None:
            expect(without).to_have_count(0)
        else:
            assert without.get_attribute("data-rank") == str(contribution["rank_without"])
            expect(without).to_contain_text(f"rank {why['rank']} → {contribution['rank_without']}")
    for name in why["item_parts"]:
        expect(panel.locator(".why-rest")).to_contain_text(name)
    assert button.get_attribute("aria-expanded") == "true"
    top.screenshot(path=str(ARTIFACTS / "browser-explanation.png"))
    button.click()
    expect(top.locator(".why")).to_have_count(0)


def _rerank_switch(page: Any, base: str, user: str) -> None:
    """The re-ranking switch follows ``/readyz``'s ``ranker`` and sends ``rerank=true``. This
    artifact has no ranking stage, so readiness is answered as if it had one; the service
    itself then refuses the request (422), and the page shows why."""
    from playwright.sync_api import expect

    ready = page.request.get(f"{base}/readyz").json()
    page.route(f"{base}/readyz", lambda route: route.fulfill(json={**ready, "ranker": True}))
    page.reload()
    expect(page.locator("#rerank")).to_be_enabled()
    page.fill("#user-search", user)  # the key survived the reload (sessionStorage)
    page.click("#user-form button[type=submit]")
    expect(page.locator("#rec-list li")).to_have_count(10)
    with page.expect_request(lambda request: "rerank=true" in request.url):
        page.check("#rerank")
    expect(page.locator("#error-status")).to_have_text("422 Unprocessable Content")
    expect(page.locator("#error-detail")).to_contain_text("no ranking stage")
