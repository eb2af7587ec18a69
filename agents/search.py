"""``search_zucb``: uniform search until a step's images stand out, then ``caption_zucb``'s climb.

On the offline web a query that returns nothing of the target says nothing about where the target
is: on the frozen world of ``fmnist`` and ``shop-3`` (full vocabulary, 5 results per query), the
share of relevant concepts among the 64 nearest neighbours (query-embedding space) of a concept
that returned no relevant image is the same whatever that concept's reward, from robust z < 0 to
z in [2, 3). A GP-UCB agent that climbs the best reward before any relevant image came back climbs
noise and looks near concepts that missed, where hits are rarer than average. Measured for
``caption_zucb`` on seeds 16-31 (frozen env, 10 x 16 queries x 5 results): 3 of 16 ``fmnist`` and
7 of 16 ``shop-3`` episodes never returned a relevant image, where 160 uniform queries miss with
probability 0.02 and 0.25. Once it had one, it was good at climbing: 0.80 and 0.64 of the later
iterations' images were relevant.

So this agent does both halves on purpose:

* **Search**: one uniform unqueried concept per step (no GP fit), until one step's images stand
  out from the images the search itself collected (after ``min_images`` of them): robust z
  (median and 1.4826 MAD of the search's image rewards) ``>= gate`` for one image, or
  ``>= pair_gate`` and ``>= pair_second`` for two images of the same step. The search's own rewards
  are the null: the climb's rewards, mostly hits, would hide the next hit. An optional step gate
  (``step_gate``: a step's reward against the search's step rewards, after ``min_steps`` steps) is
  off by default.
* **Climb**: at once, mid-iteration, the GP is fitted on every observation (concepts and captions)
  and the rest of the iteration, and every later one, are ``caption_zucb``'s picks.
* **Back to search** (``confirm``): an iteration of climbing in which nothing stood out (by the same
  rules) was a false lead.

Why these gates. On the frozen world's tables (every concept's 5 results; the null from all their
images), one image at z >= 2.5 flags 96 % of the ``shop-3`` queries that return a relevant image
and 1.3 % of the others: at a 0.86 % hit rate, 6 of 10 such leads are false. One image at z >= 3,
or two at >= 2.5 and >= 2.0, flag 94 % and 0.43 % (``fmnist``: 88 % and 0.01 %, against 92 % and
0.31 % at 2.5). The step gate (robust z >= 3 of a step's reward after 8 search steps) had a null
of 8 values: it started most climbs within the first 12 steps, and the climb's own steps, a
neighbourhood of maps or flags, kept confirming it (``shop-3`` seed 103: 151 of 160 steps climbing,
no relevant image). Measured on the frozen env (10 x 16 queries x 5 results, seeds 80-111,
relevant fraction ``fmnist`` / ``shop-3``): one image at 2.5 with the step gate 0.511 / 0.237,
without the step gate 0.533 / 0.278, these gates 0.555 / 0.310; the ``shop-3`` episodes without a
relevant image went from 13 to 11 to 7 of 32 (160 uniform queries miss with probability 0.25) and
the share of the steps before the first hit spent climbing from 0.36 to 0.10. Tried and dropped: a
uniform step every 4th climbing step (``shop-3`` 0.222: the climb loses a quarter of its steps).
On 96 seeds no setting was chosen on (48-79, 112-175): 0.480 / 0.290 against ``caption_zucb``'s
0.403 / 0.263.

A step the search did not pick (a label-set wrapper's class-name query) may end the search but does
not join its null: class-name hits in the null hid the next hit (``fmnist`` label-set setting,
3 seeds: 0.309 with them, 0.742 without).

It asks for one action per step (``per_step``), so it can switch as soon as a step has come back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ie_env.agents.gp_agents import UCBAgent

MAD_SCALE = 1.4826  # MAD of a normal sample x 1.4826 = its standard deviation


def robust_z(null: list[float], new: list[float]) -> np.ndarray:
    """The robust z of each of ``new`` against ``null`` (median, 1.4826 MAD)."""
    values = np.asarray(null, dtype=np.float64)
    median = float(np.median(values))
    mad = MAD_SCALE * float(np.median(np.abs(values - median))) + 1e-12
    return (np.asarray(new, dtype=np.float64) - median) / mad


def robust_z_max(null: list[float], new: list[float]) -> float:
    """The robust z of the largest of ``new`` against ``null``; -inf if ``new`` is empty."""
    return float(robust_z(null, [max(new)])[0]) if new else -np.inf


def _packed(prefix: str, steps: list[list[float]]) -> dict[str, np.ndarray]:
    """Per-step reward lists as two arrays: ``<prefix>_images`` (all, flat) and ``<prefix>_sizes``."""
    return {
        f"{prefix}_images": np.asarray([r for step in steps for r in step], dtype=np.float64),
        f"{prefix}_sizes": np.asarray([len(step) for step in steps], dtype=np.int64),
    }


def _unpacked(prefix: str, state: dict[str, Any]) -> list[list[float]]:
    """The per-step lists that :func:`_packed` wrote (popped from ``state``)."""
    flat = np.asarray(state.pop(f"{prefix}_images"), dtype=np.float64).reshape(-1)
    ends = np.cumsum(np.asarray(state.pop(f"{prefix}_sizes"), dtype=np.int64).reshape(-1))
    return [step.tolist() for step in np.split(flat, ends[:-1])] if len(ends) else []


class SearchThenClimbAgent(UCBAgent):
    """Uniform search until a step's images stand out, then GP-UCB (see the module's docstring).

    Args:
        gate: robust z one image reward must reach to end the search.
        pair_gate: robust z the best of two images of one step must reach, the other
            ``pair_second``, to end the search (None: off).
        pair_second: see ``pair_gate``.
        step_gate: robust z a step's reward must reach to end the search (None: off).
        min_images: search images needed before an image can end the search.
        min_steps: search steps (with a new image) needed before a step can end the search.
        confirm: go back to search after a climbing iteration where nothing stood out.
        **kwargs: :class:`~ie_env.agents.gp_agents.UCBAgent`'s (``caption_zucb``'s settings by default
            through the registry).
    """

    name = "search_zucb"
    per_step = True

    def __init__(
        self,
        *args: Any,
        gate: float = 3.0,
        pair_gate: float | None = 2.5,
        pair_second: float = 2.0,
        step_gate: float | None = None,
        min_images: int = 40,
        min_steps: int = 8,
        confirm: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.gate, self.step_gate = gate, step_gate
        self.pair_gate, self.pair_second = pair_gate, pair_second
        self.min_images, self.min_steps, self.confirm = min_images, min_steps, confirm

    def _reset(self) -> None:
        super()._reset()
        self.climbing = False
        self.search_images: list[list[float]] = []  # the null: each search step's image rewards
        self.search_steps: list[float] = []
        self.new_from = (0, 0)  # where the search's steps (image lists / rewards) since the last climb begin
        self.iteration_images: list[list[float]] = []  # seen while climbing this iteration
        self.iteration_steps: list[float] = []
        self.queue: list[int] = []
        self.steps_this_iteration = 0
        self.steps_per_iteration = 16  # until the first iteration has closed
        self.switches = {"climbs": 0, "false_leads": 0}
        self.searched: int | None = None  # the search's last pick, until its step comes back

    def stands_out(self, images: list[list[float]], steps: list[float]) -> bool:
        """Whether any step's image rewards (one list per step), or any step reward, stand out.

        An image stands out at robust z ``>= gate``; with ``pair_gate``, also two images of one step
        at ``>= pair_gate`` and ``>= pair_second``. The null is every image / step reward the
        search has seen.
        """
        null = [r for step in self.search_images for r in step]
        if len(null) >= self.min_images:
            for step in images:
                z = np.sort(robust_z(null, step))[::-1]
                if len(z) and z[0] >= self.gate:
                    return True
                pair = self.pair_gate is not None and len(z) > 1
                if pair and z[0] >= self.pair_gate and z[1] >= self.pair_second:
                    return True
        if self.step_gate is None or len(self.search_steps) < self.min_steps:
            return False
        return robust_z_max(self.search_steps, steps) >= self.step_gate

    def update(self, action: int, reward: float, info: dict[str, Any]) -> None:
        """Record the step; end the search (and refit the GP) when it stands out."""
        images = [float(r) for r in info.get("image_rewards", ())]
        step = [float(reward)] if int(info.get("images_kept", 0)) > 0 else []
        # a step the search did not pick (a wrapper's class-name query) may end it, not join its null
        searched = not self.climbing and action == self.searched
        self.searched = None
        if self.climbing:
            self.iteration_images.append(images)
            self.iteration_steps += step
        elif searched:
            self.search_images.append(images)
            self.search_steps += step
        super().update(action, reward, info)
        self.steps_this_iteration += 1
        if self.climbing:
            return
        images_from, steps_from = self.new_from
        new_images = self.search_images[images_from:] + ([] if searched else [images])
        new_steps = self.search_steps[steps_from:] + ([] if searched else step)
        if self.stands_out(new_images, new_steps):
            self.climbing = True
            self.switches["climbs"] += 1
            self.new_from = (len(self.search_images), len(self.search_steps))
            self.iteration_images, self.iteration_steps = [], []
            UCBAgent.end_iteration(self)  # fit the GP now: the rest of this iteration climbs
            self.queue = []

    def propose(self, k: int) -> list[int]:
        """One action: a uniform unqueried concept while searching, else the next GP-UCB pick."""
        _, rng = self._require_reset()
        self._check_k(k)
        if self.climbing:
            if not self.queue:
                left = max(1, self.steps_per_iteration - self.steps_this_iteration)
                self.queue = super().propose(left)
            return [self.queue.pop(0)]
        pool = np.flatnonzero(~self.queried)
        if len(pool) == 0:  # everything queried: the GP's repeats
            (self.searched,) = super().propose(1)
        else:
            self.searched = int(rng.choice(pool, 1, replace=False)[0])
        return [self.searched]

    def end_iteration(self) -> None:
        """Back to search after a false lead; refit the GP while climbing."""
        lead = self.climbing and self.confirm and any(self.iteration_images)
        if lead and not self.stands_out(self.iteration_images, self.iteration_steps):
            self.climbing = False
            self.switches["false_leads"] += 1
        self.iteration_images, self.iteration_steps = [], []
        if self.steps_this_iteration:
            self.steps_per_iteration = self.steps_this_iteration
        self.steps_this_iteration, self.queue = 0, []
        if self.climbing:
            super().end_iteration()

    def _state(self) -> dict[str, Any]:
        return {
            **super()._state(),
            "climbing": np.asarray(self.climbing),
            **_packed("search", self.search_images),
            "search_steps": np.asarray(self.search_steps, dtype=np.float64),
            # mid-iteration (a Ctrl-C checkpoint): the iteration so far
            **_packed("iteration", self.iteration_images),
            "iteration_steps": np.asarray(self.iteration_steps, dtype=np.float64),
            "queue": np.asarray(self.queue, dtype=np.int64),
            "steps_this_iteration": np.asarray(self.steps_this_iteration),
            "new_from": np.asarray(self.new_from),
            "steps_per_iteration": np.asarray(self.steps_per_iteration),
            "switches": np.asarray([self.switches["climbs"], self.switches["false_leads"]]),
        }

    def _load(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.climbing = bool(state.pop("climbing"))
        self.search_images = _unpacked("search", state)
        self.iteration_images = _unpacked("iteration", state)
        for key in ("search_steps", "iteration_steps"):
            setattr(self, key, [float(v) for v in np.asarray(state.pop(key)).reshape(-1)])
        self.queue = [int(v) for v in np.asarray(state.pop("queue")).reshape(-1)]
        self.steps_this_iteration = int(state.pop("steps_this_iteration"))
        images_from, steps_from = (int(v) for v in np.asarray(state.pop("new_from")).reshape(-1))
        self.new_from = (images_from, steps_from)
        self.steps_per_iteration = int(state.pop("steps_per_iteration"))
        climbs, false_leads = (int(v) for v in np.asarray(state.pop("switches")).reshape(-1))
        self.switches = {"climbs": climbs, "false_leads": false_leads}
        super()._load(state)

    def hyperparameters(self) -> dict[str, Any]:
        """The agent's settings, for logs."""
        return {**super().hyperparameters(), "beta": self.beta, "gate": self.gate, "pair_gate": self.pair_gate,
                "pair_second": self.pair_second, "step_gate": self.step_gate,
                "min_images": self.min_images, "min_steps": self.min_steps, "confirm": self.confirm}  # fmt: skip
