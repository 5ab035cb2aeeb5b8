"""The Processing algorithms: thin forms over ``geotl`` commands, with the CLI's defaults."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import threading
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Sequence

from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsMapLayerType,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputMultipleLayers,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProviderRegistry,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from .cli import GeotlCliError, run_geotl
from .settings import executable


class _GeotlAlgorithm(QgsProcessingAlgorithm):
    """Shared plumbing: group, help, and running geotl with the dialog's feedback."""

    command = ""

    def group(self) -> str:
        return ""

    def groupId(self) -> str:
        return ""

    def createInstance(self) -> QgsProcessingAlgorithm:
        return type(self)()

    def geotl(
        self,
        args: List[str],
        feedback: Any,
        partial_ok: bool = False,
        outputs: Sequence[Optional[str]] = (),
    ) -> str:
        """Run ``geotl ARGS``; its one-line error becomes this algorithm's error.

        ``partial_ok``: exit code 1 after geotl wrote its outputs (``predict``: a scene
        skipped, the others written) is a warning, and the outputs are returned.
        ``outputs``: files geotl writes; their missing folders are made first (a user types
        a new folder into the output box; geotl asks for folders to exist) and removed
        again, while still empty, when geotl fails or is cancelled.
        """
        made = _make_folders(outputs)
        try:
            return run_geotl(executable(), args, feedback)
        except GeotlCliError as exc:
            if partial_ok and exc.returncode == 1 and exc.stdout.strip():
                feedback.reportError(str(exc), False)
                return exc.stdout
            _remove_empty(made)
            raise QgsProcessingException(str(exc)) from None


def _make_folders(outputs: Sequence[Optional[str]]) -> List[Path]:
    """Make the missing folders of ``outputs``; the ones made, deepest first."""
    made: List[Path] = []
    for out in outputs:
        if not out or "://" in out or out.startswith(("/vsi", "memory:", "ogr:", "postgres")):
            continue
        folder = Path(out).parent
        missing = [p for p in [folder, *folder.parents] if not p.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _remove_empty(made)
            raise QgsProcessingException(
                f"cannot create the folder '{folder}' for '{out}' ({exc.strerror}): "
                "choose a folder you can write to"
            ) from None
        made += [p for p in missing if p not in made]
    return sorted(made, key=lambda p: len(p.parts), reverse=True)


def _remove_empty(folders: List[Path]) -> None:
    """Remove the folders made for a run that failed, those still empty (deepest first)."""
    for folder in folders:
        # not empty (something else wrote there) or gone: leave it
        with contextlib.suppress(OSError):
            folder.rmdir()


def _model_folder(path: str, feedback: Any) -> str:
    """The model folder to pass: a ``geotl run`` folder (``DIR/model``) is taken for its model.

    A user browsing for "the model" picks the folder ``geotl run --out`` made; geotl wants
    the ``model`` folder inside it, and says so, but here the choice is unambiguous.
    """
    folder = Path(path)
    inner = folder / "model"
    if not (folder / "model.json").is_file() and (inner / "model.json").is_file():
        feedback.pushInfo(f"'{folder}' is a geotl run folder: using its model, '{inner}'")
        return str(inner)
    return path


def _file_of(layer: Any) -> str:
    """The raster behind a layer as geotl reads it, or an error that says how to make one.

    A file, or GDAL's path to a remote (``/vsicurl/``, ``/vsis3/``) or zipped raster.
    """
    if layer.type() != QgsMapLayerType.RasterLayer:
        raise QgsProcessingException(
            f"layer '{layer.name()}' is not a raster layer: predict reads scenes (raster "
            "layers or raster files); choose the imagery, not a vector layer"
        )
    provider = layer.providerType()
    parts = QgsProviderRegistry.instance().decodeUri(provider, layer.source())
    path = parts.get("path") or ""
    # a COG by URL (/vsicurl/https://..., /vsis3/...): geotl streams those as GDAL does
    remote = path.startswith(("/vsi", "vsi")) or "://" in path
    if provider != "gdal" or not path or not (remote or os.path.isfile(path)):
        raise QgsProcessingException(
            f"layer '{layer.name()}' is not file-backed ({provider}): geotl reads raster files; "
            "write it to a GeoTIFF first (right-click the layer > Export > Save As...)"
        )
    table = parts.get("layerName")
    rasters = _rasters_in(path) if table else 1
    if rasters > 1:  # geotl would open the file, not this table of it
        raise QgsProcessingException(
            f"layer '{layer.name()}' is the raster table '{table}' of {path}, which holds "
            f"{rasters} rasters: geotl reads a file's only raster; write this one to "
            "a GeoTIFF first (right-click the layer > Export > Save As...)"
        )
    if parts.get("vsiPrefix"):  # a raster in an archive: GDAL's path to it (geotl reads those)
        return f"{parts['vsiPrefix']}{path}{parts.get('vsiSuffix') or ''}"
    return path


def _rasters_in(path: str) -> int:
    """How many rasters a container file (a GeoPackage...) holds; 1 when it is one raster."""
    try:
        from osgeo import gdal

        ds = gdal.OpenEx(path, gdal.OF_RASTER)
        found = len((ds.GetMetadata("SUBDATASETS") or {}) if ds is not None else {}) // 2
    except Exception:  # GDAL's Python may raise anything; geotl will say what is wrong
        return 1
    return max(found, 1)


class _LoadStyle(QgsProcessingLayerPostProcessorInterface):
    """Applies geotl's QML style to an output layer when the dialog loads it.

    Processing loads outputs without their default style (the ``.qml`` beside the file),
    so the detections, areas and probabilities would show in QGIS's random defaults.
    """

    instances: ClassVar[List[_LoadStyle]] = []  # Processing keeps no reference; keep one

    def __init__(self, qml: str) -> None:
        super().__init__()
        self.qml = qml

    def postProcessLayer(self, layer: Any, context: Any, feedback: Any) -> None:
        if layer is not None and layer.isValid():
            layer.loadNamedStyle(self.qml)
            layer.triggerRepaint()

    @classmethod
    def create(cls, qml: str) -> _LoadStyle:
        inst = cls(qml)
        cls.instances.append(inst)
        return inst


PROBABILITIES_LABEL = (
    "Probabilities, a band per class; instance models add border and contact (COG; not for "
    "detection models, which predict boxes)"
)


class PredictAlgorithm(_GeotlAlgorithm):
    """``geotl predict MODEL_DIR SCENE... -o OUT.geojson``."""

    def name(self) -> str:
        return "predict"

    def displayName(self) -> str:
        return "Predict (detect objects in rasters)"

    def shortHelpString(self) -> str:
        return (
            "Runs <code>geotl predict</code>: the model in <b>Model folder</b> turns the raster "
            "layers (or files) into detection polygons, loaded with geotl's style (a QML file "
            "is written beside the GeoJSON); the probabilities load showing the first class, "
            "0-1 (their QML too). Layers must be files (a WMS or other web layer: Export > "
            "Save As... a GeoTIFF first). The model folder may be a geotl run folder (its "
            "model/ is used); missing output folders are made. Empty options take the model "
            "card's defaults."
        )

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:
        self.addParameter(
            QgsProcessingParameterMultipleLayers(
                "INPUT", "Scenes (raster layers or files)", QgsProcessing.TypeRaster
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                "MODEL",
                "Model folder (or type the path of a model exported with geotl export --onnx)",
                behavior=QgsProcessingParameterFile.Folder,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "THRESHOLD",
                "Score threshold (empty: the model card's)",
                QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.001,
                maxValue=0.999,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                "BANDS",
                "The scenes' bands in file order, comma separated, e.g. red,green,blue,nir (geotl's --bands; empty: the model's order)",
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "RESAMPLE",
                "Resample scenes at another ground resolution to the model's (geotl's --resample)",
                defaultValue=False,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "WINDOW",
                "Inference window in pixels (geotl's --window; empty: max(256, chip size))",
                QgsProcessingParameterNumber.Integer,
                optional=True,
                minValue=16,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "NODATA",
                "The scenes' nodata value, over the files' own (geotl's --nodata)",
                QgsProcessingParameterNumber.Double,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                "OUTPUT", "Detections (GeoJSON)", QgsProcessing.TypeVectorPolygon
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "GPKG",
                "Also a GeoPackage (scene CRS, styled)",
                "GeoPackage (*.gpkg)",
                optional=True,
                createByDefault=False,
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "PROBABILITIES",
                PROBABILITIES_LABEL,
                optional=True,
                createByDefault=False,
            )
        )
        self.addOutput(
            QgsProcessingOutputMultipleLayers(
                "PROBABILITIES_PER_SCENE",
                "Probabilities, one file per scene (NAME_<scene>.tif when there are several)",
            )
        )

    def processAlgorithm(
        self, parameters: Dict[str, Any], context: Any, feedback: Any
    ) -> Dict[str, Any]:
        layers = self.parameterAsLayerList(parameters, "INPUT", context)
        if not layers:
            raise QgsProcessingException("no scene: choose at least one raster layer or file")
        scenes = [_file_of(layer) for layer in layers]
        model = _model_folder(self.parameterAsFile(parameters, "MODEL", context), feedback)
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        if not out.lower().endswith(".geojson"):
            raise QgsProcessingException(
                f"detections are GeoJSON: save them as a .geojson file, not '{out}'"
            )
        args = ["predict", model, *scenes, "-o", out, "--overwrite"]
        if parameters.get("THRESHOLD") not in (None, ""):
            args += ["--threshold", repr(self.parameterAsDouble(parameters, "THRESHOLD", context))]
        bands = self.parameterAsString(parameters, "BANDS", context).strip()
        if bands:
            args += ["--bands", bands]
        if self.parameterAsBoolean(parameters, "RESAMPLE", context):
            args.append("--resample")
        if parameters.get("WINDOW") not in (None, ""):
            args += ["--window", str(self.parameterAsInt(parameters, "WINDOW", context))]
        if parameters.get("NODATA") not in (None, ""):
            args += ["--nodata", repr(self.parameterAsDouble(parameters, "NODATA", context))]
        gpkg = self.parameterAsFileOutput(parameters, "GPKG", context) or None
        if gpkg:
            args += ["--gpkg", gpkg]
        probs = self.parameterAsOutputLayer(parameters, "PROBABILITIES", context) or None
        if probs:
            args += ["--probabilities", probs]
        written = self.geotl(
            args, feedback, partial_ok=True, outputs=[out, gpkg, probs]
        ).splitlines()
        # the layers to load are changed first: a post-processor is set last (details own it)
        per_scene: List[str] = [probs] if probs else []
        if probs and len(scenes) > 1:
            # one file per scene (NAME_<scene>.tif): PROBABILITIES itself is not written
            per_scene = _per_scene_files(probs, written)
            if context.willLoadLayerOnCompletion(probs):
                _load_as(context, probs, *per_scene)
            probs = None
        elif probs and context.willLoadLayerOnCompletion(probs):
            details = context.layerToLoadOnCompletionDetails(probs)
            if details.name == PROBABILITIES_LABEL:
                # the Layers panel showed the form's whole label as the layer's name
                details.name = "Probabilities"
        for cog in per_scene:  # geotl's style beside each: the first class, 0-1 (not RGB)
            style = str(Path(cog).with_suffix(".qml"))
            # (none when named like the GeoJSON: NAME.qml is then the detections' style)
            mine = style != str(Path(out).with_suffix(".qml"))
            if context.willLoadLayerOnCompletion(cog) and mine and os.path.isfile(style):
                context.layerToLoadOnCompletionDetails(cog).setPostProcessor(
                    _LoadStyle.create(style)
                )
        if context.willLoadLayerOnCompletion(out):
            load = out
            if _no_features(out):
                # an empty GeoJSON tells OGR no geometry type: QGIS would load a table
                # without CRS or style; a polygon layer, styled, says "none found" on the map
                load = out + "|geometrytype=Polygon"
                _load_as(context, out, load)
            qml = str(Path(out).with_suffix(".qml"))
            context.layerToLoadOnCompletionDetails(load).setPostProcessor(_LoadStyle.create(qml))
        return {
            "OUTPUT": out,
            "GPKG": gpkg,
            "PROBABILITIES": probs,
            "PROBABILITIES_PER_SCENE": per_scene,
        }


def _no_features(geojson: str) -> bool:
    """Whether geotl's GeoJSON holds no feature (read only when the file is tiny)."""
    try:
        if os.path.getsize(geojson) > 1024:
            return False
        with open(geojson, encoding="utf-8") as fh:
            return not json.load(fh).get("features")
    except (OSError, ValueError, AttributeError):
        return False


def _per_scene_files(path: str, written: List[str]) -> List[str]:
    """The files geotl wrote (its stdout) for ``path``, one per scene: ``NAME_<scene>.SUFFIX``."""
    base = Path(path)
    return [
        w
        for w in written
        if Path(w).parent == base.parent
        and Path(w).suffix == base.suffix
        and Path(w).name.startswith(base.stem + "_")
    ]


def _load_as(context: Any, path: str, *sources: str) -> None:
    """Load ``sources`` on completion instead of ``path``, with its details."""
    layers = context.layersToLoadOnCompletion()
    details = layers.pop(path)
    for source in sources:
        copy = QgsProcessingContext.LayerDetails(details)
        if len(sources) > 1:
            copy.name = Path(source.split("|")[0]).stem
        layers[source] = copy
    context.setLayersToLoadOnCompletion(layers)


class SuggestAlgorithm(_GeotlAlgorithm):
    """``geotl suggest REGION.toml --model MODEL_DIR -n N -o AREAS.gpkg``."""

    def name(self) -> str:
        return "suggest"

    def displayName(self) -> str:
        return "Suggest areas to label"

    def shortHelpString(self) -> str:
        return (
            "Runs <code>geotl suggest</code>: N numbered squares of the region's scenes, outside "
            "its labelled and test areas, where the model is least sure; label them next. "
            "Writes a styled GeoPackage (with a QML style and a PNG contact sheet beside it). "
            "Optionally appends the squares to the region's complete_within file."
        )

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:
        self.addParameter(QgsProcessingParameterFile("REGION", "Region file", extension="toml"))
        self.addParameter(
            QgsProcessingParameterFile(
                "MODEL", "Model folder", behavior=QgsProcessingParameterFile.Folder
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "N", "How many areas", QgsProcessingParameterNumber.Integer, 10, minValue=1
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "SIZE_M",
                "Side of the squares in metres (geotl's --size-m; empty: two chip widths)",
                QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.001,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination("OUTPUT", "Areas to label", "GeoPackage (*.gpkg)")
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "APPEND_TO",
                "Also append them to this complete_within file (created when missing)",
                "GeoPackage (*.gpkg)",
                optional=True,
                createByDefault=False,
            )
        )

    def processAlgorithm(
        self, parameters: Dict[str, Any], context: Any, feedback: Any
    ) -> Dict[str, Any]:
        region = self.parameterAsFile(parameters, "REGION", context)
        model = _model_folder(self.parameterAsFile(parameters, "MODEL", context), feedback)
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        if not out.lower().endswith(".gpkg"):  # geotl writes a GeoPackage whatever the name
            raise QgsProcessingException(
                f"the areas to label are a GeoPackage: save them as a .gpkg file, not '{out}'"
            )
        n = self.parameterAsInt(parameters, "N", context)
        args = ["suggest", region, "--model", model, "-n", str(n), "-o", out, "--overwrite"]
        if parameters.get("SIZE_M") not in (None, ""):
            args += ["--size-m", repr(self.parameterAsDouble(parameters, "SIZE_M", context))]
        append_to = self.parameterAsFileOutput(parameters, "APPEND_TO", context) or None
        if append_to:
            args += ["--append-to", append_to]
        self.geotl(args, feedback, outputs=[out, append_to])
        if context.project() is not None:  # the dialog loads the squares, styled
            details = QgsProcessingContext.LayerDetails(
                "Areas to label", context.project(), "OUTPUT"
            )
            details.setPostProcessor(_LoadStyle.create(str(Path(out).with_suffix(".qml"))))
            context.addLayerToLoadOnCompletion(out, details)
        return {"OUTPUT": out, "APPEND_TO": append_to}


# --- train: the base-model dropdown comes from `geotl models list --json` ---------------

_catalogues: Dict[str, List[Dict[str, Any]]] = {}
_catalogue_threads: Dict[str, threading.Thread] = {}


class _Quiet:
    """A feedback that only answers 'not cancelled' (for the background catalogue read)."""

    def isCanceled(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


def _read_catalogue(exe: str) -> None:
    try:
        entries = json.loads(run_geotl(exe, ["models", "list", "--json"], _Quiet()))
        _catalogues[exe] = [e for e in entries if e.get("supported", True)]
    except (GeotlCliError, ValueError):
        _catalogues[exe] = []


def warm_base_models(exe: str) -> None:
    """Start reading the base-model catalogue in the background (geotl takes seconds)."""
    if exe not in _catalogues and exe not in _catalogue_threads:
        t = threading.Thread(target=_read_catalogue, args=(exe,), daemon=True)
        _catalogue_threads[exe] = t
        t.start()


def base_models(exe: str, wait_s: float) -> List[Dict[str, Any]]:
    """The supported base models (empty until known, or when geotl cannot be run)."""
    warm_base_models(exe)
    if exe not in _catalogues:
        _catalogue_threads[exe].join(timeout=wait_s)
    return _catalogues.get(exe, [])


def base_label(entry: Dict[str, Any]) -> str:
    """How a base model reads in the dropdown: id, licence, commercial use, offline.

    >>> base_label({"id": "pkg:x", "licence": "MIT", "commercial_use": True})
    'pkg:x  [MIT, commercial use: yes]'
    """
    notes = [entry.get("licence") or "licence unknown"]
    notes.append("commercial use: " + ("yes" if entry.get("commercial_use") else "no"))
    if entry.get("available_offline") is False:
        notes.append("needs download")
    return f"{entry['id']}  [{', '.join(notes)}]"


REGION_BASE = "(the region file's [model] base)"


class TrainAlgorithm(_GeotlAlgorithm):
    """``geotl train REGION.toml --out MODEL_DIR [--base ID]``."""

    def __init__(self, wait_for_catalogue: bool = False) -> None:
        super().__init__()
        self._wait = wait_for_catalogue
        self._base_ids: List[Optional[str]] = [None]

    def createInstance(self) -> QgsProcessingAlgorithm:
        return TrainAlgorithm(wait_for_catalogue=True)

    def name(self) -> str:
        return "train"

    def displayName(self) -> str:
        return "Train a region"

    def shortHelpString(self) -> str:
        return (
            "Runs <code>geotl train</code>: chips the region file's scenes and labels and adapts "
            "the base model to them; writes the model folder (model.safetensors + model.json). "
            "The dropdown lists geotl's base models with their licence and whether it permits "
            "commercial use. Progress follows the chips, then the training steps; Cancel stops geotl "
            "(the model files are only written once training has finished)."
        )

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:
        entries = base_models(executable(), 120.0 if self._wait else 0.0)
        self._base_ids = [None] + [e["id"] for e in entries]
        self.addParameter(QgsProcessingParameterFile("REGION", "Region file", extension="toml"))
        self.addParameter(
            QgsProcessingParameterEnum(
                "BASE",
                "Base model",
                options=[REGION_BASE] + [base_label(e) for e in entries],
                defaultValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "EPOCHS",
                "Epochs (empty: the region file's)",
                QgsProcessingParameterNumber.Integer,
                optional=True,
                minValue=1,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "MAX_LABELS",
                "Label budget (empty: the region file's)",
                QgsProcessingParameterNumber.Integer,
                optional=True,
                minValue=1,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "OVERWRITE",
                "Replace a model already in the folder (geotl's --overwrite)",
                defaultValue=False,
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Model folder"))

    def processAlgorithm(
        self, parameters: Dict[str, Any], context: Any, feedback: Any
    ) -> Dict[str, Any]:
        region = self.parameterAsFile(parameters, "REGION", context)
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        args = ["train", region, "--out", out]
        index = self.parameterAsEnum(parameters, "BASE", context)
        base = self._base_ids[index] if 0 <= index < len(self._base_ids) else None
        if base:
            args += ["--base", base]
        for key, flag in (("EPOCHS", "--epochs"), ("MAX_LABELS", "--max-labels")):
            if parameters.get(key) not in (None, ""):
                args += [flag, str(self.parameterAsInt(parameters, key, context))]
        if self.parameterAsBool(parameters, "OVERWRITE", context):
            args.append("--overwrite")
        self.geotl(args, feedback)
        return {"OUTPUT": out}


# --- monitor status: the per-pass table -------------------------------------------------

_STATUS_FIELDS = [
    ("status", QVariant.String),
    ("scene", QVariant.String),
    ("acquired", QVariant.String),
    ("detections", QVariant.Int),
    ("new", QVariant.Int),
    ("gone", QVariant.Int),
    ("duration_s", QVariant.Double),
    ("processed", QVariant.String),
    ("previous_scene", QVariant.String),
    ("model", QVariant.String),
    ("pass_file", QVariant.String),
    ("changes_file", QVariant.String),
    ("attempts", QVariant.Int),
    ("error", QVariant.String),
    ("next_attempt", QVariant.String),
    # history.csv's areas (m2), appended after the fields a saved model may refer to
    ("detected_area_m2", QVariant.Double),
    ("new_area_m2", QVariant.Double),
    ("gone_area_m2", QVariant.Double),
]


def status_rows(status: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One row per pass: done (from the monitor's history.csv), failed, pending."""
    rows: List[Dict[str, Any]] = []
    history = Path(status.get("dir") or "") / "history.csv"
    if status.get("initialised") and history.is_file():
        with open(history, newline="", encoding="utf-8") as fh:
            for rec in csv.DictReader(fh):
                for key in ("pass_file", "changes_file"):  # relative to the region's folder
                    if rec.get(key):
                        rec[key] = str(history.parent / rec[key])
                rows.append(dict(rec, status="done"))
    for f in status.get("failed") or []:
        rows.append(dict(f, status="failed"))
    for name in status.get("pending") or []:
        rows.append({"scene": name, "status": "pending"})
    return rows


def _typed(value: Any, kind: Any) -> Any:
    if value in (None, ""):
        return None
    try:
        if kind == QVariant.Int:
            return int(float(value))
        if kind == QVariant.Double:
            return float(value)
    except (TypeError, ValueError):
        return None
    return str(value)


class MonitorStatusAlgorithm(_GeotlAlgorithm):
    """``geotl monitor status REGION.toml --out DIR --json`` as a table layer."""

    def name(self) -> str:
        return "monitor_status"

    def displayName(self) -> str:
        return "Monitor status (processed passes)"

    def shortHelpString(self) -> str:
        return (
            "Runs <code>geotl monitor status --json</code> and returns the monitor's passes of "
            "the region as a table: one row per processed pass (detections, new, gone, their "
            "areas in m², the pass and changes files), failed pass (error, next attempt) and pending pass."
        )

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:
        self.addParameter(QgsProcessingParameterFile("REGION", "Region file", extension="toml"))
        self.addParameter(
            QgsProcessingParameterFile(
                "OUT_DIR", "Monitor output folder (--out)", QgsProcessingParameterFile.Folder
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink("OUTPUT", "Passes", QgsProcessing.TypeVector)
        )

    def processAlgorithm(
        self, parameters: Dict[str, Any], context: Any, feedback: Any
    ) -> Dict[str, Any]:
        region = self.parameterAsFile(parameters, "REGION", context)
        out_dir = self.parameterAsFile(parameters, "OUT_DIR", context)
        text = self.geotl(["monitor", "status", region, "--out", out_dir, "--json"], feedback)
        try:
            status = json.loads(text)
        except ValueError as exc:
            raise QgsProcessingException(f"geotl monitor status said no JSON: {exc}") from None
        if not status.get("initialised"):
            feedback.pushWarning(f"the monitor has not run in {status.get('dir')} yet")
        fields = QgsFields()
        for name, kind in _STATUS_FIELDS:
            fields.append(QgsField(name, kind))
        sink, dest = self.parameterAsSink(
            parameters, "OUTPUT", context, fields, QgsWkbTypes.NoGeometry
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, "OUTPUT"))
        for row in status_rows(status):
            feat = QgsFeature(fields)
            feat.setAttributes([_typed(row.get(name), kind) for name, kind in _STATUS_FIELDS])
            sink.addFeature(feat, QgsFeatureSink.FastInsert)
        return {"OUTPUT": dest}


__all__ = [
    "MonitorStatusAlgorithm",
    "PredictAlgorithm",
    "SuggestAlgorithm",
    "TrainAlgorithm",
    "warm_base_models",
]
