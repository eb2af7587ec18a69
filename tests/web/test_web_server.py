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
from ie_env.web.server import FaultConfig, ServerConfig, build_index, corrupt, start_server
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


def test_starting_a_server_leaves_the_callers_torch_threads_alone(index) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        with start_server(index):
            assert torch.get_num_threads() == 3
        build_index(index.corpus, progress=False, threads=2)  # scoped to the caption embedding
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


TRICKY_QUERIES = [
    "owl", "  owl  ", "owl & cat", "a=b", "50% off", "#hashtag", "x+y", "?q=1&page=2", "/v1/images/",
    "naïve café", "🦉 owl", "chouette\u00a0effraie", "\u00a0\u00a0", "\u200bzero width", "\ufeffbom",
    "tab\there", "new\nline", "nul\x00", "del\x7f", "nel\x85", "ls\u2028", "ps\u2029", "lone \ud800",
    "", "   ", "\t\n", "x" * 1000, "x" * 1001, " " + "y" * 999, "é" * 1000, "🦉" * 1000, "%00", "%0A",
    "'; DROP TABLE images; --", "<script>alert(1)</script>", "\\", '"quoted"', "~!@$^*()_[]{}|;:,.<>",
]  # fmt: skip


def test_every_query_the_client_accepts_the_server_accepts(server) -> None:
    from ie_env.search import make_engine
    from ie_env.search.base import SearchError, validate_query

    engine = make_engine("local", base_url=server.url)
    accepted = 0
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for query in TRICKY_QUERIES:
            try:
                text = validate_query(query, 5, "client")
            except SearchError:
                continue
            accepted += 1
            result = engine.search(query, 5)
            assert result.ok and len(result.hits) == 5, (query, result.error)
            response = http.get("/v1/images/", params={"q": text, "page_size": 5})
            assert response.status_code == 200, (query, response.text)
    assert 20 <= accepted < len(TRICKY_QUERIES)


def test_corpus_arrays_equal_what_the_downloader_makes_of_the_served_bytes(server, client, target) -> None:
    """One preprocessing: load_images / image_hashes match Downloader.fetch on the served URL."""
    import numpy as np

    from ie_env.download import DownloadConfig, Downloader

    corpus = target.corpus
    body = client.get("/v1/images/", params={"q": "colourful shapes", "page_size": 12}).json()
    ids = [result["id"] for result in body["results"]]
    urls = [result["url"] for result in body["results"]]
    size = 32
    config = DownloadConfig(
        image_size=size,
        resize_mode="border",
        allowed_hosts=(f"127.0.0.1:{server.port}",),
        dedup=False,
        processes=0,
        respect_robots=False,
    )
    with Downloader(config) as downloader:
        batch = downloader.fetch(urls)
    arrays = corpus.load_images(ids, size, progress=False)
    sha256, phash = corpus.image_hashes(size, progress=False)
    for image_id, download, array in zip(ids, batch.downloads, arrays, strict=True):
        assert download.status == "ok", download
        row = corpus.row(image_id)
        np.testing.assert_array_equal(download.image, array)
        assert download.phash == int(phash[row])
        assert download.sha256 == sha256[row]
