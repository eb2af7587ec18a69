"""WordNet 3.0's noun database, parsed directly from Debian's ``wordnet-base`` (no nltk).

:func:`load_columns` returns every (synset, lemma) noun pair column-wise, through a pickle cache keyed
by the file's path, size and modification time; :func:`sense_counts` reads the sense frequencies of
``cntlist.rev``. The folder is ``$IE_ENV_WORDNET_DIR`` or ``/usr/share/wordnet``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ie_env.errors import SetupError
from ie_env.paths import atomic_path, cache_subdir

WORDNET_ENV_VAR = "IE_ENV_WORDNET_DIR"
DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
_PARSE_FORMAT = 2  # bump when the parsed columns change, to invalidate the parse cache


@dataclass(frozen=True)
class Columns:
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


def parse_data_noun(path: Path) -> Columns:
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
    return Columns(
        lemmas=lemmas,
        offsets=np.asarray(offsets, dtype=np.int64),
        hypernyms=hypernym_lemmas,
        glosses=glosses,
        lexfiles=np.asarray(lexfiles, dtype=np.int16),
        lex_ids=np.asarray(lex_ids, dtype=np.int16),
        synset_count=len(synsets),
    )


def load_columns(folder: Path) -> Columns:
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
            if isinstance(columns, Columns) and len(columns.lemmas) == len(columns.offsets):
                return columns
        except Exception:  # a corrupt parse cache is just re-parsed
            pass
        cache.unlink(missing_ok=True)
    columns = parse_data_noun(path)
    with atomic_path(cache) as tmp, open(tmp, "wb") as handle:
        pickle.dump(columns, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return columns


def sense_counts(folder: Path) -> dict[tuple[str, int, int], int]:
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
