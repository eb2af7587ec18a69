"""Decode untrusted image bytes safely into a small RGB array plus a 64-bit perceptual hash.

:func:`decode_image` is the project's one image-preprocessing function: the downloader's workers
and the web corpus call it, so the same bytes give the same pixels and phash everywhere. It imports
only numpy and Pillow (it runs inside worker processes), and it never raises for bad input.

Safety: only the formats in ``spec.formats`` are tried (never FITS, TIFF, PSD, ...); the pixel
count is checked from the header before any pixel is decoded; Pillow's decompression-bomb warning
is an error; truncated files fail instead of being padded with grey.

Memory: peak extra memory per decode is at most ``DECODE_MEMORY_FACTOR x spec.max_pixels`` bytes
(beyond the input bytes), plus a fixed few MB. Enforced by reducing before converting: JPEGs are
decoded at a reduced DCT scale (``draft``); other formats are decoded once in their native mode
(at most 4 bytes per pixel; 1-bit, palette and 16-bit images at 1-2) and then converted, composited
onto white and box-reduced a strip of rows at a time (:data:`STRIP_PIXELS` pixels per strip), with
16/32-bit samples scaled in float32 strips, so no full-size RGB, RGBA or float copy exists. WebP,
which Pillow decodes at full size through libwebp's own buffers (about 16 bytes per pixel), gets
:data:`WEBP_PIXEL_SHARE` of ``max_pixels``. Measured (peak RSS of a fresh process, images
just under the default cap of 32 Mi pixels): 1-bit, palette and GIF 1.3-1.5 bytes per pixel of
``max_pixels``, 16-bit PNG/TIFF 2.6 (it was 25 with float64 conversion), BMP 4.0, RGBA PNG 4.4, WebP
at its share 8.0, and the worst case, an RGBA image too narrow to reduce (its full-size RGB result
beside its native decode), 8.5. The memory tests assert the factor at a smaller cap.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from ie_env.validate import check_choice, check_int, fail

RESIZE_MODES = ("center_crop", "keep_ratio", "border")
DEFAULT_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
WHITE = (255, 255, 255)
DECODE_MEMORY_FACTOR = 12  # bytes per max_pixels pixel, see the module docstring
# Pillow decodes WebP at full size through libwebp's own RGBA buffers (about 16 bytes per pixel),
# so WebP images get this fraction of max_pixels.
WEBP_PIXEL_SHARE = 0.5
STRIP_PIXELS = 1 << 20  # pixels converted at once
_HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")

# Truncated files must fail, never be silently padded.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class DecodeSpec:
    """How to turn bytes into an array (picklable; sent to worker processes).

    Attributes:
        image_size: target size in pixels (the square side, or the short side for ``keep_ratio``,
            or the long side for ``border``).
        resize_mode: ``center_crop`` (short side to ``image_size``, then a centred square crop, as
            img2dataset's ``center_crop``), ``keep_ratio`` (short side to ``image_size``) or
            ``border`` (long side to ``image_size``, padded with white to a square).
        min_size: images whose short side is below this many pixels are ``too_small``.
        max_pixels: images with more pixels than this (width x height, from the header) are
            ``too_large`` before anything is decoded.
        formats: Pillow format names that may be opened.
    """

    image_size: int = 64
    resize_mode: str = "center_crop"
    min_size: int = 16
    max_pixels: int = 32 * 1024 * 1024
    formats: tuple[str, ...] = DEFAULT_FORMATS

    def __post_init__(self) -> None:
        check_int(self, "image_size", 8)
        check_choice(self, "resize_mode", RESIZE_MODES)
        check_int(self, "min_size", 1)
        check_int(self, "max_pixels", self.min_size * self.min_size)
        unknown = [f for f in self.formats if f not in Image.registered_extensions().values()]
        if not self.formats or unknown:
            fail(self, "formats", "be non-empty Pillow format names")


@dataclass(frozen=True, eq=False)
class Decoded:
    """Result of decoding one image: ``status`` is ``ok`` or a failure status with ``error``."""

    status: str
    error: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    phash: int | None = None
    image: np.ndarray | None = None


# ---------------------------------------------------------------------------------------------
# perceptual hash


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return np.cos(np.pi * k * (2 * i + 1) / (2 * n))


_DCT32 = _dct_matrix(32)


def phash(image: Image.Image) -> int:
    """64-bit DCT perceptual hash, bit-identical to ``imagehash.phash(image)`` (as an int).

    Grey-scale, resized to 32x32 with Lanczos, 2-D DCT-II, the top-left 8x8 coefficients compared
    with their median; the first coefficient is the most significant bit.
    """
    small = image.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float64)
    coeffs = _DCT32 @ pixels @ _DCT32.T
    low = coeffs[:8, :8]
    bits = (low > np.median(low)).reshape(-1)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


# ---------------------------------------------------------------------------------------------
# geometry


def target_geometry(
    width: int, height: int, size: int, mode: str
) -> tuple[tuple[float, float, float, float], tuple[int, int], tuple[int, int]]:
    """Return (source box, resized size, canvas size) for a ``width`` x ``height`` image."""
    if mode == "center_crop":
        side = min(width, height)
        left = (width - side) / 2
        top = (height - side) / 2
        return (left, top, left + side, top + side), (size, size), (size, size)
    if mode == "keep_ratio":
        scale = size / min(width, height)
        out = (max(1, round(width * scale)), max(1, round(height * scale)))
        return (0, 0, width, height), out, out
    scale = size / max(width, height)  # border
    out = (max(1, round(width * scale)), max(1, round(height * scale)))
    return (0, 0, width, height), out, (size, size)


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def _high_depth_scale(im: Image.Image) -> float | None:
    """For 16/32-bit grey images, the factor that maps the brightest sample to 255; else None."""
    if im.mode not in _HIGH_DEPTH_MODES:
        return None
    extrema = im.getextrema()
    peak = float(extrema[1]) if isinstance(extrema, tuple) else 255.0
    return 255.0 / max(peak, 1.0)


def _strip_to_rgb(strip: Image.Image, scale: float | None) -> Image.Image:
    """Convert a strip of rows to RGB, transparency composited onto white."""
    if scale is not None:
        samples = np.asarray(strip).astype(np.float32)
        samples *= scale
        np.clip(samples, 0, 255, out=samples)
        return Image.fromarray(samples.astype(np.uint8), "L").convert("RGB")
    if _has_alpha(strip):
        rgba = strip if strip.mode == "RGBA" else strip.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, WHITE)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return strip if strip.mode == "RGB" else strip.convert("RGB")


def reduced_rgb(im: Image.Image, factor: int) -> Image.Image:
    """Return ``im`` as RGB on white, box-reduced by ``factor``, converted a strip of rows at a time.

    Strips are a multiple of ``factor`` rows high, so the result equals reducing the whole image;
    the only full-size buffer is ``im`` itself.
    """
    width, height = im.size
    scale = _high_depth_scale(im)
    if scale is None and im.mode == "RGB" and not _has_alpha(im):
        return im.reduce(factor) if factor > 1 else im
    rows = max(factor, STRIP_PIXELS // max(1, width) // factor * factor)
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)), WHITE)
    for top in range(0, height, rows):
        strip = _strip_to_rgb(im.crop((0, top, width, min(height, top + rows))), scale)
        out.paste(strip.reduce(factor) if factor > 1 else strip, (0, top // factor))
    return out


def decode_image(data: bytes, spec: DecodeSpec) -> Decoded:
    """Decode, composite onto white, hash and resize one image. Never raises."""
    try:
        return _decode(data, spec)
    except MemoryError:
        return Decoded("too_large", "out of memory while decoding")
    except Exception as exc:  # Pillow raises many types for corrupt data
        return Decoded("decode_error", f"{type(exc).__name__}: {exc}"[:300])


def decode_batch(items: list[bytes], spec: DecodeSpec) -> list[Decoded]:
    """Decode several images (one inter-process round trip for the lot)."""
    return [decode_image(data, spec) for data in items]


def _decode(data: bytes, spec: DecodeSpec) -> Decoded:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=list(spec.formats))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            return Decoded("too_large", f"decompression bomb: {exc}"[:300])
        except UnidentifiedImageError:
            head = bytes(data[:16])
            return Decoded("not_image", f"not a {'/'.join(spec.formats)} image (starts with {head!r})")
        width, height = im.size
        fmt = im.format
        if width <= 0 or height <= 0:
            return Decoded("decode_error", f"bad dimensions {width}x{height}", width, height, fmt)
        max_pixels = int(spec.max_pixels * WEBP_PIXEL_SHARE) if fmt == "WEBP" else spec.max_pixels
        if width * height > max_pixels:
            return Decoded(
                "too_large",
                f"{width}x{height} = {width * height} pixels (limit {max_pixels} for {fmt})",
                width,
                height,
                fmt,
            )
        if min(width, height) < spec.min_size:
            return Decoded(
                "too_small", f"{width}x{height} is below min_size {spec.min_size}", width, height, fmt
            )
        orientation = 1
        if fmt in ("JPEG", "WEBP"):
            try:
                orientation = int(im.getexif().get(_ORIENTATION_TAG, 1) or 1)
            except Exception:
                orientation = 1
        box, out_size, canvas_size = target_geometry(width, height, spec.image_size, spec.resize_mode)
        # Reductions depend on the short side only, so the phash is the same in every resize mode.
        scale = spec.image_size / min(width, height)
        if fmt == "JPEG":
            # DCT-domain downscale to the smallest scale that keeps twice the target size.
            im.draft("RGB", (max(1, int(width * scale * 2)), max(1, int(height * scale * 2))))
        im.load()
        # Integer box-reduce down to about twice the target, so the final resample is cheap.
        sx, sy = im.size[0] / width, im.size[1] / height  # draft may already have reduced
        box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
        factor = max(1, int(min(im.size) / (2 * spec.image_size)))
        native, im = im, reduced_rgb(im, factor)
        if im is not native:
            native.close()  # free the full-size decode before hashing and resizing
        box = tuple(v / factor for v in box)
        hash_value = phash(im)
        out = im.resize(out_size, Image.Resampling.LANCZOS, box=box)
        if canvas_size != out_size:
            canvas = Image.new("RGB", canvas_size, WHITE)
            canvas.paste(out, ((canvas_size[0] - out_size[0]) // 2, (canvas_size[1] - out_size[1]) // 2))
            out = canvas
        if orientation in _TRANSPOSE:
            out = out.transpose(_TRANSPOSE[orientation])
        array = np.ascontiguousarray(np.asarray(out, dtype=np.uint8))
        return Decoded("ok", None, width, height, fmt, hash_value, array)
