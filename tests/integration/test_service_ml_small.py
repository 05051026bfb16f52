"""Every route of the real service (``clrec serve`` in its own process, real HTTP) on an
artifact trained on the bundled ml-latest-small: authentication and scopes, bad input, a
known user's ranking equal to the model's own, cold-start users, similar items, a brand-new
item recommendable at once, events changing recommendations, health, readiness, metrics and
the OpenAPI schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clrec.serving.artifact import Artifact, load_artifact
from clrec.serving.settings import default_database_url
from live_server import Server, create_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def artifact_dir(ml_small_served: Path) -> Path:
    """A short tags-only clrec run on ml-latest-small (genres and user tags as content)."""
    return ml_small_served


def test_every_route_on_ml_latest_small(
    artifact_dir: Path, tmp_path: Path, servers: list[Server]
) -> None:
    art = load_artifact(artifact_dir)
    db_url = default_database_url(tmp_path / "service")
    tokens = {}
    for scopes in ("read,write", "read", "write"):
        tokens[scopes] = create_key(db_url, scopes, scopes).stdout.strip()
    both, reader, writer = tokens["read,write"], tokens["read"], tokens["write"]
    server = Server(artifact_dir, db_url, tmp_path / "server.log")
    servers.append(server)
    get = server.request

    # operations: public health and readiness, metrics behind a read key, the schema
    assert get("GET", "/healthz") == (200, {"status": "ok"})
    status, ready = get("GET", "/readyz")
    assert status == 200 and ready["items"] == art.n_items and ready["users"] == art.n_users
    assert ready["index"]["recall@10"] == 1.0 and ready["database"] is True
    status, schema = get("GET", "/openapi.json")
    assert status == 200 and "/v1/users/{user_id}/recommendations" in schema["paths"]

    # authentication and scopes
    user = art.user_ids[5]
    route = f"/v1/users/{user}/recommendations?k=10"
    assert get("GET", route)[0] == 401
    assert get("GET", route, token="clrec_0123456789abcdef_wrong")[0] == 401
    assert get("GET", route, token=writer)[0] == 403
    assert get("POST", "/v1/events", [], token=reader)[0] == 403

    # a known user gets the model's own top 10 over unseen items
    status, body = get("GET", route, token=reader)
    assert status == 200 and len(body["items"]) == 10
    index = art.user_index[user]
    scores = art.model.score(np.array([index]))[0]  # type: ignore[attr-defined]  # (I,)
    scores[art.seen_items(index)] = -np.inf
    expected = [art.item_ids[i] for i in np.argsort(-scores, kind="stable")[:10]]
    assert [item["id"] for item in body["items"]] == expected
    assert all(item["title"] for item in body["items"])

    # bad input: k out of range, unknown user pointing to the cold-start route
    assert get("GET", f"/v1/users/{user}/recommendations?k=0", token=reader)[0] == 422
    assert get("GET", f"/v1/users/{user}/recommendations?k=101", token=reader)[0] == 422
    status, body = get("GET", "/v1/users/no-such-user/recommendations", token=reader)
    assert status == 404 and "POST /v1/recommendations" in body["detail"]
    assert get("GET", "/v1/items/no-such-item/similar", token=reader)[0] == 404
    assert get("POST", "/v1/recommendations", {"k": 5}, token=reader)[0] == 422

    # cold start: a new user known by two liked items
    liked = expected[:2]
    status, body = get("POST", "/v1/recommendations", {"items": liked, "k": 5}, token=reader)
    assert status == 200 and len(body["items"]) == 5
    assert not set(liked) & {item["id"] for item in body["items"]}

    # similar items: the nearest by the model's item vectors
    item = expected[0]
    status, body = get("GET", f"/v1/items/{item}/similar?k=3", token=reader)
    assert (
        status == 200 and len(body["items"]) == 3 and item not in [i["id"] for i in body["items"]]
    )

    # a brand-new item, written from content, is recommendable at once
    twin = _catalogue_fields(art, item)
    status, body = get("PUT", "/v1/items/brand-new?for_user=" + user, twin, token=writer)
    assert status == 201 and body["created"] is True and body["placement"]["rank"] >= 1
    status, body = get("GET", f"/v1/items/{item}/similar?k=1", token=reader)
    assert body["items"][0]["id"] == "brand-new"  # same content, same vector
    status, body = get(
        "POST", "/v1/recommendations", {"items": ["brand-new"], "k": 3}, token=reader
    )
    assert status == 200 and item in [i["id"] for i in body["items"]]

    # events: the user's clicked items leave their recommendations
    clicked = [{"user": user, "item": i, "kind": "click"} for i in expected[:3]]
    assert get("POST", "/v1/events", clicked, token=writer) == (200, {"recorded": 3})
    status, body = get("GET", route, token=both)
    assert status == 200 and not set(expected[:3]) & {i["id"] for i in body["items"]}
    unknown = [{"user": user, "item": "never-heard-of-it", "kind": "click"}]
    assert get("POST", "/v1/events", unknown, token=writer)[0] == 422

    status, metrics = _metrics(server, reader)
    assert status == 200
    assert 'route="/v1/users/{user_id}/recommendations",status="200"' in metrics
    assert "clrec_index_items" in metrics


def _catalogue_fields(art: Artifact, item: str) -> dict[str, str]:
    row = art.catalogue.iloc[art.item_index[item]]
    return {
        name: str(row[name])
        for name in art.item_fields
        if name in row and isinstance(row[name], str)
    }


def _metrics(server: Server, token: str) -> tuple[int, str]:
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/metrics", headers={"X-API-Key": token}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read().decode()
