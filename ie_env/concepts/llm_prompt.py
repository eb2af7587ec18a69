"""The paper's descriptor prompt and the rules that turn a completion into a descriptor.

Internet Explorer (Appendix C.2) asks GPT-J-6B, at temperature 0.9, to continue::

    What are some words that describe the quality of '{concept}'?
    The {concept} is frail.
    The {concept} is red.
    The {concept} is humongous.
    The {concept} is tall.
    The {concept} is

The completion is cut at the first comma, period, underscore or newline, and a degenerate result is
sampled again. A chat endpoint gets the same text as the user message, after a system message that
asks for the continuation only; a chat model that repeats the last line ("The owl is wise.") has the
repeated ``The {concept} is`` dropped before the cut. Degenerate (see :func:`degenerate_reason`): empty,
no letters, characters outside letters, digits, spaces, ``-``, ``'`` and ``&``, longer than the word or
character limit, only filler words ("a", "very"), or any word of the concept itself ("a retriever" for
"labrador retriever").
"""

from __future__ import annotations

import re

from ie_env.concepts.queries import normalize_text

PROMPT_VERSION = "ie-c2-v1"  # part of the cache key: bump when the prompt or the rules change
SYSTEM_MESSAGE = (
    "Continue the user's text. Reply with the words that complete its last line and nothing else."
)
FEW_SHOT_ADJECTIVES = ("frail", "red", "humongous", "tall")
CUT_CHARACTERS = ",._\n\r"
_CUT_RE = re.compile(r"[,._\n\r]")
_STRIP = " \t\"'`*“”‘’:;"
FILLER_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "very",
        "quite",
        "really",
        "so",
        "too",
        "is",
        "are",
        "was",
        "be",
        "being",
        "it",
        "its",
        "this",
        "that",
        "of",
        "and",
        "or",
        "to",
        "in",
        "on",
        "with",
        "for",
        "as",
        "at",
        "by",
        "not",
        "also",
        "more",
        "most",
        "much",
    ]
)
_EXTRA_CHARS = frozenset(" -'&")


def few_shot_prompt(concept: str) -> str:
    """The paper's few-shot prompt for ``concept`` (ending in ``"The {concept} is"``, no space)."""
    lines = [f"What are some words that describe the quality of '{concept}'?"]
    lines += [f"The {concept} is {adjective}." for adjective in FEW_SHOT_ADJECTIVES]
    lines.append(f"The {concept} is")
    return "\n".join(lines)


def chat_messages(concept: str) -> list[dict[str, str]]:
    """The ``messages`` of a chat/completions request for ``concept``."""
    return [
        {"role": "system", "content": SYSTEM_MESSAGE},
        {"role": "user", "content": few_shot_prompt(concept)},
    ]


def truncate(completion: str, concept: str = "") -> str:
    """Cut a completion into a descriptor candidate.

    Leading whitespace and a repeated ``"The {concept} is"`` are dropped, then the text is cut at
    the first ``,``, ``.``, ``_`` or newline, and surrounding spaces and quotes are stripped.
    """
    text = completion.lstrip()
    if concept.split():
        words = r"[ \t]+".join(re.escape(word) for word in concept.split())
        echo = re.match(rf"the[ \t]+{words}[ \t]+is\b", text, re.IGNORECASE)
        if echo:
            text = text[echo.end() :].lstrip(" \t")
    text = _CUT_RE.split(text, maxsplit=1)[0]
    return " ".join(text.strip(_STRIP).split())


def degenerate_reason(descriptor: str, concept: str, max_words: int = 4, max_chars: int = 40) -> str | None:
    """Why a truncated completion cannot be a descriptor, or None when it can (module docstring)."""
    if not descriptor:
        return "empty"
    if not any(char.isalpha() for char in descriptor):
        return "no_letters"
    if any(not (char.isalnum() or char in _EXTRA_CHARS) for char in descriptor):
        return "bad_characters"
    words = normalize_text(descriptor).split()
    if len(words) > max_words or len(descriptor) > max_chars:
        return "too_long"
    content = [word for word in words if word not in FILLER_WORDS]
    if not content:
        return "no_content"
    concept_words = set(normalize_text(concept.replace("_", " ")).split()) - FILLER_WORDS
    if concept_words & {word.strip("-'") for word in content}:
        return "repeats_concept"
    return None


def descriptor_from(
    completion: str, concept: str, max_words: int = 4, max_chars: int = 40
) -> tuple[str | None, str | None]:
    """Return ``(descriptor, None)`` for a usable completion, else ``(None, reason)``."""
    candidate = truncate(completion, concept)
    reason = degenerate_reason(candidate, concept, max_words, max_chars)
    return (None, reason) if reason else (candidate, None)
