"""The concept vocabulary: every WordNet 3.0 noun (synset, lemma) pair, with cached text embeddings.

WordNet comes from Debian's ``wordnet-base`` (``/usr/share/wordnet``); ``data.noun`` is parsed
directly (no nltk). Each concept is one lemma of one noun synset, 146,347 in all, as in the paper.
A concept's text, the input of the sentence model, follows the paper's template
``"{lemma} ({hypernym}): {gloss}."`` where ``gloss`` is the synset's definition with WordNet's
quoted example sentences removed (the paper's "definition"), and ``hypernym`` the first lemma of
the first hypernym synset (roots such as ``entity`` have none and use ``"{lemma}: {gloss}."``).

Concept ids are positions in the full vocabulary (file order of ``data.noun``, then word order
within a synset) and stay the same in every subset; a subset's *action index* is a position in
the subset. Named subsets:

* ``full``: all 146,347 concepts.
* ``small``: a deterministic few thousand common concrete nouns (for tests and quick runs): the
  senses that occur in WordNet's sense-tagged corpus counts (``cntlist.rev``) and belong to the
  concrete lexicographer files (animal, artifact, body, food, object, plant, substance): 4,185
  concepts with Debian's WordNet 3.0 (capped at :data:`SMALL_SUBSET_SIZE`, most frequent first).
* ``words:owl,dog,...`` or the path of a text file with one word per line: every concept whose
  lemma is one of the words (case-insensitive); unknown words raise ``ValueError`` naming them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ie_env.concepts.queries import distinct_query_texts, normalize_text
from ie_env.concepts.wordnet import (
    DEFAULT_WORDNET_DIR,
    Columns,
    load_columns,
    parse_data_noun,
    sense_counts,
    split_gloss,
    wordnet_dir,
)

__all__ = [
    "DEFAULT_WORDNET_DIR",
    "FULL_VOCABULARY_SIZE",
    "SUBSET_NAMES",
    "Concept",
    "Vocabulary",
    "concept_text",
    "parse_data_noun",
    "split_gloss",
    "wordnet_dir",
]
FULL_VOCABULARY_SIZE = 146_347
SMALL_SUBSET_SIZE = 5_000
SUBSET_NAMES = ("full", "small")
FULL_CACHE_NAME = "vocab-full"
# Lexicographer files of concrete things that have pictures (see lexnames(5WN)).
CONCRETE_LEXFILES = {
    5: "noun.animal",
    6: "noun.artifact",
    8: "noun.body",
    13: "noun.food",
    17: "noun.object",
    20: "noun.plant",
    27: "noun.substance",
}


@dataclass(frozen=True)
class Concept:
    """One (synset, lemma) noun concept.

    Attributes:
        id: position in the full vocabulary (stable across subsets).
        lemma: the lemma with underscores as spaces, e.g. ``"bird of Minerva"``.
        offset: the synset's byte offset in ``data.noun`` (WordNet 3.0 synset id).
        hypernym: first lemma of the first hypernym synset, or ``""`` for a root.
        gloss: the definition, without WordNet's quoted example sentences.
        lexfile: the lexicographer file number (5 = noun.animal, 6 = noun.artifact, ...).
    """

    id: int
    lemma: str
    offset: int
    hypernym: str
    gloss: str
    lexfile: int

    @property
    def text(self) -> str:
        """The sentence-model input: ``"{lemma} ({hypernym}): {gloss}."``."""
        return concept_text(self.lemma, self.hypernym, self.gloss)

    @property
    def synset_id(self) -> str:
        """WordNet 3.0 synset id in the usual ``"01621127-n"`` form."""
        return f"{self.offset:08d}-n"


def concept_text(lemma: str, hypernym: str, gloss: str) -> str:
    """The paper's concept template, ``"{lemma} ({hypernym}): {gloss}."``."""
    head = f"{lemma} ({hypernym})" if hypernym else lemma
    return f"{head}: {gloss}."


def _normalise_word(word: str) -> str:
    return normalize_text(word.replace("_", " "))


class Vocabulary:
    """A set of noun concepts (the full vocabulary or a named subset) and their text embeddings.

    Args:
        subset: ``"full"``, ``"small"``, ``"words:a,b,c"``, or the path of a word-list file.
        folder: WordNet folder (default :func:`wordnet_dir`).

    Raises:
        SetupError: when WordNet is not installed.
        ValueError: for an unknown subset name or words not in WordNet.
    """

    def __init__(self, subset: str = "full", folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else wordnet_dir()
        self._columns: Columns = load_columns(self.folder)
        self._queries: list[str] | None = None
        self.subset = subset
        self.ids = self._select(subset)
        self._by_lemma: dict[str, list[int]] | None = None
        self._position: dict[int, int] | None = None
        self._embeddings: np.ndarray | None = None
        self._query_embeddings: np.ndarray | None = None

    # -- construction -----------------------------------------------------------------------

    def _select(self, subset: str) -> np.ndarray:
        total = len(self._columns.lemmas)
        if subset == "full":
            return np.arange(total, dtype=np.int64)
        if subset == "small":
            return self._small_subset()
        if subset.startswith("words:"):
            return self._word_subset([w for w in subset[len("words:") :].split(",") if w.strip()], subset)
        path = Path(subset)
        if path.is_file():
            words = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            return self._word_subset([w for w in words if w and not w.startswith("#")], subset)
        raise ValueError(
            f"unknown vocabulary subset {subset!r}: use one of {', '.join(SUBSET_NAMES)}, "
            "'words:owl,dog,...', or the path of a file with one word per line"
        )

    def _small_subset(self) -> np.ndarray:
        counts = sense_counts(self.folder)
        columns = self._columns
        scored = []
        for concept_id, lemma in enumerate(columns.lemmas):
            lexfile = int(columns.lexfiles[concept_id])
            if lexfile not in CONCRETE_LEXFILES:
                continue
            count = counts.get((lemma.lower(), lexfile, int(columns.lex_ids[concept_id])), 0)
            if count > 0:
                scored.append((-count, concept_id))
        if not scored:  # no sense counts available: a seeded, deterministic sample instead
            rng = np.random.default_rng(0)
            concrete = np.flatnonzero(np.isin(columns.lexfiles, list(CONCRETE_LEXFILES)))
            return np.sort(rng.choice(concrete, size=min(SMALL_SUBSET_SIZE, len(concrete)), replace=False))
        scored.sort()
        return np.sort(np.asarray([cid for _, cid in scored[:SMALL_SUBSET_SIZE]], dtype=np.int64))

    def _word_subset(self, words: Sequence[str], subset: str) -> np.ndarray:
        if not words:
            raise ValueError(f"vocabulary subset {subset!r} names no words")
        index = self._lemma_index_full()
        missing = [w for w in words if _normalise_word(w) not in index]
        if missing:
            raise ValueError(f"words not in WordNet's nouns: {', '.join(repr(w) for w in missing)}")
        ids = sorted({cid for w in words for cid in index[_normalise_word(w)]})
        return np.asarray(ids, dtype=np.int64)

    def _lemma_index_full(self) -> dict[str, list[int]]:
        index: dict[str, list[int]] = {}
        for concept_id, lemma in enumerate(self._columns.lemmas):
            index.setdefault(lemma.lower(), []).append(concept_id)
        return index

    # -- lookup -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Concept]:
        for position in range(len(self)):
            yield self[position]

    def __getitem__(self, position: int) -> Concept:
        """The concept at a subset position (an action index)."""
        if not 0 <= position < len(self.ids):
            raise IndexError(f"concept index {position} out of range for {len(self)} concepts")
        return self.by_id(int(self.ids[position]))

    def by_id(self, concept_id: int) -> Concept:
        """The concept with this full-vocabulary id (whether or not it is in the subset)."""
        columns = self._columns
        if not 0 <= concept_id < len(columns.lemmas):
            raise KeyError(f"no concept with id {concept_id} (ids run 0..{len(columns.lemmas) - 1})")
        return Concept(
            id=concept_id,
            lemma=columns.lemmas[concept_id],
            offset=int(columns.offsets[concept_id]),
            hypernym=columns.hypernyms[concept_id],
            gloss=columns.glosses[concept_id],
            lexfile=int(columns.lexfiles[concept_id]),
        )

    def position_of(self, concept_id: int) -> int:
        """The subset position (action index) of a full-vocabulary id; KeyError if not in the subset."""
        if self._position is None:
            self._position = {int(cid): pos for pos, cid in enumerate(self.ids)}
        try:
            return self._position[concept_id]
        except KeyError:
            raise KeyError(f"concept id {concept_id} is not in subset {self.subset!r}") from None

    def find(self, lemma: str) -> list[Concept]:
        """All concepts of the subset with this lemma (case-insensitive; spaces or underscores)."""
        if self._by_lemma is None:
            self._by_lemma = {}
            for position, concept_id in enumerate(self.ids):
                self._by_lemma.setdefault(self._columns.lemmas[concept_id].lower(), []).append(position)
        return [self[p] for p in self._by_lemma.get(_normalise_word(lemma), [])]

    @property
    def lemmas(self) -> list[str]:
        """Lemmas in subset order (not unique: see :attr:`query_texts` for the search queries)."""
        lemmas = self._columns.lemmas
        return [lemmas[i] for i in self.ids]

    @property
    def texts(self) -> list[str]:
        """Concept texts in subset order (the sentence-model inputs)."""
        c = self._columns
        return [concept_text(c.lemmas[i], c.hypernyms[i], c.glosses[i]) for i in self.ids]

    def _full_texts(self) -> list[str]:
        """Concept texts of the whole vocabulary (the full embedding cache's key), whatever the subset."""
        c = self._columns
        return [concept_text(*row) for row in zip(c.lemmas, c.hypernyms, c.glosses, strict=True)]

    def _full_queries(self) -> list[str]:
        if self._queries is None:
            c = self._columns
            self._queries = distinct_query_texts(c.lemmas, c.hypernyms, c.glosses, self._frequencies())
        return self._queries

    def _frequencies(self) -> np.ndarray:
        counts = sense_counts(self.folder)
        c = self._columns
        return np.asarray(
            [
                counts.get((lemma.lower(), int(lexfile), int(lex_id)), 0)
                for lemma, lexfile, lex_id in zip(c.lemmas, c.lexfiles, c.lex_ids, strict=True)
            ],
            dtype=np.int64,
        )

    @property
    def query_texts(self) -> list[str]:
        """Search queries in subset order: distinct for every concept of the full vocabulary.

        A lemma shared by several concepts is the query of its most frequent sense only; its other
        senses add a disambiguating word from their hypernym (``bass`` fish vs ``bass voice``); see
        :func:`ie_env.concepts.queries.distinct_query_texts`.
        """
        queries = self._full_queries()
        return [queries[i] for i in self.ids]

    def query_text(self, position: int) -> str:
        """The search query for the concept at a subset position (see :attr:`query_texts`)."""
        return self._full_queries()[int(self.ids[position])]

    @property
    def synset_count(self) -> int:
        """Distinct synsets in the subset."""
        return int(len(np.unique(self._columns.offsets[self.ids])))

    # -- embeddings ---------------------------------------------------------------------------

    def cache_name(self) -> str:
        """The readable prefix of this subset's embedding cache file."""
        if self.subset == "full":
            return FULL_CACHE_NAME
        if self.subset in SUBSET_NAMES:
            return f"vocab-{self.subset}"
        return "vocab-custom"

    def embeddings(self, *, build: bool = True, show_progress: bool = True) -> np.ndarray | None:
        """Concept-text embeddings, float32 (len, 384), L2-normalised, in subset order.

        Loaded from the cache (``$IE_ENV_HOME/embeddings``) when present; a subset is sliced from a
        cached full vocabulary when there is one; otherwise computed (progress bar) and cached.

        Args:
            build: compute missing embeddings (else return None when they are not cached).
            show_progress: draw a progress bar while computing.
        """
        if self._embeddings is not None:
            return self._embeddings
        from ie_env.concepts import textembed

        vectors = None
        if self.subset != "full":
            full_vectors = textembed.cached_embeddings(FULL_CACHE_NAME, self._full_texts(), build=False)
            if full_vectors is not None:
                vectors = full_vectors[self.ids]
        if vectors is None:
            vectors = textembed.cached_embeddings(
                self.cache_name(), self.texts, build=build, show_progress=show_progress
            )
        self._embeddings = vectors
        return vectors

    def query_embeddings(self, *, build: bool = True, show_progress: bool = True) -> np.ndarray | None:
        """Embeddings of :attr:`query_texts` as the search ranking uses them, in subset order.

        Embedded once in batches (bf16 where native) and stored float32. The frozen world ranks
        concept queries with them and the env's search server preloads them, so both rank with the
        same vectors. Cached for the whole vocabulary (``ie-vocab embed`` builds them with the concept
        embeddings) and sliced for a subset; a subset without the full cache embeds just its own queries.
        Kept in memory (read-only) after the first load.
        """
        if self._query_embeddings is None:
            vectors = self._load_query_embeddings(build, show_progress)
            if vectors is not None:
                vectors.setflags(write=False)
            self._query_embeddings = vectors
        return self._query_embeddings

    def _load_query_embeddings(self, build: bool, show_progress: bool) -> np.ndarray | None:
        from ie_env.concepts import textembed

        full_queries = self._full_queries()
        full = textembed.cached_embeddings(
            f"{FULL_CACHE_NAME}-queries",
            full_queries,
            build=build and self.subset == "full",
            show_progress=show_progress,
            queries=True,
        )
        if full is not None:
            return full if self.subset == "full" else full[self.ids]
        if self.subset == "full":
            return None
        return textembed.cached_embeddings(
            f"{self.cache_name()}-queries",
            self.query_texts,
            build=build,
            show_progress=show_progress,
            queries=True,
        )

    def embeddings_cached(self) -> bool:
        """Whether this subset's embeddings (or the full vocabulary's) are in the cache."""
        from ie_env.concepts import textembed

        if self._embeddings is not None:
            return True
        if textembed.cache_for(self.cache_name(), self.texts).exists():
            return True
        if self.subset != "full":
            return textembed.cache_for(FULL_CACHE_NAME, self._full_texts()).exists()
        return False

    def nearest(self, text: str, k: int = 10) -> list[tuple[Concept, float]]:
        """The ``k`` concepts whose text embeddings are closest (cosine) to ``text``'s embedding."""
        if not text or not text.strip():
            raise ValueError("nearest() needs a non-empty text")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        from ie_env.concepts import textembed

        vectors = self.embeddings()
        query = textembed.embed_texts([text])[0]
        scores = vectors @ query
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self[int(p)], float(scores[p])) for p in top]
