import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from shapely.geometry import box

from geotl.config import load_region
from geotl.errors import ModelArtefactError
from geotl.evaluate import bootstrap_ci, evaluate_model, match_objects
from geotl.metrics import pixel_scores

torch.set_num_threads(2)
DEMO = Path(__file__).resolve().parents[1] / "regions" / "demo-osbs.toml"


def test_pixel_scores():
    iou, f1 = pixel_scores(np.array([[5, 0], [2, 3]]))
    assert iou.tolist() == pytest.approx([5 / 7, 3 / 5])
    assert f1.tolist() == pytest.approx([10 / 12, 6 / 8])


def test_match_objects_one_to_one_at_half_iou():
    truth = [box(0, 0, 2, 2), box(10, 10, 12, 12)]
    pred = [box(0, 0, 2, 1.5), box(0, 0, 2, 1.9), box(20, 20, 21, 21)]
    assert match_objects(pred, truth) == (1, 2, 1)
    assert match_objects([], truth) == (0, 0, 2)
    assert match_objects([box(0, 0, 2, 0.9)], truth) == (0, 1, 2)  # IoU 0.45 < 0.5


def test_bootstrap_ci_brackets_the_estimate():
    rng = np.random.default_rng(0)
    per_chip = rng.integers(0, 20, size=(50, 2, 2))
    lo, hi = bootstrap_ci(per_chip, lambda s: pixel_scores(s)[0], n_boot=300)
    iou, _ = pixel_scores(per_chip.sum(0))
    assert np.all(lo <= iou) and np.all(iou <= hi)


def test_bootstrap_ci_of_a_class_no_chip_holds_is_nan_without_a_warning():
    # two chips with background only: the foreground mean has no score in any resample
    per_chip = np.zeros((2, 3, 3), np.int64)
    per_chip[:, 0, 0] = 50
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would reach the user's terminal
        lo, hi = bootstrap_ci(
            per_chip, lambda s: np.nanmean(pixel_scores(s)[0][..., 1:], axis=-1), n_boot=50
        )
        assert np.isnan(lo) and np.isnan(hi)
        lo, hi = bootstrap_ci(per_chip[:0], lambda s: np.nanmean(pixel_scores(s)[0], axis=-1))
        assert np.isnan(lo) and np.isnan(hi)


def test_evaluate_demo_model(demo_model, demo_chips, tmp_path):
    out = tmp_path / "metrics.json"
    metrics = evaluate_model(
        demo_model, load_region(DEMO), chips_dir=demo_chips, out=out, n_boot=100
    )
    saved = json.loads(out.read_text())
    assert saved["pixel"] == metrics["pixel"]
    tree = metrics["pixel"]["per_class"]["tree"]
    assert 0 <= tree["iou"] <= 1 and tree["iou_ci95"][0] <= tree["iou"] <= tree["iou_ci95"][1]
    obj = metrics["objects"]["tree"]
    assert obj["tp"] + obj["fn"] > 0 and metrics["chips"] > 0 and metrics["split"] == "test"
    # object precision and recall carry their intervals, as F1 does
    for key in ("precision", "recall", "f1"):
        lo, hi = obj[f"{key}_ci95"]
        assert obj[key] is None or (lo is not None and lo <= obj[key] <= hi)


def test_evaluate_scores_ground_edge_chips_share_once(demo_model, demo_chips):
    # the last row and column of chips end at the scene's edge, overlapping their
    # neighbours: each labelled pixel is counted once
    import rasterio

    from geotl.chips import read_chip_index

    metrics = evaluate_model(demo_model, load_region(DEMO), chips_dir=demo_chips, n_boot=10)
    test = read_chip_index(demo_chips).split("test")
    canvas: dict[str, np.ndarray] = {}
    for r in test.itertuples():
        if r.scene not in canvas:
            with rasterio.open(r.scene) as scene_src:
                canvas[r.scene] = np.full(scene_src.shape, 255)
        with rasterio.open(demo_chips / r.mask) as src:
            mask = src.read(1)
        canvas[r.scene][r.row_off : r.row_off + r.height, r.col_off : r.col_off + r.width] = mask
    labelled = sum(int((c != 255).sum()) for c in canvas.values())
    overlapping = sum(r.height * r.width for r in test.itertuples()) - labelled
    assert overlapping > 0  # the demo's test split has shifted edge chips
    counted = sum(c["pixels"] for c in metrics["pixel"]["per_class"].values())
    assert counted == labelled


def test_objects_on_ignore_pixels_are_neither_right_nor_wrong(demo_model, demo_chips):
    from geotl.chips import read_chip_index
    from geotl.chips.labels import IGNORE
    from geotl.evaluate.chips import load_split
    from geotl.evaluate.segmentation import _chip_counts
    from geotl.models.artefact import load_artefact

    region = load_region(DEMO)
    artefact = load_artefact(demo_model, device="cpu")
    data = load_split(artefact.card, region, demo_chips, "test")
    frame = read_chip_index(demo_chips).frame.set_index("chip_id")
    _, objs = _chip_counts(artefact, region, demo_chips, frame, data, 8)
    assert objs[:, 2].sum() > 0  # labelled objects in the test chips
    data.masks[:] = IGNORE  # nothing labelled there (nodata, outside complete_within)
    confs, objs = _chip_counts(artefact, region, demo_chips, frame, data, 8)
    assert confs.sum() == 0 and objs.sum() == 0


def test_evaluate_finds_chips_in_model_dir_or_chips_itself(demo_model):
    # no --chips and no chips in the model folder: the region is chipped again (same split)
    metrics = evaluate_model(demo_model, load_region(DEMO), n_boot=50)
    assert metrics["chips"] > 0


def test_a_region_scored_on_another_split_than_it_trained_on_is_refused(
    demo_model, demo_chips, tmp_path
):
    from geotl.errors import GeotlInputError
    from geotl.models.artefact import read_card
    from geotl.train import TrainOptions, train_model

    # the region file edited after training (another split seed): training ground in "test"
    text = DEMO.read_text().replace('"demo-osbs/', f'"{DEMO.parent}/demo-osbs/')
    edited = tmp_path / "demo-osbs.toml"
    edited.write_text(text.replace("seed = 0", "seed = 5"))
    assert read_card(demo_model).regions[0].split_sha
    with pytest.raises(GeotlInputError, match="not the one the model was trained on"):
        evaluate_model(demo_model, load_region(edited), n_boot=10)
    # and its old chips no longer train that region file
    with pytest.raises(GeotlInputError, match="seed = 0 there, 5 now"):
        train_model([load_region(edited)], tmp_path / "m", TrainOptions(chips=(demo_chips,)))


def test_a_region_of_other_classes_is_refused(demo_model, tmp_path):
    from geotl.errors import GeotlInputError

    text = DEMO.read_text().replace('"demo-osbs/', f'"{DEMO.parent}/demo-osbs/')
    other = tmp_path / "b.toml"
    other.write_text(text.replace('classes = ["tree"]', 'classes = ["building"]').replace(
        'class_map = { Tree = "tree" }', 'class_map = { Tree = "building" }'))  # fmt: skip
    with pytest.raises(GeotlInputError, match=r"classes \['building'\] are not the model's"):
        evaluate_model(demo_model, load_region(other))


def test_missing_weights_file(demo_model, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text((demo_model / "model.json").read_text())
    with pytest.raises(ModelArtefactError, match=r"missing model\.safetensors"):
        evaluate_model(broken, load_region(DEMO))


def test_object_areas_are_judged_on_the_ground_in_a_degree_crs():
    # a lon/lat chip (~0.1 m pixels): min_area_m2 is compared in m², not in degrees²
    from affine import Affine

    from geotl.evaluate.segmentation import _Ground

    deg = 0.1 / 111_320  # about 0.1 m
    t = Affine(deg, 0, -82.0, 0, -deg, 29.7)
    owned = np.ones((64, 64), bool)
    ignore = np.zeros((64, 64), bool)
    ignore[:, :32] = True  # the left half unlabelled
    ground = _Ground.of(owned, ignore, t, (-82.0, 29.7 - 64 * deg, -82.0 + 64 * deg, 29.7),
                        min_area_m2=0.5, resolution_m=0.1)  # fmt: skip

    def square(col: int, size: int) -> object:
        x0, y0 = t * (col, 10)
        x1, y1 = t * (col + size, 10 + size)
        return box(x0, y1, x1, y0)

    big, small, unlabelled = square(40, 10), square(40, 5), square(5, 10)  # 1 m², 0.25 m²
    kept = ground.scored([big, small, unlabelled])
    assert len(kept) == 1 and kept[0].equals(big)


def test_a_class_without_test_pixels_is_left_out_of_the_mean_and_named():
    from geotl.evaluate.segmentation import segmentation_scores

    # two chips; "shrub" is never labelled in the test split but predicted on a few pixels
    confs = np.zeros((2, 3, 3), np.int64)
    confs[:, 0, 0], confs[:, 1, 1], confs[:, 1, 0], confs[:, 0, 2] = 50, 6, 2, 3
    objs = np.zeros((2, 3, 2), np.int64)
    pixel = segmentation_scores(confs, objs, ["tree", "shrub"], ["a", "b"], 50, 0)["pixel"]
    assert pixel["per_class"]["shrub"]["iou"] == 0.0
    assert pixel["mean_iou"] == pixel["per_class"]["tree"]["iou"] == 0.75
    assert pixel["classes_without_test_pixels"] == ["shrub"]
    assert pixel["mean_iou_ci95"] == [0.75, 0.75]


def test_chips_beside_the_model_cut_before_a_label_edit_are_cut_again(
    demo_model, demo_chips, tmp_path, caplog
):
    # geotl train without --chips keeps the chips in MODEL_DIR/chips; the labels are edited
    # afterwards (half the crowns dropped): evaluate must not score on the old masks
    import logging
    import shutil

    import geopandas as gpd

    model = tmp_path / "m"
    shutil.copytree(demo_model, model)
    shutil.copytree(demo_chips, model / "chips")
    labels = tmp_path / "crowns.geojson"
    shutil.copy(DEMO.parent / "demo-osbs" / "labels" / "OSBS_029_crowns.geojson", labels)
    text = DEMO.read_text().replace('"demo-osbs/', f'"{DEMO.parent}/demo-osbs/')
    text = text.replace(f'"{DEMO.parent}/demo-osbs/labels/OSBS_029_crowns.geojson"', f'"{labels}"')
    region_file = tmp_path / "demo-osbs.toml"
    region_file.write_text(text)

    def labelled() -> int:
        metrics = evaluate_model(model, load_region(region_file), n_boot=10)
        return int(sum(c["labelled"] for c in metrics["objects"]["tree"]["count_per_chip"]))

    before = labelled()  # the chips beside the model fit the region: used as they are
    crowns = gpd.read_file(labels)
    crowns.iloc[::2].to_file(labels, driver="GeoJSON")
    with caplog.at_level(logging.WARNING, logger="geotl.evaluate.chips"):
        after = labelled()
    assert "labels file changed after they were cut" in caplog.text
    assert 0 < after < before  # scored on masks of the edited labels


def test_a_run_folders_chips_beside_its_model_are_used(
    demo_model, demo_chips, tmp_path, monkeypatch
):
    # geotl run DIR keeps DIR/chips beside DIR/model: evaluate DIR/model scores on them
    # (a large region is not chipped again) and gives what run wrote into DIR/metrics.json
    import shutil

    import geotl.chips

    run = tmp_path / "run"
    shutil.copytree(demo_model, run / "model")
    shutil.copytree(demo_chips, run / "chips")
    region = load_region(DEMO)
    expected = evaluate_model(run / "model", region, chips_dir=run / "chips", n_boot=10)

    def no_chipping(*args: object, **kwargs: object) -> None:
        raise AssertionError("the region was chipped again")

    monkeypatch.setattr(geotl.chips, "chip_region", no_chipping)
    assert evaluate_model(run / "model", region, n_boot=10) == expected
