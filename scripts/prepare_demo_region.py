"""Build the bundled demo region from the files the `deepforest` PyPI package publishes.

Usage (once, by a maintainer; the outputs are committed under regions/demo-osbs/):

    pip download --no-deps --no-binary :all: deepforest==2.1.0 -d /tmp/df
    tar xzf /tmp/df/deepforest-2.1.0.tar.gz -C /tmp/df
    python scripts/prepare_demo_region.py /tmp/df/deepforest-2.1.0

It copies ``src/deepforest/data/OSBS_029.tif`` (NEON AOP RGB, 0.1 m, EPSG:32617) and turns the
Pascal-VOC boxes of ``OSBS_029.xml`` (pixel coordinates) into georeferenced polygons with the
image's affine transform.
"""

from __future__ import annotations

import json
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import rasterio


def main(sdist_root: Path, out: Path) -> None:
    data = sdist_root / "src" / "deepforest" / "data"
    tif, xml = data / "OSBS_029.tif", data / "OSBS_029.xml"
    (out / "imagery").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tif, out / "imagery" / "OSBS_029.tif")
    with rasterio.open(tif) as src:
        transform, epsg = src.transform, src.crs.to_epsg()
    features = []
    for i, obj in enumerate(ET.parse(xml).getroot().iter("object")):
        box = obj.find("bndbox")
        assert box is not None
        x0, y0, x1, y1 = (float(box.findtext(k, "0")) for k in ("xmin", "ymin", "xmax", "ymax"))
        corners = [
            transform @ (x, y) for x, y in ((x0, y1), (x1, y1), (x1, y0), (x0, y0), (x0, y1))
        ]
        features.append(
            {
                "type": "Feature",
                "id": i,
                "properties": {"label": obj.findtext("name"), "image": "OSBS_029.tif"},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[round(x, 3), round(y, 3)] for x, y in corners]],
                },
            }
        )
    collection = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}},
        "features": features,
    }
    (out / "labels" / "OSBS_029_crowns.geojson").write_text(json.dumps(collection, indent=1) + "\n")
    print(f"{len(features)} crowns -> {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else Path("regions/demo-osbs"))
