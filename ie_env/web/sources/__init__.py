"""Where the offline web's images come from: one ``Source`` per "site", one module per source.

* ``openclipart``: Debian ``openclipart-png`` images, captions from ``openclipart-svg`` Dublin Core metadata;
* ``gemojione``: Debian ``ruby-gemojione`` PNGs with names, categories and keywords;
* ``emojify``: Debian ``libjs-emojify`` keyword-named PNGs;
* ``noto-emoji``: Debian ``fonts-noto-color-emoji`` rendered per Unicode name;
* ``fashion-mnist`` / ``fashion-mnist-test``: Debian ``dataset-fashion-mnist`` product photos, captioned by class;
* ``folder``: any folder tree of images with optional caption sidecars (``x.txt`` or ``x.json`` beside ``x.png``);
* ``generated``: a few hundred shapes drawn by code, for tests without Debian packages.

Beside them: :mod:`~ie_env.web.sources.base` (the item record, the protocol, file helpers),
:mod:`~ie_env.web.sources.truetype` (a font's codepoints), :mod:`~ie_env.web.sources.idx` (IDX files),
the renderers :mod:`~ie_env.web.sources.shapes` and :mod:`~ie_env.web.sources.emoji_render`, and
:mod:`~ie_env.web.sources.pixels`, which turns any item's payload into a PIL image.
"""

from ie_env.web.sources.base import Source, SourceItem, words_from_name
from ie_env.web.sources.emoji_render import render_emoji
from ie_env.web.sources.emojify import EMOJIFY_DIR, EmojifySource
from ie_env.web.sources.fashion_mnist import (
    FASHION_CLASSES,
    FASHION_MNIST_DIR,
    FashionMnistSource,
    fashion_captions,
)
from ie_env.web.sources.folder import IMAGE_SUFFIXES, FolderSource
from ie_env.web.sources.gemojione import GEMOJIONE_ROOT, GemojioneSource
from ie_env.web.sources.generated import GENERATED_COLORS, GENERATED_SHAPES, GeneratedSource
from ie_env.web.sources.idx import read_idx
from ie_env.web.sources.noto_emoji import NOTO_FONT, NotoEmojiSource
from ie_env.web.sources.openclipart import (
    OPENCLIPART_PNG,
    OPENCLIPART_SVG,
    OpenClipartSource,
    parse_svg_metadata,
)
from ie_env.web.sources.pixels import source_image
from ie_env.web.sources.shapes import draw_shape
from ie_env.web.sources.truetype import font_codepoints

__all__ = [
    "EMOJIFY_DIR",
    "FASHION_CLASSES",
    "FASHION_MNIST_DIR",
    "GEMOJIONE_ROOT",
    "GENERATED_COLORS",
    "GENERATED_SHAPES",
    "IMAGE_SUFFIXES",
    "NOTO_FONT",
    "OPENCLIPART_PNG",
    "OPENCLIPART_SVG",
    "EmojifySource",
    "FashionMnistSource",
    "FolderSource",
    "GemojioneSource",
    "GeneratedSource",
    "NotoEmojiSource",
    "OpenClipartSource",
    "Source",
    "SourceItem",
    "draw_shape",
    "fashion_captions",
    "font_codepoints",
    "parse_svg_metadata",
    "read_idx",
    "render_emoji",
    "source_image",
    "words_from_name",
]
