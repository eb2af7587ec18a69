"""The named target sets and how a target category is split.

Presets: ``ocp-10`` and ``ocp-30`` (clip-art categories, searched on the full ``web``), ``fmnist``
(Fashion-MNIST *test* images; the shop site's 60,000 training images stay on the web), ``shop-3`` (a
within-domain target: three of the shop's own classes, whose other photos stay on the web beside the
shop's seven other classes; the reward's signal is real there, see the README's "Targets and rewards")
and ``gen-4`` (four shape categories of the generated corpus, for tests without Debian packages).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ie_env.validate import check_int, check_number, check_text, fail
from ie_env.web.sources import FASHION_CLASSES


@dataclass(frozen=True)
class SplitConfig:
    """How each target category is split.

    Attributes:
        train: share of a category's images that become unlabeled target-train images.
        test: share that become labeled target-test images (the rest stays on the web).
        seed: seed of the split.
        per_category: if set, at most this many images per category are used (sampled with the seed);
            the others stay where they are.
    """

    train: float = 0.4
    test: float = 0.2
    seed: int = 0
    per_category: int | None = None

    def __post_init__(self) -> None:
        check_number(self, "train", 0.0, 1.0, low_open=True, high_open=True)
        check_number(self, "test", 0.0, 1.0, low_open=True, high_open=True)
        if self.train + self.test > 1.0 + 1e-9:
            fail(self, "train + test", "be <= 1", round(self.train + self.test, 6))
        check_int(self, "seed")
        check_int(self, "per_category", 2, optional=True)


@dataclass(frozen=True)
class TargetPreset:
    """A named target set.

    Attributes:
        name: preset name.
        corpus: the web corpus the agent searches (a corpus preset name).
        categories: category path prefixes, one per class.
        class_names: readable class names, same order.
        image_corpus: where the target images come from (None: from ``corpus`` itself, held out of it).
        split: the split.
        description: one line for ``ie-web info``.
    """

    name: str
    corpus: str
    categories: tuple[str, ...]
    class_names: tuple[str, ...]
    image_corpus: str | None = None
    split: SplitConfig = field(default_factory=SplitConfig)
    description: str = ""

    def __post_init__(self) -> None:
        check_text(self, "name")
        check_text(self, "corpus")
        if not self.categories or len(self.categories) != len(self.class_names):
            fail(self, "categories", f"be non-empty and as long as class_names ({len(self.class_names)})")


def _ocp(paths: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(f"openclipart/{p}" for p in paths), tuple(
        p.rsplit("/", 1)[-1].replace("_", " ") for p in paths
    )


_OCP10 = (
    "animals/birds",
    "animals/bugs",
    "food/fruit",
    "food/desserts",
    "food/beverages",
    "plants/flowers",
    "buildings/homes",
    "transportation/boating",
    "recreation/music",
    "computer/hardware",
)
_OCP30 = (
    "animals/birds",
    "animals/bugs",
    "animals/fish",
    "animals/dinosaurs",
    "animals/mammals/big_cats",
    "animals/mammals/housecats",
    "animals/mammals/horses",
    "food/fruit",
    "food/desserts",
    "food/beverages",
    "food/breads_and_carbs",
    "food/meats_and_eggs",
    "food/vegetables",
    "plants/flowers",
    "buildings/homes",
    "buildings/furniture",
    "transportation/boating",
    "transportation/vehicles",
    "recreation/music",
    "recreation/sports",
    "recreation/toys",
    "tools/weapons",
    "people/clothing/hats",
    "signs_and_symbols/clocks",
    "signs_and_symbols/weather",
    "education/books",
    "office/telephone",
    "computer/hardware",
    "geography/astronomy",
    "electronics/bulb",
)
_FMNIST = (
    "t-shirt-top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)
_SHOP3 = ("sneaker", "sandal", "bag")
_GEN4 = ("circle", "square", "triangle", "star")

PRESETS: dict[str, TargetPreset] = {
    "ocp-10": TargetPreset(
        "ocp-10",
        "web",
        *_ocp(_OCP10),
        description="10 clip-art object categories (>= 28 images each), 40/20/40",
    ),
    "ocp-30": TargetPreset("ocp-30", "web", *_ocp(_OCP30), description="30 clip-art categories, 40/20/40"),
    "fmnist": TargetPreset(
        "fmnist",
        "web",
        tuple(f"fashion-mnist/{c}" for c in _FMNIST),
        FASHION_CLASSES,
        image_corpus="fashion-mnist-test",
        split=SplitConfig(train=0.5, test=0.5, per_category=100),
        description="Fashion-MNIST test images, 100 per class, 50/50; the 60k-photo shop stays on the web",
    ),
    "shop-3": TargetPreset(
        "shop-3",
        "web",
        tuple(f"fashion-mnist/{c}" for c in _SHOP3),
        _SHOP3,
        split=SplitConfig(train=0.5, test=0.5, per_category=200),
        description="within-domain: the shop's sneaker, sandal and bag photos, 200 per class held out "
        "50/50, the other 5,800 per class stay on the web among the shop's other classes",
    ),
    "gen-4": TargetPreset(
        "gen-4",
        "generated",
        tuple(f"generated/{c}" for c in _GEN4),
        _GEN4,
        description="4 shape categories of the generated corpus (tests, no Debian packages), 40/20/40",
    ),
}
