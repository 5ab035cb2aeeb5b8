"""The per-pixel model: its features, its fit under a label budget, its choice."""

import numpy as np
import pytest
import torch

from geotl.chips.labels import IGNORE
from geotl.models.artefact import Normalisation
from geotl.models.network import NetworkSpec, build_network
from geotl.models.pixel import PixelNetwork, feature_count
from geotl.train.data import ChipData
from geotl.train.pixel import fit_pixel_candidate

NORM = Normalisation(mean=[100.0, 50.0], std=[20.0, 10.0])


def _chips(seed: int, n: int = 6, px: int = 32) -> ChipData:
    """Two-band chips: square fields brighter in band 0 than the rest, noise on top."""
    rng = np.random.default_rng(seed)
    images = rng.normal(np.array([90.0, 50.0])[:, None, None], 8.0, (n, 2, px, px))
    masks = np.zeros((n, px, px), np.uint8)
    for i in range(n):
        r, c = rng.integers(0, px - 12, 2)
        masks[i, r : r + 12, c : c + 12] = 1
    images[:, 0] += 40.0 * masks
    return ChipData("t", images.astype(np.float32), masks, np.ones_like(masks, bool))


def test_features_are_the_bands_and_their_local_statistics():
    x = torch.zeros(1, 2, 9, 9)
    x[0, 0, 4, 4] = 9.0
    f = PixelNetwork.features(x)
    assert f.shape == (1, feature_count(2), 9, 9) == (1, 10, 9, 9)
    assert torch.equal(f[:, :2], x)
    assert f[0, 2, 4, 4] == pytest.approx(1.0)  # 3x3 mean of band 0 at the bright pixel
    assert f[0, 6, 4, 4] == pytest.approx(9.0 / 49)  # 7x7 mean
    assert f[0, 4, 4, 4] == pytest.approx(np.std([9.0] + [0.0] * 8), rel=1e-5)  # 3x3 std
    assert torch.all(f[:, 2:4, 0, :] == 0)  # the edge repeats its pixels: no zeros padded in
    # a pixel's features do not depend on where the window was cut, beyond 3 px of it
    assert torch.allclose(PixelNetwork.features(x[..., 1:, 1:])[..., 3:, 3:], f[..., 4:, 4:])


def test_a_pixel_spec_builds_the_network_with_any_window_size():
    spec = NetworkSpec(arch="pixel", encoder="local-stats", in_channels=2, num_classes=3)
    assert spec.stride_px == 1 and spec.round_up_px(37) == 37
    net = build_network(spec)
    assert isinstance(net, PixelNetwork) and net(torch.zeros(2, 2, 37, 41)).shape == (2, 3, 37, 41)


def test_the_fit_separates_spectrally_distinct_classes_and_is_repeatable():
    train, val = _chips(0), _chips(1)
    a = fit_pixel_candidate([train], [val], NORM, 2, None, seed=0)
    b = fit_pixel_candidate([train], [val], NORM, 2, None, seed=0)
    assert a is not None and b is not None
    assert a.val_iou > 0.9 > 0.2 > a.threshold["floor_iou"]
    assert a.val_iou == pytest.approx(a.threshold["val_iou"], abs=1e-4)
    assert a.pixels == train.masks.size
    for name, tensor in a.network.state_dict().items():
        assert torch.equal(tensor, b.network.state_dict()[name]), name
    assert a.spec.arch == "pixel" and a.spec.in_channels == 2
    assert a.record(True, 0.5) | {"fit_seconds": 0} == {
        "val_iou": round(a.val_iou, 4),
        "threshold": a.threshold["value"],
        "network_val_iou": 0.5,
        "kept": True,
        "pixels": a.pixels,
        "fit_seconds": 0,
    }


def test_the_fit_sees_labelled_pixels_only():
    train = _chips(0)
    # unsampled objects under a label budget, guard bands, nodata: ignore, never fitted
    train.masks[:3] = IGNORE
    fitted = fit_pixel_candidate([train], [_chips(1)], NORM, 2, None, seed=0)
    assert fitted is not None and fitted.pixels == int((train.masks != IGNORE).sum())
    # nothing but background labelled: no model to fit
    train.masks[train.masks == 1] = IGNORE
    assert fit_pixel_candidate([train], [_chips(1)], NORM, 2, None, seed=0) is None


def test_the_fit_draws_a_bounded_sample_of_many_pixels(monkeypatch):
    import geotl.train.pixel as pixel

    monkeypatch.setattr(pixel, "MAX_PIXELS", 2000)
    train = _chips(0)
    fitted = fit_pixel_candidate([train], [_chips(1)], NORM, 2, None, seed=0)
    assert fitted is not None and 1500 < fitted.pixels < 2500 and fitted.val_iou > 0.9


def test_a_region_threshold_is_scored_as_set():
    fitted = fit_pixel_candidate([_chips(0)], [_chips(1)], NORM, 2, 0.95, seed=0)
    assert fitted is not None and fitted.val_iou <= fitted.threshold["val_iou"]
