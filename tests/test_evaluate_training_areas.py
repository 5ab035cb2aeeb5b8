"""Objects scored where labels are sample polygons drawn inside each class.

Land cover is often labelled by "training areas": a few polygons drawn inside each class,
with ``[labels] complete_within`` set to those same polygons. The model's objects spill
beyond them (a forest is larger than the sample drawn in it), so they must be judged by
their part on the labelled ground, as labels are, not dropped for lying mostly outside.
Real data: the North Carolina Landsat land-cover training polygons.
"""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely

from geotl.chips import chip_region, read_chip_index
from geotl.chips.labels import IGNORE
from geotl.config import load_region
from geotl.evaluate import match_objects
from geotl.evaluate.segmentation import _Ground
from geotl.io.rasters import ground_resolution_m
from geotl.io.vectors import label_key, read_labels

MIN_AREA_M2 = 1000.0  # about 1.2 Landsat pixels


@pytest.fixture(scope="module")
def training_areas(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    d = shared_data / "nc-landsat-landcover"
    work = tmp_path_factory.mktemp("nc-training-areas")
    toml = work / "nc.toml"
    polygons = d / "landsat96_polygons.shp"
    toml.write_text(
        'name = "nc-training-areas"\ntask = "segmentation"\n'
        'classes = ["water", "forest", "developed", "shrubland", "sediment", "herbaceous", '
        '"agriculture"]\n'
        f'[imagery]\npaths = ["{d / "landsat_multiband.tif"}"]\n'
        'bands = ["blue", "green", "red", "nir", "swir16"]\n'
        f'[labels]\npath = "{polygons}"\nclass_field = "label"\n'
        f'complete_within = "{polygons}"\n'
        "[chips]\nsize_px = 32\nstride_px = 32\n"
        "[split]\nblock_size_m = 1000.0\n"
        f"[predict]\nmin_area_m2 = {MIN_AREA_M2}\n"
    )
    region = load_region(toml)
    chip_region(region, work / "chips")
    return region, work / "chips"


def _chips_of_one_forest(region, cdir: Path):  # type: ignore[no-untyped-def]
    """Per chip holding one forest sample polygon and nothing else: its ground and label."""
    frame = read_chip_index(cdir).frame
    rows = frame[(frame["n_objects"] == 1) & (frame["px_forest"] >= 40)]
    assert len(rows), "the NC chips hold forest sample polygons"
    for row in rows.itertuples():
        with rasterio.open(cdir / row.mask) as src:
            mask, transform, crs, bounds = src.read(1), src.transform, src.crs, src.bounds
            res = ground_resolution_m(crs, transform, src.width, src.height)
        owned = np.ones(mask.shape, dtype=bool)
        ground = _Ground.of(owned, mask == IGNORE, transform, bounds, MIN_AREA_M2, res)
        key = label_key(crs, bounds)
        labels = read_labels(region, crs, key[1])
        forest = labels[labels["class"] == "forest"].geometry
        inside = [g for g in forest if g.intersects(shapely.box(*bounds))]
        yield ground, inside, transform.a


def test_an_object_spilling_beyond_the_sample_polygon_is_scored_by_its_part_in_it(
    training_areas: tuple,
) -> None:
    region, cdir = training_areas
    seen = 0
    for ground, truth, px in _chips_of_one_forest(region, cdir):
        labelled = ground.scored(truth)
        assert len(labelled) == 1
        # the forest the model sees is larger than the polygon drawn inside it: most of
        # the predicted object lies where the labels say nothing (ignore pixels)
        whole = truth[0].buffer(5 * px).intersection(ground.area)
        assert whole.difference(truth[0]).area > 0.5 * whole.area
        # before: dropped as "mostly on ignore", the label a miss (0, 0, 1): object F1 0
        # beside a good pixel IoU
        assert match_objects(ground.scored([whole]), labelled) == (1, 0, 0)
        # an object wholly outside the samples is neither right nor wrong
        outside = ground.area.difference(truth[0].buffer(2 * px))
        assert ground.scored([outside]) == []
        seen += 1
    assert seen >= 2


def test_a_box_found_outside_the_labelled_ground_is_neither_right_nor_wrong(
    training_areas: tuple,
) -> None:
    from geotl.chips.boxes import index_boxes
    from geotl.evaluate.detection import detection_scores, owned_boxes, scored_ground

    region, cdir = training_areas
    frame = read_chip_index(cdir).frame
    rows = frame[frame["n_objects"] > 0].reset_index(drop=True)
    masks = []
    for row in rows.itertuples():
        with rasterio.open(cdir / row.mask) as src:
            masks.append(src.read(1))
    truths = [
        {"boxes": b.boxes, "labels": b.classes, "ignore": b.ignore}
        for b in index_boxes(rows, region.classes, region.classes)
    ]
    # every sample polygon found, and one box more per chip where nothing is labelled
    preds = []
    for t, mask in zip(truths, masks, strict=True):
        y, x = np.argwhere(mask[1:-1, 1:-1] == IGNORE)[0] + 1  # its centre pixel: ignore
        extra = np.array([[x - 1, y - 1, x + 2, y + 2]], np.float32)
        preds.append(
            {
                "boxes": np.concatenate([t["boxes"], extra]).astype(np.float32),
                "scores": np.ones(len(t["boxes"]) + 1, np.float32),
                "labels": np.concatenate([t["labels"], [1]]).astype(np.int64),
            }
        )
    labelled = sum(len(t["boxes"]) for t in truths)
    preds, truths = owned_boxes(preds, truths, scored_ground(rows, np.stack(masks)))
    counts = detection_scores(preds, truths, region.classes, 0.5, n_boot=10)["iou_0.5"]
    # before: each of those boxes a false positive (on Flanders, 44 of 45 predicted boxes)
    assert counts["fp"] == 0 and counts["tp"] == sum(len(t["boxes"]) for t in truths) > 0
    assert labelled >= counts["tp"]
