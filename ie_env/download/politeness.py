"""Politeness rules: the User-Agent, X-Robots-Tag opt-outs and robots.txt decisions.

Pure functions and small value types only; the downloader does the fetching.
"""

from __future__ import annotations

import urllib.robotparser
from collections.abc import Iterable
from dataclasses import dataclass

from ie_env import __version__

ROBOTS_TOKEN = "ie-env"
DEFAULT_USER_AGENT = (
    f"{ROBOTS_TOKEN}/{__version__} (Internet Explorer research image crawler; "
    "honours robots.txt and X-Robots-Tag noai/noimageai)"
)
OPT_OUT_DIRECTIVES = ("noai", "noimageai", "noindex", "noimageindex")
ROBOTS_MAX_BYTES = 512 * 1024


def x_robots_opt_out(header_values: Iterable[str], token: str, directives: Iterable[str]) -> str | None:
    """Return the first opt-out directive found in ``X-Robots-Tag`` header values, or None.

    Follows img2dataset's rule: a value is ``directive, directive`` (applies to every crawler) or
    ``agent: directive, ...`` (applies only when ``agent`` is our token, case-insensitive).
    """
    wanted = {d.lower() for d in directives}
    token = token.lower()
    for value in header_values:
        agent, sep, rest = value.partition(":")
        if sep and agent.strip() and "," not in agent and " " not in agent.strip():
            if agent.strip().lower() != token:
                continue
            listed = rest
        else:
            listed = value
        for directive in listed.split(","):
            directive = directive.strip().lower()
            if directive in wanted:
                return directive
    return None


@dataclass(frozen=True)
class RobotsRules:
    """What robots.txt says for one origin.

    ``allow_all`` / ``disallow_all`` short-circuit; otherwise ``parser`` decides.
    """

    allow_all: bool = False
    disallow_all: bool = False
    reason: str = ""
    parser: urllib.robotparser.RobotFileParser | None = None

    def can_fetch(self, token: str, url: str) -> bool:
        """Return whether the crawler named ``token`` may fetch ``url``."""
        if self.allow_all:
            return True
        if self.disallow_all or self.parser is None:
            return False
        return self.parser.can_fetch(token, url)


def rules_from_response(status: int | None, body: bytes | None, error: str | None = None) -> RobotsRules:
    """Build rules from a robots.txt fetch (RFC 9309).

    4xx (including 401/403): no rules, everything allowed. 5xx or unreachable: everything
    disallowed. 2xx: parse the body (only the first ``ROBOTS_MAX_BYTES``).
    """
    if status is None:
        return RobotsRules(disallow_all=True, reason=f"robots.txt unreachable ({error or 'error'})")
    if 400 <= status < 500:
        return RobotsRules(allow_all=True, reason=f"robots.txt HTTP {status}")
    if status >= 500 or status < 200 or status >= 300:
        return RobotsRules(disallow_all=True, reason=f"robots.txt HTTP {status}")
    text = (body or b"")[:ROBOTS_MAX_BYTES].decode("utf-8", errors="replace")
    parser = urllib.robotparser.RobotFileParser()
    parser.parse(text.splitlines())
    return RobotsRules(parser=parser, reason="robots.txt")
