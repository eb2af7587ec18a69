"""The ``noto-emoji`` site: Debian ``fonts-noto-color-emoji``, one image per named codepoint."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ie_env.web.sources.base import (
    SourceItem,
    dpkg_version,
    require_path,
)
from ie_env.web.sources.truetype import font_codepoints

NOTO_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")


@dataclass(frozen=True)
class NotoEmojiSource:
    """Debian fonts-noto-color-emoji, one image per named codepoint above U+2000 (Apache-2.0 images)."""

    font: Path = NOTO_FONT
    name: str = "noto-emoji"
    site: str = "noto-emoji"

    def fingerprint(self) -> str:
        """Return a string that changes whenever this source's inputs change."""
        require_path(self.font, "fonts-noto-color-emoji")
        stat = self.font.stat()
        return f"{dpkg_version('fonts-noto-color-emoji')}:{stat.st_size}"

    def items(self) -> Iterator[SourceItem]:
        """Yield every image, in a stable order (duplicates already merged into aliases)."""
        require_path(self.font, "fonts-noto-color-emoji")
        for code in font_codepoints(self.font):
            if code < 0x2000:
                continue
            name = unicodedata.name(chr(code), "")
            if not name:
                continue
            words = name.lower()
            yield SourceItem(
                key=f"U+{code:05X}",
                category="noto-emoji",
                title=words,
                caption=f"{words}. emoji",
                tags=tuple(w for w in words.split() if len(w) > 2),
                license="apache-2.0",
                creator="Google Noto",
                original_path=f"{self.font}#U+{code:05X}",
                payload=("emoji", str(self.font), code),
            )
