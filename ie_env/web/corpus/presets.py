"""Corpus presets (named lists of sites), the source of each site, and opening a corpus by name."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ie_env.paths import cache_subdir
from ie_env.web import sources as src
from ie_env.web.corpus.build import BuildConfig, build_part, part_dir, slug
from ie_env.web.corpus.reader import Corpus

CORPUS_PRESETS: dict[str, tuple[str, ...]] = {
    "web": ("openclipart", "gemojione", "emojify", "noto-emoji", "fashion-mnist"),
    "clipart": ("openclipart",),
    "emoji": ("gemojione", "emojify", "noto-emoji"),
    "generated": ("generated",),
    "fashion-mnist-test": ("fashion-mnist-test",),
}


def make_source(name: str) -> src.Source:
    """The source object for a site name (see :data:`CORPUS_PRESETS`)."""
    factories = {
        "openclipart": src.OpenClipartSource,
        "gemojione": src.GemojioneSource,
        "emojify": src.EmojifySource,
        "noto-emoji": src.NotoEmojiSource,
        "fashion-mnist": lambda: src.FashionMnistSource("train"),
        "fashion-mnist-test": lambda: src.FashionMnistSource("test"),
        "generated": src.GeneratedSource,
    }
    if name not in factories:
        raise ValueError(f"unknown source {name!r}; known: {', '.join(sorted(factories))}")
    return factories[name]()


def corpus_sources(name: str | os.PathLike) -> list[src.Source]:
    """The sources of a corpus preset name, or a folder source for a path."""
    if isinstance(name, os.PathLike) or (
        isinstance(name, str) and name not in CORPUS_PRESETS and os.sep in name
    ):
        return [src.FolderSource(Path(name))]
    if name in CORPUS_PRESETS:
        return [make_source(site) for site in CORPUS_PRESETS[name]]
    if Path(name).is_dir():
        return [src.FolderSource(Path(name))]
    raise ValueError(f"unknown corpus {name!r}; presets: {', '.join(CORPUS_PRESETS)}, or a folder of images")


def open_corpus(
    name: str | os.PathLike = "web",
    *,
    config: BuildConfig | None = None,
    root: Path | None = None,
    build: bool = True,
    progress: bool = True,
    sources: Sequence[src.Source] | None = None,
) -> Corpus:
    """Open a corpus, building missing parts first (unless ``build`` is False).

    Args:
        name: a preset (``web``, ``clipart``, ``emoji``, ``generated``) or a folder of images.
        config: how images are bounded and encoded.
        root: where parts live (default ``cache_subdir('web')``).
        build: build missing parts; if False, a missing part raises FileNotFoundError.
        progress: draw progress bars.
        sources: explicit sources (overrides the preset's); ``name`` then only labels the corpus.

    Raises:
        SetupError: a Debian package a source needs is missing.
    """
    config = config or BuildConfig()
    root = Path(root) if root is not None else cache_subdir("web")
    chosen = list(sources) if sources is not None else corpus_sources(name)
    folders = []
    for source in chosen:
        folder = part_dir(source, config, root)
        if not (folder / "build.json").exists():
            if not build:
                raise FileNotFoundError(f"corpus part {source.name!r} is not built; run `ie-web build`")
            folder = build_part(source, config, root, progress)
        folders.append(folder)
    label = Path(name).name if isinstance(name, os.PathLike) or os.sep in str(name) else str(name)
    return Corpus(slug(label), folders, root)
