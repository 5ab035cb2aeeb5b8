"""Run under Debian's system Python with python3-qgis: open alerts.geojson with its default style.

Usage: QT_QPA_PLATFORM=offscreen /usr/bin/python3 check_alerts.py ALERTS.geojson COUNT
Prints one JSON object with what QGIS saw; exit 0 when every check passed.
"""

import json
import sys

from qgis.core import QgsApplication, QgsProject, QgsVectorLayer  # type: ignore[import-not-found]

path, count = sys.argv[1], int(sys.argv[2])
app = QgsApplication([], False)
app.initQgis()
layer = QgsVectorLayer(path, "alerts", "ogr")
checks = {"valid": layer.isValid()}
if layer.isValid():
    checks["count"] = layer.featureCount() == count
    checks["crs"] = layer.crs().authid() == "EPSG:4326"
    names = {f.name() for f in layer.fields()}
    checks["fields"] = {"id", "rule", "class", "status", "area_m2", "first_scene"} <= names
    msg, loaded = layer.loadDefaultStyle()  # alerts.qml beside alerts.geojson
    checks["style_loaded"] = bool(loaded)
    renderer = layer.renderer()
    checks["by_status"] = (
        renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "status"
    )
    checks["categories"] = sorted(c.value() for c in renderer.categories()) == [
        "delivered",
        "failed",
        "open",
    ]
    checks["labels"] = layer.labelsEnabled()
    QgsProject.instance().addMapLayer(layer)  # owned by the project: no crash at exit
ok = all(checks.values())
print(json.dumps({"ok": ok, "checks": checks}))
app.exitQgis()
sys.exit(0 if ok else 1)
