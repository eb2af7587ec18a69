"""Turning one source item into the PNG a corpus part stores: decode, bound, composite onto white."""

from __future__ import annotations

import io
import struct
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ie_env.web import sources as src

if TYPE_CHECKING:
    from ie_env.web.corpus.build import BuildConfig


def to_rgb_on_white(image: Image.Image) -> Image.Image:
    """Composite any transparency onto white and return an RGB image."""
    if image.mode in ("RGBA", "LA", "PA", "P") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    if image.mode == "I;16" or image.mode == "I":
        array = np.asarray(image, dtype=np.float64)
        peak = max(float(array.max()), 1.0)
        return Image.fromarray((array * (255.0 / peak)).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def process_payload(payload: tuple, config: BuildConfig) -> tuple[str, bytes, int, int, int, int]:
    """Decode, bound and encode one source image: (status, png bytes, width, height, orig w, orig h).

    ``status`` is ``"ok"`` or the reason it was skipped: ``huge``, ``tiny``, ``blank`` or ``unreadable``.
    """
    try:
        image = src.source_image(payload)
        if image is None:
            return ("blank", b"", 0, 0, 0, 0)
        with image:
            ow, oh = image.size
            if ow * oh > config.max_pixels:
                return ("huge", b"", 0, 0, ow, oh)
            if max(ow, oh) < config.min_side:
                return ("tiny", b"", 0, 0, ow, oh)
            image.load()
            work = image
            if work.mode == "P" or "transparency" in work.info:
                work = work.convert("RGBA")
            if max(ow, oh) > config.max_side:
                scale = config.max_side / max(ow, oh)
                size = (max(1, round(ow * scale)), max(1, round(oh * scale)))
                if work.mode not in ("RGB", "RGBA", "L", "LA"):
                    work = work.convert("RGBA")
                work = work.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
            rgb = to_rgb_on_white(work)
            buffer = io.BytesIO()
            rgb.save(buffer, "PNG", compress_level=config.png_compress_level)
            return ("ok", buffer.getvalue(), rgb.width, rgb.height, ow, oh)
    except Image.DecompressionBombError:
        return ("huge", b"", 0, 0, 0, 0)
    except (OSError, SyntaxError, ValueError, TypeError, MemoryError, struct.error):
        return ("unreadable", b"", 0, 0, 0, 0)
