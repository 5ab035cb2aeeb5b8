"""``geotl suggest`` over passes of one area: the same ground counts once against ``-n``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import geopandas as gpd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_suggest import SCENE, _region, _suggest, demo_model  # noqa: F401  (fixture)


def test_more_areas_than_distinct_ground_says_how_many(tmp_path: Path, demo_model: Path) -> None:  # noqa: F811
    # two passes of one plot: 12 squares outside complete and test areas, 24 scene-square
    # pairs; -n 20 gave 12 areas and exit 0, while -n larger than the candidates is an error
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(SCENE, tmp_path / folder / SCENE.name)
    region = _region(tmp_path)
    text = region.read_text()
    imagery = f'paths = ["{SCENE.parent}/*.tif"]'
    assert imagery in text
    region.write_text(text.replace(imagery, f'paths = ["{tmp_path}/*/{SCENE.name}"]', 1))
    out = tmp_path / "a.gpkg"
    code, _, stderr = _suggest(region, demo_model, out, "-n", "20", "--size-m", "6.4")
    assert code == 2, stderr
    assert "-n 20 but only 12 distinct 6.4 m square(s)" in stderr and str(region) in stderr
    assert "the same ground in several scenes is one square" in stderr
    assert not list(tmp_path.glob("a.*"))
    code, _, stderr = _suggest(region, demo_model, out, "-n", "12", "--size-m", "6.4")
    assert code == 0, stderr
    areas = gpd.read_file(out, layer="areas")
    assert len(areas) == 12
    # named as geotl predict names them: both were "OSBS_029.tif", and the contact sheet
    # took every square's pixels from the pass listed last
    assert set(areas["scene"]) <= {f"a/{SCENE.name}", f"b/{SCENE.name}"}


def test_too_many_areas_over_passes_are_refused_before_prediction(
    tmp_path: Path,
    demo_model: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three passes of one plot: 36 scene-square pairs, 12 distinct squares.

    ``-n 20`` passed the early check (20 <= 36) and was refused only after every pass was
    predicted (about a minute over the 10 NAIP dates of naip-landsat-timeseries); the
    distinct squares are known before any prediction.
    """
    import geotl.predict
    from geotl.config import load_region
    from geotl.errors import GeotlInputError
    from geotl.suggest import SuggestOptions, suggest_areas

    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
        shutil.copy(SCENE, tmp_path / folder / SCENE.name)
    region_path = _region(tmp_path)
    text = region_path.read_text()
    imagery = f'paths = ["{SCENE.parent}/*.tif"]'
    region_path.write_text(text.replace(imagery, f'paths = ["{tmp_path}/*/{SCENE.name}"]', 1))

    def no_prediction(*args: object, **kwargs: object) -> None:
        raise AssertionError("predicted before refusing -n")

    monkeypatch.setattr(geotl.predict, "predict_scene", no_prediction)
    out = tmp_path / "a.gpkg"
    options = SuggestOptions(n=20, size_m=6.4)
    with pytest.raises(GeotlInputError) as err:
        suggest_areas(load_region(region_path), demo_model, out, options)
    said = str(err.value)
    assert "-n 20 but only 12 distinct 6.4 m square(s)" in said, said
    assert "the same ground in several scenes is one square" in said
    # the size hint counts distinct squares too (36 pairs of 6.4 m squares were "20 or more")
    assert "--size-m 3.3 gives 20 or more" in said, said
    assert not out.exists()
