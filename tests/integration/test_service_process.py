"""The service as it runs in production: ``clrec serve`` in its own process (uvicorn), keys
from ``clrec keys create``, real HTTP on the loopback interface, and a ``kill -9`` between
two runs on the same database: every acknowledged event and item must survive it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clrec.config import RunConfig
from clrec.data.schema import Dataset
from clrec.experiment import run_experiment
from clrec.serving.artifact import export_artifact, load_artifact
from clrec.serving.settings import default_database_url
from live_server import Server, create_key

pytestmark = pytest.mark.slow

GENRES = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]
PROFILE_TEXT = "private profile: reach me at jane@example.com (1991)"


def _artifact(root: Path) -> Path:
    """A tags-only clrec model on 40 users × 30 movies (users prefer one genre)."""
    rng = np.random.default_rng(0)
    items = [
        {
            "id": f"m{i}",
            "title": f"Movie {i} ({1990 + i % 3})",
            "genres": GENRES[i % 5] + ("|" + GENRES[(i + 2) % 5] if i % 3 == 0 else ""),
        }
        for i in range(30)
    ]
    rows = []
    for u in range(40):
        liked = [i for i in range(30) if i % 5 == u % 5]
        for t, i in enumerate(rng.choice(liked, 4, replace=False)):
            rows.append((f"u{u}", f"m{i}", 1_000_000 + t))
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    data = Dataset.from_external(
        "process-movies",
        frame,
        item_content=pd.DataFrame(items),
        item_fields={"title": "text", "genres": "tags"},
    ).save(root / "data")
    config = RunConfig.from_mapping(
        {
            "data": {"name": str(data)},
            "split": {"scheme": "cold-item", "ratios": [0.7, 0.1, 0.2], "seed": 1},
            "model": {
                "name": "clrec",
                "params": {
                    "embedding_size": 8,
                    "content": {"modalities": ["tags"], "cache_dir": None},
                    "prior": "none",
                    "similarity": "cosine",
                    "epochs": 2,
                    "batch_size": 32,
                    "patience": 0,
                    "device": "cpu",
                    "num_threads": 1,
                    "progress": False,
                },
            },
            "evaluation": {"ks": [5, 10], "progress": False},
            "report": False,
        }
    )
    run_experiment(config, root / "run")
    return export_artifact(root / "run", root / "artifact")


def _cold_item(artifact: Path) -> tuple[str, dict[str, str]]:
    """An item whose vector is its content's alone and unlike any other's, and its fields:
    a new item with the same tags gets exactly its vector."""
    art = load_artifact(artifact)
    fields = [
        {"title": str(row["title"]), "genres": str(row["genres"])}
        for _, row in art.catalogue.iterrows()
    ]
    vectors = art.model.item_vectors()  # (I, D)
    embedded = art.model.index_vectors(art.embed_items(fields))  # (I, D)
    same = np.isclose(embedded, vectors, atol=1e-5).all(axis=1)
    unique = (vectors @ vectors.T > 1 - 1e-4).sum(axis=1) == 1
    row = int(np.flatnonzero(same & unique)[0])
    return art.item_ids[row], fields[row]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_acknowledged_writes_survive_kill_9(
    tmp_path: Path, servers: list[Server], database: str, request: pytest.FixtureRequest
) -> None:
    for package in ("fastapi", "uvicorn", "sqlalchemy", "prometheus_client"):
        pytest.importorskip(package, reason="the service needs the serve extra")
    from clrec.serving.store import Store

    if database == "postgresql":
        db_url = request.getfixturevalue("postgres_url")  # skips without a test database
    else:
        db_url = default_database_url(tmp_path / "service")

    artifact = _artifact(tmp_path)
    ref, ref_fields = _cold_item(artifact)
    year = ref_fields["title"].rsplit("(", 1)[1]
    late = {"title": f"Late Arrival ({year}", "genres": ref_fields["genres"]}
    created = create_key(db_url, "it", "read,write")
    token = created.stdout.strip()
    assert token.startswith("clrec_") and "shown only this once" in created.stderr
    log = tmp_path / "server.log"

    first = Server(artifact, db_url, log)
    servers.append(first)
    status, _ = first.request("GET", "/v1/users/u3/recommendations?k=3")
    assert status == 401
    status, body = first.request("GET", "/v1/users/u3/recommendations?k=3", token=token)
    assert status == 200
    top = [item["id"] for item in body["items"]]
    events = [{"user": "u3", "item": item, "kind": "click"} for item in top[:2]]
    events.append({"user": "walk-in", "item": "m4", "kind": "view"})
    status, body = first.request("POST", "/v1/events", events, token=token)
    assert (status, body) == (200, {"recorded": 3})
    status, body = first.request("PUT", "/v1/items/late", late, token)
    assert status == 201 and body["created"] is True
    status, body = first.request(
        "POST", "/v1/recommendations", {"profile_text": PROFILE_TEXT}, token
    )
    assert status == 200
    keyed = [{"user": "u5", "item": "m2", "kind": "click"}]
    retry = {"Idempotency-Key": "retry-0001"}
    status, body = first.request("POST", "/v1/events", keyed, token, retry)
    assert (status, body) == (200, {"recorded": 1})
    first.kill_hard()  # straight after the acknowledgements

    store = Store(db_url)
    assert store.counts() == {"api_keys": 1, "events": 4, "items": 1}
    store.close()

    second = Server(artifact, db_url, log)
    servers.append(second)
    status, body = second.request("GET", "/readyz")
    assert body["items"] == 31 and body["users"] == 41  # the artifact's 40 + walk-in
    status, body = second.request("GET", "/v1/users/u3/recommendations?k=3", token=token)
    assert status == 200
    after = [item["id"] for item in body["items"]]
    assert len(after) == 3 and not set(top[:2]) & set(after)
    status, body = second.request("GET", "/v1/users/walk-in/recommendations?k=3", token=token)
    assert status == 200 and "m4" not in [item["id"] for item in body["items"]]
    status, body = second.request("GET", f"/v1/items/{ref}/similar?k=1", token=token)
    assert status == 200 and body["items"][0]["id"] == "late"
    assert body["items"][0]["title"] == late["title"]
    status, body = second.request("GET", "/v1/items/late/similar?k=2", token=token)
    assert status == 200 and len(body["items"]) == 2
    # the client never saw the answer and retries: answered the same, stored once
    status, body = second.request("POST", "/v1/events", keyed, token, retry)
    assert (status, body) == (200, {"recorded": 1})
    second.stop()
    store = Store(db_url)
    assert store.counts()["events"] == 4
    store.close()

    text = log.read_text()
    assert "store replayed: items=1, reembedded_items=0" in text
    assert "GET /v1/users/{user_id}/recommendations 200" in text
    for private in (token, "jane@example.com", "private profile", "walk-in"):
        assert private not in text
