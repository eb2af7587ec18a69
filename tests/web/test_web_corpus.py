"""Corpus building: the generated corpus, user folders with sidecars, aliases, skips, caching."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ie_env.download.decode import DecodeSpec, decode_image
from ie_env.web.corpus import BuildConfig, open_corpus, part_dir
from ie_env.web.sources import FolderSource, GeneratedSource, parse_svg_metadata, words_from_name


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("web")
    return open_corpus("generated", root=root, progress=False), root


def test_generated_corpus_counts_and_metadata(generated) -> None:
    corpus, _ = generated
    assert len(corpus) == 320
    counts = corpus.category_counts()
    assert len(counts) == 8 and set(counts.values()) == {40}
    assert len(set(corpus.ids)) == len(corpus)
    assert all(i.startswith("generated-") for i in corpus.ids)
    record = corpus.record(corpus.row(corpus.ids[0]))
    shape = record.category.split("/")[1]
    assert shape in record.caption and shape in record.tags
    assert record.license == "cc0" and record.width == 64


def test_generated_images_decode_and_match_their_category(generated) -> None:
    corpus, _ = generated
    for row in range(0, len(corpus), 37):
        image = corpus.open_image(row)
        assert image.mode == "RGB" and max(image.size) <= 128
        pixels = np.asarray(image)
        # white background, some coloured ink
        assert (pixels == 255).all(axis=2).mean() > 0.2
        assert (pixels != 255).any(axis=2).mean() > 0.02


def test_load_images_is_cached_and_made_by_the_downloaders_decoder(generated) -> None:
    corpus, _ = generated
    ids = [corpus.ids[5], corpus.ids[100], corpus.ids[5]]
    arrays = corpus.load_images(ids, size=32, progress=False)
    assert arrays.shape == (3, 32, 32, 3) and arrays.dtype == np.uint8
    np.testing.assert_array_equal(arrays[0], arrays[2])
    served = decode_image(
        corpus.image_bytes(100), DecodeSpec(image_size=32, resize_mode="border", min_size=1)
    )
    np.testing.assert_array_equal(arrays[1], served.image)
    sha256, phash = corpus.image_hashes(32)
    assert len(sha256) == len(phash) == len(corpus) and phash.dtype == np.uint64
    assert (
        int(phash[100]) == served.phash and sha256[100] == hashlib.sha256(corpus.image_bytes(100)).hexdigest()
    )
    path = corpus.array_path(32)
    mtime = path.stat().st_mtime_ns
    everything = corpus.load_images(None, size=32, progress=False)
    assert everything.shape == (320, 32, 32, 3)
    assert path.stat().st_mtime_ns == mtime
    assert "decode-border" in path.name  # the preprocessing is part of the cache key
    with pytest.raises(ValueError, match="size"):
        corpus.load_images(ids, size=4)


def test_reopening_reuses_parts_and_config_changes_the_key(generated) -> None:
    corpus, root = generated
    folder = corpus.parts[0].folder
    mtime = (folder / "build.json").stat().st_mtime_ns
    again = open_corpus("generated", root=root, progress=False, build=False)
    assert again.key == corpus.key and (folder / "build.json").stat().st_mtime_ns == mtime
    assert part_dir(GeneratedSource(), BuildConfig(max_side=64), root) != folder
    assert not [p for p in (root / "parts").iterdir() if p.name.endswith(".tmp")]


def test_missing_part_without_build_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ie-web build"):
        open_corpus("generated", root=tmp_path, build=False)


def test_unknown_corpus_names_presets() -> None:
    with pytest.raises(ValueError, match="presets: web"):
        open_corpus("no-such-corpus")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_side": 8}, "max_side"),
        ({"workers": 0}, "workers"),
        ({"png_compress_level": 12}, "png_compress_level"),
    ],
)
def test_build_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BuildConfig(**kwargs)


def _png(path: Path, size: tuple[int, int], color: tuple[int, ...], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_folder_source_sidecars_aliases_and_skips(tmp_path: Path) -> None:
    tree = tmp_path / "mine"
    _png(tree / "cats" / "tabby_cat_01.png", (300, 150), (200, 120, 40))
    (tree / "cats" / "tabby_cat_01.txt").write_text("A tabby cat sleeping\n on a sofa")
    _png(tree / "dogs" / "black_dog.png", (40, 40), (0, 0, 0, 0), mode="RGBA")  # fully transparent
    (tree / "dogs" / "black_dog.json").write_text(json.dumps({"title": "Black dog", "tags": ["dog", "pet"]}))
    (tree / "dogs" / "copy_of_cat.png").write_bytes((tree / "cats" / "tabby_cat_01.png").read_bytes())
    os.symlink("../dogs/black_dog.png", tree / "cats" / "dog_alias.png")
    (tree / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    _png(tree / "dogs" / "huge.png", (400, 400), (10, 200, 10))
    _png(tree / "dogs" / "tiny.png", (3, 3), (10, 200, 10))
    config = BuildConfig(max_side=64, max_pixels=100_000, workers=1)
    corpus = open_corpus(tree, root=tmp_path / "web", config=config, progress=False)
    stats = corpus.parts[0].build_info()
    assert stats["skipped"] == {"unreadable": 1, "huge": 1, "tiny": 1}
    assert len(corpus) == 2
    by_title = {corpus.titles[r]: r for r in range(len(corpus))}
    cat, dog = by_title["tabby cat"], by_title["Black dog"]
    assert corpus.captions[cat] == "A tabby cat sleeping on a sofa"
    assert corpus.categories[cat] == "folder-mine/cats"
    assert corpus.aliases(cat) == ("dogs/copy_of_cat.png",)
    assert corpus.alias_categories(cat) == ("folder-mine/dogs",)
    assert corpus.tags(dog) == ("dog", "pet") and corpus.aliases(dog) == ("cats/dog_alias.png",)
    cat_image = corpus.open_image(cat)
    assert cat_image.size == (64, 32)  # longest side bounded, aspect kept
    assert np.asarray(corpus.open_image(dog)).min() == 255  # transparency composited onto white


def test_to_png_bytes_are_real_pngs(generated) -> None:
    corpus, _ = generated
    data = corpus.image_bytes(3)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(data)).format == "PNG"


def test_parse_svg_metadata_reads_dublin_core() -> None:
    svg = """<svg><metadata><rdf:RDF><cc:Work rdf:about="">
      <dc:title>Owl on Branch</dc:title><dc:description>Owl &amp; branch.</dc:description>
      <dc:subject><rdf:Bag><rdf:li>owl</rdf:li><rdf:li>Bird</rdf:li><rdf:li></rdf:li></rdf:Bag></dc:subject>
      <dc:publisher><cc:Agent><dc:title>Open Clip Art Project</dc:title></cc:Agent></dc:publisher>
      <dc:creator><cc:Agent><dc:title>Gerald G.</dc:title></cc:Agent></dc:creator>
      <dc:rights><cc:Agent><dc:title>Public Domain</dc:title></cc:Agent></dc:rights>
    </cc:Work></rdf:RDF></metadata></svg>"""
    meta = parse_svg_metadata(svg)
    assert meta == {
        "title": "Owl on Branch",
        "description": "Owl & branch.",
        "tags": ["owl", "bird"],
        "creator": "Gerald G.",
        "rights": "Public Domain",
    }
    assert parse_svg_metadata("<svg/>")["title"] == ""


def test_words_from_name() -> None:
    assert words_from_name("owl_on_branch_ganson_01") == "owl on branch ganson"
    assert words_from_name("baby-tux") == "baby tux"


def test_folder_source_requires_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FolderSource(tmp_path / "missing").fingerprint()
