"""Real SSL training: MoCo v3 on a generated two-class dataset makes k-NN accuracy rise above random init.

Classes: a filled disc vs a plus sign, random position and size, on a fixed background; each image gets
Gaussian pixel noise of a random strength (0-100 grey levels). A random-init encoder's features follow
the noise level more than the shape, so its k-NN accuracy is mediocre; random crops change how strong
the noise looks from view to view, so MoCo v3 learns to ignore it and keep the shape.
"""

from __future__ import annotations

import numpy as np
import pytest

from ie_env.learn.config import LearnConfig
from ie_env.learn.trainer import Learner

SIZE = 32


def two_class_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 RGB images (disc = 0, plus = 1) and their labels."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    labels = rng.integers(0, 2, n)
    images = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for i in range(n):
        r = rng.uniform(6, 10)
        cx, cy = rng.uniform(r, SIZE - r, 2)
        if labels[i] == 0:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        else:
            bar = 0.35 * r
            mask = ((np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= bar)) | (
                (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= bar)
            )
        img = np.where(mask, 220.0, 30.0)[..., None].repeat(3, axis=2)
        img = img + rng.normal(0, rng.uniform(0, 100), img.shape)
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels


# The gain of one seed is noisy: any change of the floating-point path (another CPU, BLAS or thread
# count) sends training down another trajectory. Measured over seeds 0-9 at 100 steps (1 torch thread):
# k-NN gain min -0.004 / median 0.111 / max 0.219, linear-probe gain min 0.039 / median 0.098 / max 0.145.
# The tests therefore take the median over three seeds; the worst median of any three of those ten seeds
# is 0.043 (k-NN) and 0.066 (linear probe), so a bound of 0.02 leaves a margin, while an encoder that
# does not learn (gain 0) or unlearns fails.
SEEDS = (0, 1, 2)


def _before_after(steps: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    train, train_y = two_class_images(512, rng)
    test, test_y = two_class_images(256, rng)
    cfg = LearnConfig(convnet_width=16, image_size=SIZE, batch_size=64)
    learner = Learner(cfg, train, target_labels=train_y, seed=seed, device="cpu")
    before = learner.evaluate(test, test_y)
    stats = learner.train(train[:0], steps=steps)  # no candidates: an SSL phase on the target alone
    after = learner.evaluate(test, test_y)
    assert np.isfinite(stats.loss)
    return {
        "knn_before": before.knn_accuracy,
        "knn_after": after.knn_accuracy,
        "knn_gain": after.knn_accuracy - before.knn_accuracy,
        "probe_gain": after.linear_probe_accuracy - before.linear_probe_accuracy,
    }


def _medians(steps: int) -> dict[str, float]:
    runs = [_before_after(steps, seed) for seed in SEEDS]
    return {key: float(np.median([run[key] for run in runs])) for key in runs[0]}


def test_moco_training_beats_random_init_knn() -> None:
    median = _medians(steps=100)
    assert median["knn_gain"] >= 0.02, median
    assert median["probe_gain"] >= 0.02, median


@pytest.mark.slow
def test_moco_training_few_hundred_steps_well_above_random_init() -> None:
    median = _medians(steps=300)
    assert median["knn_gain"] >= 0.2 and median["knn_after"] >= 0.9, median
