import logging

import pytest
import torch

from geotl.errors import BandMismatchError
from geotl.models.adapt import adapt_first_conv, adapt_weight, plan_bands


def test_plan_matches_by_name_and_keeps_region_order():
    plan = plan_bands(["nir", "B04", "green"], ["B04", "B03", "B02"])
    assert plan.region_bands == ("nir", "red", "green")
    assert plan.sources == ((), (0,), (1,))
    assert plan.matched == ("red", "green")
    assert plan.new == ("nir",)
    assert plan.dropped == ("blue",)
    assert not plan.identity


def test_identity_plan():
    assert plan_bands(["red", "green", "blue"], ["B04", "B03", "B02"]).identity


def test_no_overlap_gives_new_filters_and_names_both_band_sets(caplog):
    """A sensor the base never saw keeps the pretrained network behind a new first layer."""
    with caplog.at_level(logging.WARNING, logger="geotl.models.adapt"):
        plan = plan_bands(["swir16", "swir22"], ["red", "green", "blue"])
    assert plan.sources == ((), ()) and plan.new == ("swir16", "swir22")
    assert plan.dropped == ("red", "green", "blue")
    assert "swir16" in caplog.text and "red" in caplog.text
    w = torch.randn(8, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    out = adapt_weight(w, plan, torch.Generator().manual_seed(1))
    assert out.shape == (8, 2, 3, 3) and not torch.equal(out[:, 0], out[:, 1])
    # drawn from the pretrained filters' statistics: the same scale, not torch's default init
    assert abs(float(out.std()) - float(w.std())) < 0.5 * float(w.std())


def test_pan_takes_sum_of_visible_filters():
    plan = plan_bands(["pan"], ["red", "green", "blue", "nir"])
    assert plan.sources == ((0, 1, 2),)
    w = torch.arange(2 * 4 * 3 * 3, dtype=torch.float32).reshape(2, 4, 3, 3)
    out = adapt_weight(w, plan)
    assert torch.equal(out[:, 0], w[:, 0] + w[:, 1] + w[:, 2])


def test_a_nir_band_of_another_width_keeps_the_pretrained_nir_filter():
    # Landsat's NIR (SR_B5: nir08) on a Sentinel-2 RGBN base (B08: nir), and the reverse on
    # ukis-csmask / torchgeo Landsat bases: the same band, not a new one drawn at random
    plan = plan_bands(["blue", "SR_B5"], ["blue", "green", "red", "nir"])
    assert plan.sources == ((0,), (3,)) and plan.new == ()
    assert plan.dropped == ("green", "red")
    plan = plan_bands(["B08", "red"], ["blue", "green", "red", "nir08", "swir16"])
    assert plan.sources == ((3,), (2,))
    # the exact band wins where the base has both (Sentinel-2 all-band bases)
    assert plan_bands(["B8A"], ["B08", "B8A"]).sources == ((1,),)
    w = torch.randn(4, 4, 3, 3)
    out = adapt_weight(w, plan_bands(["nir08"], ["B04", "B03", "B02", "B08"]))
    assert torch.equal(out[:, 0], w[:, 3])


def test_a_base_filter_several_region_bands_take_is_shared_between_them(caplog):
    # all of Sentinel-2 on an RGBN base: B08 takes the base's nir by name and B8A takes it
    # as the nearest NIR; taken whole by both, the pretrained layers saw NIR twice as strong
    w = torch.randn(4, 4, 3, 3)
    with caplog.at_level("INFO", logger="geotl.models.adapt"):
        plan = plan_bands(["B04", "B08", "B8A"], ["red", "green", "blue", "nir"])
    assert plan.sources == ((0,), (3,), (3,))
    assert "share the base model's nir filter" in caplog.text
    out = adapt_weight(w, plan)
    assert torch.allclose(out[:, 1], w[:, 3] / 2) and torch.allclose(out[:, 2], w[:, 3] / 2)
    assert torch.equal(out[:, 0], w[:, 0])
    # a grey pan band beside the colours it stands for: each visible filter split in two
    rgb = ["red", "green", "blue", "nir"]
    out = adapt_weight(w, plan_bands(["pan", "red", "green", "blue"], rgb))
    assert torch.allclose(out.sum(1), w[:, :3].sum(1))
    assert torch.allclose(out[:, 1], w[:, 0] / 2)


def test_duplicate_base_bands_are_summed():
    plan = plan_bands(["red", "nir"], ["B04", "B08", "B04", "B08"])
    w = torch.randn(4, 4, 3, 3)
    out = adapt_weight(w, plan)
    assert torch.allclose(out[:, 0], w[:, 0] + w[:, 2])
    assert torch.allclose(out[:, 1], w[:, 1] + w[:, 3])


def test_weight_arithmetic_matched_kept_new_from_statistics():
    torch.manual_seed(0)
    w = torch.randn(64, 3, 7, 7) * 0.1 + 0.05
    plan = plan_bands(["blue", "nir", "red"], ["red", "green", "blue"])
    gen = torch.Generator().manual_seed(3)
    out = adapt_weight(w, plan, gen)
    assert out.shape == (64, 3, 7, 7)
    assert torch.equal(out[:, 0], w[:, 2])  # blue kept
    assert torch.equal(out[:, 2], w[:, 0])  # red kept
    # the new nir filter is mean + std * z of the pretrained filters, per element
    mean, std = w.mean(1), w.std(1, unbiased=False)
    z = (out[:, 1] - mean) / std
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05
    # deterministic for the same seed
    again = adapt_weight(w, plan, torch.Generator().manual_seed(3))
    assert torch.equal(out, again)


def test_adapt_first_conv_warns_about_dropped(caplog):
    state = {"conv1.weight": torch.randn(8, 3, 3, 3), "bn1.weight": torch.ones(8)}
    with caplog.at_level(logging.WARNING, logger="geotl.models.adapt"):
        new, plan = adapt_first_conv(state, ["red", "green"], ["red", "green", "blue"])
    assert new["conv1.weight"].shape == (8, 2, 3, 3)
    assert torch.equal(new["conv1.weight"], state["conv1.weight"][:, :2])
    assert "blue" in caplog.text
    assert plan.dropped == ("blue",)


def test_declared_bands_must_fit_weight():
    with pytest.raises(BandMismatchError):
        adapt_weight(torch.randn(4, 3, 3, 3), plan_bands(["red"], ["red", "green"]))
