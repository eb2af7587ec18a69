"""``ie-vocab``: inspect the concept vocabulary and build its text-embedding cache.

Examples::

    ie-vocab info                       # counts and cache state
    ie-vocab embed --subset full        # compute and cache all 146,347 embeddings (progress bar)
    ie-vocab nearest "owl" -k 10        # concepts nearest to a text, from the cached embeddings
"""

from __future__ import annotations

import argparse
import sys
import time

from ie_env import runtime
from ie_env.errors import SetupError
from ie_env.paths import cache_dir


def cmd_info(args: argparse.Namespace) -> int:
    """``ie-vocab info``: counts and cache state."""
    from ie_env.concepts.vocabulary import SUBSET_NAMES, Vocabulary, wordnet_dir

    started = time.perf_counter()
    full = Vocabulary("full")
    seconds = time.perf_counter() - started
    print(f"WordNet folder:     {wordnet_dir()}")
    print(f"noun synsets:       {full.synset_count:,}")
    print(f"noun concepts:      {len(full):,}  (synset, lemma) pairs, loaded in {seconds:.2f} s")
    print(f"distinct lemmas:    {len({lemma.lower() for lemma in full.lemmas}):,}")
    print(f"distinct queries:   {len({q.lower() for q in full.query_texts}):,}  (one per concept)")
    print(f"text precision:     {runtime.precision_tag('cpu')}  (IE_ENV_BF16=0 for float32)")
    print(f"cache dir:          {cache_dir()}")
    for name in SUBSET_NAMES:
        subset = full if name == "full" else Vocabulary(name)
        state = "cached" if subset.embeddings_cached() else f"not cached (ie-vocab embed --subset {name})"
        print(f"subset {name:<6} {len(subset):>9,} concepts, embeddings {state}")
    owl = full.find("owl")
    if owl:
        print(f"example concept:    {owl[0].text}")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """``ie-vocab embed``: compute and cache a subset's embeddings."""
    from ie_env.concepts.vocabulary import Vocabulary

    vocab = Vocabulary(args.subset)
    threads = runtime.use_threads(args.threads)
    print(f"embedding {len(vocab):,} concept texts on {threads} thread(s), {runtime.precision_tag('cpu')}")
    started = time.perf_counter()
    vectors = vocab.embeddings()
    seconds = time.perf_counter() - started
    print(
        f"{args.subset}: {vectors.shape[0]:,} x {vectors.shape[1]} concept embeddings ready in {seconds:.1f} s"
    )
    started = time.perf_counter()
    queries = vocab.query_embeddings()
    seconds = time.perf_counter() - started
    print(
        f"{args.subset}: {queries.shape[0]:,} search-query embeddings ({runtime.precision_tag('cpu')}) "
        f"ready in {seconds:.1f} s"
    )
    return 0


def cmd_nearest(args: argparse.Namespace) -> int:
    """``ie-vocab nearest``: concepts nearest to a text."""
    from ie_env.concepts.vocabulary import Vocabulary

    vocab = Vocabulary(args.subset)
    if not vocab.embeddings_cached():
        print(
            f"embeddings for subset {args.subset!r} are not cached yet; computing them now "
            f"(or run `ie-vocab embed --subset {args.subset}` first)",
            file=sys.stderr,
        )
    runtime.use_threads(args.threads)
    vocab.embeddings()
    for concept, score in vocab.nearest(args.text, k=args.k):
        print(f"{score:6.3f}  {concept.id:>6}  {concept.lemma}  ({concept.hypernym or '-'}): {concept.gloss}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``ie-vocab`` argument parser."""
    parser = argparse.ArgumentParser(prog="ie-vocab", description="The WordNet noun concept vocabulary.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="counts and cache state").set_defaults(func=cmd_info)
    subset_help = "full, small, words:a,b,c, or a word-list file (default: %(default)s)"
    embed = commands.add_parser("embed", help="compute and cache concept-text embeddings")
    embed.add_argument("--subset", default="full", help=subset_help)
    embed.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: $IE_ENV_THREADS, else every core)"
    )
    embed.set_defaults(func=cmd_embed)
    nearest = commands.add_parser("nearest", help="concepts nearest to a text")
    nearest.add_argument("text")
    nearest.add_argument("-k", type=int, default=10, help="how many (default %(default)s)")
    nearest.add_argument("--subset", default="full", help=subset_help)
    nearest.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: $IE_ENV_THREADS, else every core)"
    )
    nearest.set_defaults(func=cmd_nearest)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``ie-vocab``; returns the exit code (2 with a one-line message for setup or value errors)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SetupError as exc:
        print(f"ie-vocab: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"ie-vocab: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
