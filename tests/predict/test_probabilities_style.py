"""The probabilities COG gets its QGIS style beside it, named by its bands."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geotl.predict.core import predict_scenes
from geotl.predict.outputs.cog import write_probabilities_qml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from predict import data


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("model")
    data.write_constant_model(d)
    return d


def _scene(path: Path) -> Path:
    return data.write_scene(path, np.full((60, 70), 150, dtype=np.uint8))


def test_each_scenes_probabilities_get_a_style(model_dir: Path, tmp_path: Path) -> None:
    # QGIS showed the COG as its default (grey; an RGB composite for an instance model's
    # class, border and contact bands): nothing said which band is which or that 1 is sure
    scenes = [_scene(tmp_path / "a.tif"), _scene(tmp_path / "b.tif")]
    out = tmp_path / "out"
    out.mkdir()
    summary = predict_scenes(
        model_dir, scenes, out / "d.geojson", probabilities=out / "p.tif", overwrite=False
    )
    assert summary.qml == [out / "d.qml", out / "p_a.qml", out / "p_b.qml"]
    assert sorted(p.name for p in out.iterdir()) == [
        "d.geojson", "d.qml", "p_a.qml", "p_a.tif", "p_b.qml", "p_b.tif",
    ]  # fmt: skip
    qml = (out / "p_a.qml").read_text(encoding="utf-8")
    assert 'type="singlebandpseudocolor" band="1"' in qml
    assert 'classificationMin="0.0" classificationMax="1.0"' in qml
    assert 'label="tree 1"' in qml and "<!-- bands: 1 tree -->" in qml
    # an existing style is an output like the others: replaced only with overwrite
    from geotl.errors import GeotlInputError

    for name in ("p_a.tif", "p_b.tif"):
        (out / name).unlink()
    with pytest.raises(GeotlInputError, match=r"p_a\.qml"):
        predict_scenes(model_dir, scenes, out / "e.geojson", probabilities=out / "p.tif")


def test_the_style_names_every_band(tmp_path: Path) -> None:
    # an instance model's COG: the class, then border and contact (the comment lists them)
    cog = tmp_path / "p.tif"
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 3, "dtype": "float32"}
    with rasterio.open(cog, "w", **profile) as ds:
        ds.write(np.zeros((3, 8, 8), np.float32))
        for i, name in enumerate(["bâtiment", "border", "contact"], start=1):
            ds.set_band_description(i, name)
    qml = write_probabilities_qml(cog, tmp_path / "p.qml").read_text(encoding="utf-8")
    assert "<!-- bands: 1 bâtiment, 2 border, 3 contact -->" in qml
    assert 'label="bâtiment 0"' in qml and 'band="1"' in qml


def test_a_probabilities_name_like_the_geojson_keeps_the_detections_style(
    model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # -o p.geojson --probabilities p.tif: both styles would be p.qml; the detections' wins
    scene = _scene(tmp_path / "a.tif")
    with caplog.at_level(logging.WARNING):
        summary = predict_scenes(
            model_dir, [scene], tmp_path / "p.geojson", probabilities=tmp_path / "p.tif"
        )
    assert summary.qml == [tmp_path / "p.qml"]
    assert 'attr="class"' in (tmp_path / "p.qml").read_text(encoding="utf-8")
    assert "written without its QGIS style" in caplog.text


def test_the_cog_conversion_keeps_gdal_cache_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GDAL's default block cache (5 % of the machine's memory) filled while the COG was
    # converted: a 10,000 px scene peaked at 6.2 GB, growing with the scene
    import rio_cogeo.cogeo

    from geotl.predict.outputs.cog import GDAL_CACHE_BYTES, write_cog

    src = tmp_path / "src.tif"
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 2, "dtype": "float32"}
    with rasterio.open(src, "w", **profile) as ds:
        ds.write(np.random.default_rng(0).random((2, 64, 64), dtype=np.float32))
    real = rio_cogeo.cogeo.cog_translate
    caches: list[str | None] = []

    def translate(*args: object, **kwargs: object) -> None:
        caches.append(rasterio.env.get_gdal_config("GDAL_CACHEMAX"))
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rio_cogeo.cogeo, "cog_translate", translate)
    write_cog(src, tmp_path / "p.tif")
    assert caches and caches[0] is not None and int(caches[0]) <= GDAL_CACHE_BYTES
    with rasterio.open(tmp_path / "p.tif") as cog:
        assert cog.dtypes == ("float32", "float32") and cog.read().shape == (2, 64, 64)
