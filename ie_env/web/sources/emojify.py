"""The ``emojify`` site: Debian ``libjs-emojify`` keyword-named emoji PNGs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ie_env.web.sources.base import (
    SourceItem,
    dpkg_version,
    group_files,
    require_path,
    tree_fingerprint,
    words_from_name,
)

EMOJIFY_DIR = Path("/usr/share/javascript/emojify.js/images/emoji")


@dataclass(frozen=True)
class EmojifySource:
    """Debian libjs-emojify: keyword-named emoji PNGs (Expat licence)."""

    root: Path = EMOJIFY_DIR
    name: str = "emojify"
    site: str = "emojify"

    def fingerprint(self) -> str:
        """Return a string that changes whenever this source's inputs change."""
        require_path(self.root, "libjs-emojify")
        return f"{dpkg_version('libjs-emojify')}:{tree_fingerprint(self.root)}"

    def items(self) -> Iterator[SourceItem]:
        """Yield every image, in a stable order (duplicates already merged into aliases)."""
        require_path(self.root, "libjs-emojify")
        paths = sorted(self.root.glob("*.png"))
        for primary, aliases in group_files(self.root, paths):
            words = words_from_name(primary.stem) or primary.stem
            alias_words = [words_from_name(a.stem) for a in aliases]
            tags = tuple(dict.fromkeys([words, *[w for w in alias_words if w]]))
            caption = f"{words}. {', '.join(tags)}. emoji icon"
            yield SourceItem(
                key=primary.name,
                category="emojify",
                title=words,
                caption=caption,
                tags=tags,
                license="mit",
                creator="emojify.js",
                original_path=str(primary),
                aliases=tuple(a.name for a in aliases),
                payload=("file", str(primary)),
            )
