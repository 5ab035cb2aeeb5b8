"""Tiny generated scenes, labels and region files for the chip tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import box


def write_scene(
    path: Path,
    *,
    width: int = 64,
    height: int = 64,
    count: int = 3,
    dtype: str = "uint8",
    crs: str | None = "EPSG:32618",
    origin: tuple[float, float] = (500_000.0, 4_000_000.0),
    res: float = 1.0,
    nodata: float | None = None,
    fill: Any = None,
) -> Path:
    """A small GeoTIFF; pixel values a deterministic ramp unless ``fill`` is given."""
    rng = np.random.default_rng(0)
    data = (
        np.asarray(fill, dtype=dtype)
        if fill is not None
        else rng.integers(1, 200, size=(count, height, width)).astype(dtype)
    )
    if data.ndim == 2:
        data = np.broadcast_to(data, (count, height, width))
    transform = Affine(res, 0, origin[0], 0, -res, origin[1])
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data)
    return path


def write_boxes(
    path: Path,
    boxes: list[tuple[float, float, float, float]],
    *,
    crs: str | None = "EPSG:32618",
    labels: list[Any] | None = None,
) -> Path:
    """Label polygons (boxes in CRS units) with a ``label`` field."""
    frame = gpd.GeoDataFrame(
        {"label": labels if labels is not None else ["Tree"] * len(boxes)},
        geometry=[box(*b) for b in boxes],
        crs=crs,
    )
    if path.suffix == ".geojson" and crs is None:
        # geopandas writes CRS84 by default; a GeoJSON without CRS needs a hand-written file
        feats = [
            {"type": "Feature", "properties": {"label": lab}, "geometry": g.__geo_interface__}
            for lab, g in zip(frame["label"], frame.geometry, strict=True)
        ]
        path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
        return path
    frame.to_file(path)
    return path


def write_region(path: Path, scenes: list[str], label_file: str, **tables: dict[str, Any]) -> Path:
    """A region TOML; ``tables`` maps table names to extra keys (values TOML-rendered)."""
    classes = tables.pop("classes", ["tree"])
    imagery = {"paths": scenes, "bands": ["red", "green", "blue"], **tables.pop("imagery", {})}
    lab = {"path": label_file, "class_field": "label", "class_map": {"Tree": "tree"}}
    lab.update(tables.pop("labels", {}))
    chips = {"size_px": 16, "stride_px": 16, **tables.pop("chips", {})}
    split = {"block_size_m": 32, "val_fraction": 0.2, "test_fraction": 0.2, "seed": 0}
    split.update(tables.pop("split", {}))
    lines = ['name = "test-region"', f"classes = {_toml(classes)}"]
    for name, table in (("imagery", imagery), ("labels", lab), ("chips", chips), ("split", split)):
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in table.items() if v is not None]
    path.write_text("\n".join(lines) + "\n")
    return path


#: the NC Landsat land-cover scene's bands, in file order
NC_BANDS = ["blue", "green", "red", "nir", "swir16"]


def write_nc_region(
    tmp_path: Path, shared_data: Path, labels: Path, classes: list[str], **lab: object
) -> Path:
    """A region of the NC Landsat scene (32 px chips) with ``labels`` and these classes."""
    return write_region(
        tmp_path / "nc.toml",
        [str(shared_data / "nc-landsat-landcover" / "landsat_multiband.tif")],
        str(labels),
        classes=classes,
        imagery={"bands": NC_BANDS},
        labels={"class_map": None, **lab},
        chips={"size_px": 32, "stride_px": 32},
        split={"block_size_m": 2000, "val_fraction": 0.2, "test_fraction": 0.2, "seed": 0},
    )


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


_BAND = """  <VRTRasterBand dataType="{gdal_type}" band="{band}">
    <NoDataValue>{nodata}</NoDataValue>
    <ComplexSource>
      <SourceFilename relativeToVRT="1">{name}</SourceFilename>
      <SourceBand>1</SourceBand>
      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}" />
      <DstRect xOff="0" yOff="0" xSize="{w}" ySize="{h}" />
      <NODATA>{nodata}</NODATA>
    </ComplexSource>
  </VRTRasterBand>
"""
_GDAL_TYPES = {"float32": "Float32", "int16": "Int16", "uint16": "UInt16", "uint8": "Byte"}


def write_stack(
    path: Path,
    bands: list[tuple[np.ndarray, float]],
    crs: CRS,
    transform: Affine,
) -> Path:
    """``bands``: (values (H, W), nodata) per band; one GeoTIFF each beside ``path``."""
    h, w = bands[0][0].shape
    xml = [f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">']
    xml.append(f"  <SRS>{crs.to_wkt()}</SRS>")
    xml.append(
        "  <GeoTransform>" + ", ".join(repr(v) for v in transform.to_gdal()) + "</GeoTransform>"
    )
    for k, (values, nodata) in enumerate(bands, 1):
        name = f"{path.stem}_b{k}.tif"
        with rasterio.open(
            path.parent / name,
            "w",
            driver="GTiff",
            width=w,
            height=h,
            count=1,
            dtype=values.dtype,
            crs=crs,
            transform=transform,
            nodata=nodata,
        ) as ds:
            ds.write(values, 1)
        xml.append(
            _BAND.format(
                gdal_type=_GDAL_TYPES[str(values.dtype)], band=k, nodata=nodata, name=name, w=w, h=h
            ).rstrip("\n")
        )
    xml.append("</VRTDataset>")
    path.write_text("\n".join(xml) + "\n")
    return path
