"""The full world: search over HTTP, download, store, score with the live encoder, train per iteration.

By default the search engine is the offline web: an Openverse-compatible server over the target's web
corpus (target images excluded), started on a free 127.0.0.1 port in this process and stopped on
``close()``; ``web_url`` points at an already running ``ie-web serve`` instead. Live engines
(``openverse``, ``wikimedia``, ``flickr``) use the same client code when the machine has internet.

Downloaded images go into an :class:`~ie_env.download.store.ImageStore` (one per episode, under ``run_dir``)
which deduplicates them against everything the episode already has.
"""

from __future__ import annotations

import functools
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ie_env.concepts.vocabulary import Vocabulary
from ie_env.config import EnvConfig
from ie_env.download import DownloadConfig
from ie_env.download.executor import make_executor
from ie_env.download.store import ImageStore
from ie_env.learn.replay import admitted_indices
from ie_env.learn.trainer import TRAIN_POOLS, NonFiniteLossError
from ie_env.paths import cache_subdir
from ie_env.search import make_engine
from ie_env.worlds.base import QueryOutcome
from ie_env.worlds.common import announce, evaluate_learner, make_learner, open_target


def fresh_run_dir(run_dir: str | None, reopen: bool = False) -> Path:
    """The folder for this env's image stores: ``run_dir``, refused unless it is new or empty.

    Reopening an old store would make every image a duplicate of the last run's (reward 0), so a
    folder that already holds files is an error, unless ``reopen`` (``EnvConfig.resume``: the
    caller continues that run and restores its state). ``None`` picks a new folder under the cache dir.
    """
    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return cache_subdir("runs") / f"env-{stamp}-{os.getpid()}-{time.monotonic_ns():x}"
    path = Path(run_dir)
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not reopen)):
        raise ValueError(
            f"run_dir {str(path)!r} is not empty (it holds an earlier run's image store, whose images "
            "would all count as duplicates); pass a new or empty folder"
        )
    return path


class FullWorld:
    """See the module docstring."""

    def __init__(self, config: EnvConfig, vocabulary: Vocabulary, progress: bool = True) -> None:
        self.config = config
        size = config.image_size
        self.target = open_target(config, progress=progress)
        self.learner = make_learner(config, self.target, progress=progress)
        self._initial_state = self.learner.state_dict()
        self.test_images = self.target.test_images(size)
        self.test_labels = self.target.test_labels
        self._server = None
        self.engine = self._make_engine(vocabulary, progress)
        allowed = ()
        if config.engine == "local":
            parts = urlsplit(self.web_url)
            allowed = (f"{parts.hostname}:{parts.port}",)
        # Decoding 20 images a step needs no process pool (which would also re-import an unguarded
        # user script in its workers); bulk downloads can ask for processes via download_overrides.
        download_fields = {
            "image_size": size,
            # The one preprocessing of the project: the web corpus arrays (targets, frozen world) are
            # decoded from the same bytes with the same function and mode.
            "resize_mode": "border",
            "allowed_hosts": allowed,
            "processes": 0,
        }
        download_fields.update(config.download_overrides)
        # The search-and-download back end: asyncio in this process, or Ray workers (executor="ray").
        # Searches stay in this process; downloads go through the executor; the store stays here.
        self.executor = make_executor(
            config.executor_config(), DownloadConfig(**download_fields), self._engine_factory()
        )
        self.run_dir = fresh_run_dir(config.run_dir, reopen=config.resume)
        self.store: ImageStore | None = None
        self.episode = -1
        self.iteration = 0
        self._pending: list[tuple[np.ndarray, np.ndarray, list[int]]] = []

    # -- setup ----------------------------------------------------------------------------------

    def _engine_factory(self):
        """A picklable recipe for this world's engine (Ray builds one in each search worker)."""
        if self.config.engine == "local":
            return functools.partial(make_engine, "local", base_url=self.web_url)
        return functools.partial(make_engine, self.config.engine)

    def _make_engine(self, vocabulary: Vocabulary, progress: bool):
        if self.config.engine != "local":
            self.web_url = None
            return make_engine(self.config.engine)
        if self.config.web_url:
            self.web_url = self.config.web_url.rstrip("/")
        else:
            from ie_env.web.server import build_index, start_server

            if progress:
                announce(
                    f"indexing the captions of {len(self.target.corpus):,} web images and starting the search server"
                )
            index = build_index(
                self.target.corpus, self.target, progress=progress, threads=self.config.threads
            )
            # The vocabulary's concept queries keep the vectors the frozen world ranks them with.
            queries = vocabulary.query_embeddings(build=False)
            if queries is None:
                if progress:
                    announce(
                        f"embedding the {len(vocabulary):,} concept queries (cached after the first run)"
                    )
                queries = vocabulary.query_embeddings(show_progress=progress)
            index.embedder.preload(vocabulary.query_texts, queries)
            self._server = start_server(index, port=0)
            self.web_url = self._server.url.rstrip("/")
        return make_engine("local", base_url=self.web_url)

    # -- World API --------------------------------------------------------------------------------

    def reset(self, rng: np.random.Generator) -> None:
        """Restore the initial encoder and RNG stream and open a new episode's image store."""
        self.learner.load_state_dict(self._initial_state)
        self.learner.reseed(np.random.default_rng(int(rng.integers(2**63))))
        if self.store is not None:
            self.store.close()
        self.episode += 1
        self.store = ImageStore(self.run_dir / f"episode-{self.episode:03d}")
        self.iteration = 0
        self._pending = []

    def query(self, query: str, concept_id: int) -> QueryOutcome:
        """Search, download, store and score one query's images (never raises for engine failures)."""
        if self.store is None:
            raise RuntimeError("reset() must be called before query()")
        if self.config.target_only:  # the no-download baseline: the iteration trains on the target alone
            return QueryOutcome(0.0, "target_only")
        seconds: dict[str, float] = {}
        started = time.perf_counter()
        result = self.engine.search(query, self.config.results_per_query)
        seconds["search"] = time.perf_counter() - started
        if not result.ok:
            return QueryOutcome(0.0, "search_error", error=result.error, seconds=seconds)
        kept, statuses = self._download_and_store(result.hits, query, concept_id, seconds)
        counts = dict(Counter(statuses))
        hit_ids = [hit.id for hit in result.hits]
        if not kept:
            return QueryOutcome(
                0.0,
                "no_images",
                image_statuses=statuses,
                download_counts=counts,
                hits=len(hit_ids),
                hit_ids=hit_ids,
                seconds=seconds,
            )
        started = time.perf_counter()
        images = np.stack([d.image for d, _, _ in kept])
        rewards = self.learner.score(images).rewards
        ids = [r.id for _, r, _ in kept]
        self.store.set_reward(ids, rewards.tolist())
        self._pending.append((images, rewards, ids))
        score, status = self.learner.concept_score(rewards)
        seconds["score"] = time.perf_counter() - started
        relevant = None
        if self.web_url is not None:
            relevant = float(np.mean([self.target.is_relevant_id(h.id) for _, _, h in kept]))
        return QueryOutcome(
            reward=float(score),
            status=status,
            image_rewards=rewards.tolist(),
            image_captions=[hit.title or "" for _, _, hit in kept],
            image_statuses=statuses,
            download_counts=counts,
            hits=len(hit_ids),
            hit_ids=hit_ids,
            relevant_fraction=relevant,
            seconds=seconds,
        )

    def _download_and_store(
        self, hits: list, query: str, concept_id: int, seconds: dict[str, float]
    ) -> tuple[list[tuple], list[str]]:
        """Fetch the hits, add the new images to the store; return (download, record, hit) kept, statuses."""
        started = time.perf_counter()
        batch = self.executor.fetch(hits, known=self.store)
        seconds["download"] = time.perf_counter() - started
        started = time.perf_counter()
        records = self.store.add_many(
            batch.downloads,
            iteration=self.iteration,
            metas=[{"license": hit.license} for hit in hits],
            query=query,
            concept_id=concept_id,
            engine=self.engine.name,
        )
        seconds["store"] = time.perf_counter() - started
        kept = [(d, r, h) for d, r, h in zip(batch.downloads, records, hits, strict=True) if r is not None]
        statuses = [
            d.status if r is not None or not d.ok else "duplicate"
            for d, r in zip(batch.downloads, records, strict=True)
        ]
        return kept, statuses

    def train(self, steps: int | None) -> dict[str, Any]:
        """Train on the images gathered since the last training phase and admit the best to the buffer."""
        if self._pending:
            images = np.concatenate([p[0] for p in self._pending])
            rewards = np.concatenate([p[1] for p in self._pending])
            ids = [i for p in self._pending for i in p[2]]
        else:
            size = self.config.image_size
            images = np.zeros((0, size, size, 3), dtype=np.uint8)
            rewards = np.zeros(0, dtype=np.float32)
            ids = []
        self._pending = []
        started = time.perf_counter()
        try:
            stats = self.learner.train(images, rewards, steps=steps)
        except NonFiniteLossError as exc:
            return {"error": str(exc), "new_images": len(ids), "seconds": time.perf_counter() - started}
        if ids:
            best = admitted_indices(rewards, self.learner.config.buffer_fraction)
            self.store.set_in_buffer([ids[i] for i in best])
        return {
            "loss": stats.loss,
            "steps": stats.steps,
            "images_per_s": stats.images_per_s,
            "new_images": len(ids),
            "buffer_size": self.learner.buffer_size,
            # training images drawn per source (each counted once per step it appeared in)
            "trained_on": dict(zip(TRAIN_POOLS, stats.images_by_pool, strict=True)),
            "seconds": time.perf_counter() - started,
        }

    def end_iteration(self, evaluate: bool) -> dict[str, Any]:
        """Train on the iteration's images (unless per-step training) and evaluate if asked."""
        out: dict[str, Any] = {}
        if not self.config.per_step_training:
            out["train"] = self.train(self.config.train_steps_per_iteration)
        self.iteration += 1
        if evaluate:
            out["eval"] = self.evaluate()
        return out

    def evaluate(self) -> dict[str, Any]:
        """k-NN and linear-probe accuracy of the current encoder on the target's test split."""
        return evaluate_learner(self.learner, self.test_images, self.test_labels)

    def close(self) -> None:
        """Close the store, the executor, the engine and the server this world started.

        The engine's HTTP client goes before the server: an open keep-alive connection holds one of
        the server's request threads, which would then still run while the interpreter exits.
        """
        if self.store is not None:
            self.store.close()
            self.store = None
        self.executor.close()
        close_engine = getattr(self.engine, "close", None)
        if callable(close_engine):
            close_engine()
        if self._server is not None:
            self._server.stop()
            self._server = None
