"""``geotl evaluate``'s contract: outputs never replaced without --overwrite, a region of
other bands refused before any chipping, objects a chip's edge cuts apart scored as pieces."""

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from shapely.geometry import box

from geotl.cli.main import cli
from geotl.config import load_region
from geotl.errors import BandMismatchError
from geotl.evaluate import evaluate_model, match_objects

torch.set_num_threads(2)
DEMO = Path(__file__).resolve().parents[1] / "regions" / "demo-osbs.toml"


def test_out_file_is_not_replaced_without_overwrite(demo_model, tmp_path):
    out = tmp_path / "metrics.json"
    out.write_text('{"kept": true}\n')
    result = CliRunner().invoke(cli, ["evaluate", str(demo_model), str(DEMO), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "metrics.json" in result.output and "--overwrite" in result.output
    assert out.read_text() == '{"kept": true}\n'
    with pytest.raises(FileExistsError):
        evaluate_model(demo_model, load_region(DEMO), out=out)


def test_a_region_of_other_bands_is_refused_before_chipping(demo_model, tmp_path, monkeypatch):
    import geotl.chips

    # the same region (name, split, scene) with its bands declared as others: the one-line
    # refusal names both band sets, not the split of chips cut for nothing
    text = DEMO.read_text().replace('"demo-osbs/', f'"{DEMO.parent}/demo-osbs/')
    other = tmp_path / "demo-osbs.toml"
    other.write_text(
        text.replace('bands = ["red", "green", "blue"]', 'bands = ["red", "green", "nir"]')
    )

    def no_chipping(*args: object, **kwargs: object) -> None:
        raise AssertionError("chipped a region whose bands do not fit the model")

    monkeypatch.setattr(geotl.chips, "chip_region", no_chipping)
    with pytest.raises(
        BandMismatchError, match=r"lack \['blue'\].*model bands \['red', 'green', 'blue'\]"
    ):
        evaluate_model(demo_model, load_region(other))


def test_a_region_without_a_test_split_is_refused_before_chipping(
    demo_model, tmp_path, monkeypatch
):
    """test_fraction = 0 and no test_within: said at once, not after chipping into scratch.

    Found driving geotl: the error came after chipping (minutes on a large region) and named
    a scratch folder that was already gone.
    """
    import geotl.chips

    text = DEMO.read_text().replace('"demo-osbs/', f'"{DEMO.parent}/demo-osbs/')
    region = tmp_path / "no test.toml"
    region.write_text(text.replace("test_fraction = 0.2", "test_fraction = 0.0"))

    def no_chipping(*args: object, **kwargs: object) -> None:
        raise AssertionError("chipped a region that has no test split")

    monkeypatch.setattr(geotl.chips, "chip_region", no_chipping)
    out = tmp_path / "metrics.json"
    result = CliRunner().invoke(cli, ["evaluate", str(demo_model), str(region), "--out", str(out)])
    assert result.exit_code == 2, result.output
    said = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(said) == 1 and "no test.toml" in said[0] and "test_fraction = 0" in said[0]
    assert not out.exists()


def test_a_label_a_chip_edge_cuts_apart_is_scored_as_its_pieces():
    from affine import Affine

    from geotl.evaluate.segmentation import _Ground

    # an E-shaped field (three arms joined at the left) whose joining bar lies outside the
    # chip: in the chip three separate arms, which a perfect model draws as three objects
    t = Affine(1, 0, 0, 0, -1, 10)
    owned = np.ones((10, 10), bool)
    ground = _Ground.of(owned, ~owned, t, (0, 0, 10, 10), min_area_m2=0.0, resolution_m=1.0)
    arms = [box(0, y, 8, y + 2) for y in (1, 4, 7)]
    field = box(-3, 1, 0, 9).union(arms[0]).union(arms[1]).union(arms[2])
    truth = ground.scored([field])
    assert len(truth) == 3
    assert match_objects(ground.scored(arms), truth) == (3, 0, 0)
    # a label that is a MultiPolygon of its own, whole in the chip, stays one object
    two = box(1, 1, 3, 3).union(box(5, 5, 7, 7))
    assert len(ground.scored([two])) == 1


def test_a_curve_without_a_test_split_is_refused_before_training(tmp_path, monkeypatch):
    import geotl.train
    from geotl.errors import GeotlInputError
    from geotl.evaluate import label_curve
    from geotl.train import TrainOptions

    text = DEMO.read_text().replace('"demo-osbs/', f'"{DEMO.parent}/demo-osbs/')
    region = tmp_path / "region.toml"
    region.write_text(text.replace("test_fraction = 0.2", "test_fraction = 0.0"))

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained a curve point that could not be scored")

    monkeypatch.setattr(geotl.train, "train_model", no_training)
    with pytest.raises(GeotlInputError, match=r"test_fraction = 0 and no test_within"):
        label_curve(load_region(region), tmp_path / "c", [5], ["none"], TrainOptions())
