"""The routes behind the browser page, in process (FastAPI TestClient) over the tiny clrec
artifact: a user's history, the user search, the catalogue's fields in ``/readyz``, the page's
static files and the evaluation report (public), and their places in the key policy."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clrec.serving.app import create_app, required_scope
from clrec.serving.artifact import REPORT_FILE, export_artifact, load_artifact
from clrec.serving.settings import ServiceSettings
from clrec.serving.state import ServiceState
from clrec.serving.store import Store

Client = tuple[TestClient, dict[str, str]]  # the client and a header per key


@pytest.fixture
def start(tmp_path: Path, clrec_artifact: Path) -> Iterator[Callable[..., Client]]:
    stack = ExitStack()

    def started(artifact: Path | None = None) -> Client:
        settings = ServiceSettings(
            artifact=artifact or clrec_artifact,
            data_dir=tmp_path / "data",
            sync_interval_s=None,
            rate_limit_per_s=0.0,
            log_requests=False,
        )
        store = Store(settings.db_url)
        stack.callback(store.close)
        keys = {
            scopes: {"X-API-Key": store.create_key(f"page-{scopes}", scopes).token}
            for scopes in ("read,write", "read", "write")
        }
        return stack.enter_context(TestClient(create_app(settings))), keys

    yield started
    stack.close()


def _state(client: TestClient) -> ServiceState:
    state = client.app.state.service  # type: ignore[attr-defined]
    assert isinstance(state, ServiceState)
    return state


# ---------------------------------------------------------------------- history


def test_history_lists_a_known_users_items_with_titles(
    start: Callable[..., Client], clrec_artifact: Path
) -> None:
    client, keys = start()
    art = load_artifact(clrec_artifact)
    user = art.user_ids[3]
    seen = [art.item_ids[i] for i in art.seen_items(art.user_index[user]).tolist()]
    assert len(seen) >= 3

    response = client.get(f"/v1/users/{user}/history", headers=keys["read"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"] == user and body["total"] == len(seen)
    assert [item["id"] for item in body["items"]] == seen
    titles = art.catalogue.set_index("id")["title"]
    for item in body["items"]:
        assert item["title"] == titles[item["id"]]
        assert item["source"] == "trained" and item["image"] is None

    limited = client.get(f"/v1/users/{user}/history?limit=2", headers=keys["read"]).json()
    assert limited["total"] == len(seen) and [i["id"] for i in limited["items"]] == seen[:2]


def test_history_puts_recorded_events_first(
    start: Callable[..., Client], clrec_artifact: Path
) -> None:
    client, keys = start()
    art = load_artifact(clrec_artifact)
    user = art.user_ids[3]
    seen = set(art.seen_items(art.user_index[user]).tolist())
    fresh = [art.item_ids[i] for i in range(art.n_items) if i not in seen][:2]
    events = [{"user": user, "item": item, "kind": "click"} for item in reversed(fresh)]
    assert client.post("/v1/events", json=events, headers=keys["write"]).status_code == 200
    # a user known only by events has a history too
    only = [{"user": "newcomer", "item": fresh[0], "kind": "click"}]
    assert client.post("/v1/events", json=only, headers=keys["write"]).status_code == 200

    body = client.get(f"/v1/users/{user}/history", headers=keys["read"]).json()
    assert body["total"] == len(seen) + 2
    assert [(i["id"], i["source"]) for i in body["items"][:2]] == [
        (item, "events") for item in sorted(fresh)
    ]
    assert {i["source"] for i in body["items"][2:]} == {"trained"}
    body = client.get("/v1/users/newcomer/history", headers=keys["read"]).json()
    assert body["total"] == 1 and body["items"][0]["id"] == fresh[0]


def test_history_of_an_unknown_user_is_404_and_limit_is_checked(
    start: Callable[..., Client],
) -> None:
    client, keys = start()
    response = client.get("/v1/users/nobody/history", headers=keys["read"])
    assert response.status_code == 404 and "nobody" in response.json()["detail"]
    for limit in (0, 1001, "x"):
        response = client.get(f"/v1/users/u1/history?limit={limit}", headers=keys["read"])
        assert response.status_code == 422


def test_history_shows_web_images_only(
    start: Callable[..., Client], clrec_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image field's http(s) URL is shown; a local path (which a browser cannot load and
    the page must not learn) is not."""
    client, keys = start()
    art = _state(client).artifact
    user = art.user_ids[3]
    first, second = art.seen_items(art.user_index[user]).tolist()[:2]
    posters: list[Any] = [None] * art.n_items
    posters[first] = "https://example.org/poster.jpg"
    posters[second] = "/data/posters/secret.jpg"
    monkeypatch.setattr(art, "catalogue", art.catalogue.assign(poster=posters))
    fields = {**art.item_fields, "poster": "image"}
    monkeypatch.setitem(art.manifest, "item_fields", fields)

    items = client.get(f"/v1/users/{user}/history", headers=keys["read"]).json()["items"]
    images = {i["id"]: i["image"] for i in items}
    assert images[art.item_ids[first]] == "https://example.org/poster.jpg"
    assert images[art.item_ids[second]] is None


# ---------------------------------------------------------------------- user search


def test_user_search_by_prefix(start: Callable[..., Client], clrec_artifact: Path) -> None:
    client, keys = start()
    art = load_artifact(clrec_artifact)
    body = client.get("/v1/users", headers=keys["read"]).json()
    assert body == {"prefix": "", "total": art.n_users, "users": art.user_ids[:20]}

    expected = [u for u in art.user_ids if u.startswith("u1")]
    body = client.get("/v1/users?prefix=u1&limit=3", headers=keys["read"]).json()
    assert body == {"prefix": "u1", "total": len(expected), "users": expected[:3]}
    assert client.get("/v1/users?prefix=zz", headers=keys["read"]).json()["total"] == 0

    # users known only by their events are found too, after the artifact's
    event = [{"user": "u1-new", "item": art.item_ids[0], "kind": "click"}]
    assert client.post("/v1/events", json=event, headers=keys["write"]).status_code == 200
    body = client.get("/v1/users?prefix=u1&limit=1000", headers=keys["read"]).json()
    assert body["users"] == [*expected, "u1-new"] and body["total"] == len(expected) + 1
    assert client.get("/v1/users?limit=0", headers=keys["read"]).status_code == 422


def test_the_new_routes_need_a_read_key(start: Callable[..., Client]) -> None:
    client, keys = start()
    for path in ("/v1/users", "/v1/users/u1/history"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=keys["write"]).status_code == 403
        assert client.get(path, headers=keys["read,write"]).status_code == 200


# ---------------------------------------------------------------------- page and report


def test_readiness_lists_the_catalogue_fields(start: Callable[..., Client]) -> None:
    client, _ = start()
    fields = client.get("/readyz").json()["item_fields"]
    assert fields == {"title": "text", "genres": "tags", "studio": "category"}


def test_the_page_is_public_and_holds_no_data(start: Callable[..., Client]) -> None:
    client, _ = start()
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="app.js"' in page.text and "u1" not in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        response = client.get(f"/ui/{name}")
        assert response.status_code == 200 and response.headers["x-content-type-options"]
    assert client.get("/ui/no-such-file.js").status_code == 404
    # the page's scripts come only from the service itself: nothing from a CDN
    assert "http" not in client.get("/ui/app.js").text.replace("https: http:", "")
    assert "//" not in page.text.replace("<!--", "")


def test_the_report_is_served_when_the_artifact_has_one(
    start: Callable[..., Client], clrec_artifact: Path, tmp_path: Path
) -> None:
    client, _ = start()
    assert client.get("/report").status_code == 404  # exported from a run without a report

    run = tmp_path / "run"
    shutil.copytree(clrec_artifact.parent / "run-clrec", run)
    (run / REPORT_FILE).write_text("<html><body><h1>run report</h1></body></html>")
    artifact = export_artifact(run, tmp_path / "artifact")
    assert REPORT_FILE in load_artifact(artifact).manifest["files"]  # checksummed
    client, _ = start(artifact)
    response = client.get("/report")  # public: aggregate metrics only
    assert response.status_code == 200 and "run report" in response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert client.head("/report").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/", None),
        ("GET", "/ui", None),
        ("GET", "/ui/", None),
        ("GET", "/ui/app.js", None),
        ("HEAD", "/report", None),
        ("GET", "/report", None),
        ("GET", "/uix", "read"),
        ("GET", "/reports", "read"),
        ("GET", "/v1/users", "read"),
        ("GET", "/v1/users/u1/history", "read"),
        ("POST", "/report", None),  # answered 405 by the route, never reaching data
    ],
)
def test_key_policy_of_the_page_paths(method: str, path: str, scope: str | None) -> None:
    assert required_scope(method, path) == scope
