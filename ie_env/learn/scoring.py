"""The encoder side of the learner: the target images, their embeddings, image rewards and evaluation.

:class:`Scorer` holds the MoCo v3 model and the images the reward is measured against (target-train,
and a background sample for the ``knn_centered`` reward). It embeds images, scores them and evaluates
the encoder; :class:`~ie_env.learn.trainer.Learner` adds training on top. Target and background
embeddings are cached and dropped whenever the encoder changes. Images are embedded under bfloat16
autocast where the device runs it natively (see ``embed``); embeddings and rewards are float32. The
model's weights are kept channels-last (and batches are made so), which is what the fast convolution
kernels of oneDNN (CPU) and cuDNN expect.
"""

from __future__ import annotations

import numpy as np
import torch

from ie_env.learn.augment import images_to_tensor
from ie_env.learn.config import BACKGROUND_REWARDS, LearnConfig
from ie_env.learn.embed import embed_tensor
from ie_env.learn.encoders import build_backbone
from ie_env.learn.evaluate import EvalResult, evaluate_features
from ie_env.learn.moco import MoCoV3
from ie_env.learn.reward import ConceptScore, ImageScores, concept_score, image_rewards
from ie_env.runtime import default_device


class Scorer:
    """A MoCo v3 encoder and the target set it scores images against.

    Args:
        config: the learner's configuration.
        target_train: unlabeled target images, uint8 ``(N, H, W, 3)`` RGB, N >= 2.
        target_labels: optional integer labels of ``target_train`` (evaluation only).
        background: optional uint8 images of a background sample of the web (``knn_centered`` reward).
        init_seed: seeds the model's initialisation.
        device: torch device; default CUDA when available, else CPU.
        progress: default of the methods' ``progress`` argument (progress bars while embedding).
    """

    def __init__(
        self,
        config: LearnConfig,
        target_train: np.ndarray,
        *,
        target_labels: np.ndarray | None,
        background: np.ndarray | None,
        init_seed: int,
        device: str | torch.device | None,
        progress: bool,
    ) -> None:
        self.config = config
        self.progress = progress
        self.device = torch.device(device if device is not None else default_device())
        self._target = images_to_tensor(target_train, config.image_size)
        if len(self._target) < 2:
            raise ValueError(f"target_train needs at least 2 images, got {len(self._target)}")
        self._target_labels = None
        if target_labels is not None:
            self._target_labels = np.asarray(target_labels).astype(np.int64)
            if self._target_labels.shape != (len(self._target),):
                raise ValueError(
                    f"target_labels must have shape ({len(self._target)},), got {self._target_labels.shape}"
                )
        self._background = images_to_tensor(background, config.image_size) if background is not None else None
        self._target_emb: np.ndarray | None = None
        self._background_emb: np.ndarray | None = None
        self._build_model(init_seed)

    def _build_model(self, init_seed: int) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            backbone, dim = build_backbone(self.config)
            # channels-last: oneDNN's fast convolutions on a CPU (about 2x with bf16), cuDNN's on a GPU
            self.model = MoCoV3(backbone, dim, self.config).to(self.device, memory_format=torch.channels_last)
        self.feature_dim = dim
        self._encoder_changed()

    def _encoder_changed(self) -> None:
        self._target_emb = None
        self._background_emb = None

    def _show(self, progress: bool | None) -> bool:
        return self.progress if progress is None else progress

    @property
    def target_size(self) -> int:
        """Number of target-train images."""
        return len(self._target)

    def embed(self, images: np.ndarray, *, progress: bool | None = None) -> np.ndarray:
        """Backbone features of uint8 images ``(N, H, W, 3)``: float32 ``(N, D)``, L2-normalised."""
        data = images_to_tensor(images, self.config.image_size)
        return self._embed_tensor(data, self._show(progress))

    def _embed_tensor(
        self, data: torch.Tensor, progress: bool = False, desc: str = "embedding images"
    ) -> np.ndarray:
        return embed_tensor(
            self.model.backbone,
            data,
            self.feature_dim,
            batch_size=self.config.embed_batch_size,
            device=self.device,
            progress=progress,
            desc=desc,
        )

    @property
    def target_embeddings(self) -> np.ndarray:
        """Embeddings of the target-train set under the current encoder (recomputed after each phase)."""
        if self._target_emb is None:
            self._target_emb = self._embed_tensor(self._target, self.progress, "embedding target images")
        return self._target_emb

    @property
    def background_embeddings(self) -> np.ndarray | None:
        """Embeddings of the background sample (None when there is none)."""
        if self._background is None:
            return None
        if self._background_emb is None:
            self._background_emb = self._embed_tensor(self._background, self.progress, "embedding background")
        return self._background_emb

    def set_background(self, images: np.ndarray) -> None:
        """Set the background sample of web images used by the ``knn_centered`` reward."""
        self._background = images_to_tensor(images, self.config.image_size)
        self._background_emb = None

    def score(self, images: np.ndarray, *, progress: bool | None = None) -> ImageScores:
        """Image rewards of uint8 images under the current encoder (the configured reward variant)."""
        emb = self.embed(images, progress=progress)
        return ImageScores(rewards=self.score_embeddings(emb), embeddings=emb)

    def score_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Image rewards of embeddings made by ``embed`` with the current encoder."""
        if len(embeddings) == 0:
            return np.zeros(0, dtype=np.float32)
        if self.config.reward in BACKGROUND_REWARDS and self._background is None:
            raise ValueError(
                f"reward {self.config.reward!r} needs a background sample: pass background= or set_background()"
            )
        return image_rewards(
            embeddings,
            self.target_embeddings,
            k=self.config.reward_k,
            variant=self.config.reward,
            background=self.background_embeddings,
        )

    def concept_score(self, image_rewards: np.ndarray | list[float]) -> ConceptScore:
        """Mean of the top ``config.concept_top`` rewards; ``(0.0, "no_images")`` when there are none."""
        return concept_score(image_rewards, top=self.config.concept_top)

    def evaluate(
        self, test_images: np.ndarray, test_labels: np.ndarray, *, seed: int = 0, progress: bool | None = None
    ) -> EvalResult:
        """Return k-NN (k = ``config.eval_knn_k``) and linear-probe accuracy on a labeled test split.

        The labeled target-train set is the training side, so this needs ``target_labels``.
        ``progress`` shows a bar while the test images are embedded (default: the scorer's).
        """
        if self._target_labels is None:
            raise ValueError("evaluate needs target_labels (pass them to Learner)")
        return evaluate_features(
            self.target_embeddings,
            self._target_labels,
            self.embed(test_images, progress=progress),
            np.asarray(test_labels),
            k=self.config.eval_knn_k,
            seed=seed,
        )
