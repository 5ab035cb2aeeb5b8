"""Label-efficiency curves: each point written as it is done, re-runs, detection rows."""

import json
from pathlib import Path

import pytest

from geotl.config import load_region
from geotl.evaluate import label_curve
from geotl.train import TrainOptions

DEMO = Path(__file__).resolve().parents[1] / "regions" / "demo-osbs.toml"


def _region_file(tmp_path: Path, task: str = "segmentation") -> Path:
    text = DEMO.read_text().replace('"demo-osbs/', f'"{DEMO.parent}/demo-osbs/')
    path = tmp_path / "region.toml"
    path.write_text(text.replace('task = "segmentation"', f'task = "{task}"'))
    return path


def test_a_curve_stopped_half_way_keeps_its_points_and_a_rerun_trains_only_the_rest(
    demo_chips, tmp_path, monkeypatch, one_thread
):
    import geotl.train

    region = load_region(_region_file(tmp_path))
    options = TrainOptions(chips=(demo_chips,), steps=2, val_every=2, seed=0)
    real = geotl.train.train_model
    trained: list[int | None] = []

    def stopped_after_one(regions, out, opts):  # the user's Ctrl-C during the second model
        if trained:
            raise KeyboardInterrupt
        trained.append(opts.max_labels)
        return real(regions, out, opts)

    monkeypatch.setattr(geotl.train, "train_model", stopped_after_one)
    out = tmp_path / "curve"
    with pytest.raises(KeyboardInterrupt):
        label_curve(region, out, [3, 8], ["none"], options, n_boot=10)
    saved = json.loads((out / "curve.json").read_text())
    assert [r["budget"] for r in saved["rows"]] == [3] and saved["complete"] is False
    assert (out / "curve.png").is_file()

    def counted(regions, out, opts):
        trained.append(opts.max_labels)
        return real(regions, out, opts)

    monkeypatch.setattr(geotl.train, "train_model", counted)
    table = label_curve(region, out, [3, 8], ["none"], options, n_boot=10)
    assert trained == [3, 8]  # the 3-label point was not trained again
    # one class: the table and rows as they always were (no per-class scores beside them)
    assert "classes" not in table and not {"per_class", "mean"} & set(table["rows"][0])
    assert [r["budget"] for r in table["rows"]] == [3, 8] and table["complete"] is True
    assert table["rows"][0] == saved["rows"][0]
    # other settings (another seed): nothing of the earlier run is reused
    label_curve(region, out, [3], ["none"], TrainOptions(**{**options.__dict__, "seed": 1}),
                n_boot=10)  # fmt: skip
    assert trained == [3, 8, 3]


def test_a_detection_curve_reports_ap50(tmp_path, one_thread):
    # a detector's metrics have no pixel scores: the curve crashed with KeyError 'pixel'
    region = load_region(_region_file(tmp_path, "detection"))
    out = tmp_path / "curve"
    table = label_curve(region, out, [5], ["none"], TrainOptions(steps=2, val_every=2), n_boot=10)
    (row,) = table["rows"]
    assert table["task"] == "detection" and 0 <= row["ap50"] <= 1 and "pixel_iou" not in row
    assert row["object_f1"] is not None and (out / "curve.png").stat().st_size > 1000


def test_a_curve_json_in_a_missing_folder_is_refused_before_training(tmp_path, monkeypatch):
    import geotl.train
    from geotl.errors import GeotlInputError

    def no_training(*args, **kwargs):
        raise AssertionError("trained before the output was checked")

    monkeypatch.setattr(geotl.train, "train_model", no_training)
    region = load_region(_region_file(tmp_path))
    with pytest.raises(GeotlInputError, match="does not exist: create it first"):
        label_curve(region, tmp_path / "curve", [3], ["none"], TrainOptions(),
                    out_json=tmp_path / "no" / "curve.json")  # fmt: skip
    assert not (tmp_path / "curve").exists()


def test_a_curve_json_over_another_file_is_refused_without_overwrite(tmp_path, monkeypatch):
    # --out names the metrics.json of an earlier 'geotl evaluate': the curve would resume
    # nothing from it and replace it with its table
    import geotl.train
    from geotl.errors import OutputExistsError

    def no_training(*args, **kwargs):
        raise AssertionError("trained before the output was checked")

    monkeypatch.setattr(geotl.train, "train_model", no_training)
    region = load_region(_region_file(tmp_path))
    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"region": "demo-osbs", "pixel": {"mean_iou": 0.5}}\n')
    with pytest.raises(OutputExistsError, match="not a label curve of region 'demo-osbs'"):
        label_curve(region, tmp_path / "curve", [3], ["none"], TrainOptions(),
                    out_json=metrics)  # fmt: skip
    assert metrics.read_text() == '{"region": "demo-osbs", "pixel": {"mean_iou": 0.5}}\n'
    assert not (tmp_path / "curve").exists()


def test_a_curve_rerun_after_a_label_edit_cuts_its_own_chips_again(tmp_path, caplog, one_thread):
    # the curve's chips (no --chips) were cut before an edit: it was refused with 'drop
    # --chips' (the user gave none); its chips are cut again and its points trained again
    import logging
    import shutil

    import geopandas as gpd

    labels = tmp_path / "crowns.geojson"
    shutil.copy(DEMO.parent / "demo-osbs" / "labels" / "OSBS_029_crowns.geojson", labels)
    region_file = _region_file(tmp_path)
    text = region_file.read_text()
    region_file.write_text(
        text.replace(f'"{DEMO.parent}/demo-osbs/labels/OSBS_029_crowns.geojson"', f'"{labels}"')
    )
    out = tmp_path / "curve"
    options = TrainOptions(steps=2, val_every=2)
    first = label_curve(load_region(region_file), out, [100], ["none"], options, n_boot=10)
    crowns = gpd.read_file(labels)
    crowns.iloc[::2].to_file(labels, driver="GeoJSON")
    with caplog.at_level(logging.WARNING, logger="geotl.evaluate.curve"):
        again = label_curve(load_region(region_file), out, [100], ["none"], options, n_boot=10)
    assert "labels file changed after they were cut" in caplog.text
    assert again["rows"][0]["labels_used"] < first["rows"][0]["labels_used"]


def _two_class_region(tmp_path: Path) -> Path:
    """The demo region with its crowns split into two classes (every other one a snag)."""
    import geopandas as gpd

    crowns = gpd.read_file(DEMO.parent / "demo-osbs" / "labels" / "OSBS_029_crowns.geojson")
    crowns["label"] = ["Tree" if i % 2 else "Snag" for i in range(len(crowns))]
    crowns.to_file(tmp_path / "crowns.geojson", driver="GeoJSON")
    text = _region_file(tmp_path).read_text()
    text = text.replace(f'"{DEMO.parent}/demo-osbs/labels/OSBS_029_crowns.geojson"',
                        f'"{tmp_path / "crowns.geojson"}"')  # fmt: skip
    text = text.replace('classes = ["tree"]', 'classes = ["tree", "snag"]')
    text = text.replace('class_map = { Tree = "tree" }', 'class_map = { Tree = "tree", Snag = "snag" }')  # fmt: skip
    path = tmp_path / "two.toml"
    path.write_text(text)
    return path


def test_a_curve_of_several_classes_reports_each_and_their_mean(tmp_path, monkeypatch, one_thread):
    # it reported the first class only: a class the model never learnt went unseen
    import geotl.train

    region = load_region(_two_class_region(tmp_path))
    out = tmp_path / "curve"
    options = TrainOptions(steps=2, val_every=2, seed=0)
    table = label_curve(region, out, [20], ["none"], options, n_boot=10)
    (row,) = table["rows"]
    assert table["classes"] == ["tree", "snag"] and table["class"] == "tree"
    assert set(row["per_class"]) == {"tree", "snag"}
    tree, snag = row["per_class"]["tree"], row["per_class"]["snag"]
    assert {k: row[k] for k in tree} == tree  # the first class's scores stay where they were
    assert set(snag) == set(tree) and snag["pixel_iou"] is not None
    ious = [tree["pixel_iou"], snag["pixel_iou"]]
    assert min(ious) - 1e-3 <= row["mean"]["pixel_iou"] <= max(ious) + 1e-3
    assert len(row["mean"]["pixel_iou_ci95"]) == 2
    assert json.loads((out / "curve.json").read_text())["rows"] == [row]
    assert (out / "curve.png").stat().st_size > 1000

    # a row an earlier version wrote (the first class only) is trained again, not kept
    real, trained = geotl.train.train_model, []

    def counted(regions, out, opts):
        trained.append(opts.max_labels)
        return real(regions, out, opts)

    monkeypatch.setattr(geotl.train, "train_model", counted)
    label_curve(region, out, [20], ["none"], options, n_boot=10)
    assert trained == []  # this version's row is kept
    saved = json.loads((out / "curve.json").read_text())
    for r in saved["rows"]:
        del r["per_class"], r["mean"]
    (out / "curve.json").write_text(json.dumps(saved))
    again = label_curve(region, out, [20], ["none"], options, n_boot=10)
    assert trained == [20] and set(again["rows"][0]["per_class"]) == {"tree", "snag"}


def test_a_curve_table_without_per_class_scores_still_plots(tmp_path):
    # single-class tables (and rows of earlier versions) carry no "classes" or "per_class"
    from geotl.evaluate.curve import plot_curve

    row = {"base": "none", "budget": 3, "labels_used": 3, "pixel_iou": 0.4,
           "pixel_iou_ci95": [0.3, None], "model": "m", "kept": "network"}  # fmt: skip
    table = {"region": "r", "task": "segmentation", "class": "tree", "bases": ["none"],
             "budgets": [3], "rows": [row]}  # fmt: skip
    plot_curve(table, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
