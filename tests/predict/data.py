"""Tiny scenes and models for the predict tests, generated in code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS

import geotl.predict.vectorise as vec
from geotl.models.artefact import Artefact, BaseModelRef, ModelCard, Normalisation, write_artefact
from geotl.models.network import NetworkSpec, build_network

UTM17 = CRS.from_epsg(32617)
ORIGIN = Affine(0.1, 0, 404_000.0, 0, -0.1, 3_285_000.0)
MEAN = 127.5
STD = 50.0


class BandThreshold(torch.nn.Module):
    """Pointwise 'network': foreground where band 0 is above its mean.

    Every window gives the same value for the same pixel, so the blended class map equals
    ``band0 > MEAN`` exactly and polygons can be asserted precisely.
    """

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = 4.0 * x[:, :1]
        bg = torch.zeros_like(fg)
        return torch.cat([bg, fg], dim=1)


def card(
    bands: list[str] | None = None,
    resolution_m: float = 0.1,
    encoder: str = "tu-mobilenetv3_small_050",
) -> ModelCard:
    bands = bands or ["red", "green", "blue"]
    return ModelCard(
        name="test",
        classes=["tree"],
        bands=bands,
        normalisation=Normalisation(mean=[MEAN] * len(bands), std=[STD] * len(bands)),
        chip_size_px=64,
        resolution_m=resolution_m,
        network=NetworkSpec(
            encoder=encoder,
            in_channels=len(bands),
            num_classes=2,
            encoder_depth=3,
            decoder_channels=(16, 8, 8),
        ),
        base=BaseModelRef(
            id="none", architecture="unet", licence="Apache-2.0", commercial_use=True
        ),
        freeze="none",
        model_id="test-000000000000",
    )


def threshold_artefact(bands: list[str] | None = None, resolution_m: float = 0.1) -> Artefact:
    c = card(bands, resolution_m)
    return Artefact(
        card=c, network=BandThreshold().eval(), path=Path("."), device=torch.device("cpu")
    )


def write_constant_model(
    model_dir: Path, bands: list[str] | None = None, fg: bool = True
) -> ModelCard:
    """A real artefact on disk whose head predicts foreground (or background) everywhere."""
    c = card(bands)
    torch.manual_seed(0)
    net = build_network(c.network)
    head = net.segmentation_head[0]  # type: ignore[index]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, 5.0 if fg else -5.0]))
    return write_artefact(model_dir, net, c)


def blobs(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Band-0 values: discs, a ring with a hole, a long bar across every window seam."""
    rng = np.random.default_rng(seed)
    band = np.full((height, width), 60, dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    for _ in range(max(3, height * width // 2500)):
        cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(3, 14)
        band[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 200
    band[height // 2 : height // 2 + 4, 3 : width - 3] = 220
    cy, cx = height // 3, width // 3
    ring = ((yy - cy) ** 2 + (xx - cx) ** 2 <= 15**2) & ((yy - cy) ** 2 + (xx - cx) ** 2 > 6**2)
    band[ring] = 210
    return band


def write_scene(
    path: Path,
    band0: np.ndarray,
    *,
    count: int = 3,
    crs: Any = UTM17,
    transform: Affine = ORIGIN,
    nodata: float | None = 0,
    descriptions: list[str] | None = None,
    tags: dict[str, str] | None = None,
    dtype: str = "uint8",
) -> Path:
    data = np.stack([band0] + [np.full_like(band0, 100)] * (count - 1)).astype(dtype)
    path = write_bands(path, data, nodata=nodata, crs=crs, transform=transform)
    with rasterio.open(path, "r+") as ds:
        if descriptions:
            for i, d in enumerate(descriptions, start=1):
                ds.set_band_description(i, d)
        if tags:
            ds.update_tags(**tags)
    return path


def write_bands(
    path: Path,
    bands: np.ndarray,
    *,
    nodata: float | None = None,
    crs: Any = UTM17,
    transform: Affine = ORIGIN,
    **options: Any,
) -> Path:
    """A GeoTIFF of ``bands`` ``(count, H, W)``, on the test grid unless told otherwise.

    ``options``: GDAL creation options (``photometric``, ``alpha``, ...).
    """
    count, height, width = bands.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=str(bands.dtype),
        crs=crs,
        transform=transform,
        nodata=nodata,
        **options,
    ) as ds:
        ds.write(bands)
    return path


def write_texture_model(model_dir: Path, seed: int = 0) -> ModelCard:
    """A real network, randomly initialised: its objects follow a real scene's texture.

    Cheap to make (no training) and as sensitive to every window's pixels as a trained
    model, so block and window seams would show in its polygons.
    """
    c = card()
    torch.manual_seed(seed)
    return write_artefact(model_dir, build_network(c.network), c)


def count_floods(monkeypatch: pytest.MonkeyPatch, flood_seeds: int) -> list[int]:
    """Retries flood at most ``flood_seeds`` seeds (else label): how many floods ran."""
    monkeypatch.setattr(vec, "FLOOD_SEEDS", flood_seeds)
    floods: list[int] = []
    real = vec.flood

    def counted(*args: object, **kwargs: object) -> np.ndarray:
        floods.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(vec, "flood", counted)
    return floods


def warp(src: Path, dst: Path, crs: str, res: tuple[float, float], *, nodata: float = 0) -> Path:
    """``gdalwarp -t_srs CRS -tr RES -r bilinear -dstnodata NODATA`` (band names kept)."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(src) as s:
        t, w, h = calculate_default_transform(
            s.crs, crs, s.width, s.height, *s.bounds, resolution=res
        )
        profile = s.profile | {"crs": crs, "transform": t, "width": w, "height": h}
        profile.update(nodata=nodata, tiled=True, blockxsize=256, blockysize=256)
        with rasterio.open(dst, "w", **profile) as d:
            for b in range(1, s.count + 1):
                out = np.full((h, w), nodata, s.dtypes[0])
                reproject(
                    rasterio.band(s, b),
                    out,
                    dst_transform=t,
                    dst_crs=crs,
                    dst_nodata=nodata,
                    resampling=Resampling.bilinear,
                )
                d.write(out, b)
            d.descriptions = s.descriptions
    return dst
