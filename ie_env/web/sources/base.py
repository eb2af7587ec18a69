"""Where the offline web's images come from: one ``Source`` per "site".

A source lists :class:`SourceItem` records (metadata + how to get the pixels) and a fingerprint of its
inputs, so a built part can be reused until the inputs change. Sources:

* ``openclipart``: Debian ``openclipart-png`` images, captions from ``openclipart-svg`` Dublin Core metadata;
* ``gemojione``: Debian ``ruby-gemojione`` PNGs with names, categories and keywords;
* ``emojify``: Debian ``libjs-emojify`` keyword-named PNGs;
* ``noto-emoji``: Debian ``fonts-noto-color-emoji`` rendered per Unicode name;
* ``fashion-mnist`` / ``fashion-mnist-test``: Debian ``dataset-fashion-mnist`` product photos, captioned by class;
* ``folder``: any folder tree of images with optional caption sidecars (``x.txt`` or ``x.json`` beside ``x.png``);
* ``generated``: a few hundred shapes drawn by code, for tests without Debian packages.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import html
import json
import os
import re
import struct
import subprocess
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ie_env.errors import SetupError

OPENCLIPART_PNG = Path("/usr/share/openclipart/png")
OPENCLIPART_SVG = Path("/usr/share/openclipart/svg")
GEMOJIONE_ROOT = Path("/usr/share/rubygems-integration/all/gems")
EMOJIFY_DIR = Path("/usr/share/javascript/emojify.js/images/emoji")
NOTO_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FASHION_WORDS = {
    "T-shirt/top": ("t-shirt", "top", "tee"),
    "Trouser": ("trousers", "pants", "slacks"),
    "Pullover": ("pullover", "sweater", "jumper"),
    "Dress": ("dress", "gown", "frock"),
    "Coat": ("coat", "jacket", "overcoat"),
    "Sandal": ("sandal", "sandals", "flip-flops"),
    "Shirt": ("shirt", "blouse", "button-down"),
    "Sneaker": ("sneaker", "trainers", "running shoe"),
    "Bag": ("bag", "handbag", "purse"),
    "Ankle boot": ("ankle boot", "boots", "bootie"),
}


@dataclass(frozen=True)
class SourceItem:
    """One image a source offers, before it is decoded.

    Attributes:
        key: stable identity within the source (used to order items and build ids).
        category: ground-truth category path, prefixed by the site (e.g. ``openclipart/animals/birds``).
        title: human title.
        caption: the text whose embedding the search engine ranks.
        tags: keywords.
        license: licence code (Openverse style where one exists, e.g. ``cc0``, ``by-sa``).
        creator: author, if known.
        original_path: where the pixels came from (a file, or ``file#index``).
        aliases: other paths holding the same image (symlinks, byte-identical copies).
        alias_categories: categories of those aliases.
        payload: what :func:`render_item` needs: ``("file", path)``, ``("array", uint8 array)``,
            ``("emoji", codepoint string)`` or ``("draw", params)``.
    """

    key: str
    category: str
    title: str
    caption: str
    tags: tuple[str, ...] = ()
    license: str = ""
    creator: str = ""
    original_path: str = ""
    aliases: tuple[str, ...] = ()
    alias_categories: tuple[str, ...] = ()
    payload: tuple = field(default=(), repr=False, compare=False)


class Source(Protocol):
    """A site of the offline web."""

    name: str
    site: str

    def fingerprint(self) -> str:
        """A string that changes whenever the source's inputs change."""
        ...

    def items(self) -> Iterator[SourceItem]:
        """Every image, in a stable order (duplicates already merged into aliases)."""
        ...


# --------------------------------------------------------------------------- helpers


def words_from_name(stem: str) -> str:
    """``owl_on_branch_ganson_01`` -> ``owl on branch ganson``."""
    text = re.sub(r"[_\-.+]+", " ", stem)
    text = re.sub(r"\b\d+\b", " ", text)
    return " ".join(text.split())


def _dpkg_version(package: str) -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, timeout=20
        )
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _tree_fingerprint(root: Path) -> str:
    """Hash of (relative path, size, mtime) of every file below ``root``."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                stat = path.lstat()
            except OSError:
                continue
            rel = path.relative_to(root).as_posix()
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:20]


def _require(path: Path, package: str) -> None:
    if not path.exists():
        raise SetupError(f"Debian package {package!r} is missing ({path} not found)")


def _group_files(root: Path, paths: list[Path]) -> list[tuple[Path, list[Path]]]:
    """Merge symlinks and byte-identical files: returns (primary real file, [alias paths]) groups.

    The primary is the lexicographically first *regular* path of the group (the symlink target when
    only symlinks point at it); aliases are the other paths, relative to ``root`` when possible.
    """
    by_real: dict[Path, list[Path]] = {}
    for path in paths:
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if not real.is_file():
            continue
        by_real.setdefault(real, []).append(path)
    by_hash: dict[str, list[Path]] = {}
    for real in sorted(by_real):
        digest = hashlib.sha256(real.read_bytes()).hexdigest()
        by_hash.setdefault(digest, []).append(real)
    groups = []
    for reals in by_hash.values():
        primary = sorted(reals)[0]
        members = sorted({p for real in reals for p in by_real[real]} | set(reals))
        aliases = [p for p in members if p != primary]
        groups.append((primary, aliases))
    groups.sort(key=lambda g: g[0])
    return groups


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


# --------------------------------------------------------------------------- openclipart

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
        _require(self.png_root, "openclipart-png")
        _require(self.svg_root, "openclipart-svg")
        if self.png_root == OPENCLIPART_PNG:
            return f"deb:{_dpkg_version('openclipart-png')}:{_dpkg_version('openclipart-svg')}"
        return f"tree:{_tree_fingerprint(self.png_root)}:{_tree_fingerprint(self.svg_root)}"

    def items(self) -> Iterator[SourceItem]:
        _require(self.png_root, "openclipart-png")
        paths = sorted(p for p in self.png_root.rglob("*.png"))
        for primary, aliases in _group_files(self.png_root, paths):
            rel_path = Path(_rel(primary, self.png_root.resolve()))
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
            alias_rels = tuple(_rel(a, self.png_root) for a in aliases)
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


# --------------------------------------------------------------------------- emoji sets


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
        root = self._root()
        return f"{root.name}:{_dpkg_version('ruby-gemojione')}"

    def items(self) -> Iterator[SourceItem]:
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


@dataclass(frozen=True)
class EmojifySource:
    """Debian libjs-emojify: keyword-named emoji PNGs (Expat licence)."""

    root: Path = EMOJIFY_DIR
    name: str = "emojify"
    site: str = "emojify"

    def fingerprint(self) -> str:
        _require(self.root, "libjs-emojify")
        return f"{_dpkg_version('libjs-emojify')}:{_tree_fingerprint(self.root)}"

    def items(self) -> Iterator[SourceItem]:
        _require(self.root, "libjs-emojify")
        paths = sorted(self.root.glob("*.png"))
        for primary, aliases in _group_files(self.root, paths):
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


def font_codepoints(path: Path) -> list[int]:
    """Codepoints mapped by a TrueType font's cmap (formats 4 and 12), read with ``struct``."""
    data = path.read_bytes()
    num_tables = struct.unpack_from(">H", data, 4)[0]
    cmap_offset = None
    for i in range(num_tables):
        tag, _, offset, _ = struct.unpack_from(">4sIII", data, 12 + 16 * i)
        if tag == b"cmap":
            cmap_offset = offset
    if cmap_offset is None:
        return []
    n_sub = struct.unpack_from(">H", data, cmap_offset + 2)[0]
    codes: set[int] = set()
    for i in range(n_sub):
        _, _, sub_off = struct.unpack_from(">HHI", data, cmap_offset + 4 + 8 * i)
        base = cmap_offset + sub_off
        fmt = struct.unpack_from(">H", data, base)[0]
        if fmt == 12:
            n_groups = struct.unpack_from(">I", data, base + 12)[0]
            for g in range(n_groups):
                start, end, _ = struct.unpack_from(">III", data, base + 16 + 12 * g)
                codes.update(range(start, end + 1))
        elif fmt == 4:
            seg_x2 = struct.unpack_from(">H", data, base + 6)[0]
            ends = struct.unpack_from(f">{seg_x2 // 2}H", data, base + 14)
            starts = struct.unpack_from(f">{seg_x2 // 2}H", data, base + 16 + seg_x2)
            for start, end in zip(starts, ends, strict=True):
                if start != 0xFFFF:
                    codes.update(range(start, end + 1))
    return sorted(codes)


@dataclass(frozen=True)
class NotoEmojiSource:
    """Debian fonts-noto-color-emoji, one image per named codepoint above U+2000 (Apache-2.0 images)."""

    font: Path = NOTO_FONT
    name: str = "noto-emoji"
    site: str = "noto-emoji"

    def fingerprint(self) -> str:
        _require(self.font, "fonts-noto-color-emoji")
        stat = self.font.stat()
        return f"{_dpkg_version('fonts-noto-color-emoji')}:{stat.st_size}"

    def items(self) -> Iterator[SourceItem]:
        _require(self.font, "fonts-noto-color-emoji")
        for code in font_codepoints(self.font):
            if code < 0x2000:
                continue
            name = unicodedata.name(chr(code), "")
            if not name:
                continue
            words = name.lower()
            yield SourceItem(
                key=f"U+{code:05X}",
                category="noto-emoji",
                title=words,
                caption=f"{words}. emoji",
                tags=tuple(w for w in words.split() if len(w) > 2),
                license="apache-2.0",
                creator="Google Noto",
                original_path=f"{self.font}#U+{code:05X}",
                payload=("emoji", str(self.font), code),
            )


# --------------------------------------------------------------------------- Fashion-MNIST


def read_idx(path: Path, offset: int) -> np.ndarray:
    """Read a gzipped IDX file (offset 16 for images, 8 for labels)."""
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), np.uint8, offset=offset)


def fashion_captions(label: int, variant: int) -> tuple[str, str, tuple[str, ...]]:
    """(title, caption, tags) of a Fashion-MNIST product photo; 3 caption variants per class."""
    cls = FASHION_CLASSES[label]
    words = _FASHION_WORDS[cls]
    title = cls.replace("/", " / ")
    templates = (
        "{w0}. product photo. {w1}, {w2}. clothing shop catalogue",
        "{w1} ({w0}). fashion store item, apparel. studio shot of a {w0}",
        "{w2}. {w0} for sale. online fashion shop, garment product image",
    )
    caption = templates[variant % len(templates)].format(w0=words[0], w1=words[1], w2=words[2])
    tags = (*words, "fashion", "product")
    return title, caption, tags


@dataclass(frozen=True)
class FashionMnistSource:
    """Debian dataset-fashion-mnist as a "shop" site: train split (60,000) or test split (10,000)."""

    split: str = "train"
    root: Path = FASHION_MNIST_DIR

    def __post_init__(self) -> None:
        if self.split not in ("train", "test"):
            raise ValueError(f"FashionMnistSource.split must be 'train' or 'test', got {self.split!r}")

    @property
    def name(self) -> str:
        return "fashion-mnist" if self.split == "train" else "fashion-mnist-test"

    @property
    def site(self) -> str:
        return self.name

    def _files(self) -> tuple[Path, Path]:
        prefix = "train" if self.split == "train" else "t10k"
        images = self.root / f"{prefix}-images-idx3-ubyte.gz"
        labels = self.root / f"{prefix}-labels-idx1-ubyte.gz"
        _require(images, "dataset-fashion-mnist")
        _require(labels, "dataset-fashion-mnist")
        return images, labels

    def fingerprint(self) -> str:
        images, labels = self._files()
        return f"{self.split}:{images.stat().st_size}:{labels.stat().st_size}:v2"

    def items(self) -> Iterator[SourceItem]:
        images_path, labels_path = self._files()
        images = read_idx(images_path, 16).reshape(-1, 28, 28)
        labels = read_idx(labels_path, 8)
        for i in range(len(labels)):
            label = int(labels[i])
            title, caption, tags = fashion_captions(label, i % 3)
            slug = re.sub(r"[^a-z0-9]+", "-", FASHION_CLASSES[label].lower()).strip("-")
            yield SourceItem(
                key=f"{i:05d}",
                category=f"fashion-mnist/{slug}",
                title=title,
                caption=caption,
                tags=tags,
                license="mit",
                creator="Zalando SE",
                original_path=f"{images_path}#{i}",
                payload=("array", images[i]),
            )


# --------------------------------------------------------------------------- user folders


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
        return self.site or f"folder-{Path(self.root).name}"

    def fingerprint(self) -> str:
        if not Path(self.root).is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        return f"{Path(self.root).resolve()}:{_tree_fingerprint(Path(self.root))}"

    def items(self) -> Iterator[SourceItem]:
        root = Path(self.root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist")
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        site = self.name
        root_real = root.resolve()
        for primary, aliases in _group_files(root, paths):
            rel = Path(_rel(primary, root_real))
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
            alias_rels = tuple(_rel(a, root) for a in aliases)
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


# --------------------------------------------------------------------------- generated (tests)

GENERATED_SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "stripes", "dots")
GENERATED_COLORS = {
    "red": (220, 30, 40),
    "green": (30, 160, 60),
    "blue": (30, 70, 210),
    "yellow": (235, 200, 20),
    "purple": (130, 40, 170),
    "orange": (245, 130, 20),
    "black": (20, 20, 20),
    "pink": (240, 110, 170),
}
_SHAPE_WORDS = {
    "circle": ("round disc", "circular dot"),
    "square": ("box", "rectangle block"),
    "triangle": ("pyramid", "three-sided wedge"),
    "star": ("five-pointed star", "starburst"),
    "cross": ("plus sign", "x mark"),
    "ring": ("hollow circle", "donut ring"),
    "stripes": ("striped pattern", "parallel lines"),
    "dots": ("polka dots", "dotted pattern"),
}
_STYLES = ("simple", "hand-drawn", "flat")


@dataclass(frozen=True)
class GeneratedSource:
    """A few hundred coloured shapes drawn by code, with captions and categories (no Debian packages).

    Attributes:
        per_class: images per shape category.
        size: side of the drawn images in pixels.
        seed: seed of the drawing jitter.
    """

    per_class: int = 40
    size: int = 64
    seed: int = 0
    name: str = "generated"
    site: str = "generated"

    def __post_init__(self) -> None:
        if self.per_class < 1:
            raise ValueError(f"GeneratedSource.per_class must be >= 1, got {self.per_class}")
        if not 16 <= self.size <= 512:
            raise ValueError(f"GeneratedSource.size must be in [16, 512], got {self.size}")

    def fingerprint(self) -> str:
        return f"shapes-v1:{self.per_class}:{self.size}:{self.seed}"

    def items(self) -> Iterator[SourceItem]:
        rng = np.random.default_rng(self.seed)
        colors = list(GENERATED_COLORS)
        for shape in GENERATED_SHAPES:
            for i in range(self.per_class):
                color = colors[int(rng.integers(len(colors)))]
                style = _STYLES[int(rng.integers(len(_STYLES)))]
                params = (
                    shape,
                    GENERATED_COLORS[color],
                    self.size,
                    float(rng.uniform(0.55, 0.85)),
                    float(rng.uniform(-0.08, 0.08)),
                    float(rng.uniform(-0.08, 0.08)),
                    float(rng.uniform(0, 360)),
                )
                synonyms = _SHAPE_WORDS[shape]
                title = f"{color} {shape}"
                caption = f"{style} {color} {shape}. {synonyms[0]}, {synonyms[1]}. geometric shape"
                yield SourceItem(
                    key=f"{shape}/{i:04d}",
                    category=f"generated/{shape}",
                    title=title,
                    caption=caption,
                    tags=(shape, color, style, *synonyms),
                    license="cc0",
                    creator="ie_env",
                    original_path=f"generated:{shape}/{i:04d}",
                    payload=("draw", params),
                )


def draw_shape(
    shape: str, color: tuple[int, int, int], size: int, scale: float, dx: float, dy: float, angle: float
):
    """Draw one generated shape on a white RGB canvas."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    cx, cy = size * (0.5 + dx), size * (0.5 + dy)
    r = size * scale / 2
    box = (cx - r, cy - r, cx + r, cy + r)
    theta = np.deg2rad(angle)
    if shape == "circle":
        draw.ellipse(box, fill=color)
    elif shape == "ring":
        draw.ellipse(box, outline=color, width=max(2, size // 10))
    elif shape in ("square", "triangle", "star", "cross"):
        if shape == "square":
            radii, n = [r * 1.2] * 4, 4
        elif shape == "triangle":
            radii, n = [r * 1.1] * 3, 3
        elif shape == "star":
            radii, n = [r * 1.1, r * 0.45] * 5, 10
        else:
            t = 0.35
            pts = [
                (t, 1),
                (t, t),
                (1, t),
                (1, -t),
                (t, -t),
                (t, -1),
                (-t, -1),
                (-t, -t),
                (-1, -t),
                (-1, t),
                (-t, t),
                (-t, 1),
            ]
            poly = []
            for px, py in pts:
                x, y = px * r, py * r
                poly.append(
                    (cx + x * np.cos(theta) - y * np.sin(theta), cy + x * np.sin(theta) + y * np.cos(theta))
                )
            draw.polygon(poly, fill=color)
            return image
        poly = [
            (
                cx + radii[k] * np.cos(theta + 2 * np.pi * k / n),
                cy + radii[k] * np.sin(theta + 2 * np.pi * k / n),
            )
            for k in range(n)
        ]
        draw.polygon(poly, fill=color)
    elif shape == "stripes":
        step = max(4, size // 8)
        for k in range(-size, 2 * size, step * 2):
            draw.line([(k, 0), (k + size * np.cos(theta), size)], fill=color, width=step)
    elif shape == "dots":
        step = max(6, size // 5)
        for x in range(step // 2, size, step):
            for y in range(step // 2, size, step):
                d = step * 0.3
                draw.ellipse((x - d, y - d, x + d, y + d), fill=color)
    else:
        raise ValueError(f"unknown generated shape {shape!r}")
    return image


# --------------------------------------------------------------------------- rendering


def render_emoji(font_path: str, code: int) -> Image.Image | None:
    """Render one colour emoji (CBDT bitmap font at its native 109 px) as RGBA, cropped to its ink."""
    font = _emoji_font(font_path)
    canvas = Image.new("RGBA", (160, 160), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((10, 10), chr(code), font=font, embedded_color=True)
    bbox = canvas.getbbox()
    return canvas.crop(bbox) if bbox else None


_FONTS: dict[str, ImageFont.FreeTypeFont] = {}


def _emoji_font(path: str) -> ImageFont.FreeTypeFont:
    if path not in _FONTS:
        _FONTS[path] = ImageFont.truetype(path, 109)
    return _FONTS[path]


def source_image(payload: tuple) -> Image.Image | None:
    """Turn an item's payload into a PIL image (not yet converted); None when there is nothing to draw."""
    kind = payload[0]
    if kind == "file":
        return Image.open(payload[1])
    if kind == "array":
        return Image.fromarray(np.asarray(payload[1], dtype=np.uint8))
    if kind == "emoji":
        return render_emoji(payload[1], payload[2])
    if kind == "draw":
        return draw_shape(*payload[1])
    raise ValueError(f"unknown payload kind {kind!r}")
