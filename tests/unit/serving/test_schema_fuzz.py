"""Property-based fuzzing of the service against its own OpenAPI schema (schemathesis).

Every operation of ``/openapi.json`` is called in process (ASGI, no network) on the tiny clrec
artifact of ``conftest.py`` with a read + write API key, with data schemathesis derives from
the schema: valid requests (positive) and requests that break it (negative). Each response
must be no 5xx, carry a documented status, content type and headers, and a body that matches
the documented schema for that status (error bodies included). Hypothesis runs derandomised
with a bounded number of examples per operation, so a run is deterministic and short.

Valid random ids are almost never known ones, so positive cases are steered half of the time
towards the artifact's users and items and its catalogue fields: that way the fuzzing reaches
the 2xx paths (rankings, item writes, events), not only the 404 / 422 answers.

Then explicit edge cases (huge / negative k, bodies that are not JSON or not declared as JSON,
unicode and over-long ids, empty lists, nulls) and regressions of what the fuzzing found:
``NaN`` / ``Infinity`` / ``1e999`` and lone surrogates (``"\\ud800"``), which Python's JSON
parser accepts, made 422 answers (which echo the input) and item writes fail with a 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

for _package in ("fastapi", "uvicorn", "sqlalchemy", "prometheus_client"):
    pytest.importorskip(_package, reason="the service needs the serve extra")
schemathesis = pytest.importorskip("schemathesis", reason="schema fuzzing needs schemathesis")

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from movies import GENRES, N_ITEMS, N_USERS, STUDIOS  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.python import asgi  # noqa: E402

from clrec.serving.app import (  # noqa: E402
    EventsRecorded,
    Health,
    InvalidInput,
    ItemWritten,
    QueryRecommendations,
    Readiness,
    SimilarItems,
    UserRecommendations,
    create_app,
)
from clrec.serving.index import IndexConfig  # noqa: E402
from clrec.serving.settings import ServiceSettings  # noqa: E402
from clrec.serving.store import Store  # noqa: E402

MAX_K = 50
EXAMPLES = 40  # per operation and generation mode
# movies.movies_dataset: users u0..u59, movies m0..m39 with title, genres and studio
USERS = [f"u{u}" for u in range(N_USERS)]
ITEMS = [f"m{i}" for i in range(N_ITEMS)]

OPERATIONS = [
    ("GET", "/v1/users/{user_id}/recommendations"),
    ("POST", "/v1/recommendations"),
    ("GET", "/v1/items/{item_id}/similar"),
    ("PUT", "/v1/items/{item_id}"),
    ("POST", "/v1/events"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/users"),
    ("GET", "/v1/users/{user_id}/history"),
    ("GET", "/v1/users/{user_id}/explain/{item_id}"),
]
WITHOUT_INPUT = {"/healthz", "/readyz", "/metrics"}  # nothing to break: no negative cases

# A rejected negative case may also be too large (413) or not even JSON (400).
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
CONFIG = {
    "checks": {
        # A valid but unknown user / item is a 404, an item without readable content a 422:
        # the schema cannot say which ids exist, so "valid data is accepted" does not hold.
        "positive_data_acceptance": {"enabled": False},
        "negative_data_rejection": {"expected-statuses": REJECTED},
    },
}
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same examples on every run
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture(scope="module")
def fuzzed(
    tmp_path_factory: pytest.TempPathFactory, clrec_artifact: Path
) -> Iterator[tuple[Any, str]]:
    """The schema of a started service (its lifespan runs in schemathesis's ASGI client) and
    a read + write token."""
    data = tmp_path_factory.mktemp("fuzz")
    settings_ = ServiceSettings(
        artifact=clrec_artifact,
        data_dir=data,
        max_k=MAX_K,
        index=IndexConfig(kind="hnsw"),  # the filtered ANN search: the riskier path
        rate_limit_per_s=0.0,  # no 429s: every example reaches the routes
        sync_interval_s=None,
        log_requests=False,
    )
    store = Store(settings_.db_url)
    token = store.create_key("fuzz", "read,write").token
    store.close()
    app = create_app(settings_)
    config = schemathesis.Config.from_dict(CONFIG)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    try:
        yield schema, token
    finally:
        asgi.shutdown_lifespans()


def test_the_schema_lists_every_operation(fuzzed: tuple[Any, str]) -> None:
    schema, _ = fuzzed
    found = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert found == set(OPERATIONS), "a new route: add it to OPERATIONS"


def _steer(case: Any, data: st.DataObject) -> None:
    """Point a positive case, half of the time, at the artifact's users, items and fields."""
    if not data.draw(st.booleans(), label="steer"):
        return
    known_user = st.sampled_from(USERS)
    known_item = st.sampled_from(ITEMS)
    path = case.path_parameters or {}
    if "user_id" in path:
        path["user_id"] = data.draw(known_user)
    if "item_id" in path:
        path["item_id"] = data.draw(st.one_of(known_item, st.just(path["item_id"])))
    if case.query and "for_user" in case.query:
        case.query["for_user"] = data.draw(known_user)
    body = case.body
    if case.operation.path == "/v1/recommendations" and isinstance(body, dict):
        body["items"] = [*body.get("items", [])[:3], data.draw(known_item)]
        body.pop("profile_text", None)
        if isinstance(body.get("k"), int) and body["k"] > MAX_K:
            body["k"] = MAX_K
    elif case.operation.path == "/v1/events" and isinstance(body, list):
        for event in body:
            if isinstance(event, dict):
                event["item"] = data.draw(known_item)
    elif case.operation.path == "/v1/items/{item_id}" and isinstance(body, dict):
        genres = data.draw(st.lists(st.sampled_from(GENRES), min_size=1, max_size=3))
        body["genres"] = "|".join(genres)
        body["studio"] = data.draw(st.sampled_from(STUDIOS))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_server_error_and_responses_match_the_schema(
    fuzzed: tuple[Any, str], method: str, path: str, mode: GenerationMode
) -> None:
    if mode is GenerationMode.NEGATIVE and path in WITHOUT_INPUT:
        pytest.skip("no parameters or body to break")
    schema, token = fuzzed
    operation = schema[path][method]
    statuses: list[int] = []

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def run(case: Any, data: st.DataObject) -> None:
        if mode is GenerationMode.POSITIVE:
            _steer(case, data)
        # default checks: no 5xx, documented status / content type / headers, body schema,
        # negative data rejected
        response = case.call_and_validate(headers={"X-API-Key": token})
        statuses.append(response.status_code)

    run()
    assert statuses and max(statuses) < 500
    if mode is GenerationMode.POSITIVE:  # the steering reached the happy paths
        assert any(200 <= code < 300 for code in statuses), sorted(set(statuses))


# ---------------------------------------------------------------------- explicit cases


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, clrec_artifact: Path
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings_ = ServiceSettings(
        artifact=clrec_artifact,
        data_dir=tmp_path_factory.mktemp("edge"),
        max_k=MAX_K,
        index=IndexConfig(kind="hnsw"),
        rate_limit_per_s=0.0,
        sync_interval_s=None,
        log_requests=False,
        max_body_bytes=16 * 1024,
    )
    store = Store(settings_.db_url)
    token = store.create_key("edge", "read,write").token
    store.close()
    app: FastAPI = create_app(settings_)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client, {"X-API-Key": token}


RECS = "/v1/users/{}/recommendations"
CLICK = {"user": "u1", "item": "m1", "kind": "click"}
LONG_ID = "é" * 256  # the longest id allowed (256 characters, 512 bytes of UTF-8)
SUCCESS_MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("GET", "recommendations"): UserRecommendations,
    ("POST", "recommendations"): QueryRecommendations,
    ("GET", "similar"): SimilarItems,
    ("PUT", "items"): ItemWritten,
    ("POST", "events"): EventsRecorded,
    ("GET", "healthz"): Health,
    ("GET", "readyz"): Readiness,
}


def _route(path: str) -> str:
    """The key of :data:`SUCCESS_MODELS` for a request path."""
    for name in ("recommendations", "similar", "items", "events", "healthz", "readyz"):
        if path.endswith(f"/{name}") or path.startswith(f"/v1/{name}/"):
            return name
    raise AssertionError(path)


# (method, path, query, raw body or JSON value, content type, expected status)
EDGE_CASES: list[tuple[str, str, dict[str, Any] | None, Any, str | None, int]] = [
    # k: huge, negative, zero, at the limit, not a number
    ("GET", RECS.format("u1"), {"k": 10**30}, None, None, 422),
    ("GET", RECS.format("u1"), {"k": -1}, None, None, 422),
    ("GET", RECS.format("u1"), {"k": 0}, None, None, 422),
    ("GET", RECS.format("u1"), {"k": MAX_K}, None, None, 200),
    ("GET", RECS.format("u1"), {"k": "1e3"}, None, None, 422),
    ("GET", RECS.format("u1"), {"k": 3, "exclude_seen": "maybe"}, None, None, 422),
    ("GET", RECS.format("u1"), {"k": 3, "exclude": ITEMS}, None, None, 200),  # all excluded
    ("GET", "/v1/items/m1/similar", {"k": 10**30}, None, None, 422),
    ("GET", "/v1/items/m1/similar", {"k": MAX_K}, None, None, 200),  # more than there are
    ("POST", "/v1/recommendations", None, {"items": ["m1"], "k": 10**30}, None, 422),
    ("POST", "/v1/recommendations", None, {"items": ["m1"], "k": -5}, None, 422),
    ("POST", "/v1/recommendations", None, {"items": ["m1"], "k": 2.0}, None, 200),
    ("POST", "/v1/recommendations", None, {"items": ["m1"], "k": 2.5}, None, 422),
    # unicode and very long ids
    ("GET", RECS.format("%F0%9F%98%80"), None, None, None, 404),
    ("GET", RECS.format(LONG_ID), None, None, None, 404),
    ("GET", RECS.format(LONG_ID + "x"), None, None, None, 422),
    ("GET", RECS.format("%00"), None, None, None, 422),  # a control character: the id rule
    ("GET", "/v1/items/%E4%B8%AD%E6%96%87/similar", None, None, None, 404),
    ("PUT", "/v1/items/" + LONG_ID, None, {"genres": "Drama"}, None, 201),
    ("PUT", "/v1/items/%F0%9F%8E%AC", None, {"title": "🎬 (1991)", "genres": "Drama"}, None, 201),
    ("POST", "/v1/events", None, [{"user": "😀" * 256, "item": "m1", "kind": "click"}], None, 200),
    ("POST", "/v1/events", None, [{"user": "x" * 257, "item": "m1", "kind": "click"}], None, 422),
    ("POST", "/v1/recommendations", None, {"items": ["中文", "m2"]}, None, 200),
    # empty lists and objects
    ("POST", "/v1/events", None, [], None, 200),
    ("POST", "/v1/recommendations", None, {"items": []}, None, 422),
    ("POST", "/v1/recommendations", None, {}, None, 422),
    ("PUT", "/v1/items/n1", None, {}, None, 422),
    ("PUT", "/v1/items/n1", None, {"genres": ""}, None, 422),
    # nulls
    ("POST", "/v1/recommendations", None, None, None, 422),
    ("POST", "/v1/recommendations", None, {"items": None}, None, 422),
    ("POST", "/v1/recommendations", None, {"items": ["m1"], "profile_text": None}, None, 200),
    ("POST", "/v1/recommendations", None, {"items": ["m1"], "k": None}, None, 422),
    ("POST", "/v1/events", None, None, None, 422),
    ("POST", "/v1/events", None, [None], None, 422),
    ("POST", "/v1/events", None, [{**CLICK, "value": None, "ts": None}], None, 200),
    ("POST", "/v1/events", None, [{"user": None, "item": "m1", "kind": "click"}], None, 422),
    ("PUT", "/v1/items/n2", None, None, None, 422),
    ("PUT", "/v1/items/n2", None, {"title": None, "genres": None}, None, 422),
    ("PUT", "/v1/items/n3", None, {"title": None, "genres": "Drama"}, None, 201),
    # bodies that are not JSON, or not declared as JSON
    ("POST", "/v1/events", None, b"not json", "application/json", 422),
    ("POST", "/v1/events", None, b"\xff\xfe\x00", "application/json", 400),
    ("POST", "/v1/events", None, b'[{"user": "u1"', "application/json", 422),
    ("POST", "/v1/events", None, b"[]", "text/plain", 422),
    ("POST", "/v1/recommendations", None, b'{"items": ["m1"]}', "text/plain", 422),
    ("PUT", "/v1/items/n4", None, b"genres=Drama", "application/x-www-form-urlencoded", 422),
    ("PUT", "/v1/items/n4", None, b'{"genres": 1' + b"0" * 4300 + b"}", "application/json", 400),
    ("POST", "/v1/events", None, b"[" * 2000 + b"]" * 2000, "application/json", 400),
    ("POST", "/v1/events", None, b"[" * 20_000, "application/json", 413),
]
# Regressions of what the fuzzing found: Python's JSON parser accepts NaN, Infinity, 1e999
# (inf) and lone surrogates; the 422 answers echo the input and failed to encode (500), and
# an item's fields reached the encoders and the database (500). Now all are 422s.
REGRESSIONS = [
    ("POST", "/v1/events", b'[{"user": "u1", "item": "m1", "kind": "click", "value": NaN}]'),
    ("POST", "/v1/events", b'[{"user": "u1", "item": "m1", "kind": "click", "value": 1e999}]'),
    ("POST", "/v1/recommendations", b'{"items": ["m1"], "k": NaN}'),
    ("POST", "/v1/recommendations", b'{"items": ["m1"], "k": -Infinity}'),
    ("POST", "/v1/recommendations", b'{"items": ["m1", "\\ud800"]}'),
    ("POST", "/v1/recommendations", b'{"profile_text": "\\udfff"}'),
    ("POST", "/v1/events", b'[{"user": "\\ud800", "item": "m1", "kind": "click"}]'),
    ("PUT", "/v1/items/n5", b'{"genres": "Drama", "title": "\\ud800"}'),
    ("PUT", "/v1/items/n5", b'{"genres": "Drama", "\\udc00": "x"}'),
]
EDGE_CASES += [(method, path, None, body, None, 422) for method, path, body in REGRESSIONS]


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "content_type", "expected"),
    EDGE_CASES,
    ids=[f"{i:02d}-{c[0]}" for i, c in enumerate(EDGE_CASES)],
)
def test_edge_cases(
    client: tuple[TestClient, dict[str, str]],
    method: str,
    path: str,
    query: dict[str, Any] | None,
    body: Any,
    content_type: str | None,
    expected: int,
) -> None:
    test_client, headers = client
    headers = dict(headers)
    content: bytes | None = None
    if isinstance(body, bytes):
        content = body
        headers["content-type"] = content_type or "application/json"
    elif body is not None or method in ("POST", "PUT"):
        content = json.dumps(body).encode()
        headers["content-type"] = content_type or "application/json"
    response = test_client.request(method, path, params=query, content=content, headers=headers)
    assert response.status_code < 500, response.text
    assert response.status_code == expected, response.text
    payload = response.json()  # valid JSON (strict: no NaN), whatever the status
    json.dumps(payload, allow_nan=False)
    if response.status_code < 300:
        SUCCESS_MODELS[(method, _route(path))].model_validate(payload)
    else:
        InvalidInput.model_validate(payload)  # {"detail": message or validation problems}
