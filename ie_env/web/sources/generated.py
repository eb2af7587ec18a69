"""The ``generated`` site: a few hundred coloured shapes drawn by code, for tests without Debian packages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ie_env.validate import check_int
from ie_env.web.sources.base import (
    SourceItem,
)

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
        check_int(self, "per_class", 1)
        check_int(self, "size", 16, 512)
        check_int(self, "seed")

    def fingerprint(self) -> str:
        """Return a string that changes whenever this source's inputs change."""
        return f"shapes-v1:{self.per_class}:{self.size}:{self.seed}"

    def items(self) -> Iterator[SourceItem]:
        """Yield every image, in a stable order (duplicates already merged into aliases)."""
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
