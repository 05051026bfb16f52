"""The HTTP service in process (FastAPI TestClient) over tiny artifacts: every route's happy
path and bad input, new items recommendable at once, events changing recommendations,
replay after a restart, several workers sharing one database, metrics and logs."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from movies import CLREC

from clrec.errors import ClrecError
from clrec.serving.app import create_app, required_scope
from clrec.serving.artifact import Artifact, export_artifact, load_artifact
from clrec.serving.encoding import OverloadedError
from clrec.serving.index import IndexConfig
from clrec.serving.settings import ServiceSettings
from clrec.serving.state import ServiceState
from clrec.serving.store import Store, StoreError
from conftest import build_artifact

MAX_K = 50


@dataclass
class Service:
    client: TestClient
    store: Store
    token: str  # read + write
    reader: str  # read only
    writer: str  # write only

    @property
    def state(self) -> ServiceState:
        state = self.client.app.state.service  # type: ignore[attr-defined]
        assert isinstance(state, ServiceState)
        return state

    def get(self, path: str, token: str | None = None, **params: Any) -> Any:
        headers = {"X-API-Key": token or self.token}
        return self.client.get(path, params=params, headers=headers)

    def post(self, path: str, body: Any, token: str | None = None) -> Any:
        return self.client.post(path, json=body, headers={"X-API-Key": token or self.token})

    def put(self, path: str, body: Any, token: str | None = None, **params: Any) -> Any:
        headers = {"X-API-Key": token or self.token}
        return self.client.put(path, json=body, params=params, headers=headers)

    def recommended(self, user: str, k: int = 10, **params: Any) -> list[str]:
        response = self.get(f"/v1/users/{user}/recommendations", k=k, **params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    def similar(self, item: str, k: int = 5) -> list[str]:
        response = self.get(f"/v1/items/{item}/similar", k=k)
        assert response.status_code == 200, response.text
        return [entry["id"] for entry in response.json()["items"]]


ServiceFactory = Callable[..., Service]


@pytest.fixture
def make_service(tmp_path: Path, clrec_artifact: Path) -> Iterator[ServiceFactory]:
    """Start a service (lifespan run) on ``artifact`` with a database in ``data``."""
    stack = ExitStack()
    counter = [0]

    def start(artifact: Path | None = None, data: str = "data", **overrides: Any) -> Service:
        counter[0] += 1
        settings = ServiceSettings(
            artifact=artifact or clrec_artifact,
            data_dir=tmp_path / data,
            max_k=MAX_K,
            sync_interval_s=overrides.pop("sync_interval_s", None),
            **overrides,
        )
        store = Store(settings.db_url)
        stack.callback(store.close)
        keys = [
            store.create_key(f"k{counter[0]}-{scopes}", scopes).token
            for scopes in ("read,write", "read", "write")
        ]
        client = stack.enter_context(TestClient(create_app(settings)))
        return Service(client, store, *keys)

    yield start
    stack.close()


@pytest.fixture
def service(make_service: ServiceFactory) -> Service:
    return make_service()


@pytest.fixture(scope="module")
def artifact(clrec_artifact: Path) -> Artifact:
    return load_artifact(clrec_artifact)


@pytest.fixture(scope="module")
def cold(artifact: Artifact) -> list[str]:
    """Items whose vector is their content's alone (no training interaction), each unlike
    every other item: a new item with the same tags gets exactly their vector."""
    fields = [_fields(artifact, item) for item in artifact.item_ids]
    vectors = artifact.model.item_vectors()  # (I, D)
    content = artifact.model.index_vectors(artifact.embed_items(fields))  # (I, D)
    same = np.isclose(content, vectors, atol=1e-5).all(axis=1)  # (I,)
    cosine = vectors @ vectors.T  # (I, I)
    unique = (cosine > 1 - 1e-4).sum(axis=1) == 1  # (I,) only itself
    found = [artifact.item_ids[i] for i in np.flatnonzero(same & unique)]
    assert len(found) >= 2, "the tiny run should leave a few cold items"
    return found


def _model_scores(art: Artifact, items: list[str]) -> np.ndarray:
    """The model's own scores ``(I,)`` of a user it never saw, known by ``items``."""
    model = art.model
    state = model.user_state(None)
    for item in items:
        row = art.item_index[item]
        model.add_event(state, row, model.history_vectors()[row])
    return model.score_user(state, model.item_vectors(), np.arange(art.n_items))


def _fields(art: Artifact, item: str, **changes: str) -> dict[str, str]:
    row = art.catalogue.iloc[art.item_index[item]]
    return {"title": row["title"], "genres": row["genres"], "studio": row["studio"], **changes}


def _twin(art: Artifact, item: str, name: str) -> dict[str, str]:
    """``item``'s fields under a new title with the same year: the same tags."""
    fields = _fields(art, item)
    year = fields["title"].rsplit("(", 1)[1]
    return {**fields, "title": f"{name} ({year}"}


# ---------------------------------------------------------------------- operations


def test_health_readiness_and_metrics_access(service: Service) -> None:
    client = service.client
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["database"] is True
    assert body["model"] == "clrec" and body["items"] == 40 and body["users"] == 60
    assert body["index"]["kind"] == "exact" and body["index"]["recall@10"] == 1.0
    assert service.state.index_report["recall_sample"] == 60
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": service.writer}).status_code == 403
    assert client.get("/metrics", headers={"X-API-Key": service.reader}).status_code == 200


def test_every_route_has_the_scope_it_should(service: Service) -> None:
    """The key policy, route by route: reads need ``read``, writes ``write``, only health,
    readiness, the API's documentation, the browser page and the evaluation report are
    public, and unknown paths need a key too."""
    expected = {
        ("GET", "/v1/users/{user_id}/recommendations"): "read",
        ("POST", "/v1/recommendations"): "read",
        ("GET", "/v1/items/{item_id}/similar"): "read",
        ("GET", "/v1/users"): "read",
        ("GET", "/v1/users/{user_id}/history"): "read",
        ("GET", "/v1/users/{user_id}/explain/{item_id}"): "read",
        ("PUT", "/v1/items/{item_id}"): "write",
        ("POST", "/v1/events"): "write",
        ("GET", "/metrics"): "read",
        ("GET", "/healthz"): None,
        ("GET", "/readyz"): None,
        ("GET", "/openapi.json"): None,
        ("GET", "/docs"): None,
        ("GET", "/"): None,  # redirects to the browser page (/ui/, static files: a Mount)
        ("GET", "/report"): None,  # the run's evaluation report: aggregate metrics only
    }
    found = {
        (method, route.path): required_scope(method, route.path.replace("{", "x").replace("}", ""))
        for route in service.client.app.routes  # type: ignore[attr-defined]
        for method in getattr(route, "methods", ()) or ()
        if method != "HEAD" and not route.path.startswith(("/redoc", "/docs/"))
    }
    assert found == expected
    assert service.client.get("/no/such/route").status_code == 401
    assert service.get("/no/such/route").status_code == 404
    assert service.client.get("/openapi.json").status_code == 200


def test_readiness_reports_a_database_failure(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service.state.store, "ping", lambda: False)
    response = service.client.get("/readyz")
    assert response.status_code == 503 and response.json()["database"] is False
    assert service.client.get("/healthz").status_code == 200


# ---------------------------------------------------------------------- users


def test_known_user_gets_the_models_exact_ranking(service: Service, artifact: Artifact) -> None:
    response = service.get("/v1/users/u3/recommendations", k=5)
    assert response.status_code == 200
    body = response.json()
    assert body["user"] == "u3" and body["k"] == 5 and len(body["items"]) == 5
    user = artifact.user_index["u3"]
    scores = artifact.model.score(np.array([user]))[0]  # type: ignore[attr-defined]  # (I,)
    seen = set(artifact.seen[user].indices.tolist())
    expected = [int(i) for i in np.argsort(-scores, kind="stable") if int(i) not in seen][:5]
    assert [item["id"] for item in body["items"]] == [artifact.item_ids[i] for i in expected]
    for item, row in zip(body["items"], expected, strict=True):
        assert item["score"] == pytest.approx(float(scores[row]), rel=1e-5)
        assert item["title"] == artifact.catalogue["title"].iloc[row]
    # default k, seen items back with exclude_seen=false, explicit exclusions
    assert len(service.recommended("u3", k=10)) == 10
    everything = service.recommended("u3", k=MAX_K, exclude_seen="false")
    assert len(everything) == 40 and seen <= {artifact.item_index[i] for i in everything}
    top = service.recommended("u3", k=3)
    assert service.recommended("u3", k=3, exclude=[top[0], "not-an-item"])[:2] == top[1:]


def test_user_errors(service: Service) -> None:
    unknown = service.get("/v1/users/nobody/recommendations")
    assert unknown.status_code == 404
    assert "POST /v1/recommendations" in unknown.json()["detail"]
    for k in (0, -1, MAX_K + 1):
        response = service.get("/v1/users/u1/recommendations", k=k)
        assert response.status_code == 422, k
        assert response.json()["detail"][0]["loc"] == ["query", "k"]
    assert service.get("/v1/users/u1/recommendations", k="many").status_code == 422
    assert service.get("/v1/users/u1/recommendations", k=MAX_K).status_code == 200
    assert service.get("/v1/users/u1/recommendations", token=service.writer).status_code == 403
    assert service.client.get("/v1/users/u1/recommendations").status_code == 401


# ---------------------------------------------------------------------- cold start


def test_anonymous_recommendations(service: Service, artifact: Artifact) -> None:
    response = service.post("/v1/recommendations", {"items": ["m0", "m5", "ghost", "m0"], "k": 4})
    assert response.status_code == 200
    body = response.json()
    assert body["ignored_items"] == ["ghost"] and body["k"] == 4
    ids = [item["id"] for item in body["items"]]
    assert len(ids) == 4 and not {"m0", "m5"} & set(ids)
    scores = _model_scores(artifact, ["m0", "m5"])  # prior included
    order = [
        artifact.item_ids[i]
        for i in np.argsort(-scores)
        if artifact.item_ids[i] not in {"m0", "m5"}
    ]
    assert ids == order[:4]
    # a profile text read as the catalogue's text field (here: its year tag)
    profile = service.post("/v1/recommendations", {"profile_text": "films from (1991)", "k": 3})
    assert profile.status_code == 200 and len(profile.json()["items"]) == 3
    both = service.post("/v1/recommendations", {"items": ["m0"], "profile_text": "x (1992)"})
    assert both.status_code == 200 and len(both.json()["items"]) == 10


def test_anonymous_errors(
    service: Service, make_service: ServiceFactory, bpr_artifact: Path
) -> None:
    def status(body: Any) -> tuple[int, Any]:
        response = service.post("/v1/recommendations", body)
        return response.status_code, response.json()["detail"]

    code, detail = status({"k": 3})
    assert code == 422 and "at least one of items or profile_text" in str(detail)
    code, detail = status({"items": ["ghost"]})
    assert code == 422 and "none of the given items" in detail
    code, detail = status({"profile_text": "nothing readable here"})
    assert code == 422 and "profile_text gives no content" in detail
    assert "nothing readable here" not in detail  # the text itself is not echoed
    assert status({"items": ["m0"], "k": 0})[0] == 422
    code, detail = status({"items": ["m0"], "k": MAX_K + 1})
    assert code == 422 and detail[0]["loc"] == ["body", "k"]
    assert status({"items": ["m0"], "unknown": 1})[0] == 422
    assert status([1, 2])[0] == 422
    response = service.post("/v1/recommendations", {"items": ["m0"]}, token=service.writer)
    assert response.status_code == 403
    bpr = make_service(bpr_artifact, data="bpr")
    response = bpr.post("/v1/recommendations", {"profile_text": "Heat (1995)"})
    assert response.status_code == 422 and "reads no content" in response.json()["detail"]
    assert bpr.post("/v1/recommendations", {"items": ["m1"]}).status_code == 200


# ---------------------------------------------------------------------- items


def test_similar_items(service: Service, artifact: Artifact) -> None:
    response = service.get("/v1/items/m4/similar", k=3)
    assert response.status_code == 200
    body = response.json()
    assert body["item"] == "m4" and len(body["items"]) == 3
    row = artifact.item_index["m4"]
    vectors = artifact.model.item_vectors()
    cosine = vectors @ vectors[row]
    cosine[row] = -np.inf
    assert [i["id"] for i in body["items"]] == [
        artifact.item_ids[i] for i in np.argsort(-cosine)[:3]
    ]
    assert service.get("/v1/items/nothing/similar").status_code == 404
    assert service.get("/v1/items/m4/similar", k=0).status_code == 422
    assert service.get("/v1/items/m4/similar", k=MAX_K + 1).status_code == 422


def test_a_new_item_is_recommendable_at_once(
    service: Service, artifact: Artifact, cold: list[str]
) -> None:
    ref = cold[0]
    fields = _twin(artifact, ref, "A Brand New Film")  # the same tags: the same vector
    response = service.put("/v1/items/fresh", fields)
    assert response.status_code == 201
    assert response.json() == {
        "id": "fresh",
        "created": True,
        "title": fields["title"],
        "placement": None,
    }
    similar = service.get(f"/v1/items/{ref}/similar", k=3).json()["items"]
    assert similar[0]["id"] == "fresh" and similar[0]["title"] == fields["title"]
    assert similar[0]["score"] == pytest.approx(1.0, abs=1e-5)  # cosine model
    assert service.similar("fresh", 1) == [ref]
    assert service.get("/readyz").json()["items"] == 41
    # a user whose history matches (known only by an event on ref): fresh comes first
    recorded = service.post("/v1/events", [{"user": "new-user", "item": ref, "kind": "click"}])
    assert recorded.status_code == 200
    assert service.recommended("new-user", 3)[0] == "fresh"
    # and anonymous visitors who liked ref
    anonymous = service.post("/v1/recommendations", {"items": [ref], "k": 1}).json()
    assert anonymous["items"][0]["id"] == "fresh"


def test_put_reports_the_placement_and_updates(
    service: Service, artifact: Artifact, cold: list[str]
) -> None:
    fields = _twin(artifact, cold[0], "Placed")
    response = service.put("/v1/items/placed", fields, for_user="u2")
    assert response.status_code == 201
    placement = response.json()["placement"]
    assert placement["user"] == "u2" and placement["seen"] is False
    ranking = service.recommended("u2", k=MAX_K)
    assert placement["candidates"] == len(ranking)
    assert ranking.index("placed") == placement["rank"] - 1
    listed = service.get("/v1/users/u2/recommendations", k=MAX_K).json()["items"]
    assert listed[placement["rank"] - 1]["score"] == pytest.approx(placement["score"], rel=1e-5)
    # an update re-embeds: now it looks like the second cold item
    second = _twin(artifact, cold[1], "Placed")
    again = service.put("/v1/items/placed", second)
    assert again.status_code == 200 and again.json()["created"] is False
    assert service.similar(cold[1], 1) == ["placed"]
    assert service.similar(cold[0], 1) != ["placed"]
    assert service.get("/readyz").json()["items"] == 41
    stored = service.store.load_items()
    assert [(i.id, i.content["title"]) for i in stored] == [("placed", second["title"])]
    # an artifact item can be re-described too; its title follows
    renamed = _twin(artifact, cold[1], "Renamed")
    changed = service.put("/v1/items/m0", renamed)
    assert changed.status_code == 200 and changed.json()["created"] is False
    assert sorted(service.similar(cold[1], 2)) == ["m0", "placed"]
    user_items = service.get("/v1/users/u0/recommendations", k=MAX_K, exclude_seen="false")
    titles = {i["id"]: i["title"] for i in user_items.json()["items"]}
    assert titles["m0"] == renamed["title"]


def test_put_errors(service: Service, make_service: ServiceFactory, bpr_artifact: Path) -> None:
    bad_field = service.put("/v1/items/x", {"titel": "Typo (1990)"})
    assert bad_field.status_code == 422 and "unknown field" in bad_field.json()["detail"]
    unreadable = service.put("/v1/items/x", {"genres": "Unknownia"})
    assert unreadable.status_code == 422 and "no content" in unreadable.json()["detail"]
    assert service.put("/v1/items/x", {}).status_code == 422
    assert service.put("/v1/items/x", {"title": "  "}).status_code == 422
    assert service.put("/v1/items/x", ["not", "a", "dict"]).status_code == 422
    unknown_user = service.put("/v1/items/x", {"genres": "Drama"}, for_user="nobody")
    assert unknown_user.status_code == 404
    assert service.put("/v1/items/x", {"genres": "Drama"}, token=service.reader).status_code == 403
    assert service.store.counts()["items"] == 0  # nothing was written
    assert service.get("/v1/items/x/similar").status_code == 404
    bpr = make_service(bpr_artifact, data="bpr")
    response = bpr.put("/v1/items/x", {"title": "Heat (1995)"})
    assert response.status_code == 422
    assert "reads no content, so items cannot be added" in response.json()["detail"]


# ---------------------------------------------------------------------- events


def test_events_move_a_known_user_toward_the_clicked_items(
    make_service: ServiceFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """u5 likes the movies i with i % 5 == 0. After clicking five with i % 5 == 2, the
    neighbours of those (their own similar items) rank higher for u5 than in a service that
    keeps u5's trained vector (where the events only exclude the clicked items). A clrec
    model without the EASE prior, trained long enough to tell the genres apart."""
    params = {**CLREC, "epochs": 30, "prior": "none"}
    path = build_artifact(tmp_path_factory.mktemp("realtime"), "clrec", params)
    artifact = load_artifact(path)
    live = make_service(path)
    frozen = make_service(path, data="frozen", realtime_users=False)
    user = artifact.user_index["u5"]
    seen = {artifact.item_ids[i] for i in artifact.seen_items(user)}
    clicked = [f"m{i}" for i in range(2, 40, 5) if f"m{i}" not in seen][:5]
    neighbours = {n for item in clicked for n in live.similar(item, 5)} - set(clicked) - seen

    def mean_rank(service: Service) -> float:
        ranking = service.recommended("u5", MAX_K)  # every unseen item, best first
        return float(np.mean([ranking.index(n) for n in neighbours]))

    assert mean_rank(live) == mean_rank(frozen)
    events = [{"user": "u5", "item": item, "kind": "click"} for item in clicked]
    for service in (live, frozen):
        assert service.post("/v1/events", events).status_code == 200
    assert mean_rank(live) < mean_rank(frozen) - 3  # 6.0 vs 12.0 when written


def test_events_exclude_items_from_frozen_users(make_service: ServiceFactory) -> None:
    service = make_service(realtime_users=False)  # events only exclude: the vector stays
    before = service.recommended("u5", 5)
    events = [
        {"user": "u5", "item": before[0], "kind": "click"},
        {
            "user": "u5",
            "item": before[2],
            "kind": "rating",
            "value": 4.5,
            "ts": "2024-05-01T12:00:00Z",
        },
    ]
    response = service.post("/v1/events", events)
    assert response.status_code == 200 and response.json() == {"recorded": 2}
    after = service.recommended("u5", 5)
    assert before[0] not in after and before[2] not in after
    assert after[:2] == [before[1], before[3]]
    stored = service.store.load_events()  # committed before the answer
    assert [(e.user, e.item, e.kind, e.value) for e in stored] == [
        ("u5", before[0], "click", None),
        ("u5", before[2], "rating", 4.5),
    ]
    assert stored[1].ts == 1714564800.0
    assert service.state.history("u5") == sorted([before[0], before[2]])
    # exclude_seen=false brings them back
    assert before[0] in service.recommended("u5", MAX_K, exclude_seen="false")


def test_events_make_a_store_only_user(service: Service, artifact: Artifact) -> None:
    assert service.get("/v1/users/visitor/recommendations").status_code == 404
    service.post(
        "/v1/events", [{"user": "visitor", "item": i, "kind": "view"} for i in ("m1", "m6")]
    )
    ids = service.recommended("visitor", 5)
    assert "m1" not in ids and "m6" not in ids
    scores = _model_scores(artifact, ["m1", "m6"])
    expected = [
        artifact.item_ids[i]
        for i in np.argsort(-scores)
        if artifact.item_ids[i] not in ("m1", "m6")
    ]
    assert ids == expected[:5]
    # one more item moves the user
    service.post("/v1/events", [{"user": "visitor", "item": "m11", "kind": "view"}])
    scores = _model_scores(artifact, ["m1", "m6", "m11"])
    response = service.get("/v1/users/visitor/recommendations", k=5)
    moved = {item["id"]: item["score"] for item in response.json()["items"]}
    for item, score in moved.items():
        assert score == pytest.approx(float(scores[artifact.item_index[item]]), rel=1e-5)


def test_event_errors(make_service: ServiceFactory) -> None:
    service = make_service(max_events=3)
    unknown = service.post(
        "/v1/events",
        [
            {"user": "u1", "item": "m1", "kind": "click"},
            {"user": "u1", "item": "ghost", "kind": "click"},
        ],
    )
    assert unknown.status_code == 422 and "'ghost'" in unknown.json()["detail"]
    assert service.store.counts()["events"] == 0  # all or nothing
    too_many = [{"user": "u1", "item": "m1", "kind": "click"}] * 4
    response = service.post("/v1/events", too_many)
    assert response.status_code == 422 and "at most 3 events" in response.json()["detail"]
    for bad in (
        {"user": "", "item": "m1", "kind": "click"},
        {"user": "u1", "item": "m1", "kind": "no spaces"},
        {"user": "u1", "item": "m1"},
        {"user": "u1", "item": "m1", "kind": "click", "extra": 1},
        {"user": "u1", "item": "m1", "kind": "click", "ts": "yesterday"},
    ):
        assert service.post("/v1/events", [bad]).status_code == 422, bad
    assert service.post("/v1/events", {"user": "u1"}).status_code == 422
    ok = [{"user": "u1", "item": "m1", "kind": "click"}]
    assert service.post("/v1/events", ok, token=service.reader).status_code == 403
    assert service.post("/v1/events", []).json() == {"recorded": 0}
    assert service.store.counts()["events"] == 0


def test_a_database_failure_is_503(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise StoreError("database error while recording events: disk I/O error")

    monkeypatch.setattr(service.state.store, "record_new_events", broken)
    response = service.post("/v1/events", [{"user": "u1", "item": "m1", "kind": "click"}])
    assert response.status_code == 503 and "retry" in response.json()["detail"]
    assert "m1" not in service.state.history("u1")  # memory follows the database only


# ---------------------------------------------------------------------- restarts, workers


def test_restart_replays_items_and_events_without_reembedding(
    make_service: ServiceFactory,
    artifact: Artifact,
    cold: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = make_service(data="shared")
    top = first.recommended("u8", 2)
    first.post("/v1/events", [{"user": "u8", "item": top[0], "kind": "click"}])
    first.put("/v1/items/kept", _twin(artifact, cold[0], "Kept"))
    vector = first.state.items.pooled.view[first.state.items.row["kept"]].copy()
    calls: list[int] = []
    original = Artifact.embed_items

    def counting(self: Artifact, rows: Any) -> np.ndarray:
        calls.append(len(rows))
        return original(self, rows)

    monkeypatch.setattr(Artifact, "embed_items", counting)
    second = make_service(data="shared")  # a fresh process over the same database
    assert second.state.replay_report["items"] == 1
    assert second.state.replay_report["reembedded_items"] == 0
    assert second.state.replay_report["events"] == 1
    assert calls == [1]  # only the start-up warm-up, not the stored item
    np.testing.assert_array_equal(
        second.state.items.pooled.view[second.state.items.row["kept"]], vector
    )
    assert top[0] not in second.recommended("u8", 2)
    assert second.similar(cold[0], 1) == ["kept"]


def test_items_of_another_artifact_are_reembedded(
    make_service: ServiceFactory, artifact: Artifact, cold: list[str]
) -> None:
    first = make_service(data="shared")
    first.put("/v1/items/moved", _twin(artifact, cold[0], "Moved"))
    with first.store.engine.begin() as conn:  # as if stored under another model
        from clrec.serving.store import items

        conn.execute(items.update().values(artifact_key="another-artifact"))
    second = make_service(data="shared")
    assert second.state.replay_report["reembedded_items"] == 1
    assert second.similar(cold[0], 1) == ["moved"]
    (stored,) = second.store.load_items()
    assert stored.artifact_key == second.state.artifact_key


def test_workers_share_writes_through_the_database(
    make_service: ServiceFactory, artifact: Artifact, cold: list[str]
) -> None:
    one = make_service(data="shared", sync_interval_s=0.0)
    two = make_service(data="shared", sync_interval_s=0.0)
    one.put("/v1/items/shared", _twin(artifact, cold[0], "Shared"))
    assert two.similar(cold[0], 1) == ["shared"]
    top = two.recommended("u4", 1)
    one.post("/v1/events", [{"user": "u4", "item": top[0], "kind": "click"}])
    assert top[0] not in two.recommended("u4", 3)
    two.put("/v1/items/shared", _twin(artifact, cold[1], "Shared"))
    assert one.similar(cold[1], 1) == ["shared"]
    assert one.get("/readyz").json()["items"] == two.get("/readyz").json()["items"] == 41


@pytest.mark.skipif(importlib.util.find_spec("hnswlib") is None, reason="hnswlib not installed")
def test_hnsw_index(make_service: ServiceFactory, artifact: Artifact, cold: list[str]) -> None:
    service = make_service(index=IndexConfig(kind="hnsw", num_threads=1))
    report = service.get("/readyz").json()["index"]
    assert report["kind"] == "hnsw" and report["recall@10"] >= 0.9
    exact = make_service(data="exact")
    assert service.recommended("u7", 5) == exact.recommended("u7", 5)
    service.put("/v1/items/h", _twin(artifact, cold[0], "H"))
    assert service.similar(cold[0], 1) == ["h"]


@pytest.mark.skipif(importlib.util.find_spec("hnswlib") is None, reason="hnswlib not installed")
def test_hnsw_graph_is_cached_for_the_next_start(
    make_service: ServiceFactory,
    artifact: Artifact,
    cold: list[str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = IndexConfig(kind="hnsw", num_threads=1)
    first = make_service(index=config)
    assert first.state.index_report["source"] == "built"
    first.put("/v1/items/h", _twin(artifact, cold[0], "H"))
    again = make_service(index=config)  # same data folder: the graph comes from the cache
    assert again.state.index_report["source"] == "cache"
    assert again.state.index_report["recall@10"] == first.state.index_report["recall@10"]
    assert again.recommended("u7", 5) == first.recommended("u7", 5)
    assert again.similar(cold[0], 1) == ["h"]  # API items still come from the store
    # other index settings get a graph of their own; a cache not matching the artifact is
    # rebuilt, never served
    assert make_service(index=IndexConfig(kind="hnsw", m=8)).state.index_report["source"] == (
        "built"
    )
    for vectors in (tmp_path / "data" / "index-cache").glob("*/vectors.npy"):
        stored = np.load(vectors)
        np.save(vectors, stored[::-1].copy())
    assert make_service(index=config).state.index_report["source"] == "built"
    # one flipped byte inside the cached graph: refused by its digest, rebuilt, never loaded
    assert make_service(index=config).state.index_report["source"] == "cache"
    for graph in (tmp_path / "data" / "index-cache").glob("*/hnsw.bin"):
        raw = bytearray(graph.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        graph.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING):
        rebuilt = make_service(index=config)
    assert rebuilt.state.index_report["source"] == "built"
    assert "checksum mismatch" in caplog.text
    assert rebuilt.recommended("u7", 5) == first.recommended("u7", 5)
    assert make_service(index=config, index_cache=False).state.index_report["source"] == "built"


# ---------------------------------------------------------------------- ranking stage


def test_rerank_is_the_stage_computed_in_batch(
    make_service: ServiceFactory,
    ranked_artifact: Path,
    artifact: Artifact,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Parity: the service's re-ranked list for a known user is what the batch code of
    training computes for that user (same candidates, features and LambdaRank scores)."""
    from clrec.data.matrix import interaction_matrix
    from clrec.ranking.features import batch_features, ordered_histories
    from clrec.ranking.folds import Content, RankerSettings, RunParts, fit_tables
    from clrec.ranking.ltr import LambdaRanker

    service = make_service(artifact=ranked_artifact)
    assert service.get("/readyz").json()["ranker"] is True
    response = service.get("/v1/users/u3/recommendations", k=5, rerank="true")
    assert response.status_code == 200, response.text
    served = response.json()["items"]

    saved = json.loads((ranked_artifact.parent / "ranker" / "rank.json").read_text())
    parts = RunParts.load(saved["run"])
    settings = RankerSettings.from_plain(saved["settings"])
    dataset, history = parts.dataset, parts.dataset.interactions
    user = np.array([artifact.user_ids.index("u3")])
    retrievers, tables = fit_tables(dataset, history, Content.encode(dataset, settings), settings)
    retrievers.model_scores = parts.retriever.score
    seen = interaction_matrix(history, dataset.n_users, dataset.n_items)
    candidates = retrievers.candidates(user, seen, seen)
    rows = batch_features(
        tables, ordered_histories(history, user), candidates, settings.candidates.per_retriever
    )
    scores = LambdaRanker.load(ranked_artifact.parent / "ranker" / "ranker").predict(rows)
    order = np.argsort(-scores, kind="stable")[:5]
    ids = dataset.items["id"].astype(str).to_numpy()
    assert [item["id"] for item in served] == list(ids[candidates.items[order]])
    for item, expected in zip(served, scores[order], strict=True):
        assert item["score"] == pytest.approx(float(expected), rel=1e-5, abs=1e-6)

    # a recorded click leaves the list and joins the history the features read
    clicked = served[0]["id"]
    service.post("/v1/events", [{"user": "u3", "item": clicked, "kind": "click"}])
    after = service.get("/v1/users/u3/recommendations", k=5, rerank="true").json()["items"]
    assert clicked not in [item["id"] for item in after]
    stage = service.state.rerank
    assert stage is not None
    row = service.state.items.row[clicked]
    assert stage.history("u3", np.array([row]))[-1] == row
    # the stage reads recorded events oldest first (its "last" and "recent" features), not in
    # item-row order
    passed: list[list[int]] = []
    history = stage.history
    monkeypatch.setattr(
        stage, "history", lambda u, later: passed.append(list(later)) or history(u, later)
    )
    high, low = sorted((service.state.items.row[i["id"]] for i in after[:2]), reverse=True)
    ids = service.state.items.ids
    service.post(
        "/v1/events", [{"user": "u3", "item": ids[r], "kind": "click"} for r in (high, low)]
    )
    service.get("/v1/users/u3/recommendations", k=5, rerank="true")
    assert passed == [[row, high, low]]
    # the ranker off: a clear 422
    off = make_service(artifact=ranked_artifact, data="off", ranker="off")
    refused = off.get("/v1/users/u3/recommendations", rerank="true")
    assert refused.status_code == 422 and "no ranking stage" in refused.json()["detail"]
    assert off.get("/readyz").json()["ranker"] is False


def test_a_damaged_ranker_file_is_a_clear_error_at_start(
    make_service: ServiceFactory, ranked_artifact: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "artifact"
    shutil.copytree(ranked_artifact, copy)
    model = copy / "ranker" / "model" / "lambdarank.txt"
    model.write_text(model.read_text()[:200])
    with pytest.raises(ClrecError, match="unreadable LambdaRank ranker"):
        make_service(artifact=copy, verify_artifact=False)
    with pytest.raises(ClrecError, match="ranker"):  # verified: the checksum catches it first
        make_service(artifact=copy, data="verified")


def test_a_ranker_of_another_run_is_refused(
    ranked_artifact: Path, bpr_artifact: Path, tmp_path: Path
) -> None:
    with pytest.raises(ClrecError, match="trained on"):
        export_artifact(
            bpr_artifact.parent / "run-bpr",
            tmp_path / "x",
            ranker=ranked_artifact.parent / "ranker",
        )
    with pytest.raises(ClrecError, match="not a ranker folder"):
        export_artifact(bpr_artifact.parent / "run-bpr", tmp_path / "y", ranker=tmp_path)


# ---------------------------------------------------------------------- metrics, logs


def test_metrics(service: Service) -> None:
    service.recommended("u1", 3)
    service.get("/v1/users/nobody/recommendations")
    service.client.post(
        "/v1/events",
        content=b"[" + b" " * (70 * 1024) + b"]",
        headers={"X-API-Key": service.token, "content-type": "application/json"},
    )
    text = service.get("/metrics", token=service.reader).text
    route = 'route="/v1/users/{user_id}/recommendations"'
    assert f'clrec_http_requests_total{{method="GET",{route},status="200"}} 1.0' in text
    assert f'clrec_http_requests_total{{method="GET",{route},status="404"}} 1.0' in text
    histogram = "clrec_http_request_duration_seconds_bucket"
    assert f'{histogram}{{le="+Inf",method="GET",{route},status="200"}} 1.0' in text
    assert (
        f'clrec_http_request_duration_seconds_count{{method="GET",{route},status="200"}} 1.0'
        in text
    )
    assert 'route="/v1/events",status="413"' in text  # answered before routing, still named
    assert "nobody" not in text  # templates, never raw paths
    assert "clrec_index_items 40.0" in text
    assert "clrec_index_recall_at_10 1.0" in text
    # what the alert rules (deploy/prometheus/rules.yml) read
    assert "clrec_ready 1.0" in text
    assert "clrec_sync_failures 0.0" in text
    assert "clrec_sync_age_seconds 0.0" in text  # sync off (sync_interval_s None): a lone process


def test_server_errors_are_counted(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service()
    raw = TestClient(service.client.app, raise_server_exceptions=False)

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(service.state, "similar_items", explode)
    response = raw.get("/v1/items/m1/similar", headers={"X-API-Key": service.token})
    assert response.status_code == 500
    text = service.get("/metrics").text
    assert (
        'clrec_http_errors_total{method="GET",route="/v1/items/{item_id}/similar",status="500"} 1.0'
        in text
    )


def test_request_logs_hold_no_personal_data(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clrec.serving")
    service.get("/v1/users/jane.doe@example.com/recommendations")
    service.post(
        "/v1/recommendations",
        {"items": ["m1"], "profile_text": "call me at +44 20 7946 0958 (1991)"},
    )
    service.post("/v1/recommendations", {"profile_text": "my secret diary"})
    service.client.get(
        "/v1/users/u1/recommendations", headers={"X-API-Key": "clrec_" + "0" * 16 + "_wrong"}
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "clrec.serving.access"]
    assert len(lines) == 4
    assert lines[0].startswith("GET /v1/users/{user_id}/recommendations 404 ")
    assert "[EMAIL]" in lines[0]
    assert lines[1].startswith("POST /v1/recommendations 200 ")
    assert lines[3].startswith("GET /v1/users/{user_id}/recommendations 401 ")
    everything = "\n".join(r.getMessage() for r in caplog.records)
    for private in ("jane.doe@example.com", "7946", "secret diary", service.token, "_wrong"):
        assert private not in everything


# ---------------------------------------------------------------------- settings, start-up


def test_settings_round_trip_and_the_worker_factory(
    tmp_path: Path, clrec_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clrec.errors import ClrecError
    from clrec.serving.app import SETTINGS_ENV, create_app_from_env

    settings = ServiceSettings(
        artifact=clrec_artifact,
        data_dir=tmp_path,
        index=IndexConfig(kind="hnsw", ef_search=64),
        max_k=7,
        log_level="debug",
    )
    again = ServiceSettings.from_json(settings.to_json())
    assert again == settings and isinstance(again.index, IndexConfig)
    assert again.log_level == "DEBUG"
    assert settings.db_url == f"sqlite:///{(tmp_path / 'service.db').resolve().as_posix()}"
    with pytest.raises(ClrecError, match="metric='dot'"):
        ServiceSettings(artifact=clrec_artifact, index=IndexConfig(metric="cosine"))
    with pytest.raises(ClrecError, match="invalid service settings"):
        ServiceSettings.from_json('{"artifact": "x", "max_k": 0}')
    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    with pytest.raises(ClrecError, match=SETTINGS_ENV):
        create_app_from_env()
    monkeypatch.setenv(SETTINGS_ENV, settings.to_json())
    app = create_app_from_env()
    assert app.state.settings == settings and app.state.service is None  # nothing loaded yet


def test_nothing_loads_before_start_up(tmp_path: Path) -> None:
    from clrec.errors import ClrecError

    app = create_app(ServiceSettings(artifact=tmp_path / "missing", data_dir=tmp_path))
    assert not (tmp_path / "service.db").exists()  # not even the database
    client = TestClient(app)
    assert client.get("/readyz").status_code == 503  # no lifespan run: still starting
    with pytest.raises(ClrecError, match="not a clrec artifact"), client:
        pass


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_an_id_outside_the_id_rule_is_a_422_on_every_store(
    make_service: ServiceFactory,
    artifact: Artifact,
    cold: list[str],
    database: str,
    request: pytest.FixtureRequest,
) -> None:
    """A NUL byte (PostgreSQL refuses it: it was a 503 'database unavailable' there), another
    control character or an id over 256 characters is the client's error on both stores, and
    nothing reaches the database."""
    overrides: dict[str, Any] = {}
    if database == "postgresql":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    service = make_service(data=f"ids-{database}", **overrides)
    before = service.store.counts()
    for bad in ("u\x00x", "u\x1bx", "u" * 257):
        answer = service.post("/v1/events", [{"user": bad, "item": "m1", "kind": "click"}])
        assert answer.status_code == 422, answer.text
        answer = service.post("/v1/events", [{"user": "u1", "item": bad, "kind": "click"}])
        assert answer.status_code == 422, answer.text
    for path in ("/v1/users/u%00x/recommendations", "/v1/items/m%00x/similar"):
        assert service.get(path).status_code == 422
    fields = _twin(artifact, cold[0], "Nul")
    assert service.put("/v1/items/a%00b", fields).status_code == 422
    assert service.store.counts() == before
    # the same ids within the rule are accepted
    answer = service.post("/v1/events", [{"user": "u x é", "item": "m1", "kind": "click"}])
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_retried_event_batch_with_its_key_is_stored_once(
    make_service: ServiceFactory, database: str, request: pytest.FixtureRequest
) -> None:
    overrides: dict[str, Any] = {}
    if database == "postgresql":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    service = make_service(data=f"idem-{database}", **overrides)
    batch = [
        {"user": "u3", "item": "m1", "kind": "click"},
        {"user": "u9", "item": "m2", "kind": "view"},
    ]
    headers = {"X-API-Key": service.token, "Idempotency-Key": "batch-0001"}

    def post(body: Any, key_headers: dict[str, str]) -> Any:
        return service.client.post("/v1/events", json=body, headers=key_headers)

    first = post(batch, headers)
    assert (first.status_code, first.json()) == (200, {"recorded": 2})
    stored = service.store.counts()["events"]
    for _ in range(3):  # retries: the same answer, nothing written again
        again = post(batch, headers)
        assert (again.status_code, again.json()) == (200, {"recorded": 2})
    assert service.store.counts()["events"] == stored
    # a retry racing its twin: the key is not stored yet when this worker looks, and is when
    # it writes; the database refuses the write and memory is left as it was
    recorded = {u: list(service.state.users.events[u]) for u in ("u3", "u9")}
    answered = service.state.store.answered
    looks: list[object] = []
    service.state.store.answered = lambda key: (
        looks.append(key)
        or (  # type: ignore[method-assign]
            None if len(looks) == 1 else answered(key)
        )
    )
    raced = post(batch, headers)
    del service.state.store.answered
    assert (raced.status_code, raced.json()) == (200, {"recorded": 2}) and len(looks) == 2
    assert service.store.counts()["events"] == stored
    assert {u: service.state.users.events[u] for u in ("u3", "u9")} == recorded
    # another worker (a fresh process over the same store) answers the retry the same way
    other = make_service(data=f"idem-{database}", **overrides)
    replay = other.client.post(
        "/v1/events", json=batch, headers={**headers, "X-API-Key": other.token}
    )
    assert (replay.status_code, replay.json()) == (200, {"recorded": 2})
    assert other.store.counts()["events"] == stored
    # the same key for another batch is the client's mistake
    changed = post([{"user": "u3", "item": "m3", "kind": "click"}], headers)
    assert changed.status_code == 422 and "different request" in changed.json()["detail"]
    # without a key, or with a new key, a batch is recorded
    assert post(batch, {"X-API-Key": service.token}).json() == {"recorded": 2}
    assert post(batch, {**headers, "Idempotency-Key": "batch-0002"}).json() == {"recorded": 2}
    assert service.store.counts()["events"] == stored + 4
    bad = post(batch, {**headers, "Idempotency-Key": "with space"})
    assert bad.status_code == 422


def test_a_full_encoder_queue_answers_503_with_retry_after(make_service: ServiceFactory) -> None:
    """Requests waiting for the text encoder are bounded: one more is told to come back
    (503 + Retry-After) at once instead of queueing; a profile text already encoded comes
    from the cache without waiting at all."""
    service = make_service()
    encoder = service.state.encoder
    query = {"profile_text": "films from (1991)", "k": 3}  # read as the title's year tag
    warm = service.post("/v1/recommendations", query)
    assert warm.status_code == 200, warm.text
    encoder.max_waiting = 0  # as if the queue were full
    full = service.post("/v1/recommendations", {**query, "profile_text": "films from (1992)"})
    assert full.status_code == 503 and full.headers["Retry-After"] == "1"
    assert "waiting for the text encoder" in full.json()["detail"]
    cached = service.post("/v1/recommendations", query)  # the same text: no encoder needed
    assert cached.status_code == 200 and cached.json() == warm.json()
    encoder.max_waiting = 8
    fresh = service.post("/v1/recommendations", {**query, "profile_text": "films from (1992)"})
    assert fresh.status_code == 200


def test_a_retried_item_put_with_its_key_is_answered_the_same(
    make_service: ServiceFactory, artifact: Artifact, cold: list[str]
) -> None:
    service = make_service(data="idem-items")
    fields = _twin(artifact, cold[0], "Keyed")
    headers = {"X-API-Key": service.token, "Idempotency-Key": "put-0001"}

    def put(body: Any, key_headers: dict[str, str]) -> Any:
        return service.client.put("/v1/items/keyed", json=body, headers=key_headers)

    first = put(fields, headers)
    assert first.status_code == 201 and first.json()["created"] is True
    again = put(fields, headers)  # a retry: the first answer, 201 included
    assert (again.status_code, again.json()) == (201, first.json())
    plain = put(fields, {"X-API-Key": service.token})  # without the key: an update, 200
    assert plain.status_code == 200 and plain.json()["created"] is False
    other = put({**fields, "title": "Other"}, headers)
    assert other.status_code == 422 and "different request" in other.json()["detail"]
    assert service.store.counts()["items"] == 1


def test_a_failing_sync_shows_in_the_metrics(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service(data="sync", sync_interval_s=0.0)
    state = service.state

    def down(*args: Any, **kwargs: Any) -> None:
        raise StoreError("database error while reading items: gone")

    monkeypatch.setattr(state.store, "load_items", down)
    before = state.sync_age()
    time.sleep(0.05)
    state.maybe_sync()
    state.maybe_sync()
    assert state.sync_failures == 2 and state.sync_age() > before
    text = service.get("/metrics", token=service.reader).text  # a scrape tries a sync too
    assert state.sync_failures == 3 and "clrec_sync_failures 3.0" in text


def test_an_explanation_adds_up_and_its_counterfactuals_are_served(
    make_service: ServiceFactory,
) -> None:
    """GET /v1/users/{id}/explain/{item}: the parts sum to the served score (over the history
    and over the item's side), and the rank without each of the top contributors is the rank
    served to a user who posted the same history without that item."""
    service = make_service(data="explain")
    history = ["m1", "m2", "m7", "m12"]
    service.post("/v1/events", [{"user": "walk-a", "item": i, "kind": "click"} for i in history])
    top = service.get("/v1/users/walk-a/recommendations", k=1).json()["items"][0]
    answer = service.get(f"/v1/users/walk-a/explain/{top['id']}", k=10)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    parts = found["user_part"] + sum(c["contribution"] for c in found["contributions"])
    assert found["score"] == pytest.approx(top["score"], abs=1e-4)
    assert parts + found["other_part"] == pytest.approx(found["score"], abs=1e-5)
    assert found["user_part"] == 0.0 and found["other_part"] == 0.0 and found["rank"] == 1
    assert set(found["item_parts"]) == {"id", "tags", "prior"}
    assert sum(found["item_parts"].values()) == pytest.approx(found["score"], abs=1e-5)
    assert {c["id"] for c in found["contributions"]} == set(history)
    terms = [c["contribution"] for c in found["contributions"]]
    assert terms == sorted(terms, reverse=True)
    counterfactual = [c for c in found["contributions"] if c["rank_without"] is not None]
    assert len(counterfactual) == 3 and counterfactual == found["contributions"][:3]
    assert found["rank_without_top"] == counterfactual[0]["rank_without"]
    for n, contribution in enumerate(counterfactual):
        rest = [i for i in history if i != contribution["id"]]
        replayed = f"walk-b{n}"
        service.post("/v1/events", [{"user": replayed, "item": i, "kind": "click"} for i in rest])
        placed = service.get(f"/v1/users/{replayed}/explain/{top['id']}").json()
        assert contribution["rank_without"] == placed["rank"]
        served = service.get(f"/v1/users/{replayed}/recommendations", k=MAX_K).json()["items"]
        assert [i["id"] for i in served].index(top["id"]) + 1 == placed["rank"]
    none = service.get(f"/v1/users/walk-a/explain/{top['id']}", counterfactuals=0).json()
    assert none["rank_without_top"] is None and none["item_parts"] == found["item_parts"]
    # a trained user: the ID part and the training history
    trained = service.get("/v1/users/u3/explain/m5").json()
    assert trained["user_part"] != 0.0 and trained["contributions"]
    assert service.get("/v1/users/u3/explain/nothing").status_code == 404
    assert service.get("/v1/users/nobody/explain/m5").status_code == 404


def test_an_item_without_readable_content_is_explained_by_its_id_and_prior(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the featuriser finds nothing to read in an item's fields, the item side is
    not split by content, and its parts still sum to the score; an overloaded encoder is
    still a 503."""
    service = make_service(data="explain-no-content")
    full = service.get("/v1/users/u3/explain/m5").json()
    assert set(full["item_parts"]) == {"id", "tags", "prior"}

    def unreadable(fields: object) -> None:
        raise ClrecError("new item row 0 has no content the model can read")

    monkeypatch.setattr(service.state.encoder, "features", unreadable)
    found = service.get("/v1/users/u3/explain/m5").json()
    assert set(found["item_parts"]) == {"id", "prior"}
    assert sum(found["item_parts"].values()) == pytest.approx(full["score"], abs=1e-5)
    assert found["contributions"] == full["contributions"]

    def overloaded(fields: object) -> None:
        raise OverloadedError("8 requests are waiting for the text encoder")

    monkeypatch.setattr(service.state.encoder, "features", overloaded)
    assert service.get("/v1/users/u3/explain/m5").status_code == 503


def test_recommendations_explained_match_the_explain_route(make_service: ServiceFactory) -> None:
    """explain=true adds to each recommended item the explain route's answer (its rank is
    its place in the list, its top three contributors with their counterfactual ranks); not
    with rerank; an item added through the API is explained like any other."""
    service = make_service(data="explained")
    fresh = service.put("/v1/items/fresh", {"title": "Fresh", "genres": "Comedy|Drama"})
    assert fresh.status_code == 201, fresh.text
    events = [{"user": "u3", "item": i, "kind": "click"} for i in ("m4", "fresh")]
    service.post("/v1/events", events)
    plain = service.get("/v1/users/u3/recommendations", k=5).json()["items"]
    answer = service.get("/v1/users/u3/recommendations", k=5, explain="true")
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert [(i["id"], i["score"]) for i in items] == [(i["id"], i["score"]) for i in plain]
    for place, item in enumerate(items, start=1):
        explained = item["explanation"]
        assert explained["rank"] == place
        single = service.get(f"/v1/users/u3/explain/{item['id']}", k=3).json()
        assert explained["contributions"] == single["contributions"]
        assert explained["other_part"] == pytest.approx(single["other_part"])
        assert explained["other_part"] != 0.0  # "fresh" is no model item
        assert all(c["rank_without"] is not None for c in explained["contributions"])
    both = service.get("/v1/users/u3/recommendations", explain="true", rerank="true")
    assert both.status_code == 422 and "explain" in both.json()["detail"]
