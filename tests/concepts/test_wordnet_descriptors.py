"""Offline WordNet descriptors: the links parsed, the draw deterministic under a seed, the mix of sources."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ie_env.concepts.descriptors import NoDescriptors, make_descriptor_source
from ie_env.concepts.vocabulary import Vocabulary
from ie_env.concepts.wordnet_descriptors import GENERIC_ADJECTIVES, WordNetDescriptors, parse_links

NOUNS = """\
  1 a tiny WordNet-format fixture for the descriptor tests
00001740 03 n 01 entity 0 000 | that which exists
01503061 05 n 01 bird 0 001 @ 00001740 n 0000 | warm-blooded egg-laying vertebrates
01621127 05 n 02 owl 0 hooter 0 001 @ 01503061 n 0000 | nocturnal bird of prey
05098942 07 n 01 size 0 003 @ 00001740 n 0000 = 01382086 a 0000 = 01387319 a 0000 | the physical magnitude of something
09000001 06 n 01 widget 0 000 | a small gadget
"""
ADJECTIVES = """\
  1 a tiny WordNet-format fixture for the descriptor tests
02653925 00 a 01 avian 0 001 \\ 01503061 n 0101 | pertaining to birds
02694785 00 a 01 chirpy 0 001 ;c 01503061 n 0000 | characterized by chirping
01382086 00 a 02 large 0 big 0 001 = 05098942 n 0000 | above average in size
01387319 00 a 01 small 0 001 = 05098942 n 0000 | limited in size
03000001 00 s 01 owlish 0 001 + 01621127 n 0101 | resembling an owl
03000002 00 a 01 galore(ip) 0 001 ! 03000001 s 0000 | in great numbers
"""
OWL, BIRD, SIZE, WIDGET = 1621127, 1503061, 5098942, 9000001


@pytest.fixture
def wordnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path / "home"))
    folder = tmp_path / "wordnet"
    folder.mkdir()
    (folder / "data.noun").write_text(NOUNS)
    (folder / "data.adj").write_text(ADJECTIVES)
    return folder


def draws(source, query: str, seed: int, count: int = 40) -> list[str]:
    rng = np.random.default_rng(seed)
    return [source.descriptor(query, rng) for _ in range(count)]


def test_links_from_both_sides_of_wordnet(wordnet: Path) -> None:
    links = parse_links(wordnet)
    assert links.adjectives[BIRD] == ("avian", "chirpy")  # pertainym and topic domain, data.adj's side
    assert links.adjectives[SIZE] == ("large", "big", "small")  # attribute, from both sides
    assert links.adjectives[OWL] == ("owlish",)  # derivation
    assert WIDGET not in links.adjectives
    assert links.hypernyms[OWL] == (BIRD,)


def test_hypernym_depth_and_lookup_by_lemma(wordnet: Path) -> None:
    deep = WordNetDescriptors(wordnet, depth=3)
    assert deep.linked(OWL) == ("owlish", "avian", "chirpy")
    assert WordNetDescriptors(wordnet, depth=0).linked(OWL) == ("owlish",)
    vocabulary = Vocabulary("words:hooter", folder=wordnet)
    by_concept = deep.candidates("hooter", vocabulary[0])
    assert deep.candidates("hooter") == by_concept  # a class name: its first WordNet sense
    assert deep.candidates("gizmo")[0] == ()  # not in WordNet: generic adjectives only


def test_adjectives_repeating_the_query_are_left_out(wordnet: Path) -> None:
    source = WordNetDescriptors(wordnet, generic=("red", "small", "tall"))
    linked, generic = source.candidates("small size", Vocabulary("words:size", folder=wordnet)[0])
    assert linked == ("large", "big") and generic == ("red", "tall")


def test_share_of_linked_adjectives(wordnet: Path) -> None:
    source = WordNetDescriptors(wordnet, linked_share=0.6)
    linked = set(source.candidates("owl")[0])
    picks = draws(source, "owl", 0, 2000)
    share = np.mean([p in linked for p in picks])
    assert abs(share - 0.6) < 0.05  # binomial sd 0.011
    assert set(picks) - linked <= set(GENERIC_ADJECTIVES) and len(set(picks) - linked) > 20
    assert set(draws(WordNetDescriptors(wordnet, linked_share=1.0), "owl", 1)) <= linked
    assert not set(draws(WordNetDescriptors(wordnet, linked_share=0.0), "owl", 1)) & linked
    assert set(draws(WordNetDescriptors(wordnet, linked_share=1.0), "widget", 1)) <= set(GENERIC_ADJECTIVES)


def test_deterministic_under_a_seed(wordnet: Path) -> None:
    first = draws(WordNetDescriptors(wordnet), "owl", 5)
    assert draws(WordNetDescriptors(wordnet), "owl", 5) == first  # a fresh source (links from the cache)
    assert draws(WordNetDescriptors(wordnet), "owl", 6) != first
    source = WordNetDescriptors(wordnet)
    descriptor, query = source.query_for("owl", np.random.default_rng(5))
    assert (descriptor, query) == (first[0], f"{first[0]} owl")


def test_same_draws_in_processes_with_other_hash_seeds(wordnet: Path) -> None:
    code = (
        "import sys, numpy as np; from ie_env.concepts.wordnet_descriptors import WordNetDescriptors;"
        "s = WordNetDescriptors(sys.argv[1]); r = np.random.default_rng(3);"
        "print([s.descriptor(q, r) for q in ('owl', 'size', 'bird') * 10])"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", code, str(wordnet)], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(result.stdout)
    assert len(outputs) == 1


def test_none_source_draws_nothing() -> None:
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert NoDescriptors().query_for("owl", rng) == ("", "owl")
    assert rng.bit_generator.state == state
    assert isinstance(make_descriptor_source(None), NoDescriptors)


def test_factory_uses_the_vocabularys_wordnet(wordnet: Path) -> None:
    vocabulary = Vocabulary("words:owl", folder=wordnet)
    source = make_descriptor_source(
        {"source": "wordnet", "linked_share": 1.0, "hypernym_depth": 0}, vocabulary
    )
    assert isinstance(source, WordNetDescriptors) and source.folder == wordnet
    assert source.query_for("owl", np.random.default_rng(0), vocabulary[0]) == ("owlish", "owlish owl")


@pytest.mark.skipif(not Path("/usr/share/wordnet/data.adj").is_file(), reason="needs Debian's wordnet-base")
def test_real_wordnet_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path))
    source = WordNetDescriptors(Path("/usr/share/wordnet"))
    assert {"avian", "chirpy"} <= set(source.linked(1503061))  # bird.n.01
    assert "feline" in source.linked(2121620)  # cat.n.01
