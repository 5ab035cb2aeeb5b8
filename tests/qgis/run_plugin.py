"""Run under Debian's system Python with python3-qgis: drive the geotl Processing plugin.

Usage: QT_QPA_PLATFORM=offscreen /usr/bin/python3 run_plugin.py SPEC.json
SPEC: {"plugins": folder holding geotl_processing/ (the built zip, extracted),
       "geotl": the executable, "case": one of CASES, ...the case's inputs}.
Prints one JSON object with what happened (the last line of stdout); exit 0 when it ran.
"""

import json
import os
import sys
import traceback

from qgis.core import (  # type: ignore[import-not-found]
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

with open(sys.argv[1]) as fh:
    spec = json.load(fh)
app = QgsApplication([], False)
app.initQgis()
sys.path.insert(0, "/usr/share/qgis/python/plugins")
sys.path.insert(0, spec["plugins"])
import processing  # type: ignore[import-not-found]  # noqa: E402
from processing.core.Processing import Processing  # type: ignore[import-not-found]  # noqa: E402

Processing.initialize()

import geotl_processing  # type: ignore[import-not-found]  # noqa: E402
from geotl_processing.settings import GEOTL_EXECUTABLE  # type: ignore[import-not-found]  # noqa: E402

plugin = geotl_processing.classFactory(None)
plugin.initProcessing()
from processing.core.ProcessingConfig import ProcessingConfig  # noqa: E402

ProcessingConfig.setSettingValue(GEOTL_EXECUTABLE, spec["geotl"])
registry = QgsApplication.processingRegistry()
report: dict = {
    "plugin_file": geotl_processing.__file__,
    "algorithms": sorted(a.id() for a in registry.providerById("geotl").algorithms()),
}


class Feedback(QgsProcessingFeedback):
    """Records progress and log lines; cancels at the first progress when asked to."""

    def __init__(self, cancel_at_progress: bool = False) -> None:
        super().__init__()
        self.cancel_at_progress = cancel_at_progress
        self.progress_values: list = []
        self.texts: list = []
        self.log: list = []

    def setProgress(self, value: float) -> None:
        self.progress_values.append(value)
        super().setProgress(value)
        if self.cancel_at_progress:
            self.cancel()

    def setProgressText(self, text: str) -> None:
        self.texts.append(text)

    def pushInfo(self, info: str) -> None:
        self.log.append(info)

    def pushWarning(self, info: str) -> None:
        self.log.append(info)

    def reportError(self, error: str, fatalError: bool = False) -> None:
        self.log.append(error)


def run(alg: str, params: dict, feedback: Feedback, context=None) -> dict:
    """processing.run; the error message instead of results when it fails."""
    try:
        return {"results": processing.run(alg, params, context=context, feedback=feedback)}
    except QgsProcessingException as exc:
        return {"error": str(exc)}


def describe_layer(path: str, style_from_post_processor: bool = False, context=None) -> dict:
    layer = QgsVectorLayer(path, "detections", "ogr")
    out = {"valid": layer.isValid()}
    if not layer.isValid():
        return out
    if style_from_post_processor:
        # what the Processing dialog does with the output: the algorithm's post-processor
        plain = QgsVectorLayer(path, "plain", "ogr", QgsVectorLayer.LayerOptions(False))
        out["renderer_before_post_processor"] = plain.renderer().type()
        details = context.layerToLoadOnCompletionDetails(path)
        details.postProcessor().postProcessLayer(plain, context, QgsProcessingFeedback())
        layer = plain
    renderer = layer.renderer()
    out.update(
        count=layer.featureCount(),
        fields=[f.name() for f in layer.fields()],
        crs=layer.crs().authid(),
        renderer=renderer.type() if renderer else None,
        class_attribute=renderer.classAttribute()
        if renderer and hasattr(renderer, "classAttribute")
        else None,
        classes=sorted({f["class"] for f in layer.getFeatures()}),
        geometry_valid=all(f.geometry().isGeosValid() for f in layer.getFeatures()),
    )
    return out


case = spec["case"]
try:
    if case == "predict":
        fb = Feedback()
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        out = QgsProcessingOutputLayerDefinition(spec["output"], QgsProject.instance())
        params = {
            "INPUT": [spec["scene"]],
            "MODEL": spec["model"],
            "OUTPUT": out,
            "GPKG": spec["gpkg"],
            "RESAMPLE": True,  # the options predict's own errors advise
            "WINDOW": 128,
        }
        res = run("geotl:predict", params, fb, context)
        report.update(res, progress=fb.progress_values, texts=fb.texts, log=fb.log)
        if "results" in res:
            path = res["results"]["OUTPUT"]
            report["output"] = describe_layer(path)
            report["output_post_processed"] = describe_layer(path, True, context)
            gpkg = QgsVectorLayer(res["results"]["GPKG"] + "|layername=detections", "g", "ogr")
            report["gpkg"] = {"valid": gpkg.isValid(), "count": gpkg.featureCount()}
            report["gpkg"]["crs"] = gpkg.crs().authid()
    elif case == "predict_loads":
        # what the Processing dialog loads once the algorithm is done (its Postprocessing)
        from qgis.core import QgsProcessingUtils, QgsWkbTypes  # type: ignore[import-not-found]

        fb = Feedback()
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        scenes = []
        for item in spec["scenes"]:
            if isinstance(item, dict):  # a layer of the project (as the dialog offers them)
                layer = QgsRasterLayer(item["uri"], item["name"], "gdal")
                QgsProject.instance().addMapLayer(layer)
                item = layer.id()
            scenes.append(item)
        params = {
            "INPUT": scenes,
            "MODEL": spec["model"],
            "OUTPUT": QgsProcessingOutputLayerDefinition(spec["output"], QgsProject.instance()),
        }
        if spec.get("probabilities"):
            params["PROBABILITIES"] = QgsProcessingOutputLayerDefinition(
                spec["probabilities"], QgsProject.instance()
            )
        res = run("geotl:predict", params, fb, context)
        report.update(res, log=fb.log)
        loaded = report["loaded"] = []
        for key, details in context.layersToLoadOnCompletion().items():
            layer = QgsProcessingUtils.mapLayerFromString(
                key, context, typeHint=details.layerTypeHint
            )
            item = {"source": key, "name": details.name, "valid": bool(layer and layer.isValid())}
            if layer is not None and details.postProcessor():
                details.postProcessor().postProcessLayer(layer, context, QgsProcessingFeedback())
            if item["valid"]:
                item["crs"] = layer.crs().authid()
                if isinstance(layer, QgsVectorLayer):
                    item["geometry"] = QgsWkbTypes.geometryDisplayString(layer.geometryType())
                    item["count"] = layer.featureCount()
                    item["renderer"] = layer.renderer().type() if layer.renderer() else None
                else:  # the probabilities: how the dialog shows them
                    renderer = layer.renderer()
                    item["renderer"] = renderer.type()
                    if renderer.type() == "singlebandpseudocolor":
                        ramp = renderer.shader().rasterShaderFunction()
                        item["band"] = renderer.band()
                        item["range"] = [renderer.classificationMin(), renderer.classificationMax()]
                        item["legend"] = [i.label for i in ramp.colorRampItemList()]
            loaded.append(item)
    elif case == "cancel":
        fb = Feedback(cancel_at_progress=True)
        params = {"INPUT": [spec["scene"]], "MODEL": spec["model"], "OUTPUT": spec["output"]}
        report.update(run("geotl:predict", params, fb), progress=fb.progress_values, log=fb.log)
    elif case == "errors":
        report["errors"] = []
        for attempt in spec["attempts"]:
            inputs = []
            for item in attempt["inputs"]:
                if item.get("provider") == "ogr":  # a vector layer where scenes are asked for
                    layer = QgsVectorLayer(item["uri"], item["name"], "ogr")
                    QgsProject.instance().addMapLayer(layer)
                    inputs.append(layer.id())
                elif item.get("provider"):
                    layer = QgsRasterLayer(item["uri"], item["name"], item["provider"])
                    QgsProject.instance().addMapLayer(layer)
                    inputs.append(layer.id())
                else:
                    inputs.append(item["uri"])
            # as a stale setting would be (the settings dialog refuses a missing path)
            ProcessingConfig.settings[GEOTL_EXECUTABLE].value = attempt.get("geotl", spec["geotl"])
            fb = Feedback()
            params = {"INPUT": inputs, "MODEL": attempt["model"], "OUTPUT": attempt["output"]}
            params = attempt.get("params", params)  # another algorithm's form
            report["errors"].append(run(attempt.get("alg", "geotl:predict"), params, fb))
    elif case == "suggest":
        fb = Feedback()
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        params = {
            "REGION": spec["region"],
            "MODEL": spec["model"],
            "N": 3,
            "SIZE_M": 6.4,
            "OUTPUT": spec["output"],
        }
        res = run("geotl:suggest", params, fb, context)
        report.update(res, texts=fb.texts, log=fb.log)
        if "results" in res:
            path = res["results"]["OUTPUT"]
            details = context.layerToLoadOnCompletionDetails(path)
            layer = QgsVectorLayer(path, "areas", "ogr", QgsVectorLayer.LayerOptions(False))
            details.postProcessor().postProcessLayer(layer, context, QgsProcessingFeedback())
            report["areas"] = {
                "valid": layer.isValid(),
                "count": layer.featureCount(),
                "fields": [f.name() for f in layer.fields()],
                "crs": layer.crs().authid(),
                "labels": layer.labelsEnabled() and layer.labeling().settings().fieldName,
                "load_name": details.name,
            }
    elif case == "train":
        fb = Feedback()
        params = {"REGION": spec["region"], "BASE": 1, "EPOCHS": 1, "OUTPUT": spec["output"]}
        report.update(run("geotl:train", params, fb), texts=fb.texts, log=fb.log)
    elif case == "forms":
        train = registry.createAlgorithmById("geotl:train")
        report["base_options"] = train.parameterDefinition("BASE").options()
        fb = Feedback()
        params = {
            "REGION": spec["region"],
            "OUT_DIR": spec["monitor_out"],
            "OUTPUT": spec["monitor_table"],
        }
        res = run("geotl:monitor_status", params, fb)
        report.update(monitor=res, monitor_log=fb.log)
        if "results" in res:
            layer = QgsVectorLayer(res["results"]["OUTPUT"], "passes", "ogr")
            report["monitor_layer"] = {
                "valid": layer.isValid(),
                "count": layer.featureCount(),
                "fields": [f.name() for f in layer.fields()],
                "rows": [
                    dict(
                        zip(layer.fields().names(), [str(v) for v in f.attributes()], strict=False)
                    )
                    for f in layer.getFeatures()
                ],
            }
    else:
        report["error"] = f"unknown case {case}"
except Exception:  # report, so pytest shows it
    report["crash"] = traceback.format_exc()

print(json.dumps(report, default=str))
sys.stdout.flush()
# exitQgis can crash on teardown with Processing loaded; the report is out already
os._exit(0)
