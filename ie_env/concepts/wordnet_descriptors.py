r"""Offline descriptors from WordNet itself, plus a curated list of generic visual adjectives.

A concept's *linked adjectives* are the adjectives WordNet connects to its synset or to its hypernyms
(up to ``depth`` levels): from ``data.noun``, the noun's attribute (``=``), derivation (``+``) and
domain (``-c``) pointers to adjective synsets; from ``data.adj``, adjectives whose pertainym (``\``),
derivation (``+``), attribute (``=``) or topic-domain (``;c``) pointers lead to the noun. So *bird*
gets "avian" and "chirpy", *cat* "feline", *size* "large" and "small". Adjectives that contain a word of
the concept's query are left out.

Each query draws a linked adjective with probability ``linked_share`` (when the concept has any),
else a generic visual adjective (colours, sizes, ages, textures, settings: :data:`GENERIC_ADJECTIVES`).
Lists are in a fixed order (file order, hypernyms breadth-first), so the draw depends only on the
caller's generator. A class name that is not a WordNet concept is looked up by lemma (its first
sense), and without a match gets generic adjectives only. The parsed links are cached on disk, keyed
by the files' paths, sizes and modification times.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ie_env.concepts.descriptors import DescriptorSource
from ie_env.concepts.queries import normalize_text
from ie_env.concepts.wordnet import load_columns, wordnet_dir
from ie_env.paths import atomic_path, cache_subdir

if TYPE_CHECKING:
    from ie_env.concepts.vocabulary import Concept

GENERIC_ADJECTIVES = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey",
    "golden", "silver", "colorful", "dark", "bright", "pale", "small", "large", "tiny", "huge", "tall",
    "long", "short", "round", "flat", "young", "old", "baby", "wild", "cute", "beautiful", "wooden",
    "metal", "plastic", "furry", "fluffy", "smooth", "rough", "shiny", "striped", "spotted", "wet", "dry",
    "vintage", "modern", "close-up", "outdoor", "indoor", "cartoon", "hand-drawn", "painted",
)  # fmt: skip
_NOUN_SIDE = {"=", "+", "-c"}
_ADJ_SIDE = {"\\", "+", "=", ";c"}
_MAX_WORDS = 2
_FORMAT = 1


@dataclass(frozen=True)
class Links:
    """The parsed graph: hypernym offsets and linked adjectives per noun synset offset."""

    hypernyms: dict[int, tuple[int, ...]]
    adjectives: dict[int, tuple[str, ...]]


def _records(path: Path) -> Iterator[tuple[int, list[str], list[tuple[str, int, str]]]]:
    """(offset, words, pointers as (symbol, target offset, target pos)) of each line of a data file."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("  ") or not line.strip():
                continue
            fields = line.partition(" | ")[0].split()
            try:
                count = int(fields[3], 16)
                words = [fields[4 + 2 * i] for i in range(count)]
                cursor = 4 + 2 * count
                pointers = [
                    (fields[cursor + 1 + 4 * p], int(fields[cursor + 2 + 4 * p]), fields[cursor + 3 + 4 * p])
                    for p in range(int(fields[cursor]))
                ]
                yield int(fields[0]), words, pointers
            except (IndexError, ValueError):
                continue


def _clean_adjective(word: str) -> str | None:
    text = word.split("(")[0].replace("_", " ").strip()  # "galore(ip)" -> "galore"
    return text if text and len(text.split()) <= _MAX_WORDS else None


def parse_links(folder: Path) -> Links:
    """Parse ``data.noun`` (and ``data.adj`` where present) into :class:`Links`."""
    adjective_words: dict[int, list[str]] = {}
    noun_targets: dict[int, list[int]] = {}
    adj_path = folder / "data.adj"
    if adj_path.is_file():
        for offset, words, pointers in _records(adj_path):
            adjective_words[offset] = [w for w in map(_clean_adjective, words) if w]
            for symbol, target, pos in pointers:
                if pos == "n" and symbol in _ADJ_SIDE:
                    noun_targets.setdefault(target, []).append(offset)
    hypernyms: dict[int, tuple[int, ...]] = {}
    adjectives: dict[int, tuple[str, ...]] = {}
    for offset, _, pointers in _records(folder / "data.noun"):
        hypernyms[offset] = tuple(t for s, t, _ in pointers if s in ("@", "@i"))
        linked = [t for s, t, pos in pointers if pos in ("a", "s") and s in _NOUN_SIDE]
        linked += noun_targets.get(offset, [])
        words = [w for adj in linked for w in adjective_words.get(adj, [])]
        if words:
            adjectives[offset] = tuple(dict.fromkeys(words))
    return Links(hypernyms, adjectives)


def load_links(folder: Path) -> Links:
    """:func:`parse_links` through a pickle cache keyed by the files' paths, sizes and mtimes."""
    digest = hashlib.sha256(f"{_FORMAT}".encode())
    for name in ("data.noun", "data.adj"):
        path = folder / name
        if path.is_file():
            stat = path.stat()
            digest.update(f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    cache = cache_subdir("vocabulary") / f"wordnet-links-{digest.hexdigest()[:16]}.pickle"
    if cache.exists():
        try:
            with open(cache, "rb") as handle:
                links = pickle.load(handle)
            if isinstance(links, Links):
                return links
        except Exception:  # noqa: BLE001 - a corrupt cache is just parsed again
            pass
    links = parse_links(folder)
    with atomic_path(cache) as tmp, open(tmp, "wb") as handle:
        pickle.dump(links, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return links


class WordNetDescriptors(DescriptorSource):
    """See the module docstring.

    Args:
        folder: the WordNet folder (default :func:`~ie_env.concepts.wordnet.wordnet_dir`).
        linked_share: probability of a linked adjective when the concept has any.
        depth: hypernym levels whose linked adjectives count (0: the synset's own only).
        generic: the generic adjectives.
    """

    name = "wordnet"

    def __init__(
        self,
        folder: Path | None = None,
        *,
        linked_share: float = 0.6,
        depth: int = 3,
        generic: tuple[str, ...] = GENERIC_ADJECTIVES,
    ) -> None:
        if not 0.0 <= linked_share <= 1.0:
            raise ValueError(f"linked_share must be in [0, 1], got {linked_share!r}")
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth!r}")
        self.folder = Path(folder) if folder is not None else wordnet_dir()
        self.links = load_links(self.folder)
        self.linked_share = float(linked_share)
        self.depth = int(depth)
        self.generic = tuple(generic)
        self._first_sense: dict[str, int] | None = None
        self._memo: dict[tuple[int | None, str], tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def describe(self) -> dict:
        """Source name and settings."""
        return {"source": self.name, "linked_share": self.linked_share, "depth": self.depth}

    def _offset_of(self, concept_query: str) -> int | None:
        if self._first_sense is None:
            columns = load_columns(self.folder)
            first: dict[str, int] = {}
            for lemma, offset in zip(columns.lemmas, columns.offsets, strict=True):
                first.setdefault(normalize_text(lemma), int(offset))
            self._first_sense = first
        return self._first_sense.get(normalize_text(concept_query))

    def linked(self, offset: int) -> tuple[str, ...]:
        """Linked adjectives of a synset and its hypernyms up to ``depth`` levels, breadth-first."""
        words: dict[str, None] = {}
        level, seen = [offset], {offset}
        for _ in range(self.depth + 1):
            following = []
            for synset in level:
                words.update(dict.fromkeys(self.links.adjectives.get(synset, ())))
                for parent in self.links.hypernyms.get(synset, ()):
                    if parent not in seen:
                        seen.add(parent)
                        following.append(parent)
            level = following
        return tuple(words)

    def candidates(
        self, concept_query: str, concept: Concept | None = None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(linked, generic) adjectives for a concept, without any that repeat a word of its query."""
        offset = concept.offset if concept is not None else self._offset_of(concept_query)
        key = (offset, normalize_text(concept_query))
        found = self._memo.get(key)
        if found is None:
            own = set(key[1].split())
            keep = lambda words: tuple(w for w in words if not own & set(normalize_text(w).split()))  # noqa: E731
            linked = keep(self.linked(offset)) if offset is not None else ()
            found = self._memo[key] = (linked, keep(self.generic))
        return found

    def descriptor(self, concept_query: str, rng: np.random.Generator, concept: Concept | None = None) -> str:
        """Draw a linked adjective (probability ``linked_share``) or a generic one."""
        linked, generic = self.candidates(concept_query, concept)
        use_linked = bool(linked) and float(rng.random()) < self.linked_share
        words = linked if use_linked or not generic else generic
        return words[int(rng.integers(len(words)))] if words else ""
