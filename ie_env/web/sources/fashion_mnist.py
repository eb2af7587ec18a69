"""The ``fashion-mnist`` shop site: Debian ``dataset-fashion-mnist`` product photos, captioned by class."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ie_env.validate import check_choice
from ie_env.web.sources.base import (
    SourceItem,
    require_path,
)
from ie_env.web.sources.idx import read_idx

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

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
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
        check_choice(self, "split", ("train", "test"))

    @property
    def name(self) -> str:
        """Return the source's name (also its corpus part's name)."""
        return "fashion-mnist" if self.split == "train" else "fashion-mnist-test"

    @property
    def site(self) -> str:
        """Return the site name the source's images are served under."""
        return self.name

    def _files(self) -> tuple[Path, Path]:
        prefix = "train" if self.split == "train" else "t10k"
        images = self.root / f"{prefix}-images-idx3-ubyte.gz"
        labels = self.root / f"{prefix}-labels-idx1-ubyte.gz"
        require_path(images, "dataset-fashion-mnist")
        require_path(labels, "dataset-fashion-mnist")
        return images, labels

    def fingerprint(self) -> str:
        """Return a string that changes whenever this source's inputs change."""
        images, labels = self._files()
        return f"{self.split}:{images.stat().st_size}:{labels.stat().st_size}:v2"

    def items(self) -> Iterator[SourceItem]:
        """Yield every image, in a stable order (duplicates already merged into aliases)."""
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
