"""The ``openclipart`` site: Debian ``openclipart-png`` images, captions from ``openclipart-svg``.

Each PNG's caption joins the Dublin Core title and tags of the SVG it was rendered from, the words of
its file name and its folder path (the category).
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ie_env.web.sources.base import (
    SourceItem,
    dpkg_version,
    group_files,
    relative_to,
    require_path,
    tree_fingerprint,
    words_from_name,
)

OPENCLIPART_PNG = Path("/usr/share/openclipart/png")
OPENCLIPART_SVG = Path("/usr/share/openclipart/svg")

_WORK_RE = re.compile(r"<cc:Work\b.*?</cc:Work>", re.S)
_TITLE_RE = re.compile(r"<dc:title>(.*?)</dc:title>", re.S)
_DESC_RE = re.compile(r"<dc:description>(.*?)</dc:description>", re.S)
_SUBJECT_RE = re.compile(r"<dc:subject>(.*?)</dc:subject>", re.S)
_LI_RE = re.compile(r"<rdf:li>(.*?)</rdf:li>", re.S)
_CREATOR_RE = re.compile(r"<dc:creator>.*?<dc:title>(.*?)</dc:title>", re.S)
_RIGHTS_RE = re.compile(r"<dc:rights>.*?<dc:title>(.*?)</dc:title>", re.S)


def _clean(text: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def parse_svg_metadata(text: str) -> dict:
    """Extract Dublin Core title, description, tags, creator and rights from an SVG's RDF metadata."""
    work_match = _WORK_RE.search(text)
    work = work_match.group(0) if work_match else ""
    # The work's own title comes before dc:publisher/creator blocks that also hold dc:title.
    head = re.split(r"<dc:(?:publisher|creator|rights)>", work, maxsplit=1)[0]
    title = _TITLE_RE.search(head)
    desc = _DESC_RE.search(work)
    subject = _SUBJECT_RE.search(work)
    tags: list[str] = []
    if subject:
        for raw in _LI_RE.findall(subject.group(1)):
            tag = _clean(raw).lower()
            if tag and tag not in tags:
                tags.append(tag)
    creator = _CREATOR_RE.search(work)
    rights = _RIGHTS_RE.search(work)
    return {
        "title": _clean(title.group(1)) if title else "",
        "description": _clean(desc.group(1)) if desc else "",
        "tags": tags,
        "creator": _clean(creator.group(1)) if creator else "",
        "rights": _clean(rights.group(1)) if rights else "",
    }


@dataclass(frozen=True)
class OpenClipartSource:
    """Debian openclipart-png images with openclipart-svg captions."""

    png_root: Path = OPENCLIPART_PNG
    svg_root: Path = OPENCLIPART_SVG
    name: str = "openclipart"
    site: str = "openclipart"

    def fingerprint(self) -> str:
        """Return a string that changes whenever this source's inputs change."""
        require_path(self.png_root, "openclipart-png")
        require_path(self.svg_root, "openclipart-svg")
        if self.png_root == OPENCLIPART_PNG:
            return f"deb:{dpkg_version('openclipart-png')}:{dpkg_version('openclipart-svg')}"
        return f"tree:{tree_fingerprint(self.png_root)}:{tree_fingerprint(self.svg_root)}"

    def items(self) -> Iterator[SourceItem]:
        """Yield every image, in a stable order (duplicates already merged into aliases)."""
        require_path(self.png_root, "openclipart-png")
        paths = sorted(p for p in self.png_root.rglob("*.png"))
        for primary, aliases in group_files(self.png_root, paths):
            rel_path = Path(relative_to(primary, self.png_root.resolve()))
            folder = rel_path.parent.as_posix()
            stem = rel_path.stem
            meta = {"title": "", "description": "", "tags": [], "creator": "", "rights": ""}
            svg = self.svg_root / rel_path.with_suffix(".svg")
            with contextlib.suppress(OSError):
                meta = parse_svg_metadata(svg.read_text("utf-8", errors="replace"))
            name_words = words_from_name(stem)
            title = meta["title"] or name_words
            tags = tuple(meta["tags"])
            folder_words = folder.replace("/", " ").replace("_", " ")
            caption = ". ".join(x for x in (title, name_words, ", ".join(tags), folder_words) if x)
            alias_rels = tuple(relative_to(a, self.png_root) for a in aliases)
            alias_cats = tuple(
                sorted(
                    {f"openclipart/{Path(a).parent.as_posix()}" for a in alias_rels}
                    - {f"openclipart/{folder}"}
                )
            )
            yield SourceItem(
                key=rel_path.as_posix(),
                category=f"openclipart/{folder}",
                title=title,
                caption=caption,
                tags=tags,
                license="cc0",
                creator=meta["creator"],
                original_path=str(self.png_root / rel_path),
                aliases=alias_rels,
                alias_categories=alias_cats,
                payload=("file", str(primary)),
            )
