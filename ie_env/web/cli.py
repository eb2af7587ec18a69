"""``ie-web``: build, serve and inspect the offline web.

ie-web build [--corpus web] [--target ocp-10 ...] [--vocabulary full]
                                                      corpus parts, caption embeddings, index, targets,
                                                      every concept's search results (frozen worlds)
ie-web serve --port 8765 [--target ocp-10]            Openverse-compatible search API on 127.0.0.1
ie-web info [--corpus web] [--target ocp-10] [--json] counts per site, sizes, build times, target split
ie-web search "owl" [-n 10] [--target ocp-10]         rank in process, no HTTP

These commands run as processes of their own, so they (and only they) set torch's process-wide thread
count, from ``--threads``; the library underneath never does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from collections.abc import Sequence

from ie_env import runtime
from ie_env.errors import SetupError
from ie_env.web.targets import PRESETS


def _corpus_name(args: argparse.Namespace) -> str:
    if args.corpus:
        return args.corpus
    targets = getattr(args, "target", None) or []
    if isinstance(targets, str):
        targets = [targets]
    for name in targets:
        if name in PRESETS:
            return PRESETS[name].corpus
    return "web"


def _human_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1000
    return f"{n} B"


def cmd_build(args: argparse.Namespace) -> int:
    """Build a corpus, its caption embeddings and index, image arrays and target sets."""
    from ie_env.web.corpus import open_corpus
    from ie_env.web.index import CaptionIndex
    from ie_env.web.targets import load_target

    progress = not args.no_progress
    timings = {}
    start = time.perf_counter()
    corpus = open_corpus(_corpus_name(args), progress=progress)
    timings["corpus"] = time.perf_counter() - start
    start = time.perf_counter()
    index = CaptionIndex(corpus, progress=progress)
    timings["caption embeddings + index"] = time.perf_counter() - start
    for size in args.sizes:
        start = time.perf_counter()
        corpus.load_images(None, size, progress=progress)
        timings[f"image array {size}px"] = time.perf_counter() - start
    for name in args.target or []:
        start = time.perf_counter()
        target = load_target(
            name, corpus=corpus if name not in PRESETS or PRESETS[name].corpus == corpus.name else None
        )
        timings[f"target {name}"] = time.perf_counter() - start
        info = target.info()
        print(
            f"target {name}: {info['classes']} classes, {info['train']} train, {info['test']} test, "
            f"{info['stays_on_web']} stay on the web, {info['searchable_relevant']} relevant searchable"
        )
    if args.vocabulary:
        start = time.perf_counter()
        _build_concept_results(index, args.vocabulary, progress)
        timings[f"search results of vocabulary {args.vocabulary}"] = time.perf_counter() - start
    info = corpus.info()
    print(
        f"corpus {corpus.name}: {info['images']} images, {info['distinct_captions']} distinct captions, "
        f"{_human_bytes(info['bytes'])}, {len(index.doc_texts)} caption embeddings"
    )
    for site, count in info["sites"].items():
        print(f"  {site:<20} {count:>7}")
    for step, seconds in timings.items():
        print(f"  {step:<32} {seconds:8.1f} s")
    return 0


def _build_concept_results(index, subset: str, progress: bool) -> None:
    """Rank every concept query of a vocabulary subset on the whole web (what frozen worlds start from)."""
    from ie_env.concepts.vocabulary import Vocabulary
    from ie_env.worlds.frozen_tables import web_concept_results

    vocabulary = Vocabulary(subset)
    vectors = vocabulary.query_embeddings(build=False, show_progress=False)
    if vectors is None:
        raise SetupError(
            f"no cached query embeddings for vocabulary {subset!r}: run `ie-vocab embed --subset {subset}` first"
        )
    web_concept_results(
        index, vocabulary.query_texts, vocabulary.cache_name(), progress, vectors=lambda: vectors
    )


def cmd_info(args: argparse.Namespace) -> int:
    """Print counts per site, sizes, build times and a target's split."""
    from ie_env.web.corpus import open_corpus
    from ie_env.web.targets import load_target

    try:
        corpus = open_corpus(_corpus_name(args), build=False)
    except FileNotFoundError as exc:
        print(f"ie-web: {exc}", file=sys.stderr)
        return 1
    info = corpus.info()
    if args.target:
        info["target"] = load_target(args.target, corpus=corpus, build=False).info()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"corpus {info['name']} ({info['key']}): {info['images']} images, {info['categories']} categories,")
    print(f"  {info['distinct_captions']} distinct captions, {_human_bytes(info['bytes'])} of PNG")
    print(f"  {'site':<20} {'images':>7} {'aliases':>8} {'skipped':<28} {'size':>9} {'build':>8}")
    for part in info["parts"]:
        skipped = ", ".join(f"{k} {v}" for k, v in (part["skipped"] or {}).items()) or "-"
        print(
            f"  {part['source']:<20} {part['images']:>7} {part['aliases']:>8} {skipped:<28} "
            f"{_human_bytes(part['bytes']):>9} {part['build_seconds']:>7.1f}s"
        )
    if "target" in info:
        t = info["target"]
        print(
            f"target {t['name']}: {t['classes']} classes, {t['train']} train / {t['test']} test images, "
            f"{t['stays_on_web']} stay on the web, {t['excluded_from_index']} excluded from the index, "
            f"{t['searchable_relevant']} relevant images searchable"
        )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """Rank a query in process and print the results."""
    from ie_env.web.server import build_index

    index = build_index(_corpus_name(args), args.target, progress=not args.no_progress)
    corpus = index.corpus
    for rank, hit in enumerate(index.search(args.query, args.n)):
        print(
            f"{rank:3d} {hit.score:6.3f} {hit.id:<22} {corpus.categories[hit.row]:<40} {corpus.titles[hit.row]}"
        )
    return 0


def _preload_concept_queries(index, subset: str) -> int:
    """Preload a vocabulary subset's cached query table into the index's embedder; return its size.

    The env's own server does the same, so a standalone server ranks concept queries exactly as the
    frozen world does. Nothing is computed here: without the cache (``ie-vocab embed``) queries are
    embedded live.
    """
    if subset == "none":
        return 0
    from ie_env.concepts.vocabulary import Vocabulary

    vocabulary = Vocabulary(subset)
    vectors = vocabulary.query_embeddings(build=False)
    if vectors is None:
        print(
            f"no cached query embeddings for vocabulary {subset!r} (ie-vocab embed --subset {subset}); "
            "concept queries are embedded live",
            file=sys.stderr,
        )
        return 0
    index.embedder.preload(vocabulary.query_texts, vectors)
    return len(vectors)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the Openverse-compatible search API until interrupted."""
    from ie_env.web.server import FaultConfig, ServerConfig, build_index, start_server

    try:  # numpy's BLAS threads spin between the server's small matrix products and waste CPU
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads, user_api="blas")
    except ImportError:
        pass
    faults = FaultConfig(args.latency, args.error_rate, args.corrupt_rate, args.fault_seed)
    config = ServerConfig(faults=faults, verbose=args.verbose, max_page=args.max_page)
    index = build_index(_corpus_name(args), args.target, progress=not args.no_progress)
    preloaded = _preload_concept_queries(index, args.vocabulary)
    server = start_server(
        index,
        target=args.target,
        host=args.host,
        port=args.port,
        config=config,
        background=False,
    )
    print(
        f"ie-web serving {server.url}/v1/images/?q=... corpus={index.corpus.name} images={len(index)} "
        f"target={args.target or '-'} preloaded concept queries={preloaded:,}",
        flush=True,
    )

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def parser() -> argparse.ArgumentParser:
    """Return the ``ie-web`` argument parser."""
    top = argparse.ArgumentParser(prog="ie-web", description="Build, serve and inspect the offline web.")
    sub = top.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--corpus", default=None, help="corpus preset (web, clipart, emoji, generated) or folder"
        )
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        p.add_argument(
            "--threads",
            type=int,
            default=None,
            help="torch threads (default: $IE_ENV_THREADS, else every core)",
        )

    build = sub.add_parser("build", help="build corpus, caption embeddings and index")
    common(build)
    build.add_argument("--target", action="append", help="also prepare this target set (repeatable)")
    build.add_argument(
        "--sizes", type=int, nargs="*", default=[], help="also cache image arrays at these sizes"
    )
    build.add_argument(
        "--vocabulary",
        default=None,
        help="also rank every concept query of this vocabulary subset on the web (needs `ie-vocab embed`); "
        "frozen worlds of every target then start from that table",
    )
    build.set_defaults(func=cmd_build)

    serve = sub.add_parser("serve", help="serve the Openverse-compatible search API")
    common(serve)
    serve.add_argument("--target", default=None, help="target set whose images are excluded from the index")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=int, default=8765, help="TCP port (0: any free port)")
    serve.add_argument("--max-page", type=int, default=20, help="deepest page served (Openverse: 20)")
    serve.add_argument(
        "--latency", type=float, default=0.0, help="fault injection: seconds added per request"
    )
    serve.add_argument("--error-rate", type=float, default=0.0, help="fault injection: share of 503 answers")
    serve.add_argument(
        "--corrupt-rate", type=float, default=0.0, help="fault injection: share of corrupt images"
    )
    serve.add_argument("--fault-seed", type=int, default=0, help="seed of the fault injection")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    serve.add_argument(
        "--vocabulary",
        default="full",
        help="vocabulary subset whose cached concept-query embeddings are preloaded, or 'none'",
    )
    serve.set_defaults(func=cmd_serve)

    info = sub.add_parser("info", help="counts per site, sizes, build times, target split")
    info.add_argument("--corpus", default=None)
    info.add_argument("--target", default=None)
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)

    search = sub.add_parser("search", help="rank a query in process (no HTTP)")
    common(search)
    search.add_argument("query")
    search.add_argument("-n", type=int, default=10)
    search.add_argument("--target", default=None)
    search.set_defaults(func=cmd_search)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ie-web`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = parser().parse_args(argv)
    if hasattr(args, "threads"):  # this process runs alone: the command line owns its thread count
        try:
            args.threads = runtime.use_threads(args.threads)
        except ValueError as exc:
            print(f"ie-web: {exc}", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except SetupError as exc:
        print(f"ie-web: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"ie-web: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
