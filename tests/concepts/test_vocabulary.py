"""The WordNet vocabulary: parser, subsets, lookup, setup errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ie_env.concepts.vocabulary import (
    DEFAULT_WORDNET_DIR,
    FULL_VOCABULARY_SIZE,
    SMALL_SUBSET_SIZE,
    Vocabulary,
    concept_text,
    parse_data_noun,
    split_gloss,
)
from ie_env.errors import SetupError

FIXTURE_DIR = Path(__file__).parents[1] / "data"
HAVE_WORDNET = (DEFAULT_WORDNET_DIR / "data.noun").is_file()
needs_wordnet = pytest.mark.skipif(not HAVE_WORDNET, reason="Debian wordnet-base not installed (make setup)")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path / "cache"))


@pytest.fixture
def tiny() -> Vocabulary:
    return Vocabulary("full", folder=FIXTURE_DIR)


def test_parser_reads_lemmas_hypernyms_and_glosses(tiny):
    assert len(tiny) == 1 + 3 + 4 + 1 + 2 + 2 + 3 + 1
    assert tiny.synset_count == 8
    owl = tiny.find("owl")[0]
    assert owl.hypernym == "bird of prey"
    assert owl.offset == 1621127 and owl.synset_id == "01621127-n"
    assert owl.lexfile == 5
    assert owl.text == (
        "owl (bird of prey): nocturnal bird of prey with hawk-like beak and claws and large head with "
        "front-facing eyes."
    )
    # Every lemma of a synset is its own concept, underscores become spaces, case is kept.
    minerva = tiny.find("bird_of_minerva")
    assert [c.lemma for c in minerva] == ["bird of Minerva"]
    assert minerva[0].offset == owl.offset and minerva[0].id == owl.id + 1


def test_first_hypernym_wins_and_examples_are_dropped(tiny):
    dog = tiny.find("dog")[0]
    assert dog.hypernym == "canine"  # the first of two hypernym pointers
    assert '"' not in dog.gloss and "barked" not in dog.gloss
    assert dog.gloss.endswith("occurs in many breeds")
    widget = tiny.find("widget")[0]
    assert widget.hypernym == "" and widget.text == "widget: a small gadget."


def test_root_concept_text_has_no_empty_parentheses(tiny):
    entity = tiny.find("entity")[0]
    assert entity.hypernym == ""
    assert entity.text.startswith("entity: that which is perceived")
    assert "()" not in entity.text


def test_split_gloss_and_template():
    definition, examples = split_gloss('a small gadget; "he bought a widget"; "widgets are cheap"')
    assert definition == "a small gadget"
    assert examples == ["he bought a widget", "widgets are cheap"]
    assert concept_text("owl", "bird of prey", "a bird") == "owl (bird of prey): a bird."


def test_malformed_line_names_its_line_number(tmp_path):
    bad = tmp_path / "data.noun"
    bad.write_text("  1 header\n01621127 05 n 04 owl 0 | truncated\n")
    with pytest.raises(ValueError, match=r"data.noun:2"):
        parse_data_noun(bad)


def test_lookup_by_id_position_and_errors(tiny):
    owl = tiny.find("OWL")[0]
    assert tiny.by_id(owl.id) == owl
    assert tiny[tiny.position_of(owl.id)] == owl
    with pytest.raises(IndexError, match="out of range"):
        tiny[len(tiny)]
    with pytest.raises(KeyError, match="no concept with id"):
        tiny.by_id(10_000)
    assert tiny.find("unicorn") == []


def test_words_subset_keeps_global_ids(tiny):
    subset = Vocabulary("words:owl, dog", folder=FIXTURE_DIR)
    assert [c.lemma for c in subset] == ["owl", "dog"]
    assert [c.id for c in subset] == [tiny.find("owl")[0].id, tiny.find("dog")[0].id]
    assert subset.query_text(1) == "dog"
    with pytest.raises(KeyError, match="not in subset"):
        subset.position_of(tiny.find("entity")[0].id)


def test_word_list_file_subset(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# my classes\nowlet\n\nhooter\n")
    subset = Vocabulary(str(words), folder=FIXTURE_DIR)
    assert sorted(c.lemma for c in subset) == ["hooter", "owlet"]


def test_unknown_words_and_subsets_are_named(tiny):
    with pytest.raises(ValueError, match="'unicorn'"):
        Vocabulary("words:owl,unicorn", folder=FIXTURE_DIR)
    with pytest.raises(ValueError, match="unknown vocabulary subset 'tiny'"):
        Vocabulary("tiny", folder=FIXTURE_DIR)


def test_small_subset_is_deterministic_and_concrete():
    first = Vocabulary("small", folder=FIXTURE_DIR)
    second = Vocabulary("small", folder=FIXTURE_DIR)
    np.testing.assert_array_equal(first.ids, second.ids)
    # Sense-counted concrete nouns only: dog (animal), owl (animal), widget (artifact); not entity.
    assert sorted(c.lemma for c in first) == ["dog", "owl", "widget"]


def test_missing_wordnet_is_a_setup_error(tmp_path, monkeypatch):
    monkeypatch.setenv("IE_ENV_WORDNET_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(SetupError, match="wordnet-base.*make setup"):
        Vocabulary("full")


def test_cli_reports_missing_wordnet_without_traceback(tmp_path, monkeypatch, capsys):
    from ie_env.concepts.cli import main

    monkeypatch.setenv("IE_ENV_WORDNET_DIR", str(tmp_path / "nowhere"))
    assert main(["info"]) == 2
    err = capsys.readouterr().err
    assert "wordnet-base" in err and "make setup" in err and "Traceback" not in err


def test_parse_cache_is_reused_and_survives_corruption(tmp_path, monkeypatch):
    from ie_env.concepts import wordnet
    from ie_env.paths import cache_subdir

    Vocabulary("full", folder=FIXTURE_DIR)
    caches = list(cache_subdir("vocabulary").glob("wordnet-*.pickle"))
    assert len(caches) == 1

    def no_parse(path):
        raise AssertionError("data.noun was parsed again although its parse cache is valid")

    with monkeypatch.context() as patch:
        patch.setattr(wordnet, "parse_data_noun", no_parse)
        reused = Vocabulary("full", folder=FIXTURE_DIR)
    assert reused.find("owl")[0].hypernym == "bird of prey"
    caches[0].write_bytes(b"not a pickle")
    again = Vocabulary("full", folder=FIXTURE_DIR)
    assert again.find("owl")[0].hypernym == "bird of prey"
    assert caches[0].read_bytes() != b"not a pickle"  # rebuilt


def test_distinct_query_texts_disambiguate_shared_lemmas():
    from ie_env.concepts.queries import distinct_query_texts

    lemmas = ["bass", "bass", "bass", "Bass", "owl", "bass fish"]
    hypernyms = ["percoid fish", "singing voice", "pitch", "fish", "bird of prey", "fish"]
    glosses = [
        "edible spiny-finned fish",
        "the lowest adult male singing voice",
        "the lowest part",
        "any of various North American freshwater fish",
        "nocturnal bird",
        "a fish",
    ]
    frequencies = [0, 3, 5, 0, 9, 0]
    queries = distinct_query_texts(lemmas, hypernyms, glosses, frequencies)
    assert queries[2] == "bass"  # the most frequent sense keeps the bare lemma
    assert queries[1] == "bass voice" and queries[4] == "owl" and queries[5] == "bass fish"
    # "bass fish" is another concept's lemma, so the percoid sense takes its whole hypernym.
    assert queries[0] == "bass percoid fish"
    assert queries[3].lower().startswith("bass fish ")  # hypernym head taken: a gloss word follows
    assert len({" ".join(q.split()).lower() for q in queries}) == len(queries)


def test_query_texts_of_the_fixture_are_distinct(tiny):
    queries = tiny.query_texts
    assert len({" ".join(q.split()).lower() for q in queries}) == len(queries) == len(tiny)
    assert [tiny.query_text(i) for i in range(len(tiny))] == queries


@needs_wordnet
def test_real_wordnet_counts_and_known_synsets():
    vocab = Vocabulary("full")
    assert len(vocab) == FULL_VOCABULARY_SIZE == 146_347
    assert vocab.synset_count == 82_115
    owl = vocab.find("owl")[0]
    assert owl.hypernym == "bird of prey" and owl.synset_id == "01621127-n"
    assert vocab.find("dog")[0].hypernym == "canine"
    assert vocab.find("barn owl")[0].hypernym == "owl"
    assert vocab.find("entity")[0].hypernym == ""


@needs_wordnet
def test_no_two_actions_of_the_full_vocabulary_share_a_query_text():
    vocab = Vocabulary("full")
    assert len({" ".join(q.split()).lower() for q in vocab.lemmas}) < len(vocab)  # lemmas do collide
    queries = vocab.query_texts
    assert len({" ".join(q.split()).lower() for q in queries}) == len(vocab) == len(queries)
    basses = {vocab.query_text(vocab.position_of(c.id)) for c in vocab.find("bass")}
    assert len(basses) == len(vocab.find("bass")) and "bass" in basses


@needs_wordnet
def test_real_small_subset_is_deterministic_and_sized():
    first, second = Vocabulary("small"), Vocabulary("small")
    np.testing.assert_array_equal(first.ids, second.ids)
    assert 3_000 <= len(first) <= SMALL_SUBSET_SIZE
    assert len(np.unique(first.ids)) == len(first)
    lemmas = set(first.lemmas)
    assert {"dog", "car", "apple", "chair"} <= lemmas
