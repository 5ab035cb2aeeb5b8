"""Landsat Collection 2 Level-2-like deliveries made from the repository's real Landsat bands.

``nc-landsat-landcover`` holds one Landsat 7 band per file (8-bit numbers, 28.5 m, North
Carolina). They are taken as surface reflectance (``value / 255 * 0.5``) and written the
way USGS delivers Collection 2 Level-2: one uint16 GeoTIFF per band, named
``LC08_L2SP_..._SR_B<n>.TIF``, holding ``(reflectance + 0.2) / 2.75e-05`` with nodata 0;
or, for ``sentinel2=True``, Sentinel-2 L2A numbers of baseline 04.00 (reflectance x 10000 +
1000) whose catalogue says scale 0.0001 and offset -0.1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

#: the source file of each band (nc-landsat-landcover) and its Landsat 8/9 OLI band id
BANDS = {
    "blue": ("lsat7_2000_10.tif", "SR_B2"),
    "green": ("lsat7_2000_20.tif", "SR_B3"),
    "red": ("lsat7_2000_30.tif", "SR_B4"),
    "nir08": ("lsat7_2000_40.tif", "SR_B5"),
}
LANDSAT = (2.75e-05, -0.2)  # raster:bands scale, offset of Landsat C2 L2 surface reflectance
SENTINEL2 = (1e-04, -0.1)  # ... of Sentinel-2 L2A from baseline 04.00 on Earth Search


def reflectance(data_root: Path, band: str) -> tuple[np.ndarray, dict]:
    """A band of the NC scene as surface reflectance (float32, NaN where nodata), with its profile."""
    with rasterio.open(data_root / "nc-landsat-landcover" / BANDS[band][0]) as ds:
        raw = ds.read(1, masked=True)
        profile = ds.profile
    return np.where(raw.mask, np.nan, raw.astype(np.float32) / 255 * 0.5), profile


def digital_numbers(refl: np.ndarray, scaling: tuple[float, float]) -> np.ndarray:
    """Reflectance as the uint16 numbers a catalogue with ``scaling`` publishes (0: nodata)."""
    scale, offset = scaling
    dn = np.round((refl - offset) / scale)
    return np.where(np.isnan(refl), 0, np.clip(dn, 1, 65535)).astype(np.uint16)


def write_band_files(
    data_root: Path, folder: Path, scene_id: str, scaling: tuple[float, float] = LANDSAT
) -> dict[str, Path]:
    """Write one scene's per-band files ``<scene_id>_SR_B<n>.TIF``; band -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for band, (_, band_id) in BANDS.items():
        refl, profile = reflectance(data_root, band)
        profile.update(
            dtype="uint16",
            nodata=0,
            count=1,
            compress="deflate",
            tiled=True,
            blockxsize=256,
            blockysize=256,
        )
        path = folder / f"{scene_id}_{band_id}.TIF"
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(digital_numbers(refl, scaling), 1)
        written[band] = path
    return written


def band_means(data_root: Path, bands: list[str], units: str) -> tuple[list[float], list[float]]:
    """Per-band mean and std of the NC scene in ``units``: ``reflectance`` or ``dn`` (Landsat's)
    or ``s2-dn`` (Sentinel-2 numbers before baseline 04.00: reflectance x 10000)."""
    means, stds = [], []
    for band in bands:
        refl, _ = reflectance(data_root, band)
        values = refl[~np.isnan(refl)].astype(np.float64)
        if units == "dn":
            values = (values - LANDSAT[1]) / LANDSAT[0]
        elif units == "s2-dn":
            values = values * 10000
        means.append(float(values.mean()))
        stds.append(float(values.std()))
    return means, stds
