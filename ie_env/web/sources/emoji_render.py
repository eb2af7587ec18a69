"""Rendering one colour emoji from a CBDT bitmap font."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont


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
