"""One band-name rule at chip time, in the base-model catalogue and at predict time.

The three places compared band names each with their own fallback; a scene whose band
descriptions were spelled otherwise than the region or the model could be accepted by one
and refused by another. Each case below is a real GeoTIFF whose descriptions spell the bands
one way, and a region / model that spells them another.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rasterio
from chips.data import write_boxes, write_region, write_scene

from geotl.bands import band_key, band_keys
from geotl.chips import chip_region
from geotl.chips.assemble import stale_reason
from geotl.config import load_region
from geotl.errors import BandMismatchError
from geotl.models.bases.kind import canonical_or_raw
from geotl.predict.scene import check_model_bands, map_bands, scene_band_names

X0, Y0 = 500_000.0, 4_000_000.0  # top-left of write_scene's scenes (EPSG:32618, 1 m)

# (the file's band descriptions, the same bands as a region or a model card spells them)
SAME = [
    (["B04", "Green ", "nir", "b02"], ["red", "B03", "B08", "Blue"]),
    (["SR_B4", "SR_B5", "swir1"], ["RED", "nir08", "B11"]),
    (["custom:DEM", "Red ", "b8a"], ["custom: dem", "B04", "nir08"]),
]


def _described(tmp_path: Path, descriptions: list[str]) -> Path:
    path = write_scene(tmp_path / "s.tif", count=len(descriptions))
    with rasterio.open(path, "r+") as ds:
        for i, name in enumerate(descriptions, start=1):
            ds.set_band_description(i, name)
    return path


def _region(tmp_path: Path, name: str, bands: list[str]) -> Path:
    write_boxes(tmp_path / "l.gpkg", [(X0 + 2, Y0 - 10, X0 + 6, Y0 - 2)])
    return write_region(tmp_path / name, ["s.tif"], "l.gpkg", imagery={"bands": bands})


@pytest.mark.parametrize(("described", "declared"), SAME)
def test_one_set_of_spellings_is_the_same_bands_everywhere(
    tmp_path: Path, described: list[str], declared: list[str]
) -> None:
    scene = _described(tmp_path, described)
    with rasterio.open(scene) as ds:
        descriptions, count = ds.descriptions, ds.count
    assert list(descriptions) == described  # GDAL keeps the spelling as written

    # chip time: the region's spelling names the file (a disagreement would be refused)
    region = load_region(_region(tmp_path, "r.toml", declared))
    chip_region(region, tmp_path / "chips")
    meta = json.loads((tmp_path / "chips" / "chipset.json").read_text())
    # chips cut under one spelling are not stale under the other, either way round
    same_in_file_spelling = load_region(_region(tmp_path, "f.toml", described))
    assert stale_reason(same_in_file_spelling, meta) is None
    assert stale_reason(region, {**meta, "bands": described}) is None

    # base-model catalogue: a base declaring either spelling has the same bands
    assert canonical_or_raw(described) == canonical_or_raw(declared)

    # predict time: the file names its own bands, and they are the model's, in its order
    names = scene_band_names(descriptions, count, path=scene)
    assert names is not None
    assert map_bands(names, count, declared, scene) == list(range(1, count + 1))
    assert map_bands(list(described), count, declared[::-1], scene) == list(range(count, 0, -1))
    check_model_bands(declared, list(described), scene, what="scene", fix="-")
    # and --bands in the region's spelling agrees with the descriptions (no warning)
    assert scene_band_names(descriptions, count, declared, path=scene) == names


def test_one_digit_ids_are_no_band_anywhere(tmp_path: Path) -> None:
    """``B4`` is red for Sentinel-2 and Landsat 8/9, near infrared for Landsat 4-7: no alias."""
    scene = _described(tmp_path, ["B4", "B3", "B2"])
    with rasterio.open(scene) as ds:
        assert scene_band_names(ds.descriptions, ds.count, path=scene) is None
    region = load_region(_region(tmp_path, "r.toml", ["red", "green", "blue"]))
    assert stale_reason(region, {"bands": ["B4", "B3", "B2"]}) is not None
    assert canonical_or_raw(["B4"]) != canonical_or_raw(["red"])
    with pytest.raises(BandMismatchError, match=r"lack \['red'\]"):
        check_model_bands(["red"], ["B4", "B3"], scene, what="scene", fix="-")


def test_names_outside_the_vocabulary_compare_stripped_and_lower_case(tmp_path: Path) -> None:
    """The case the three places disagreed on: chips matched it, the others did not."""
    assert band_keys(["Elevation ", "B4"]) == ["elevation", "b4"]
    assert canonical_or_raw(["Elevation "]) == canonical_or_raw(["elevation"]) == ["elevation"]
    check_model_bands(["Elevation "], ["red", "elevation"], "s.tif", what="scene", fix="-")
    assert map_bands(["red", "elevation"], 2, ["Elevation "], "s.tif") == [2]
    assert band_key("custom:Elevation") != band_key("elevation")  # declared custom: stays apart
