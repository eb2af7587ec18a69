"""What every source of the offline web shares: the item record, the protocol and file helpers.

A source lists :class:`SourceItem` records (metadata + how to get the pixels) and a fingerprint of its
inputs, so a built part can be reused until the inputs change. The helpers read Debian package
versions, fingerprint folder trees and merge symlinked or byte-identical files into one item.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ie_env.errors import SetupError


@dataclass(frozen=True)
class SourceItem:
    """One image a source offers, before it is decoded.

    Attributes:
        key: stable identity within the source (used to order items and build ids).
        category: ground-truth category path, prefixed by the site (e.g. ``openclipart/animals/birds``).
        title: human title.
        caption: the text whose embedding the search engine ranks.
        tags: keywords.
        license: licence code (Openverse style where one exists, e.g. ``cc0``, ``by-sa``).
        creator: author, if known.
        original_path: where the pixels came from (a file, or ``file#index``).
        aliases: other paths holding the same image (symlinks, byte-identical copies).
        alias_categories: categories of those aliases.
        payload: what :func:`render_item` needs: ``("file", path)``, ``("array", uint8 array)``,
            ``("emoji", codepoint string)`` or ``("draw", params)``.
    """

    key: str
    category: str
    title: str
    caption: str
    tags: tuple[str, ...] = ()
    license: str = ""
    creator: str = ""
    original_path: str = ""
    aliases: tuple[str, ...] = ()
    alias_categories: tuple[str, ...] = ()
    payload: tuple = field(default=(), repr=False, compare=False)


class Source(Protocol):
    """A site of the offline web."""

    name: str
    site: str

    def fingerprint(self) -> str:
        """A string that changes whenever the source's inputs change."""
        ...

    def items(self) -> Iterator[SourceItem]:
        """Every image, in a stable order (duplicates already merged into aliases)."""
        ...


def words_from_name(stem: str) -> str:
    """``owl_on_branch_ganson_01`` -> ``owl on branch ganson``."""
    text = re.sub(r"[_\-.+]+", " ", stem)
    text = re.sub(r"\b\d+\b", " ", text)
    return " ".join(text.split())


def dpkg_version(package: str) -> str:
    """Return the installed version of a Debian package, or ``unknown``."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, timeout=20
        )
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def tree_fingerprint(root: Path) -> str:
    """Hash of (relative path, size, mtime) of every file below ``root``."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                stat = path.lstat()
            except OSError:
                continue
            rel = path.relative_to(root).as_posix()
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:20]


def require_path(path: Path, package: str) -> None:
    """Raise SetupError naming the Debian package when ``path`` does not exist."""
    if not path.exists():
        raise SetupError(f"Debian package {package!r} is missing ({path} not found)")


def group_files(root: Path, paths: list[Path]) -> list[tuple[Path, list[Path]]]:
    """Merge symlinks and byte-identical files: returns (primary real file, [alias paths]) groups.

    The primary is the lexicographically first *regular* path of the group (the symlink target when
    only symlinks point at it); aliases are the other paths, relative to ``root`` when possible.
    """
    by_real: dict[Path, list[Path]] = {}
    for path in paths:
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if not real.is_file():
            continue
        by_real.setdefault(real, []).append(path)
    by_hash: dict[str, list[Path]] = {}
    for real in sorted(by_real):
        digest = hashlib.sha256(real.read_bytes()).hexdigest()
        by_hash.setdefault(digest, []).append(real)
    groups = []
    for reals in by_hash.values():
        primary = sorted(reals)[0]
        members = sorted({p for real in reals for p in by_real[real]} | set(reals))
        aliases = [p for p in members if p != primary]
        groups.append((primary, aliases))
    groups.sort(key=lambda g: g[0])
    return groups


def relative_to(path: Path, root: Path) -> str:
    """Return ``path`` relative to ``root`` as a POSIX string, or the whole path outside it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
