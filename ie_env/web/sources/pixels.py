"""Turning a source item's payload into a PIL image: the one place that knows every payload kind."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ie_env.web.sources.emoji_render import render_emoji
from ie_env.web.sources.shapes import draw_shape


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
