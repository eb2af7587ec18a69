"""The search server over real HTTP on loopback: Openverse shape, images, exclusions, bad input, faults."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from ie_env.web.corpus import open_corpus
from ie_env.web.index import CaptionIndex
from ie_env.web.server import FaultConfig, ServerConfig, corrupt, start_server
from ie_env.web.targets import load_target

pytestmark = pytest.mark.model

RESULT_KEYS = {"id", "title", "url", "thumbnail", "width", "height", "license", "tags", "source", "provider"}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory):
    corpus = open_corpus("generated", root=tmp_path_factory.mktemp("web"), progress=False)
    return load_target("gen-4", corpus=corpus)


@pytest.fixture(scope="module")
def index(target):
    return CaptionIndex(target.corpus, target.excluded_ids, progress=False)


@pytest.fixture(scope="module")
def server(index):
    with start_server(index, target="gen-4") as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_server_binds_loopback_on_a_free_port(server) -> None:
    assert server.url.startswith("http://127.0.0.1:") and server.port > 0


def test_search_speaks_openverse_shape(client, server, target) -> None:
    response = client.get("/v1/images/", params={"q": "star", "page_size": 10})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["page"] == 1 and body["page_size"] == 10
    assert body["result_count"] == 320 - len(target.excluded_ids)
    assert body["page_count"] == 20  # Openverse's pagination depth caps it
    assert len(body["results"]) == 10
    for result in body["results"]:
        assert set(result) >= RESULT_KEYS
        assert result["url"].startswith(server.url + "/images/")
        assert result["thumbnail"].startswith(server.url + "/v1/images/")
        assert all(set(tag) == {"name", "accuracy"} for tag in result["tags"])
        assert result["source"] == result["provider"] == "generated"
        assert result["license"] == "cc0" and result["license_url"].startswith("https://creativecommons.org/")
        assert "star" in result["title"]


def test_every_url_and_thumbnail_downloads_a_decodable_image(client) -> None:
    body = client.get("/v1/images/", params={"q": "something colourful", "page_size": 40}).json()
    for result in body["results"]:
        for url in (result["url"], result["thumbnail"]):
            response = client.get(url)
            assert response.status_code == 200 and response.headers["content-type"] == "image/png"
            image = _decode(response.content)
            assert image.size == (result["width"], result["height"])
    detail = client.get(body["results"][0]["detail_url"]).json()
    assert detail["id"] == body["results"][0]["id"]


def test_pages_do_not_overlap(client) -> None:
    pages = [
        [
            r["id"]
            for r in client.get("/v1/images/", params={"q": "square", "page_size": 7, "page": p}).json()[
                "results"
            ]
        ]
        for p in (1, 2, 3)
    ]
    whole = [
        r["id"] for r in client.get("/v1/images/", params={"q": "square", "page_size": 21}).json()["results"]
    ]
    assert pages[0] + pages[1] + pages[2] == whole


def test_target_images_never_appear_over_many_queries(client, target) -> None:
    queries = [f"{color} {shape}" for color in ("red", "blue", "pink", "black") for shape in
               ("circle", "square", "triangle", "star", "thing", "picture")]  # fmt: skip
    seen: set[str] = set()
    for query in queries:
        body = client.get("/v1/images/", params={"q": query, "page_size": 100}).json()
        seen.update(r["id"] for r in body["results"])
    assert seen and seen.isdisjoint(target.excluded_ids)
    excluded = sorted(target.excluded_ids)[0]
    assert client.get(f"/images/{excluded}.png").status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": ""}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 10_000}, "q"),
        ({"q": "owl\x07"}, "q"),
        ({}, "q"),
        ({"q": "owl", "page_size": "0"}, "page_size"),
        ({"q": "owl", "page_size": "501"}, "page_size"),
        ({"q": "owl", "page_size": "ten"}, "page_size"),
        ({"q": "owl", "page": "0"}, "page"),
        ({"q": "owl", "page": "-3"}, "page"),
        ({"q": "owl", "page": "21"}, "page"),
        ({"q": "owl", "page_size": "500", "page": "2"}, "page"),
    ],
)
def test_bad_requests_get_a_clear_400(client, params: dict, field: str) -> None:
    response = client.get("/v1/images/", params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == field and body["detail"]


def test_unknown_routes_and_ids_are_404_json(client) -> None:
    for path in ("/v2/images/", "/images/nope.png", "/v1/images/generated-999999/", "/etc/passwd"):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert client.post("/v1/images/").status_code == 405


def test_concurrent_clients_all_get_answers(server) -> None:
    def ask(i: int) -> int:
        with httpx.Client(timeout=30) as http:
            response = http.get(
                f"{server.url}/v1/images/", params={"q": f"shape number {i}", "page_size": 25}
            )
            return len(response.json()["results"]) if response.status_code == 200 else -response.status_code

    with ThreadPoolExecutor(12) as pool:
        assert list(pool.map(ask, range(48))) == [25] * 48
    assert server.app.embedder.batches >= 1


def test_health(client) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["target"] == "gen-4" and body["images"] == 224


def test_fault_injection_errors_latency_and_corrupt_bytes(index) -> None:
    config = ServerConfig(faults=FaultConfig(error_rate=1.0))
    with start_server(index, config=config) as failing, httpx.Client(timeout=30) as http:
        response = http.get(f"{failing.url}/v1/images/", params={"q": "star"})
        assert response.status_code == 503 and response.json()["error"] == "injected_fault"
        assert http.get(f"{failing.url}/healthz").status_code == 200
    config = ServerConfig(faults=FaultConfig(latency_s=0.3, corrupt_rate=1.0))
    with start_server(index, config=config) as slow, httpx.Client(timeout=30) as http:
        started = time.perf_counter()
        body = http.get(f"{slow.url}/v1/images/", params={"q": "star", "page_size": 3}).json()
        assert time.perf_counter() - started >= 0.3
        for result in body["results"]:
            data = http.get(result["url"]).content
            with pytest.raises(OSError):
                _decode(data)
    with pytest.raises(ValueError, match="error_rate"):
        FaultConfig(error_rate=2.0)


def test_faults_are_off_by_default() -> None:
    assert not ServerConfig().faults.active


def test_corrupt_changes_bytes_deterministically() -> None:
    import random

    data = bytes(range(256)) * 4
    assert corrupt(data, random.Random(0)) == corrupt(data, random.Random(0)) != data


def test_search_json_fast_path_matches_search(tmp_path, monkeypatch):
    """The cached-fragment serialisation the HTTP handler uses equals the dict answer."""
    import json as _json

    from ie_env.web.server import SearchApp, build_index

    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path))
    app = SearchApp(build_index("generated", "gen-4", progress=False))
    try:
        params = {"q": ["red circle"], "page_size": ["7"], "page": ["2"]}
        expected = app.search(params, "http://127.0.0.1:1")
        for _ in range(2):  # second time from the fragment cache
            assert _json.loads(app.search_json(params, "http://127.0.0.1:1")) == expected
    finally:
        app.close()
