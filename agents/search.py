"""``search_zucb``: uniform search until an image stands out, then ``caption_zucb``'s climb.

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

* **Search**: one uniform unqueried concept per step (no GP fit), until an image reward, or a
  step's reward, stands out from the rewards the search itself collected: robust z (median and
  1.4826 MAD of the search's image / step rewards) ``>= gate`` for an image (after
  ``min_images`` search images) or ``>= step_gate`` for a step (after ``min_steps`` search
  steps). The search's own rewards are the null: the climb's rewards, mostly hits, would hide the
  next hit.
* **Climb**: at once, mid-iteration, the GP is fitted on every observation (concepts and captions)
  and the rest of the iteration, and every later one, are ``caption_zucb``'s picks.
* **Back to search** (``confirm``): an iteration of climbing in which nothing stood out was a
  false lead.

It asks for one action per step (``per_step``), so it can switch as soon as a step has come back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ie_env.agents.gp_agents import UCBAgent

MAD_SCALE = 1.4826  # MAD of a normal sample x 1.4826 = its standard deviation


def robust_z_max(null: list[float], new: list[float]) -> float:
    """The robust z of the largest of ``new`` against ``null`` (median, 1.4826 MAD); -inf if ``new`` is empty."""
    if not new:
        return -np.inf
    values = np.asarray(null, dtype=np.float64)
    median = float(np.median(values))
    mad = MAD_SCALE * float(np.median(np.abs(values - median))) + 1e-12
    return (max(new) - median) / mad


class SearchThenClimbAgent(UCBAgent):
    """Uniform search until an image or a step stands out, then GP-UCB (see the module's docstring).

    Args:
        gate: robust z an image reward must reach to end the search.
        step_gate: robust z a step's reward must reach to end the search.
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
        gate: float = 2.5,
        step_gate: float = 3.0,
        min_images: int = 40,
        min_steps: int = 8,
        confirm: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.gate, self.step_gate = gate, step_gate
        self.min_images, self.min_steps, self.confirm = min_images, min_steps, confirm

    def _reset(self) -> None:
        super()._reset()
        self.climbing = False
        self.search_images: list[float] = []  # the null: every image reward seen while searching
        self.search_steps: list[float] = []
        self.new_from = (0, 0)  # where the search's images / steps since the last climb begin
        self.iteration_images: list[float] = []  # seen while climbing this iteration
        self.iteration_steps: list[float] = []
        self.queue: list[int] = []
        self.steps_this_iteration = 0
        self.steps_per_iteration = 16  # until the first iteration has closed
        self.switches = {"climbs": 0, "false_leads": 0}

    def stands_out(self, images: list[float], steps: list[float]) -> bool:
        """Whether any of these image or step rewards stands out from the search's own."""
        if (
            len(self.search_images) >= self.min_images
            and robust_z_max(self.search_images, images) >= self.gate
        ):
            return True
        return len(self.search_steps) >= self.min_steps and (
            robust_z_max(self.search_steps, steps) >= self.step_gate
        )

    def update(self, action: int, reward: float, info: dict[str, Any]) -> None:
        """Record the step; end the search (and refit the GP) when it stands out."""
        images = [float(r) for r in info.get("image_rewards", ())]
        step = [float(reward)] if int(info.get("images_kept", 0)) > 0 else []
        if self.climbing:
            self.iteration_images += images
            self.iteration_steps += step
        else:
            self.search_images += images
            self.search_steps += step
        super().update(action, reward, info)
        self.steps_this_iteration += 1
        images_from, steps_from = self.new_from
        new_images, new_steps = self.search_images[images_from:], self.search_steps[steps_from:]
        if not self.climbing and self.stands_out(new_images, new_steps):
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
            return super().propose(1)
        return [int(i) for i in rng.choice(pool, 1, replace=False)]

    def end_iteration(self) -> None:
        """Back to search after a false lead; refit the GP while climbing."""
        lead = self.climbing and self.confirm and self.iteration_steps
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
            "search_images": np.asarray(self.search_images, dtype=np.float64),
            "search_steps": np.asarray(self.search_steps, dtype=np.float64),
            "new_from": np.asarray(self.new_from),
            "steps_per_iteration": np.asarray(self.steps_per_iteration),
            "switches": np.asarray([self.switches["climbs"], self.switches["false_leads"]]),
        }

    def _load(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.climbing = bool(state.pop("climbing"))
        for key in ("search_images", "search_steps"):
            setattr(self, key, [float(v) for v in np.asarray(state.pop(key)).reshape(-1)])
        images_from, steps_from = (int(v) for v in np.asarray(state.pop("new_from")).reshape(-1))
        self.new_from = (images_from, steps_from)
        self.steps_per_iteration = int(state.pop("steps_per_iteration"))
        climbs, false_leads = (int(v) for v in np.asarray(state.pop("switches")).reshape(-1))
        self.switches = {"climbs": climbs, "false_leads": false_leads}
        super()._load(state)

    def hyperparameters(self) -> dict[str, Any]:
        """The agent's settings, for logs."""
        return {**super().hyperparameters(), "beta": self.beta, "gate": self.gate, "step_gate": self.step_gate,
                "min_images": self.min_images, "min_steps": self.min_steps, "confirm": self.confirm}  # fmt: skip
