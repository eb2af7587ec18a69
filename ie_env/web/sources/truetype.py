"""The codepoints a TrueType font maps, read from its ``cmap`` table with ``struct`` (formats 4 and 12)."""

from __future__ import annotations

import struct
from pathlib import Path


def font_codepoints(path: Path) -> list[int]:
    """Codepoints mapped by a TrueType font's cmap (formats 4 and 12), read with ``struct``."""
    data = path.read_bytes()
    num_tables = struct.unpack_from(">H", data, 4)[0]
    cmap_offset = None
    for i in range(num_tables):
        tag, _, offset, _ = struct.unpack_from(">4sIII", data, 12 + 16 * i)
        if tag == b"cmap":
            cmap_offset = offset
    if cmap_offset is None:
        return []
    n_sub = struct.unpack_from(">H", data, cmap_offset + 2)[0]
    codes: set[int] = set()
    for i in range(n_sub):
        _, _, sub_off = struct.unpack_from(">HHI", data, cmap_offset + 4 + 8 * i)
        base = cmap_offset + sub_off
        fmt = struct.unpack_from(">H", data, base)[0]
        if fmt == 12:
            n_groups = struct.unpack_from(">I", data, base + 12)[0]
            for g in range(n_groups):
                start, end, _ = struct.unpack_from(">III", data, base + 16 + 12 * g)
                codes.update(range(start, end + 1))
        elif fmt == 4:
            seg_x2 = struct.unpack_from(">H", data, base + 6)[0]
            ends = struct.unpack_from(f">{seg_x2 // 2}H", data, base + 14)
            starts = struct.unpack_from(f">{seg_x2 // 2}H", data, base + 16 + seg_x2)
            for start, end in zip(starts, ends, strict=True):
                if start != 0xFFFF:
                    codes.update(range(start, end + 1))
    return sorted(codes)
