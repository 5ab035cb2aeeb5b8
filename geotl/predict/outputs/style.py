"""How detections look: one colour per class, and the QGIS style (QML) built from them."""

from __future__ import annotations

from geotl.io.qml import categorized_qml, pseudocolor_qml

__all__ = [
    "CLASS_COLOURS",
    "class_colour",
    "class_colour01",
    "probabilities_qml_style",
    "qml_style",
]

# ColorBrewer Dark2: distinct, readable on imagery.
CLASS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (27, 158, 119),
    (217, 95, 2),
    (117, 112, 179),
    (231, 41, 138),
    (102, 166, 30),
    (230, 171, 2),
    (166, 118, 29),
    (102, 102, 102),
)


def class_colour(i: int) -> tuple[int, int, int]:
    """The colour of the ``i``-th class (0-255 RGB; the palette repeats)."""
    return CLASS_COLOURS[i % len(CLASS_COLOURS)]


def class_colour01(i: int) -> tuple[float, float, float]:
    """:func:`class_colour` scaled to 0-1 (matplotlib)."""
    r, g, b = class_colour(i)
    return (r / 255, g / 255, b / 255)


def qml_style(classes: list[str]) -> str:
    """A QGIS layer style: fill coloured by ``class``, label showing ``score``.

    >>> 'attr="class"' in qml_style(["tree"]) and 'format_number' in qml_style(["tree"])
    True
    """
    return categorized_qml(
        "class",
        [(name, class_colour(i)) for i, name in enumerate(classes)],
        '"class" || \' \' || format_number("score", 2)',
    )


def probabilities_qml_style(band_names: list[str]) -> str:
    """A QGIS raster style for the probabilities: the first class, 0-1, in its own colour.

    >>> 'label="tree 1"' in probabilities_qml_style(["tree", "border", "contact"])
    True
    """
    return pseudocolor_qml(1, band_names, class_colour(0))
