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

import hashlib
import os
import pickle
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ie_env.errors import SetupError
from ie_env.paths import atomic_path, cache_subdir

WORDNET_ENV_VAR = "IE_ENV_WORDNET_DIR"
DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
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
_PARSE_FORMAT = 2  # bump when the parsed columns change, to invalidate the parse cache


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


@dataclass(frozen=True)
class _Columns:
    """The parsed full vocabulary, column-wise (fast to pickle and load)."""

    lemmas: list[str]
    offsets: np.ndarray  # int64
    hypernyms: list[str]
    glosses: list[str]
    lexfiles: np.ndarray  # int16
    lex_ids: np.ndarray  # int16, the lemma's lex_id (for sense keys)
    synset_count: int


def wordnet_dir() -> Path:
    """The WordNet database folder: ``$IE_ENV_WORDNET_DIR`` or Debian's ``/usr/share/wordnet``."""
    return Path(os.environ.get(WORDNET_ENV_VAR) or DEFAULT_WORDNET_DIR)


def _data_noun_path(folder: Path) -> Path:
    path = folder / "data.noun"
    if not path.is_file():
        raise SetupError(f"WordNet noun database not found at {path} (Debian package wordnet-base)")
    return path


_EXAMPLE_RE = re.compile(r';?\s*"[^"]*"')


def split_gloss(raw: str) -> tuple[str, list[str]]:
    """Split a WordNet gloss into its definition and its quoted example sentences."""
    examples = re.findall(r'"([^"]*)"', raw)
    definition = _EXAMPLE_RE.sub("", raw).strip().rstrip(";").strip()
    definition = definition.rstrip(".").strip()
    return definition, examples


def parse_data_noun(path: Path) -> _Columns:
    """Parse WordNet's ``data.noun`` into columns of (synset, lemma) concepts.

    Line format: ``offset lex_filenum ss_type w_cnt(hex) [word lex_id(hex)]*w_cnt p_cnt
    [symbol offset pos source/target]*p_cnt | gloss``; hypernyms are pointers ``@`` and ``@i``.
    The licence header (lines starting with two spaces) is skipped.

    Raises:
        ValueError: naming the line number of a malformed line.
    """
    synsets: list[tuple[int, int, list[tuple[str, int]], list[int], str]] = []
    first_word: dict[int, str] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, 1):
            if line.startswith("  ") or not line.strip():
                continue
            try:
                head, _, raw_gloss = line.partition(" | ")
                fields = head.split()
                offset = int(fields[0])
                lexfile = int(fields[1])
                word_count = int(fields[3], 16)
                words = [
                    (fields[4 + 2 * i].replace("_", " "), int(fields[5 + 2 * i], 16))
                    for i in range(word_count)
                ]
                cursor = 4 + 2 * word_count
                pointer_count = int(fields[cursor])
                hypernyms = []
                for p in range(pointer_count):
                    symbol = fields[cursor + 1 + 4 * p]
                    if symbol in ("@", "@i"):
                        hypernyms.append(int(fields[cursor + 2 + 4 * p]))
            except (IndexError, ValueError) as exc:
                raise ValueError(f"{path}:{line_number}: malformed data.noun line ({exc})") from exc
            definition, _ = split_gloss(raw_gloss.strip())
            synsets.append((offset, lexfile, words, hypernyms, definition))
            first_word[offset] = words[0][0]
    lemmas: list[str] = []
    offsets: list[int] = []
    hypernym_lemmas: list[str] = []
    glosses: list[str] = []
    lexfiles: list[int] = []
    lex_ids: list[int] = []
    for offset, lexfile, words, hypernyms, definition in synsets:
        hypernym = first_word.get(hypernyms[0], "") if hypernyms else ""
        for lemma, lex_id in words:
            lemmas.append(lemma)
            offsets.append(offset)
            hypernym_lemmas.append(hypernym)
            glosses.append(definition)
            lexfiles.append(lexfile)
            lex_ids.append(lex_id)
    return _Columns(
        lemmas=lemmas,
        offsets=np.asarray(offsets, dtype=np.int64),
        hypernyms=hypernym_lemmas,
        glosses=glosses,
        lexfiles=np.asarray(lexfiles, dtype=np.int16),
        lex_ids=np.asarray(lex_ids, dtype=np.int16),
        synset_count=len(synsets),
    )


def _load_columns(folder: Path) -> _Columns:
    """Parse ``data.noun``, through a pickle cache keyed by the file's path, size and mtime."""
    path = _data_noun_path(folder)
    stat = path.stat()
    key = hashlib.sha256(
        f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{_PARSE_FORMAT}".encode()
    ).hexdigest()
    cache = cache_subdir("vocabulary") / f"wordnet-{key[:16]}.pickle"
    if cache.exists():
        try:
            with open(cache, "rb") as handle:
                columns = pickle.load(handle)
            if isinstance(columns, _Columns) and len(columns.lemmas) == len(columns.offsets):
                return columns
        except Exception:  # a corrupt parse cache is just re-parsed
            pass
        cache.unlink(missing_ok=True)
    columns = parse_data_noun(path)
    with atomic_path(cache) as tmp, open(tmp, "wb") as handle:
        pickle.dump(columns, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return columns


def _sense_counts(folder: Path) -> dict[tuple[str, int, int], int]:
    """Noun sense frequencies from ``cntlist.rev``, keyed by (lemma lowercased, lexfile, lex_id)."""
    path = folder / "cntlist.rev"
    counts: dict[tuple[str, int, int], int] = {}
    if not path.is_file():
        return counts
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) != 3 or "%1:" not in parts[0]:
                continue
            lemma, _, rest = parts[0].partition("%")
            fields = rest.split(":")
            try:
                counts[(lemma.replace("_", " "), int(fields[1]), int(fields[2]))] = int(parts[2])
            except (IndexError, ValueError):
                continue
    return counts


def _normalise_word(word: str) -> str:
    return " ".join(word.replace("_", " ").lower().split())


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
        self._columns = _load_columns(self.folder)
        self.subset = subset
        self.ids = self._select(subset)
        self._by_lemma: dict[str, list[int]] | None = None
        self._position: dict[int, int] | None = None
        self._embeddings: np.ndarray | None = None

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def load(cls, subset: str = "full", folder: Path | None = None) -> Vocabulary:
        """Same as the constructor; reads as the usual entry point."""
        return cls(subset, folder)

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
        counts = _sense_counts(self.folder)
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
        """Lemmas in subset order (the default query texts)."""
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

    def query_text(self, position: int) -> str:
        """The search query for the concept at a subset position: its lemma."""
        return self._columns.lemmas[int(self.ids[position])]

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

    def embeddings(
        self, *, build: bool = True, show_progress: bool = True, threads: int | None = None
    ) -> np.ndarray | None:
        """Concept-text embeddings, float32 (len, 384), L2-normalised, in subset order.

        Loaded from the cache (``$IE_ENV_HOME/embeddings``) when present; a subset is sliced from a
        cached full vocabulary when there is one; otherwise computed (progress bar) and cached.

        Args:
            build: compute missing embeddings (else return None when they are not cached).
            show_progress: draw a progress bar while computing.
            threads: torch threads while computing.
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
                self.cache_name(), self.texts, build=build, show_progress=show_progress, threads=threads
            )
        self._embeddings = vectors
        return vectors

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
