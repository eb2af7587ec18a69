"""A folder tree of the user's images as a site: sub-folders are categories, sidecars are captions.

A caption sidecar sits beside an image: ``x.json`` (title/caption/description/tags/license/creator) or
``x.txt`` (the caption) beside ``x.png``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ie_env.web.sources.base import (
    SourceItem,
    group_files,
    relative_to,
    tree_fingerprint,
    words_from_name,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")


def _read_sidecar(path: Path) -> dict:
    """Caption sidecar beside an image: ``x.json`` (title/caption/description/tags/license/creator) or ``x.txt``."""
    meta: dict = {}
    json_path, txt_path = path.with_suffix(".json"), path.with_suffix(".txt")
    if json_path.exists():
        try:
            loaded = json.loads(json_path.read_text("utf-8"))
            if isinstance(loaded, dict):
                meta = loaded
        except (OSError, ValueError):
            meta = {}
    elif txt_path.exists():
        try:
            meta = {"caption": " ".join(txt_path.read_text("utf-8", errors="replace").split())}
        except OSError:
            meta = {}
    return meta


@dataclass(frozen=True)
class FolderSource:
    """Any folder tree of images; sub-folder paths are categories; optional ``.txt``/``.json`` caption sidecars."""

    root: Path
    site: str = ""

    @property
    def name(self) -> str:
        """Return the source's name (also its corpus part's name)."""
        return self.site or f"folder-{Path(self.root).name}"

    def fingerprint(self) -> str:
        """Return a string that changes whenever this source's inputs change."""
        if not Path(self.root).is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        return f"{Path(self.root).resolve()}:{tree_fingerprint(Path(self.root))}"

    def items(self) -> Iterator[SourceItem]:
        """Yield every image, in a stable order (duplicates already merged into aliases)."""
        root = Path(self.root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist")
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        site = self.name
        root_real = root.resolve()
        for primary, aliases in group_files(root, paths):
            rel = Path(relative_to(primary, root_real))
            folder = rel.parent.as_posix()
            category = site if folder in ("", ".") else f"{site}/{folder}"
            meta = _read_sidecar(primary)
            name_words = words_from_name(rel.stem) or rel.stem
            tags = (
                tuple(str(t) for t in meta.get("tags", []) if str(t).strip())
                if isinstance(meta.get("tags"), list)
                else ()
            )
            title = str(meta.get("title") or name_words)
            folder_words = "" if folder in ("", ".") else folder.replace("/", " ").replace("_", " ")
            caption = str(
                meta.get("caption")
                or ". ".join(x for x in (title, name_words, ", ".join(tags), folder_words) if x)
            )
            alias_rels = tuple(relative_to(a, root) for a in aliases)
            yield SourceItem(
                key=rel.as_posix(),
                category=category,
                title=title,
                caption=caption,
                tags=tags,
                license=str(meta.get("license", "")),
                creator=str(meta.get("creator", "")),
                original_path=str(primary),
                aliases=alias_rels,
                alias_categories=tuple(
                    sorted(
                        {
                            site
                            if Path(a).parent.as_posix() in ("", ".")
                            else f"{site}/{Path(a).parent.as_posix()}"
                            for a in alias_rels
                        }
                        - {category}
                    )
                ),
                payload=("file", str(primary)),
            )
