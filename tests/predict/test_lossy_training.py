"""A model card records the lossy compression of its training scenes; predict warns of a
lossy scene only where the model did not learn from such pixels (old cards: always).

Real GeoTIFFs (JPEG, DEFLATE) and GeoPackages (WebP tiles) written with rasterio/GDAL.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from geotl.chips import ChipIndex
from geotl.models.artefact import ModelCard
from geotl.predict.core import predict_scene
from geotl.train.loop import chips_lossy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from predict import data


def _scene(path: Path, **options: object) -> Path:
    """A 3-band 200 x 200 scene of the test grid (blobs in band 0)."""
    band0 = data.blobs(200, 200)
    pixels = np.stack([band0, np.full_like(band0, 100), np.full_like(band0, 90)])
    if path.suffix == ".gpkg":
        with rasterio.open(
            path, "w", driver="GPKG", count=3, width=200, height=200, dtype="uint8",
            crs=data.UTM17, transform=data.ORIGIN, **options,
        ) as dst:  # fmt: skip
            dst.write(pixels)
        return path
    return data.write_bands(path, pixels, **options)


def _lossy_said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "lossy-compressed" in r.getMessage()
    ]


@pytest.mark.parametrize(
    ("trained", "scene", "said"),
    [
        (["JPEG"], "jpeg.tif", None),  # learnt from JPEG artefacts: nothing to say
        ([], "jpeg.tif", "on lossless training imagery"),
        (None, "jpeg.tif", "on lossless training imagery"),  # an old card: as before
        (["JPEG"], "webp.gpkg", "on the training imagery (JPEG-compressed)"),
        (["JPEG"], "deflate.tif", None),  # a lossless scene: never said
    ],
)
def test_predict_warns_of_lossy_pixels_the_model_did_not_learn_from(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    trained: list[str] | None,
    scene: str,
    said: str | None,
) -> None:
    options = {
        "jpeg.tif": {"compress": "jpeg", "tiled": True},
        "webp.gpkg": {"TILE_FORMAT": "WEBP"},
        "deflate.tif": {"compress": "deflate"},
    }[scene]
    path = _scene(tmp_path / scene, **options)
    artefact = data.threshold_artefact()
    artefact.card = artefact.card.model_copy(update={"lossy": trained})
    with caplog.at_level(logging.INFO, logger="geotl"):  # a CLI test may have set -q
        predict_scene(artefact, path)
    lines = _lossy_said(caplog)
    if said is None:
        assert lines == []
    else:
        (line,) = lines
        assert said in line
    if trained == ["JPEG"] and scene == "jpeg.tif":  # still said, below warning level
        assert any("as the model's training imagery was" in r.getMessage() for r in caplog.records)


def test_a_card_without_the_field_reads_as_not_known() -> None:
    raw = data.card().model_dump(mode="json")
    assert "lossy" in raw
    del raw["lossy"]  # a card written before it was recorded
    assert ModelCard.model_validate(raw).lossy is None


def test_the_card_records_the_lossy_codecs_of_the_chips_scenes(tmp_path: Path) -> None:
    jpeg = _scene(tmp_path / "a.tif", compress="jpeg", tiled=True)
    deflate = _scene(tmp_path / "b.tif", compress="deflate")
    webp = _scene(tmp_path / "c.gpkg", TILE_FORMAT="WEBP")

    def index(scenes: list[Path], recorded: list[dict[str, object]] | None = None) -> ChipIndex:
        frame = pd.DataFrame({"scene": [str(s) for s in scenes for _ in range(2)]})
        return ChipIndex(tmp_path, frame, {"scenes": recorded or []})  # type: ignore[arg-type]

    assert chips_lossy(index([deflate])) == []
    assert chips_lossy(index([jpeg, deflate, webp])) == ["JPEG", "WEBP"]
    gone = tmp_path / "moved.tif"  # chips copied to another machine, without their scenes
    assert chips_lossy(index([deflate, gone])) is None
    # the chipset's record of a scene holds, opened or not
    assert chips_lossy(index([gone], [{"path": str(gone), "lossy": ["JPEG"]}])) == ["JPEG"]


def test_training_writes_the_field(demo_model: Path) -> None:
    """The demo region's scene is lossless, recorded as such (not None)."""
    from geotl.models.artefact import read_card

    assert read_card(demo_model).lossy == []


def test_the_field_leaves_the_model_id_alone() -> None:
    """Chips trained where their scenes are (``[]``) or not (None): one model, one id."""
    from geotl.models.artefact import card_digest

    card = data.card()
    assert card_digest(card.model_copy(update={"lossy": []})) == card_digest(card)
