"""The Debian sites of the offline web (skipped cleanly when the packages are absent).

Fast tests read the packages' metadata; the full web build and the "owl" query over HTTP are slow.
"""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from ie_env.web import sources as src

OWL_SVG = src.OPENCLIPART_SVG / "animals/birds/owl_on_branch_ganson.svg"
HAVE_CLIPART = src.OPENCLIPART_PNG.is_dir() and src.OPENCLIPART_SVG.is_dir()
HAVE_ALL = HAVE_CLIPART and all(
    p.exists() for p in (src.EMOJIFY_DIR, src.NOTO_FONT, src.FASHION_MNIST_DIR, src.GEMOJIONE_ROOT)
)


def needs(*paths: Path):
    missing = [str(p) for p in paths if not p.exists()]
    return pytest.mark.skipif(bool(missing), reason=f"Debian data missing: {missing} (run `make setup`)")


pytestmark = pytest.mark.debian


@needs(OWL_SVG)
def test_owl_svg_metadata() -> None:
    meta = src.parse_svg_metadata(OWL_SVG.read_text("utf-8", errors="replace"))
    assert meta["title"] == "Owl on Branch"
    assert {"owl", "bird"} <= set(meta["tags"])
    assert meta["creator"] == "Gerald G." and meta["rights"] == "Public Domain"


@needs(src.OPENCLIPART_PNG, src.OPENCLIPART_SVG)
def test_openclipart_items_merge_symlinks() -> None:
    items = list(src.OpenClipartSource().items())
    assert 6850 <= len(items) <= 6900
    assert sum(len(i.aliases) for i in items) >= 1200
    owl = next(i for i in items if i.key == "animals/birds/owl_on_branch_ganson.png")
    assert owl.category == "openclipart/animals/birds" and owl.title == "Owl on Branch"
    assert "owl" in owl.caption and "animals birds" in owl.caption and owl.license == "cc0"
    astro = [i for i in items if "openclipart/science/astronomy" in i.alias_categories]
    assert astro, "symlinks from science/astronomy should be recorded as alias categories"


@needs(src.GEMOJIONE_ROOT)
def test_gemojione_items_have_names_categories_keywords() -> None:
    items = list(src.GemojioneSource().items())
    assert 1700 <= len(items) <= 1800
    cats = {i.category for i in items}
    assert {"gemojione/food", "gemojione/nature", "gemojione/people"} <= cats
    owl = next(i for i in items if i.title == "owl")
    assert owl.license == "by-sa" and owl.caption.startswith("owl. ")
    assert sum(bool(i.tags) for i in items) > 1500


@needs(src.EMOJIFY_DIR)
def test_emojify_items_are_keyword_named() -> None:
    items = list(src.EmojifySource().items())
    assert 800 <= len(items) <= 881
    assert any(i.title == "bear" for i in items)


@needs(src.NOTO_FONT)
def test_noto_codepoints_and_rendering() -> None:
    codes = src.font_codepoints(src.NOTO_FONT)
    assert 1400 <= sum(1 for c in codes if c >= 0x2000) <= 1600
    image = src.render_emoji(str(src.NOTO_FONT), 0x1F989)  # OWL
    assert image is not None and image.mode == "RGBA" and max(image.size) >= 100


@needs(src.FASHION_MNIST_DIR)
def test_fashion_mnist_reads_idx() -> None:
    labels = src.read_idx(src.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz", 8)
    images = src.read_idx(src.FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    assert images.shape == (10_000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10
    title, caption, tags = src.fashion_captions(7, 0)
    assert title == "Sneaker" and "sneaker" in caption and "fashion" in tags


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.skipif(not HAVE_ALL, reason="Debian data missing (run `make setup`)")
def test_full_web_owl_query_and_ocp10_exclusion() -> None:
    from ie_env.web.server import build_index, start_server
    from ie_env.web.targets import load_target

    target = load_target("ocp-10")
    assert target.info()["searchable_relevant"] > 150
    index = build_index(target.corpus, target)
    assert len(index) > 70_000 - len(target.excluded_ids) - 1000
    with start_server(index, target="ocp-10") as server, httpx.Client(timeout=60) as http:
        body = http.get(f"{server.url}/v1/images/", params={"q": "owl", "page_size": 10}).json()
        results = body["results"]
        corpus = index.corpus
        first = [corpus.categories[corpus.row(r["id"])] for r in results[:5]]
        titles = [r["title"].lower() for r in results[:3]]
        assert any("owl" in t for t in titles), titles
        assert sum("bird" in c or "nature" in c or c in ("emojify", "noto-emoji") for c in first) >= 4, first
        for result in results:
            image = Image.open(io.BytesIO(http.get(result["url"]).content))
            image.load()
            assert image.size == (result["width"], result["height"])
        seen: set[str] = set()
        for query in (
            "bird",
            "insect",
            "apple",
            "cake",
            "drink",
            "flower",
            "house",
            "ship",
            "guitar",
            "computer",
        ):
            page = http.get(f"{server.url}/v1/images/", params={"q": query, "page_size": 200}).json()
            seen.update(r["id"] for r in page["results"])
        assert seen.isdisjoint(target.excluded_ids)
        base_rate = target.searchable_relevant / len(index)
        # category words find the held-out categories' web share far above its base rate (~0.3%)
        assert target.relevant_fraction(seen) > 10 * base_rate
