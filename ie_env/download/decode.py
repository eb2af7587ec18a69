"""Decode untrusted image bytes safely into small RGB arrays, plus a 64-bit perceptual hash.

This module runs inside the downloader's worker processes, so it imports only numpy and Pillow.
Every function returns a value; nothing here raises for bad input.

Safety measures (see ECOSYSTEM.md 6.1): only the formats in ``spec.formats`` are tried (never FITS,
TIFF, PSD, ...), the pixel count is checked from the header before any pixel is decoded, Pillow's
own decompression-bomb warning is turned into an error, truncated files fail instead of being
padded with grey, and JPEGs are decoded at a reduced DCT scale when the target is small.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

RESIZE_MODES = ("center_crop", "keep_ratio", "border")
DEFAULT_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
WHITE = (255, 255, 255)

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
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if self.min_size < 1:
            raise ValueError(f"min_size must be >= 1, got {self.min_size!r}")
        if self.max_pixels < self.min_size * self.min_size:
            raise ValueError(f"max_pixels must be >= min_size**2, got {self.max_pixels!r}")
        unknown = [f for f in self.formats if f not in Image.registered_extensions().values()]
        if not self.formats or unknown:
            raise ValueError(f"formats must be non-empty Pillow format names, got {self.formats!r}")


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


_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hamming(hashes: np.ndarray, h: int) -> np.ndarray:
    """Hamming distances between each uint64 in ``hashes`` and the 64-bit int ``h``."""
    x = np.bitwise_xor(np.asarray(hashes, dtype=np.uint64), np.uint64(h))
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    return _POPCOUNT8[x.view(np.uint8).reshape(-1, 8)].sum(axis=1).astype(np.int64)


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


def _to_rgb_or_rgba(im: Image.Image) -> Image.Image:
    if _has_alpha(im):
        return im if im.mode == "RGBA" else im.convert("RGBA")
    if im.mode == "RGB":
        return im
    if im.mode in ("I", "I;16", "I;16B", "I;16L"):
        arr = np.asarray(im, dtype=np.float64)
        peak = max(float(arr.max()), 1.0)
        im = Image.fromarray((arr * (255.0 / peak)).clip(0, 255).astype(np.uint8), "L")
    return im.convert("RGB")


def _on_white(im: Image.Image) -> Image.Image:
    if im.mode != "RGBA":
        return im
    canvas = Image.new("RGB", im.size, WHITE)
    canvas.paste(im, mask=im.getchannel("A"))
    return canvas


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
        if width * height > spec.max_pixels:
            return Decoded(
                "too_large",
                f"{width}x{height} = {width * height} pixels (limit {spec.max_pixels})",
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
        im = _to_rgb_or_rgba(im)
        # Integer box-reduce down to about twice the target, so the final resample is cheap.
        sx, sy = im.size[0] / width, im.size[1] / height  # draft may already have reduced
        box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
        factor = int(min(im.size) / (2 * spec.image_size))
        if factor >= 2:
            im = im.reduce(factor)
            box = tuple(v / factor for v in box)
        im = _on_white(im)
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
