"""``geotl evaluate``'s entry point: a model folder and a region in, the metrics JSON out.

Finds (or cuts) the region's chips and hands them to the scorer of the model's task:
:mod:`~geotl.evaluate.detection` for detection models, else
:mod:`~geotl.evaluate.segmentation`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from geotl.config import Region
from geotl.errors import GeotlInputError
from geotl.evaluate.chips import (
    check_same_split,
    check_test_split,
    find_chips,
    warn_other_resolution,
)
from geotl.evaluate.detection import evaluate_boxes
from geotl.evaluate.segmentation import evaluate_chips
from geotl.io.atomic import atomic_write_text
from geotl.io.scratch import scratch_dir

__all__ = ["check_graph_takes_chips", "evaluate_model", "headline"]


def evaluate_model(
    model_dir: str | Path,
    region: Region,
    *,
    chips_dir: str | Path | None = None,
    out: str | Path | None = None,
    split: str = "test",
    device: str = "cpu",
    batch_size: int = 16,
    n_boot: int = 1000,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Scores of a model (folder, or ``.onnx`` export) on a region's test split.

    An ``.onnx`` file written by ``geotl export`` (fp32 or int8) is scored by the same
    scorer, run in ONNX Runtime (:func:`geotl.predict.engine.load_model`), so an int8
    export's quality is measured as its folder's is; its card gives classes, bands and
    thresholds. Its graph's fixed tile size must be the chips' (a detector's: the chips
    padded to the network's stride, as it is fed): chips padded to a larger tile score otherwise
    than the network sees them (:func:`check_graph_takes_chips`).

    Segmentation and instance models: pixel IoU/F1 per class and object P/R/F1
    (:func:`~geotl.evaluate.segmentation.evaluate_chips`); detection models: box P/R/F1
    and AP50 (:func:`~geotl.evaluate.detection.evaluate_boxes`); each with bootstrap CIs.
    A region may label fewer classes than the model: only its classes are scored, the
    others named in ``classes_not_in_region`` (:class:`~geotl.evaluate.chips.ScoredClasses`).

    Returns:
        The metrics dict (also written to ``out`` as JSON when given; an existing ``out`` is
        replaced only with ``overwrite``).

    Raises:
        ModelArtefactError: the model folder is incomplete, or the ``.onnx`` file damaged.
        BandMismatchError: the region's bands lack one the model needs.
        OutputExistsError: ``out`` exists and ``overwrite`` is false.
        GeotlInputError: chips of another region, no test chips; an ``.onnx`` file on
            another device than the CPU, or whose tile size is not the chips'.
    """
    from geotl.models.artefact import load_artefact
    from geotl.predict.engine import OrtEngine, load_model
    from geotl.predict.scene import check_model_bands

    if out is not None:  # before loading the model: a mistyped -o is said at once
        from geotl.io.atomic import check_output_file

        check_output_file(Path(out), overwrite)
    model_dir = Path(model_dir)
    onnx: OrtEngine | None = None
    if model_dir.suffix.lower() == ".onnx" and not model_dir.is_dir():
        if device != "cpu":
            raise GeotlInputError(
                f"an .onnx file is evaluated with ONNX Runtime on the CPU, not {device}: drop "
                "--device, or evaluate the model folder",
                model_dir,
            )
        artefact = load_model(model_dir, "onnxruntime")
        assert isinstance(artefact.engine, OrtEngine)
        onnx = artefact.engine
    else:
        artefact = load_artefact(model_dir, device)
    card = artefact.card
    unknown = [c for c in region.classes if c not in card.classes]
    if unknown:
        raise GeotlInputError(
            f"classes {unknown} are not the model's {list(card.classes)}: evaluate on a region "
            "of the model's classes (its labels would all score as misses)",
            region.path,
        )
    # before chipping (minutes on a large region), and before the split check, whose
    # message would blame the split of chips cut from other imagery
    check_model_bands(
        list(card.bands),
        list(region.imagery.bands),
        region.path,
        what="the region's",
        fix="evaluate on a region with those bands, or a model trained on these",
    )
    if split == "test":
        check_test_split(region)
    if onnx is not None and chips_dir is None:  # before chipping: those chips are this size
        check_graph_takes_chips(onnx, region.chips.size_px, f"[chips] size_px of {region.path}")
    with scratch_dir("eval") as tmp, _said_once("geotl.io.vectors"):
        cdir = find_chips(model_dir, region, Path(chips_dir) if chips_dir else None, tmp)
        if onnx is not None:
            from geotl.chips import read_chip_index

            chip_px = read_chip_index(cdir).meta.get("size_px", region.chips.size_px)
            check_graph_takes_chips(onnx, int(chip_px), f"chips in {cdir}")
        check_same_split(card, region, cdir)
        warn_other_resolution(card, region, cdir, split)
        evaluate = evaluate_boxes if card.task == "detection" else evaluate_chips
        metrics = evaluate(artefact, region, cdir, split, batch_size, n_boot, seed)
    metrics["model"] = card.model_id
    metrics["model_dir"] = str(model_dir)  # the folder or the .onnx file
    # which forward passes made these numbers: an int8 export scores otherwise than its folder
    metrics["engine"] = "torch" if onnx is None else "onnxruntime"
    metrics["quantisation"] = card.quantisation
    if onnx is not None:
        metrics["onnx"] = {
            "file": str(model_dir),
            "tile_px": onnx.tile_px,
            "graph_sha256": json.loads(onnx.model.metadata.get("geotl_graph_sha256", "null")),
        }
    if out is not None:
        atomic_write_text(Path(out), json.dumps(metrics, indent=2) + "\n")
    return metrics


def check_graph_takes_chips(engine: Any, chip_px: int, chips: str) -> None:
    """Refuse an exported graph whose fixed tile size is not the chips' (as fed).

    Segmentation chips are fed as cut, a detector's padded to its network's stride
    (``round_up_px``, as :func:`~geotl.evaluate.detection.detect_chips` feeds them). Chips are not padded to a larger tile:
    the network would see zeros beyond their borders that it never sees on the chips its
    folder is scored on, and the scores would not be the model's.

    Raises:
        GeotlInputError: the graph's tile size is not the chips'.
    """
    card = engine.card
    fed = card.network.round_up_px(chip_px) if card.task == "detection" else chip_px
    if engine.tile_px != fed:
        raise GeotlInputError(
            f"this ONNX graph takes {engine.tile_px} px tiles, the test chips are {fed} px "
            f"({chips}): export the model folder again with geotl export MODEL_DIR --onnx "
            f"OUT.onnx --tile-px {fed} to evaluate it (chips padded to the tile would score "
            "otherwise)",
            engine.model.path,
        )


class _Once(logging.Filter):
    """Lets each message through the first time only."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


@contextlib.contextmanager
def _said_once(logger: str) -> Iterator[None]:
    """Each of ``logger``'s messages said once while the block runs.

    Evaluate reads the region's labels when it cuts the chips and again to score objects
    (in each chip CRS): what the reading says of the file ("ignored 1 feature(s) that are
    empty...") is one fact about one file, said once per command.
    """
    once = _Once()
    log = logging.getLogger(logger)
    log.addFilter(once)
    try:
        yield
    finally:
        log.removeFilter(once)


def headline(metrics: dict[str, Any]) -> str:
    """The metrics JSON in one line for a person: pixel IoU or AP50, and object F1.

    >>> headline({"pixel": {"mean_iou": 0.61, "mean_iou_ci95": [0.5, 0.7]},
    ...           "objects": {"tree": {"f1": 0.42, "f1_ci95": [0.3, 0.5]}}})
    'test mean IoU 0.61 [0.50, 0.70]; object F1 0.42 [0.30, 0.50]'
    >>> headline({"pixel": {"mean_iou": None, "classes_without_test_pixels": ["tree"]}})
    'test mean IoU n/a (no labelled test pixels of tree)'
    >>> headline({"detection": {"ap50": 0.3, "ap50_ci95": [0.2, 0.4],
    ...           "iou_0.5": {"f1": 0.5, "precision": 0.6, "recall": 0.4}}})
    'test AP50 0.30 [0.20, 0.40]; object F1 0.50 at IoU 0.5 (precision 0.60, recall 0.40)'
    >>> headline({"pixel": {"mean_iou": 0.5}, "classes_not_in_region": ["snag"]})
    'test mean IoU 0.50 (snag not scored: not a class of the region)'
    >>> headline({"detection": {"ap50": 0.0016, "ap50_ci95": [0.00035, 0.0038]}})[:34]
    'test AP50 0.0016 [0.00035, 0.0038]'
    >>> headline({"detection": {"ap50": None, "objects": 0, "iou_0.5": {}}})[:40]
    'test AP50 n/a (no labelled test objects)'
    >>> headline({"detection": {"ap50": 0.3, "objects": 9, "iou_0.5": {},
    ...           "classes_without_test_objects": ["snag"]}})[:50]
    'test AP50 0.30 (no labelled test objects of snag);'
    """

    def num(v: Any) -> str:  # two decimals, or two significant digits below 0.01
        if not isinstance(v, (int, float)):
            return "n/a"
        return f"{v:.2f}" if v == 0 or abs(v) >= 0.01 else f"{v:.2g}"

    def ci(pair: Any) -> str:
        ok = isinstance(pair, list) and all(isinstance(v, (int, float)) for v in pair)
        return f" [{num(pair[0])}, {num(pair[1])}]" if ok else ""

    # scores over fewer classes than the model predicts: say so beside them
    skipped = metrics.get("classes_not_in_region")
    unscored = f" ({', '.join(skipped)} not scored: not a class of the region)" if skipped else ""
    if "detection" in metrics:
        d = metrics["detection"]
        at = d.get("iou_0.5", {})
        none = " (no labelled test objects)" if d.get("objects") == 0 else ""
        if not none and (absent := d.get("classes_without_test_objects")):
            none = f" (no labelled test objects of {', '.join(absent)})"
        return (
            f"test AP50 {num(d.get('ap50'))}{ci(d.get('ap50_ci95'))}{none}; object F1 "
            f"{num(at.get('f1'))} at IoU 0.5 (precision {num(at.get('precision'))}, "
            f"recall {num(at.get('recall'))}){unscored}"
        )
    pixel = metrics.get("pixel", {})
    text = f"test mean IoU {num(pixel.get('mean_iou'))}{ci(pixel.get('mean_iou_ci95'))}"
    if absent := pixel.get("classes_without_test_pixels"):
        text += f" (no labelled test pixels of {', '.join(absent)})"
    objects = metrics.get("objects", {})
    if len(objects) == 1:
        (only,) = objects.values()
        text += f"; object F1 {num(only.get('f1'))}{ci(only.get('f1_ci95'))}"
    elif objects:
        text += "; object F1 " + ", ".join(f"{c} {num(o.get('f1'))}" for c, o in objects.items())
    return text + unscored
