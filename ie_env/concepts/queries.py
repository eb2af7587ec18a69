"""Search query texts: one distinct query per concept, even where WordNet lemmas collide.

146,347 (synset, lemma) concepts share only 117,798 distinct lemmas: ``bass`` is a fish, a voice, a
pitch and an instrument. Were the query the bare lemma, every sense after the first would get the
same search results, hence only duplicates and reward 0 (an artefact a bandit would learn). So:

* a lemma that names one concept is its query;
* of several concepts sharing a lemma, the most frequent sense (WordNet's sense-tagged counts, ties
  to the first in file order) keeps the bare lemma;
* every other sense appends the first of these that no other query uses yet: the head word of its
  hypernym (``bass voice``, ``bass fish``), the whole hypernym (``bass percoid fish``), then the
  hypernym and one, two or three content words of its gloss; as a last resort ``sense N``.

Queries are compared in the search server's normalised form (whitespace collapsed, lower case), so
no two concepts send queries the server treats as the same. The result depends only on WordNet, so
the frozen and full envs send the same text for every concept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import numpy as np

MAX_QUERY_CHARS = 200
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'-]+")
_GLOSS_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "with",
        "without",
        "which",
        "who",
        "whose",
        "used",
        "especially",
        "usually",
        "often",
        "one",
        "ones",
        "something",
        "someone",
    ]
)


def normalize_text(text: str) -> str:
    """The search server's key for a query: whitespace collapsed, lower case."""
    return " ".join(text.split()).lower()


def _gloss_words(gloss: str, exclude: set[str]) -> list[str]:
    words = []
    for word in _WORD_RE.findall(gloss):
        low = word.lower()
        if low in _GLOSS_STOPWORDS or low in exclude or len(low) < 3:
            continue
        exclude.add(low)
        words.append(low)
        if len(words) == 3:
            break
    return words


def _candidates(lemma: str, hypernym: str, gloss: str) -> Iterator[str]:
    own = set(normalize_text(lemma).split())
    hyper_words = hypernym.split()
    if hyper_words and hyper_words[-1].lower() not in own:
        yield f"{lemma} {hyper_words[-1]}"
    if len(hyper_words) > 1:
        yield f"{lemma} {hypernym}"
    head = f"{lemma} {hypernym}" if hypernym else lemma
    words = _gloss_words(gloss, own | {w.lower() for w in hyper_words})
    for count in range(1, len(words) + 1):
        yield f"{head} {' '.join(words[:count])}"


def distinct_query_texts(
    lemmas: Sequence[str],
    hypernyms: Sequence[str],
    glosses: Sequence[str],
    frequencies: Sequence[int] | np.ndarray,
) -> list[str]:
    """Return one query text per concept, pairwise distinct after :func:`normalize_text`.

    Args:
        lemmas: each concept's lemma.
        hypernyms: each concept's first hypernym lemma (``""`` for a root).
        glosses: each concept's definition.
        frequencies: each concept's sense frequency (picks which sense keeps the bare lemma).

    Returns:
        The queries, in concept order (see the module docstring for the rules).
    """
    n = len(lemmas)
    if not len(hypernyms) == len(glosses) == len(frequencies) == n:
        raise ValueError("lemmas, hypernyms, glosses and frequencies must have the same length")
    groups: dict[str, list[int]] = {}
    for i, lemma in enumerate(lemmas):
        groups.setdefault(normalize_text(lemma), []).append(i)
    queries = list(lemmas)
    taken = set(groups)
    others: list[int] = []
    for members in groups.values():
        if len(members) > 1:
            primary = max(members, key=lambda i: (int(frequencies[i]), -i))
            others.extend(i for i in members if i != primary)
    for i in sorted(others):
        choice = None
        for candidate in _candidates(lemmas[i], hypernyms[i], glosses[i]):
            key = normalize_text(candidate)
            if len(candidate) <= MAX_QUERY_CHARS and key not in taken:
                choice = candidate
                break
        sense = 2
        while choice is None or normalize_text(choice) in taken:
            choice = f"{lemmas[i]} sense {sense}"
            sense += 1
        taken.add(normalize_text(choice))
        queries[i] = choice
    return queries
