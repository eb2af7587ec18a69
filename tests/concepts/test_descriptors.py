"""The descriptor interface: config, joined queries, and frozen-world ranking equal to the server's answer."""

from __future__ import annotations

import os

import httpx
import numpy as np
import pytest

from ie_env.concepts.descriptors import (
    DescriptorConfig,
    DescriptorSource,
    QueryRanker,
    join_query,
    rank_query,
)


class Fixed(DescriptorSource):
    name = "fixed"

    def __init__(self, descriptor: str) -> None:
        self.value = descriptor

    def descriptor(self, concept_query, rng, concept=None) -> str:
        return self.value


def test_config_parse_and_validation() -> None:
    assert DescriptorConfig.parse(None).source == "none"
    assert DescriptorConfig.parse("wordnet").source == "wordnet"
    assert DescriptorConfig.parse({"source": "llm", "pool_size": 3}).pool_size == 3
    config = DescriptorConfig(source="llm", url="http://127.0.0.1:1/v1")
    assert DescriptorConfig.parse(config) is config
    for bad in ({"source": "gpt"}, {"temperature": -1}, {"pool_size": 0}, {"strict": "yes"}, {"url": " "}):
        with pytest.raises(ValueError, match="DescriptorConfig"):
            DescriptorConfig(**bad)
    with pytest.raises(TypeError):
        DescriptorConfig.parse(3)


def test_config_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IE_ENV_LLM_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("IE_ENV_LLM_MODEL", raising=False)
    config = DescriptorConfig(source="llm")
    assert config.resolved_url() == "http://127.0.0.1:9/v1" and config.resolved_model() == "default"
    assert DescriptorConfig(source="llm", url="http://h/v1", model="m").resolved_url() == "http://h/v1"


def test_query_is_descriptor_space_concept_query() -> None:
    assert join_query("brown", "labrador retriever") == "brown labrador retriever"
    assert join_query("  very   gentle ", "dog") == "very gentle dog"
    assert join_query("", "dog") == "dog"
    rng = np.random.default_rng(0)
    assert Fixed("baby").query_for("duck", rng) == ("baby", "baby duck")
    assert Fixed("").query_for("duck", rng) == ("", "duck")
    assert Fixed("bad\x00").query_for("duck", rng) == ("", "duck")  # not a valid query: the plain concept


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory):
    """A generated corpus, its gen-4 target, and a server on its own caption index."""
    old = os.environ.get("IE_ENV_HOME")
    os.environ["IE_ENV_HOME"] = str(tmp_path_factory.mktemp("home"))
    from ie_env.web.corpus import open_corpus
    from ie_env.web.server import start_server
    from ie_env.web.targets import load_target

    try:
        corpus = open_corpus("generated", root=tmp_path_factory.mktemp("web"), progress=False)
        target = load_target("gen-4", corpus=corpus)
        with (
            start_server(corpus, target=target) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
        ):
            yield target, server, client
    finally:
        if old is None:
            os.environ.pop("IE_ENV_HOME", None)
        else:
            os.environ["IE_ENV_HOME"] = old


QUERIES = [
    "star",
    "red star",
    "fluffy polka dots",
    "vintage striped pattern",
    "brown owl",
    "small  Red  STAR",
]


@pytest.mark.model
def test_rank_query_returns_the_servers_answer(web) -> None:
    from ie_env.web.index import CaptionIndex

    target, server, client = web
    index = CaptionIndex(target.corpus, target.excluded_ids, progress=False)  # not the server's own
    assert index is not server.index
    for n in (20, 45):
        for query in QUERIES:
            answer = client.get("/v1/images/", params={"q": query, "page_size": n}).json()
            rows = rank_query(index, query, n)
            assert [target.corpus.ids[r] for r in rows] == [hit["id"] for hit in answer["results"]], query


@pytest.mark.model
def test_rank_query_matches_the_frozen_table_ranking(web) -> None:
    from ie_env.worlds.frozen_tables import rank_table

    server = web[1]
    index = server.index
    vectors = index.embedder.embed(QUERIES)
    table = rank_table(index, QUERIES, vectors, 30)
    for query, row in zip(QUERIES, table, strict=True):
        assert np.array_equal(rank_query(index, query, 30), row), query


@pytest.mark.model
def test_query_ranker_caches_and_pads(web) -> None:
    index = web[1].index
    ranker = QueryRanker(index, 12, capacity=2)
    first = ranker("red star")
    assert ranker("  RED star ") is first and not first.flags.writeable
    ranker("blue star")
    ranker("green star")
    assert ranker("red star") is not first and np.array_equal(ranker("red star"), first)
    assert (rank_query(index, "", 5) == -1).all()
    assert (rank_query(index, "x\x00", 5) == -1).all()
    assert len(rank_query(index, "star", len(index) + 10)) == len(index) + 10
    assert (rank_query(index, "star", len(index) + 10)[len(index) :] == -1).all()
