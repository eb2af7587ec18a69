"""What every benchmark shares: the ``--quick``/``--json`` arguments, the printed table, the JSON file.

Each benchmark builds a parser with :func:`parser`, computes a flat or nested ``dict`` of results and
ends with ``return finish(result, args.json)``, which prints one ``metric  value`` row per leaf value
(nested keys joined with dots) and writes the JSON file when asked.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def parser(doc: str | None, *, quick_help: str = "a smaller run, about a minute") -> argparse.ArgumentParser:
    """Return an argument parser with the shared ``--quick`` and ``--json PATH`` options."""
    result = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    result.add_argument("--quick", action="store_true", help=quick_help)
    result.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    return result


def median(values: Iterable[float]) -> float:
    """Median of ``values`` (benchmarks report medians: these machines are shared and noisy)."""
    return float(statistics.median(list(values)))


def _rows(result: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _rows(value, name + ".")
        elif not isinstance(value, list | tuple):
            yield name, value


def format_table(result: Mapping[str, Any]) -> str:
    """Format ``result`` as a two-column ``metric  value`` table (lists are left to the JSON)."""
    rows = list(_rows(result))
    width = max([len("metric")] + [len(name) for name, _ in rows]) + 2
    lines = [f"{'metric':<{width}}value"]
    for name, value in rows:
        shown = f"{value:,.4g}" if isinstance(value, float) else str(value)
        lines.append(f"{name:<{width}}{shown}")
    return "\n".join(lines)


def write_json(result: Mapping[str, Any], path: Path | str) -> None:
    """Write ``result`` as indented JSON to ``path``, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")


def finish(result: Mapping[str, Any], json_path: Path | str | None) -> int:
    """Print the table, write the JSON file if ``json_path`` is set, and return exit code 0."""
    print(format_table(result))
    if json_path:
        write_json(result, json_path)
        print(f"wrote {json_path}")
    return 0
