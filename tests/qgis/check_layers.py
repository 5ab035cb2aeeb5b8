"""Run under Debian's system Python with python3-qgis: open geotl outputs as QGIS layers.

Usage: QT_QPA_PLATFORM=offscreen /usr/bin/python3 check_layers.py SPEC.json
SPEC: {"geojson": path, "gpkg": path, "qml": path, "count": n, "footprint": [w, s, e, n],
       "acquired_type": QGIS's type name of the acquired field (optional)}.
Prints one JSON object with what QGIS saw; exit 0 when every check passed.
"""

import json
import sys

from qgis.core import QgsApplication, QgsProject, QgsVectorLayer  # type: ignore[import-not-found]

with open(sys.argv[1]) as fh:
    spec = json.load(fh)
app = QgsApplication([], False)
app.initQgis()
report = {}
ok = True


def check(name, cond, detail=""):
    global ok
    report[name] = {"ok": bool(cond), "detail": detail}
    ok = ok and bool(cond)


props = {"id", "class", "score", "area_m2", "scene", "acquired", "model"}
west, south, east, north = spec["footprint"]
layers = {"geojson": QgsVectorLayer(spec["geojson"], "detections", "ogr")}
if spec.get("gpkg"):
    layers["gpkg"] = QgsVectorLayer(
        spec["gpkg"] + "|layername=detections", "detections_gpkg", "ogr"
    )
for key, layer in layers.items():
    check(f"{key}.valid", layer.isValid(), layer.source())
    if not layer.isValid():
        continue
    check(f"{key}.count", layer.featureCount() == spec["count"], str(layer.featureCount()))
    names = {f.name() for f in layer.fields()}
    check(f"{key}.properties", props <= names, sorted(names))
    if "acquired_type" in spec:  # the type QGIS gives the field, the same in both files
        kind = layer.fields().field("acquired").typeName() if "acquired" in names else None
        check(f"{key}.acquired_type", kind == spec["acquired_type"], kind)
    if key == "geojson":
        check("geojson.crs", layer.crs().authid() == "EPSG:4326", layer.crs().authid())
        ext = layer.extent()
        inside = spec["count"] == 0 or (
            ext.xMinimum() >= west - 1e-7
            and ext.xMaximum() <= east + 1e-7
            and ext.yMinimum() >= south - 1e-7
            and ext.yMaximum() <= north + 1e-7
        )
        check("geojson.extent_inside_footprint", inside, ext.toString())
        geoms_ok = all(f.geometry().isGeosValid() for f in layer.getFeatures())
        check("geojson.geometries_valid", geoms_ok)
        msg, loaded = layer.loadNamedStyle(spec["qml"])
    else:
        check("gpkg.crs", layer.crs().isValid(), layer.crs().authid() or layer.crs().description())
        # QGIS loads the default style stored in the GeoPackage's layer_styles table
        msg, loaded = layer.loadDefaultStyle()
    renderer = layer.renderer()
    check(f"{key}.style_loaded", loaded, msg)
    check(
        f"{key}.categorized_by_class",
        renderer is not None
        and renderer.type() == "categorizedSymbol"
        and renderer.classAttribute() == "class",
        renderer.type() if renderer else None,
    )
    check(
        f"{key}.labels_score",
        layer.labelsEnabled() and "score" in layer.labeling().settings().fieldName,
        layer.labeling().settings().fieldName if layer.labeling() else None,
    )
    QgsProject.instance().addMapLayer(layer)

print(json.dumps({"ok": ok, "checks": report}))
app.exitQgis()
sys.exit(0 if ok else 1)
