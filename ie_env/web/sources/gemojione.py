"""The ``gemojione`` site: Debian ``ruby-gemojione`` EmojiOne PNGs with names, categories and keywords."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ie_env.errors import SetupError
from ie_env.web.sources.base import (
    SourceItem,
    dpkg_version,
    words_from_name,
)

GEMOJIONE_ROOT = Path("/usr/share/rubygems-integration/all/gems")


def _find_gemojione() -> Path | None:
    if not GEMOJIONE_ROOT.exists():
        return None
    found = sorted(GEMOJIONE_ROOT.glob("gemojione-*/config/index.json"))
    return found[-1].parent.parent if found else None


@dataclass(frozen=True)
class GemojioneSource:
    """Debian ruby-gemojione: EmojiOne 2 PNGs with names, categories and keywords (CC-BY-SA-4.0)."""

    root: Path | None = None
    name: str = "gemojione"
    site: str = "gemojione"

    def _root(self) -> Path:
        root = self.root or _find_gemojione()
        if root is None or not (root / "config" / "index.json").exists():
            raise SetupError("Debian package 'ruby-gemojione' is missing")
        return root

    def fingerprint(self) -> str:
        """Return a string that changes whenever this source's inputs change."""
        root = self._root()
        return f"{root.name}:{dpkg_version('ruby-gemojione')}"

    def items(self) -> Iterator[SourceItem]:
        """Yield every image, in a stable order (duplicates already merged into aliases)."""
        root = self._root()
        index = json.loads((root / "config" / "index.json").read_text("utf-8"))
        png_dir = root / "assets" / "png"
        seen: set[str] = set()
        for key in sorted(index):
            entry = index[key]
            category = entry.get("category") or "misc"
            if category == "modifier":
                continue
            png = png_dir / f"{entry.get('unicode', '')}.png"
            if not png.exists() or entry["unicode"] in seen:
                continue
            seen.add(entry["unicode"])
            name = str(entry.get("name", key))
            keywords = tuple(dict.fromkeys(str(k).lower() for k in entry.get("keywords", []) if k))
            short = words_from_name(str(entry.get("shortname", key)).strip(":"))
            caption = ". ".join(x for x in (name, short, ", ".join(keywords), f"emoji {category}") if x)
            yield SourceItem(
                key=entry["unicode"],
                category=f"gemojione/{category}",
                title=name,
                caption=caption,
                tags=keywords,
                license="by-sa",
                creator="EmojiOne",
                original_path=str(png),
                payload=("file", str(png)),
            )
