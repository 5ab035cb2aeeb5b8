from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from geotl.chips import chip_region, read_chip_index
from geotl.config import load_region
from geotl.errors import ConfigError, GeotlInputError, LabelError
from geotl.models.artefact import load_artefact, read_card
from geotl.train import (
    TrainOptions,
    load_region_chips,
    resolve_chips_dir,
    select_objects,
    train_model,
)
from geotl.train.augment import Augment
from geotl.train.options import resolve_schedule, resolve_settings

torch.set_num_threads(2)
REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "regions" / "demo-osbs.toml"


def test_select_objects_is_deterministic_and_whole():
    ids = [[1, 2], [2, 3], [4], [5, 6, 7]]
    a = select_objects(ids, 3, seed=5)
    assert a == select_objects(ids, 3, seed=5)
    assert len(a) == 3 and a <= {1, 2, 3, 4, 5, 6, 7}
    assert select_objects(ids, None, 0) == {1, 2, 3, 4, 5, 6, 7}


def test_label_budget_a_region_cannot_use_goes_to_the_others():
    from geotl.train.data import share_budget

    assert share_budget(40, [39, 10]) == [30, 10]  # was [20, 20]: 30 of 40 used
    assert share_budget(100, [39, 10]) == [39, 10]
    assert share_budget(9, [2, 50, 3]) == [2, 4, 3]
    assert share_budget(None, [5, 5]) == [None, None]
    with pytest.raises(GeotlInputError, match="below the number of regions"):
        share_budget(1, [5, 5])


def test_budget_sets_unsampled_objects_to_ignore(demo_chips):
    region = load_region(DEMO)
    train = read_chip_index(demo_chips).split("train")
    sampled = select_objects([list(v) for v in train["object_ids"]], 2, 0)
    full = load_region_chips(region, demo_chips, "train", ["red", "green", "blue"])
    few = load_region_chips(region, demo_chips, "train", ["red", "green", "blue"], sampled, 0)
    assert len(few) <= len(full)
    assert (few.masks == 1).sum() < (full.masks == 1).sum()
    # on the same chips, unsampled objects' pixels became ignore (guard bands in both)
    same = full.masks[[full.chip_ids.index(c) for c in few.chip_ids]]
    assert ((few.masks == 255) >= (same == 255)).all()
    assert (few.masks == 255).sum() > (same == 255).sum()
    # every kept chip holds a sampled object or no object at all
    rows = train.set_index("chip_id").loc[few.chip_ids]
    assert all(not len(v) or set(map(int, v)) & sampled for v in rows["object_ids"])


def test_end_to_end_train_writes_artefact(demo_model):
    card = read_card(demo_model)
    assert card.classes == ["tree"] and card.bands == ["red", "green", "blue"]
    assert card.base.id == "pkg:efficientnet-lite0" and card.base.licence == "Apache-2.0"
    assert (
        card.regions[0].name == "demo-osbs"
        and card.regions[0].labels_used == card.regions[0].labels_available > 0
    )
    assert len(card.normalisation.mean) == 3 and 0 < card.normalisation.mean[0] < 255
    # epochs=2, samples_per_epoch=1: two passes of ceil(train chips / 8) steps, validated after each
    assert card.metrics["validations"] == 2 and 0 <= card.metrics["val_iou"] <= 1
    assert (
        card.metrics["steps_run"]
        == card.metrics["steps"]
        == 2 * -(-card.regions[0].chips_train // 8)
    )
    art = load_artefact(demo_model)
    x = torch.zeros(1, 3, 64, 64)
    assert art.network(x).shape == (1, 2, 64, 64)
    assert not list(demo_model.glob("*.pt*"))  # no pickles


def test_same_seed_same_metrics(demo_model_options, demo_model, tmp_path):
    card = train_model([load_region(DEMO)], tmp_path / "again", demo_model_options)
    first = read_card(demo_model)
    assert card.metrics["history"] == first.metrics["history"]
    assert card.model_id.split("-")[-1] == first.model_id.split("-")[-1]


def test_model_base_maps_classes_by_name(demo_chips, demo_model, tmp_path):
    text = (
        DEMO.read_text()
        .replace('classes = ["tree"]', 'classes = ["shrub", "tree"]')
        .replace('paths = ["demo-osbs/', f'paths = ["{DEMO.parent}/demo-osbs/')
        .replace('path = "demo-osbs/', f'path = "{DEMO.parent}/demo-osbs/')
    )
    region_file = tmp_path / "two.toml"
    region_file.write_text(text)
    region = load_region(region_file)
    out = tmp_path / "ft"
    card = train_model(
        [region],
        out,
        TrainOptions(base=f"model:{demo_model}", epochs=1, samples_per_epoch=1, batch_size=8),
    )
    assert card.classes == ["shrub", "tree"] and card.base.id == f"model:{demo_model}"
    assert (out / "chips" / "chipset.json").is_file()
    assert card.normalisation == read_card(demo_model).normalisation


def test_chips_of_another_region_refused(demo_chips, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text(
        DEMO.read_text()
        .replace('name = "demo-osbs"', 'name = "other"')
        .replace('"demo-osbs/', f'"{DEMO.parent}/demo-osbs/')
    )
    with pytest.raises(GeotlInputError, match="cut for region 'demo-osbs'"):
        train_model(
            [load_region(other)],
            tmp_path / "m",
            TrainOptions(chips=(demo_chips,), epochs=1, samples_per_epoch=1),
        )


def test_too_few_labels(demo_chips, tmp_path):
    text = (
        DEMO.read_text()
        .replace("test_fraction = 0.2", "test_fraction = 0.0")
        .replace("val_fraction = 0.15", "val_fraction = 0.0")
    )
    region_file = tmp_path / "r.toml"
    region_file.write_text(text.replace('"demo-osbs/', f'"{DEMO.parent}/demo-osbs/'))
    region = load_region(region_file)
    chips = tmp_path / "chips"
    chip_region(region, chips)
    # blank every train chip's objects: no labelled object left in the train split
    index = read_chip_index(chips)
    frame = index.frame.copy()
    frame["object_ids"] = [[] for _ in range(len(frame))]
    from geotl.chips import write_chip_index

    write_chip_index(chips, frame, index.meta)
    with pytest.raises(LabelError, match="no labelled object in the train split"):
        train_model(
            [region], tmp_path / "m", TrainOptions(chips=(chips,), epochs=1, samples_per_epoch=1)
        )


def _demo_variant(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "variant.toml"
    text = DEMO.read_text().replace('"demo-osbs/', f'"{DEMO.parent}/demo-osbs/')
    assert old in text
    path.write_text(text.replace(old, new))
    return path


def test_a_failed_or_interrupted_train_leaves_no_folder(tmp_path, monkeypatch):
    import signal

    from geotl.train.loop import TrainModule

    # chipped, then refused: every chip goes to val or test
    region = load_region(_demo_variant(tmp_path, "val_fraction = 0.15", "val_fraction = 0.79"))
    out = tmp_path / "m"
    with pytest.raises(GeotlInputError):
        train_model([region], out, TrainOptions(steps=2, val_every=1, batch_size=4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["variant.toml"]  # no m/chips, no .tmp-*

    # Ctrl+C in a step: Lightning's sys.exit(1) is a KeyboardInterrupt again, SIGINT works
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(TrainModule, "training_step", ctrl_c)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train_model([load_region(DEMO)], out, TrainOptions(steps=2, val_every=1, batch_size=4))
    assert signal.getsignal(signal.SIGINT) is handler
    assert sorted(p.name for p in tmp_path.iterdir()) == ["variant.toml"]
    # SIGTERM (geotl's Terminated) stays itself: exit 143, not Ctrl+C's 130
    from geotl.cli.main import Terminated

    def sigterm(*args, **kwargs):
        raise Terminated("SIGTERM")

    monkeypatch.setattr(TrainModule, "training_step", sigterm)
    with pytest.raises(Terminated):
        train_model([load_region(DEMO)], out, TrainOptions(steps=2, val_every=1, batch_size=4))


def test_two_regions_of_one_name_are_refused(tmp_path):
    other = load_region(_demo_variant(tmp_path, "seed = 0", "seed = 1"))  # same name
    opts = TrainOptions(steps=2, val_every=1)
    with pytest.raises(GeotlInputError, match=r"variant\.toml: has the name 'demo-osbs' of"):
        train_model([load_region(DEMO), other], tmp_path / "m", opts)
    with pytest.raises(GeotlInputError, match="is given twice"):
        train_model([load_region(DEMO), load_region(DEMO)], tmp_path / "m", opts)
    assert not (tmp_path / "m").exists()


def test_regions_of_another_task_or_chip_size_are_refused(tmp_path):
    """Joined regions must agree on task and chip size (they crashed in np.concatenate)."""
    opts = TrainOptions(steps=2, val_every=1)
    text = _demo_variant(tmp_path, 'name = "demo-osbs"', 'name = "other"').read_text()
    inst = tmp_path / "inst.toml"
    inst.write_text(text.replace('task = "segmentation"', 'task = "instances"'))
    with pytest.raises(GeotlInputError, match=r"inst\.toml: task 'instances' differs from demo"):
        train_model([load_region(DEMO), load_region(inst)], tmp_path / "m", opts)
    big = tmp_path / "big.toml"
    big.write_text(text.replace("size_px = 64\nstride_px = 64", "size_px = 96\nstride_px = 96"))
    with pytest.raises(GeotlInputError, match=r"big\.toml: \[chips\] size_px = 96 differs"):
        train_model([load_region(DEMO), load_region(big)], tmp_path / "m", opts)
    assert not (tmp_path / "m").exists()


def test_chips_cut_at_another_size_are_refused(demo_chips, tmp_path):
    region = load_region(_demo_variant(tmp_path, "size_px = 64", "size_px = 96"))
    with pytest.raises(
        GeotlInputError, match=r"variant\.toml: cut at 64 px, the region has .* = 96"
    ):
        train_model([region], tmp_path / "m", TrainOptions(chips=(demo_chips,), steps=2))


def test_card_says_when_validation_scored_training_chips(tmp_path):
    """An empty val split: val_iou is a training score, and the card says so."""
    region = load_region(_demo_variant(tmp_path, "val_fraction = 0.15", "val_fraction = 0.0"))
    card = train_model([region], tmp_path / "m", TrainOptions(steps=2, val_every=1, batch_size=4))
    assert card.metrics["validated_on"] == "train"
    assert read_card(tmp_path / "m").metrics["validated_on"] == "train"


def test_regions_at_other_resolutions_are_warned(demo_chips, tmp_path, caplog):
    import logging

    from geotl.chips import write_chip_index

    other = load_region(_demo_variant(tmp_path, 'name = "demo-osbs"', 'name = "coarse"'))
    chips = tmp_path / "coarse-chips"
    chip_region(other, chips)
    index = read_chip_index(chips)
    frame = index.frame.copy()
    frame["resolution_m"] = frame["resolution_m"] * 3  # as if the scenes were at 0.3 m
    write_chip_index(chips, frame, index.meta)
    with caplog.at_level(logging.WARNING, logger="geotl.train.loop"):
        train_model(
            [load_region(DEMO), other],
            tmp_path / "m",
            TrainOptions(chips=(demo_chips, chips), steps=2, val_every=1, batch_size=4),
        )
    assert "regions differ in ground resolution (demo-osbs 0.1 m, coarse 0.3 m)" in caplog.text


def test_steps_below_validation_interval_refused(demo_chips, tmp_path):
    with pytest.raises(ConfigError, match=r"steps = 10 is below val_every = 20.*val_every = 2"):
        load_region(_demo_variant(tmp_path, "steps = 60", "steps = 10"))
    region = load_region(DEMO)
    # --steps on the command line under the region's val_every: the CLI option fixes it too
    with pytest.raises(GeotlInputError, match=r"steps = 5 is below val_every = 20.*--val-every 1"):
        train_model([region], tmp_path / "m", TrainOptions(chips=(demo_chips,), steps=5))


def test_unset_validation_interval_follows_short_runs(tmp_path):
    """Without val_every anywhere, a short run validates every fifth of its steps."""
    path = _demo_variant(tmp_path, "steps = 60\nval_every = 20", "steps = 10")
    region = load_region(path)  # not refused: val_every was never set
    settings = resolve_settings([region], TrainOptions())
    assert resolve_schedule(settings, 16, region).val_every == 2
    settings = resolve_settings([region], TrainOptions(steps=3))
    assert resolve_schedule(settings, 16, region).val_every == 1
    settings = resolve_settings([region], TrainOptions(steps=1000))
    assert resolve_schedule(settings, 16, region).val_every == 50


def test_window_larger_than_chips_refused(demo_chips, tmp_path):
    region = load_region(
        _demo_variant(tmp_path, "batch_size = 8", "batch_size = 8\nwindow_px = 96")
    )
    with pytest.raises(GeotlInputError, match=r"window_px = 96 is larger than the chips .64 px"):
        train_model([region], tmp_path / "m", TrainOptions(chips=(demo_chips,), steps=20))


@pytest.mark.parametrize("scale_jitter", [0.0, 0.25])
def test_random_windows_of_nan_nodata_chips_keep_their_valid_pixels_finite(scale_jitter):
    # SAR in dB or reflectance 0-1 with NaN nodata: rotations interpolate, and a NaN
    # spread into valid neighbours made the training loss NaN from the first step
    torch.manual_seed(0)
    x = -15.0 + 3.0 * torch.randn(8, 2, 32, 32)
    x[:, :, :6, :9] = float("nan")
    x[3] = float("nan")  # a chip of nodata only
    valid = ~x[:, 0].isnan()
    mask = torch.zeros(8, 32, 32, dtype=torch.uint8)
    for _ in range(5):
        out_x, _mask, out_valid = Augment(32, 32, scale_jitter)(x, mask, valid)
        assert torch.isfinite(out_x).all()
        assert out_valid.sum(dim=(1, 2))[3] == 0 and out_valid.any()


def test_normalisation_pools_regions_over_their_valid_pixels_only():
    from geotl.train.data import ChipData, band_sums, compute_normalisation

    rng = np.random.default_rng(0)
    sets = []
    for scale, n in ((1.0, 3), (4.0, 5)):
        images = (rng.random((n, 2, 8, 8)) * 100 * scale).astype(np.float32)
        valid = rng.random((n, 8, 8)) > 0.3
        images[~valid[:, None].repeat(2, 1)] = -9999.0  # nodata: must not count
        sets.append(ChipData("r", images, np.zeros((n, 8, 8), np.uint8), valid))
    pixels = np.concatenate([d.images.transpose(1, 0, 2, 3)[:, d.valid] for d in sets], 1)
    pixels = pixels.astype(np.float64)
    norm = compute_normalisation(sets)
    assert norm.mean == pytest.approx(pixels.mean(1).tolist(), rel=1e-9)
    assert norm.std == pytest.approx(pixels.std(1).tolist(), rel=1e-9)
    # the per-region sums add up to the pooled figure; a region's own mean is its own
    assert band_sums(sets[0]).mean == pytest.approx(
        sets[0].images.transpose(1, 0, 2, 3)[:, sets[0].valid].mean(1).tolist()
    )
    with pytest.raises(LabelError, match="all nodata"):
        compute_normalisation([replace(sets[0], valid=np.zeros_like(sets[0].valid))])


def test_chips_are_held_in_their_files_dtype_and_joined_in_the_smallest_exact_one(demo_chips):
    from geotl.train.data import ChipData, ChipDataset

    demo = load_region_chips(load_region(DEMO), demo_chips, "train", ["red", "green", "blue"])
    assert demo.images.dtype == np.uint8  # the demo plot is 8-bit: 1 byte a value, not 4
    # one region's tensors share its arrays: training holds one copy, not two
    tensors = ChipDataset([demo])
    assert np.shares_memory(tensors.x.numpy(), demo.images)
    assert np.shares_memory(tensors.y.numpy(), demo.masks)

    def part(values: np.ndarray) -> ChipData:
        n = len(values) // 4  # chips of 2 x 2 px
        mask, valid = np.zeros((n, 2, 2), np.uint8), np.ones((n, 2, 2), bool)
        return ChipData("r", values.reshape(n, 1, 2, 2), mask, valid)

    eight = part(np.arange(8, dtype=np.uint8))
    cases = [
        ([eight, part(np.array([300, 4000, 0, 1], np.uint16))], torch.int16),
        ([eight, part(np.array([-9999.0, 1, 2, 3], np.float32))], torch.int16),
        ([eight, part(np.array([60000, 1, 2, 3], np.uint16))], torch.uint16),
        ([eight, part(np.array([0.5, 1, 2, 3], np.float32))], torch.float32),
        ([part(np.arange(8, dtype=np.float32))], torch.uint8),
    ]
    for parts, dtype in cases:
        joined = np.concatenate([p.images.astype(np.float64) for p in parts])
        x = ChipDataset(parts).x
        assert x.dtype == dtype and np.array_equal(x.numpy().astype(np.float64), joined)
        # each region now views its slice of the joined tensors: one copy of the chips
        assert all(np.shares_memory(p.images, x.numpy()) for p in parts)


def test_random_windows_keep_classes_ignore_and_budget():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 64, 64) * 255
    mask = torch.zeros(6, 64, 64, dtype=torch.uint8)
    mask[:, 10:30, 10:30] = 1
    mask[:, 40:, :] = 255  # ignore: an unsampled object, nodata or a guard band
    valid = torch.ones(6, 64, 64, dtype=torch.bool)
    torch.manual_seed(1)
    out_x, out_mask, out_valid = Augment(64, 32, 0.25)(x, mask, valid)
    assert out_x.shape == (6, 3, 32, 32) and out_mask.shape == out_valid.shape == (6, 32, 32)
    assert set(out_mask.unique().tolist()) <= {0, 1, 255}  # nearest: no blended labels
    # the same seed draws the same windows
    torch.manual_seed(1)
    again = Augment(64, 32, 0.25)(x, mask, valid)
    assert torch.equal(again[1], out_mask) and torch.equal(again[0], out_x)


def test_refit_learns_from_train_and_val_chips_under_the_budget(demo_chips, tmp_path):
    region = load_region(DEMO)
    index = read_chip_index(demo_chips)
    n_train, n_val = len(index.split("train")), len(index.split("val"))
    assert n_val > 0
    ids = {int(i) for s in ("train", "val") for v in index.split(s)["object_ids"] for i in v}
    opts = TrainOptions(
        chips=(demo_chips,), steps=4, val_every=2, min_steps=2, batch_size=8, pixel_model=False
    )
    plain = train_model([region], tmp_path / "plain", opts)
    card = train_model([region], tmp_path / "refit", replace(opts, refit=True))
    # validation chose the step as without refit; the refit ran that many steps on train + val
    assert card.metrics["history"] == plain.metrics["history"]
    assert card.metrics["refit"]["steps"] == card.metrics["best_step"] == plain.metrics["best_step"]
    assert card.regions[0].chips_train == card.metrics["refit"]["chips"] == n_train + n_val
    assert card.regions[0].labels_used == card.regions[0].labels_available == len(ids)
    assert plain.regions[0].chips_train == n_train and "refit" not in plain.metrics
    assert card.model_id != plain.model_id  # other weights
    # the label budget holds over both splits together
    few = train_model(
        [region], tmp_path / "few", replace(opts, refit=True, max_labels=2, overwrite=True)
    )
    assert few.regions[0].labels_used == few.metrics["refit"]["labels_used"] == 2
    assert few.regions[0].chips_train < n_train + n_val


def test_encoder_learns_at_the_decoders_rate_unless_told():
    region = load_region(DEMO)
    assert resolve_settings([region], TrainOptions()).encoder_lr == region.model.lr
    assert resolve_settings([region], TrainOptions(base="none")).encoder_lr == region.model.lr
    assert resolve_settings([region], TrainOptions(lr=3e-4)).encoder_lr == 3e-4
    assert resolve_settings([region], TrainOptions(encoder_lr=1e-5)).encoder_lr == 1e-5


def test_validation_counts_every_threshold_and_picks_the_best():
    from geotl.train.metrics import ConfusionIoU, confusion

    # an unsure network: object pixels at p(fg) 0.3, background at 0.1
    p_fg = torch.full((1, 8, 8), 0.1)
    p_fg[:, :4] = 0.3
    logits = torch.log(torch.stack([1 - p_fg, p_fg], 1))
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, :4] = 1
    target[:, 7, 7] = 255  # ignore stays out
    metric = ConfusionIoU(2)
    metric.update(logits, target)
    assert metric.argmax() == 0.0  # argmax finds nothing
    value, iou = metric.best_threshold()
    assert 0.1 < value <= 0.3 and iou == 1.0
    assert metric.compute() == 1.0  # selection follows the threshold the card will keep
    # a region's own threshold is what validation scores, whatever the grid
    fixed = ConfusionIoU(2, threshold=0.33)
    fixed.update(logits, target)
    assert fixed.compute() == 0.0 and fixed.best_threshold() == (value, 1.0)
    # each threshold's counts equal thresholding the probabilities one by one
    three = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    truth = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    many = ConfusionIoU(3)
    many.update(three, truth)
    p, c = torch.softmax(three, 1)[:, 1:].max(1)
    for k, t in enumerate(many.thresholds):
        counts = confusion(torch.where(p >= t, c + 1, 0), truth, 3).numpy()
        assert (many._by_threshold()[k] == counts).all()
    # every threshold scores alike: 0.5 (argmax) is kept
    flat = ConfusionIoU(2)
    flat.update(torch.zeros(1, 2, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long))
    assert flat.best_threshold()[0] == 0.5


def test_card_takes_the_validated_threshold_unless_the_region_sets_one(
    demo_chips, demo_model, tmp_path
):
    from geotl.predict import PredictOptions

    card = read_card(demo_model)
    chosen = card.metrics["threshold"]
    assert card.threshold == chosen["value"] and chosen["val_iou"] >= chosen["val_iou_argmax"]
    assert PredictOptions.from_region(load_region(DEMO)).threshold is None  # the card's stands
    fixed = load_region(_demo_variant(tmp_path, "[predict]", "[predict]\nthreshold = 0.97"))
    assert PredictOptions.from_region(fixed).threshold == 0.97
    again = train_model(
        [fixed],
        tmp_path / "m",
        TrainOptions(chips=(demo_chips,), steps=4, val_every=2, batch_size=8),
    )
    assert again.threshold == 0.97 and again.metrics["threshold"]["used"] == 0.97
    # validation scored the weights at the region's threshold (a 4-step network is rarely
    # that sure), not at the best of the grid
    assert again.metrics["val_iou"] < again.metrics["threshold"]["val_iou"]


def test_model_base_kept_when_training_only_makes_it_worse(
    demo_chips, demo_model, tmp_path, caplog
):
    # a model: base of the same task and classes is scored before the first step; a run
    # that ruins it (a learning rate of 1000) keeps the base's own weights
    caplog.set_level("INFO", logger="geotl.train.loop")
    card = train_model(
        [load_region(DEMO)],
        tmp_path / "m",
        TrainOptions(
            chips=(demo_chips,),
            base=f"model:{demo_model}",
            freeze="none",
            lr=1000.0,
            steps=4,
            val_every=2,
            batch_size=8,
            pixel_model=False,  # the network's own choice, not the per-pixel model's
        ),
    )
    assert card.metrics["kept_base"] and card.metrics["best_step"] == 0
    assert card.metrics["val_iou"] == pytest.approx(card.metrics["base_val_iou"], abs=1e-4)
    assert card.metrics["history"][0]["step"] == 0  # the base's own pass is on record
    # ... said without a loss, not as "loss nan" (no step has run: nothing diverged)
    assert "step 0/4  loss -  val IoU" in caplog.text and "loss nan" not in caplog.text
    kept = load_artefact(tmp_path / "m").network.state_dict()
    for name, tensor in load_artefact(demo_model).network.state_dict().items():
        assert torch.equal(kept[name], tensor), name


def test_early_stopping_ends_the_run_after_min_steps(demo_chips, tmp_path, caplog):
    # a learning rate too small to improve anything: validation stops improving at once,
    # so patience 1 ends the run soon after min_steps (before this was fixed, Lightning's
    # implied min_epochs = 1, the whole one-epoch run, kept every run going to the end)
    caplog.set_level("INFO", logger="geotl")
    card = train_model(
        [load_region(DEMO)],
        tmp_path / "m",
        TrainOptions(
            chips=(demo_chips,),
            steps=40,
            val_every=2,
            min_steps=10,
            patience=1,
            lr=1e-6,
            batch_size=8,
        ),
    )
    assert 10 <= card.metrics["steps_run"] < 40
    assert card.metrics["best_step"] <= card.metrics["steps_run"]
    # patience counts from the first validation that may be kept (step 10), not from the
    # earlier ones: the run cannot end on the very validation that starts the count
    assert card.metrics["steps_run"] >= 12
    assert card.metrics["best_step"] >= 10
    # said as what it is (Lightning itself reports "max_epochs=1 reached")
    assert card.metrics["stopped_early"] is True
    stop = [r.getMessage() for r in caplog.records if "early stop at step" in r.getMessage()]
    assert stop == [f"early stop at step {card.metrics['steps_run']}: " + stop[0].split(": ", 1)[1]]


@pytest.mark.parametrize(("score", "warned"), [(0.30, True), (0.405, True), (0.41, False)])
def test_a_model_no_better_than_the_constant_map_is_reported(score, warned, caplog):
    # 40 % of the validation pixels are crowns: a map of nothing but crowns scores 0.40
    from geotl.train.loop import _choose_threshold
    from geotl.train.metrics import ConfusionIoU
    from geotl.train.tasks import make_task

    metric = ConfusionIoU(2)
    metric.counts[:] = torch.tensor([[60, 0], [30, 10]])
    record = {"value": 0.3, "val_iou": score, "val_iou_argmax": score}
    record["floor_iou"] = metric.floor()
    region = load_region(DEMO)
    chosen = _choose_threshold(make_task(region.task, region.classes), record, score, region)
    assert chosen is not None and chosen["floor_iou"] == pytest.approx(0.4)
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert bool([m for m in said if "does not beat a map of nothing but tree" in m]) is warned


@pytest.mark.parametrize(("score", "warned"), [(0.0, True), (0.05, False)])
def test_a_detector_that_finds_no_val_object_is_reported(score, warned, caplog):
    from geotl.train.loop import _choose_threshold
    from geotl.train.tasks import make_task

    region = load_region(DEMO)
    task = make_task("detection", region.classes)
    assert _choose_threshold(task, None, score, region) is None  # AP50: no threshold record
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert bool([m for m in said if "found none of the val objects (val AP50" in m]) is warned


@pytest.mark.parametrize("task_name", ["segmentation", "instances"])
def test_class_prior_offsets_calibrate_the_logits_to_the_target_balance(task_name):
    # train labels 5.6 % foreground (a budget thinned the objects), target balance 50 %:
    # with the offsets in the loss, the logits a bias-only network learns give p(fg) 0.5
    from geotl.train.data import prior_offsets
    from geotl.train.tasks import make_task

    masks = torch.zeros(4, 10, 10, dtype=torch.uint8)
    masks[:, 0, :5] = 1  # 20 of 400 pixels
    masks[:, 9, :] = 255  # ignore stays out of the balance
    offsets = torch.tensor(prior_offsets(np.array([340, 20]) / 360, np.array([0.5, 0.5])))
    learnt = {}
    for name, correction in (("as labelled", None), ("corrected", offsets.float())):
        task = make_task(task_name, ["tree"], "ce")
        task.set_class_prior(correction)
        channels = 2 if task_name == "segmentation" else 4
        bias = torch.zeros(channels, requires_grad=True)
        opt = torch.optim.Adam([bias], lr=0.05)
        targets = task.targets(masks)
        for _ in range(400):
            opt.zero_grad()
            task.loss(bias[None, :, None, None].expand(4, channels, 10, 10), targets).backward()
            opt.step()
        learnt[name] = torch.softmax(bias[:2].detach(), 0)[1].item()
    assert learnt["as labelled"] == pytest.approx(20 / 360, abs=0.01)
    assert learnt["corrected"] == pytest.approx(0.5, abs=0.02)


def test_class_prior_follows_the_val_chips_under_a_budget(demo_chips, tmp_path):
    from geotl.train.data import class_shares, load_training_sets

    region = load_region(DEMO)
    # the network's prior is the subject: the per-pixel model (no prior) is never kept
    opts = TrainOptions(
        chips=(demo_chips,), steps=2, val_every=2, max_labels=2, batch_size=8, pixel_model=False
    )
    card = train_model([region], tmp_path / "m", opts)
    prior = card.metrics["class_prior"]
    sets = load_training_sets([region], [demo_chips], ["red", "green", "blue"], 2, 0)
    assert prior["train"] == pytest.approx(class_shares(sets.train, 2).tolist(), abs=1e-4)
    assert prior["target"] == pytest.approx(class_shares(sets.val, 2).tolist(), abs=1e-4)
    # unsampled crowns are ignore, their background is not: too few crown pixels in train
    assert prior["train"][1] < prior["target"][1] and prior["offsets"][1] < 0
    # an instance model's refit (masks packed with border and contact bits by then) aims at
    # the same val balance, from its own train + val chips under the budget
    crowns = load_region(REPO / "regions" / "demo-osbs-crowns.toml")
    refit = train_model([crowns], tmp_path / "r", replace(opts, refit=True, chips=()))
    again_prior = refit.metrics["refit"]["class_prior"]
    assert again_prior["target"] == refit.metrics["class_prior"]["target"]
    assert sum(again_prior["train"]) == pytest.approx(1)
    # its train balance is that of the refit's own chips: train + val, under the budget
    # (whether crowns are then rarer than in the val chips depends on the 2 crowns drawn)
    assert again_prior["train"] != refit.metrics["class_prior"]["train"]
    # class_prior = "train": the balance as labelled, nothing on the card
    plain = load_region(
        _demo_variant(tmp_path, "batch_size = 8", 'batch_size = 8\nclass_prior = "train"')
    )
    again = train_model([plain], tmp_path / "plain", opts)
    assert "class_prior" not in again.metrics and again.model_id != card.model_id


def test_bands_no_base_knows_train_on_the_pretrained_network(tmp_path, caplog):
    """Radar, thermal or custom bands on an RGB base: a new, trainable first layer."""
    import logging

    region_file = tmp_path / "radar.toml"
    region_file.write_text(
        DEMO.read_text()
        .replace('name = "demo-osbs"', 'name = "radar"')
        .replace('bands = ["red", "green", "blue"]', 'bands = ["VV", "custom:DEM", "ST_B10"]')
        .replace('"demo-osbs/', f'"{DEMO.parent}/demo-osbs/')
    )
    region = load_region(region_file)
    assert region.imagery.bands == ["VV", "custom:DEM", "ST_B10"]
    with caplog.at_level(logging.INFO, logger="geotl"):
        card = train_model(
            [region],
            tmp_path / "m",
            TrainOptions(epochs=1, samples_per_epoch=1, batch_size=8, freeze="backbone"),
        )
    assert "no band of the region" in caplog.text and "pkg:efficientnet-lite0" in card.base.id
    assert "first convolution trains" in caplog.text
    from geotl.bands import canonical_bands

    assert canonical_bands(card.bands) == ["vv", "custom:dem", "lwir11"]


def _sixteen_bit_demo(tmp_path: Path) -> Path:
    """The demo region with its plot as 16-bit numbers 40x the 8-bit ones."""
    import rasterio

    img = tmp_path / "sixteen" / "OSBS_029.tif"
    img.parent.mkdir()
    with rasterio.open(DEMO.parent / "demo-osbs" / "imagery" / "OSBS_029.tif") as src:
        profile = src.profile | {"dtype": "uint16"}
        data = src.read().astype(np.uint16) * 40
    with rasterio.open(img, "w", **profile) as dst:
        dst.write(data)
    text = _demo_variant(tmp_path, 'name = "demo-osbs"', 'name = "demo-sixteen"').read_text()
    path = tmp_path / "sixteen.toml"
    path.write_text(text.replace(f'"{DEMO.parent}/demo-osbs/imagery/*.tif"', f'"{img}"'))
    return path


def test_imagery_in_other_units_is_caught(demo_chips, demo_model, tmp_path, caplog):
    sixteen = load_region(_sixteen_bit_demo(tmp_path))
    chips = tmp_path / "sixteen-chips"
    chip_region(sixteen, chips)
    # trained together with 8-bit imagery: said, naming the region file and the factor
    caplog.set_level("WARNING", logger="geotl")
    train_model(
        [load_region(DEMO), sixteen],
        tmp_path / "both",
        TrainOptions(chips=(demo_chips, chips), steps=2, val_every=2, batch_size=8),
    )
    said = [
        r.getMessage()
        for r in caplog.records
        if "(region demo-osbs's): other units?" in r.getMessage()
    ]
    assert len(said) == 1 and said[0].startswith(f"{sixteen.path}: the chips' band means")
    assert "about 40x" in said[0]
    # an 8-bit model: base adapted to it: the region's own normalisation, said
    card = train_model(
        [sixteen],
        tmp_path / "m",
        TrainOptions(
            chips=(chips,), base=f"model:{demo_model}", steps=2, val_every=2, batch_size=8
        ),
    )
    base_mean = read_card(demo_model).normalisation.mean
    assert card.normalisation.mean[0] == pytest.approx(40 * base_mean[0], rel=0.1)
    assert [r for r in caplog.records if "other units, so the region's own" in r.getMessage()]


def test_a_per_pixel_model_stands_in_when_it_beats_the_network(demo_chips, tmp_path, monkeypatch):
    """Two epochs leave the U-Net behind a linear model of the crowns' colours: kept instead."""
    from geotl.errors import BaseModelError
    from geotl.predict import PredictOptions, predict_scene

    opts = TrainOptions(chips=(demo_chips,), epochs=2, samples_per_epoch=1, batch_size=8)
    card = train_model([load_region(DEMO)], tmp_path / "m", opts)
    record = card.metrics["pixel_model"]
    assert record["kept"] and card.network.arch == "pixel"
    assert record["val_iou"] > record["network_val_iou"] + 0.01
    # the card's validation score and threshold are the kept model's
    assert card.metrics["val_iou"] == pytest.approx(record["val_iou"], abs=1e-4)
    assert card.threshold == record["threshold"] == card.metrics["threshold"]["value"]
    assert record["pixels"] > 0 and card.metrics["best_step"] > 0  # the network's, on record
    art = load_artefact(tmp_path / "m")
    assert art.network(torch.zeros(1, 3, 50, 70)).shape == (1, 2, 50, 70)
    scene = next((REPO / "regions" / "demo-osbs" / "imagery").glob("*.tif"))
    assert len(predict_scene(art, scene, PredictOptions()).features) > 0
    # a per-pixel model has no encoder to adapt: said, with what to do instead
    with pytest.raises(BaseModelError, match=r"per-pixel model.*--no-pixel-model"):
        train_model(
            [load_region(DEMO)], tmp_path / "b", replace(opts, base=f"model:{tmp_path / 'm'}")
        )
    assert not (tmp_path / "b").exists()  # refused before chipping: nothing written
    # the network is kept unless the per-pixel model beats it by the margin
    import geotl.train.loop as loop

    monkeypatch.setattr(loop, "PIXEL_MARGIN", 1.0)
    card = train_model([load_region(DEMO)], tmp_path / "n", opts)
    assert not card.metrics["pixel_model"]["kept"] and card.network.arch == "unet"
    assert card.metrics["val_iou"] == pytest.approx(record["network_val_iou"], abs=1e-4)
    # pixel_model = false: no per-pixel model at all
    card = train_model([load_region(DEMO)], tmp_path / "o", replace(opts, pixel_model=False))
    assert "pixel_model" not in card.metrics and card.network.arch == "unet"


def test_classes_without_train_or_val_pixels_are_said(tmp_path, caplog):
    from geotl.train.loop import _say_missing_classes

    region = load_region(
        _demo_variant(tmp_path, 'classes = ["tree"]', 'classes = ["tree", "shrub", "road"]')
    )
    train = np.array([0.5, 0.5, 0.0, 0.0])  # background, tree, shrub, road
    val = np.array([0.4, 0.3, 0.3, 0.0])
    with caplog.at_level("WARNING", logger="geotl.train.loop"):
        assert _say_missing_classes(region, train, val) == ["shrub", "road"]
    text = caplog.text
    assert "'shrub' has no labelled pixel in the train chips: the model cannot learn it" in text
    assert "'road' has no labelled pixel in the train or val chips" in text
    assert region.path.name in text and "[split] seed" in text
    caplog.clear()
    with caplog.at_level("WARNING", logger="geotl.train.loop"):
        assert _say_missing_classes(region, val[[0, 1, 2, 2]], None) == []  # no val chips
        assert _say_missing_classes(region, train[[0, 1, 1, 1]], val) == ["road"]
    assert "val chips: validation cannot score it" in caplog.text
    assert "--max-labels" not in caplog.text
    caplog.clear()
    # --max-labels below the classes: the budget, not the labelling, left the class out
    with caplog.at_level("WARNING", logger="geotl.train.loop"):
        assert _say_missing_classes(region, train[[0, 1, 1, 2]], val, (2, 10)) == ["road"]
    assert "or raise the label budget (--max-labels" in caplog.text
    assert "2 of 10 train objects used" in caplog.text


def test_without_min_area_the_card_leaves_out_specks_by_the_labels_own_sizes(tmp_path):
    import geopandas as gpd
    import numpy as np

    from geotl.config import load_region
    from geotl.train.tasks.base import default_min_area_m2

    repo = Path(__file__).resolve().parents[1]
    labels = gpd.read_file(repo / "regions" / "demo-osbs" / "labels" / "OSBS_029_crowns.geojson")
    expected = 0.25 * float(np.quantile(labels.to_crs(32617).area, 0.05))
    text = (repo / "regions" / "demo-osbs.toml").read_text().replace("min_area_m2 = 0.5\n", "")
    text = text.replace('"demo-osbs/', f'"{repo}/regions/demo-osbs/')
    # the same labels in lon/lat: measured on the ground all the same
    labels.to_crs(4326).to_file(tmp_path / "crowns.geojson")
    for i, path in enumerate(["", str(tmp_path / "crowns.geojson")]):
        region_text = (
            text
            if not path
            else text.replace(f"{repo}/regions/demo-osbs/labels/OSBS_029_crowns.geojson", path)
        )
        (tmp_path / f"r{i}.toml").write_text(region_text)
        region = load_region(tmp_path / f"r{i}.toml")
        assert region.predict.given("min_area_m2") is None
        assert default_min_area_m2(region) == pytest.approx(expected, rel=0.01)
    assert 0.2 < expected < 5  # crowns of a few m²: specks of a few 0.1 m pixels go


def test_a_model_base_keeps_its_normalisation_for_the_bands_it_knows(demo_model):
    from geotl.config import load_region
    from geotl.models.catalogue import load_base
    from geotl.train.data import ChipData
    from geotl.train.loop import _normalisation

    # the demo model (red, green, blue) as the base of a region of green, red and nir
    base = load_base(f"model:{demo_model}")
    own = base.card.normalisation
    rng = np.random.default_rng(0)
    images = (rng.random((4, 3, 8, 8)) * 200).astype(np.float32)
    train = [ChipData("r", images, np.zeros((4, 8, 8), np.uint8), np.ones((4, 8, 8), bool))]
    region = load_region(Path(__file__).resolve().parents[1] / "regions" / "demo-osbs.toml")
    norm = _normalisation([region], train, base, ["green", "red", "nir"])
    assert norm.mean[:2] == [own.mean[1], own.mean[0]] and norm.std[:2] == [own.std[1], own.std[0]]
    assert norm.mean[2] == pytest.approx(float(images[:, 2].mean()), rel=1e-6)  # new: its own


def test_card_of_random_weights_records_that_nothing_was_frozen(demo_chips, tmp_path):
    """--base none trains every layer whatever [model] freeze says; the card said "partial"."""
    region = load_region(DEMO)
    assert region.model.freeze != "none"
    opts = TrainOptions(chips=(demo_chips,), steps=2, val_every=1, base="none", pixel_model=False)
    assert train_model([region], tmp_path / "m", opts).freeze == "none"


def test_chips_whose_label_file_changed_since_are_refused(tmp_path):
    """Labels edited after chipping (a labelling loop): --chips would train on old masks."""
    import shutil

    import geopandas as gpd

    labels = tmp_path / "crowns.geojson"
    shutil.copy(REPO / "regions" / "demo-osbs" / "labels" / "OSBS_029_crowns.geojson", labels)
    old = f'path = "{DEMO.parent}/demo-osbs/labels/OSBS_029_crowns.geojson"'
    region = load_region(_demo_variant(tmp_path, old, f'path = "{labels}"'))
    chip_region(region, tmp_path / "chips")
    opts = TrainOptions(chips=(tmp_path / "chips",), steps=1, val_every=1, pixel_model=False)
    frame = gpd.read_file(labels)
    frame.iloc[:-5].to_file(labels, driver="GeoJSON")  # five crowns fewer
    with pytest.raises(GeotlInputError, match=r"labels file changed after they were cut"):
        train_model([region], tmp_path / "m", opts)
    assert not (tmp_path / "m").exists()


def test_chips_stay_usable_when_an_area_file_is_written_again_alike(tmp_path):
    """A GeoPackage written again with the same areas has other bytes (its time stamps).

    The chips' record held the files' byte digests, so --chips was refused after a script
    (or a QGIS export) rewrote an unchanged complete_within file; an edited one still is.
    """
    import time

    import geopandas as gpd
    from shapely.geometry import box

    region0 = load_region(DEMO)
    import rasterio

    with rasterio.open(region0.scene_paths()[0]) as src:
        bounds, crs = src.bounds, src.crs
    area = tmp_path / "complete.gpkg"

    def write(shrink: float) -> None:
        gpd.GeoDataFrame(geometry=[box(*bounds).buffer(-shrink)], crs=crs).to_file(area)

    write(1.0)
    old = "[labels]\n"
    region = load_region(_demo_variant(tmp_path, old, f'[labels]\ncomplete_within = "{area}"\n'))
    chip_region(region, tmp_path / "chips")
    before = area.read_bytes()
    time.sleep(1.1)
    write(1.0)  # the same polygon, written again
    assert area.read_bytes() != before
    assert (
        resolve_chips_dir(region, tmp_path / "chips", tmp_path / "x", False) == tmp_path / "chips"
    )
    write(5.0)  # another polygon
    with pytest.raises(GeotlInputError, match=r"complete_within file changed after they were cut"):
        resolve_chips_dir(region, tmp_path / "chips", tmp_path / "x", False)


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        # the file's bands named in another order after chipping: the chips kept the old
        # names, so the model took the file's bands in the old meaning and the card the new
        (
            '["red", "green", "blue"]',
            '["blue", "green", "red"]',
            r"cut with \[imagery\] bands = \['red', 'green', 'blue'\], the region has",
        ),
        (
            'class_map = { Tree = "tree" }',
            'class_map = { Tree = "tree", Bush = "tree" }',
            "class_map",
        ),
        (
            'classes = ["tree"]',
            'classes = ["tree", "shrub"]',
            r"without the class\(es\) \['shrub'\]",
        ),
    ],
)
def test_chips_cut_with_other_bands_or_classes_are_refused(demo_chips, tmp_path, old, new, match):
    region = load_region(_demo_variant(tmp_path, old, new))
    with pytest.raises(GeotlInputError, match=r"these chips no longer fit .*" + match):
        resolve_chips_dir(region, demo_chips, tmp_path / "x", False)
    # the same bands under their sensor ids are the same bands
    same = load_region(_demo_variant(tmp_path, '["red", "green", "blue"]', '["B04", "B03", "B02"]'))
    assert resolve_chips_dir(same, demo_chips, tmp_path / "x", False) == demo_chips


def test_card_of_a_run_in_steps_says_steps_not_zero_epochs(demo_chips, demo_model, tmp_path):
    """A run set in steps wrote ``epochs: 0`` and nothing of the steps on the card."""
    import json

    opts = TrainOptions(chips=(demo_chips,), steps=4, val_every=2, batch_size=8)
    card = train_model([load_region(DEMO)], tmp_path / "m", replace(opts, pixel_model=False))
    raw = json.loads((tmp_path / "m" / "model.json").read_text())
    assert raw["epochs"] is None and raw["steps"] == 4 == card.metrics["steps_run"]
    by_epochs = read_card(demo_model)  # epochs = 2: said, with the steps they made
    assert by_epochs.epochs == 2 and by_epochs.steps == by_epochs.metrics["steps_run"] > 2


def _named_variant(tmp_path: Path, name: str, old: str, new: str) -> Path:
    path = _demo_variant(tmp_path, 'name = "demo-osbs"', f'name = "{name}"')
    text = path.read_text()
    assert old in text
    (tmp_path / f"{name}.toml").write_text(text.replace(old, new))
    return tmp_path / f"{name}.toml"


def test_regions_trained_together_share_their_predict_settings_on_the_card(demo_chips, tmp_path):
    """The card took min_area_m2 and the threshold from the first region only."""
    small = _named_variant(tmp_path, "small", "min_area_m2 = 0.5", "min_area_m2 = 0.2")
    fixed = _named_variant(tmp_path, "fixed", "[predict]", "[predict]\nthreshold = 0.7")
    other = _named_variant(tmp_path, "other", "[predict]", "[predict]\nthreshold = 0.6")
    opts = TrainOptions(steps=2, val_every=1, batch_size=4, pixel_model=False)
    with pytest.raises(GeotlInputError, match=r"other\.toml: \[predict\] threshold = 0.6 differs"):
        train_model([load_region(fixed), load_region(other)], tmp_path / "x", opts)
    assert not (tmp_path / "x").exists()  # refused before chipping
    card = train_model(
        [load_region(DEMO), load_region(small), load_region(fixed)], tmp_path / "m", opts
    )
    # the smallest objects any region keeps; the threshold a later region set
    assert card.min_area_m2 == 0.2 and card.threshold == 0.7
    assert card.metrics["threshold"]["used"] == 0.7


def test_an_out_folder_holding_the_regions_files_is_refused(tmp_path):
    """--overwrite replaced the region's own folder: the region file and scenes were deleted."""
    import shutil

    project = tmp_path / "project"
    shutil.copytree(DEMO.parent / "demo-osbs", project / "demo-osbs")
    shutil.copy(DEMO, project / "demo-osbs.toml")
    region = load_region(project / "demo-osbs.toml")
    opts = TrainOptions(steps=2, val_every=1, batch_size=4, overwrite=True)
    for out in (project, project / "demo-osbs"):
        with pytest.raises(ConfigError, match=r"holds this region's input .*choose an --out"):
            train_model([region], out, opts)
    assert (project / "demo-osbs.toml").is_file() and list(project.glob("demo-osbs/imagery/*"))


def test_regions_of_other_bands_are_refused_with_the_fix(tmp_path):
    from geotl.errors import BandMismatchError

    nir = _named_variant(tmp_path, "nir", '"green", "blue"]', '"green", "nir"]')
    with pytest.raises(BandMismatchError, match=r"nir\.toml: bands .* differ from .*--base model:"):
        train_model([load_region(DEMO), load_region(nir)], tmp_path / "m", TrainOptions(steps=2))
    assert not (tmp_path / "m").exists()


def test_a_small_label_budget_keeps_every_class(tmp_path):
    # a rare class (2 of 61 crowns) was left out of most small draws: never learnt
    import geopandas as gpd

    from geotl.train.data import load_training_sets, object_classes

    crowns = gpd.read_file(DEMO.parent / "demo-osbs" / "labels" / "OSBS_029_crowns.geojson")
    crowns["label"] = ["Snag" if i in (7, 40) else "Tree" for i in range(len(crowns))]
    crowns.to_file(tmp_path / "crowns.geojson", driver="GeoJSON")
    path = _demo_variant(tmp_path, 'classes = ["tree"]', 'classes = ["tree", "snag"]')
    text = path.read_text().replace(
        f'"{DEMO.parent}/demo-osbs/labels/OSBS_029_crowns.geojson"',
        f'"{tmp_path / "crowns.geojson"}"',
    )
    path.write_text(text.replace('{ Tree = "tree" }', '{ Tree = "tree", Snag = "snag" }'))
    region = load_region(path)
    chips = tmp_path / "chips"
    chip_region(region, chips)
    kinds = object_classes(region)
    assert kinds is not None and sorted(kinds.values()).count("snag") == 2
    train_ids = [list(v) for v in read_chip_index(chips).split("train")["object_ids"]]
    in_train = {int(i) for v in train_ids for i in v}
    assert any(kinds[i] == "snag" for i in in_train)  # else the split took both away
    for seed in range(4):
        sets = load_training_sets([region], [chips], ["red", "green", "blue"], 3, seed)
        (td,) = sets.train
        assert sets.records[0].labels_used == 3
        assert (td.masks == 2).any() and (td.masks == 1).any(), seed
    # one class: the plain seeded draw, as before
    assert select_objects(train_ids, 3, 0, None) == select_objects(train_ids, 3, 0)
