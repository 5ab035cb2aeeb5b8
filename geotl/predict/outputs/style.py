"""How detections look: one colour per class, and the QGIS style (QML) built from them."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

__all__ = ["CLASS_COLOURS", "class_colour", "class_colour01", "qml_style"]

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
    categories = []
    symbols = []
    for i, name in enumerate(classes):
        r, g, b = class_colour(i)
        categories.append(
            f'      <category symbol="{i}" value={quoteattr(name)} label={quoteattr(name)} render="true"/>'
        )
        symbols.append(
            f"""      <symbol type="fill" name="{i}" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleFill" enabled="1" locked="0" pass="0">
          <Option type="Map">
            <Option name="color" type="QString" value="{r},{g},{b},70"/>
            <Option name="outline_color" type="QString" value="{r},{g},{b},255"/>
            <Option name="outline_style" type="QString" value="solid"/>
            <Option name="outline_width" type="QString" value="0.5"/>
            <Option name="outline_width_unit" type="QString" value="MM"/>
            <Option name="style" type="QString" value="solid"/>
          </Option>
        </layer>
      </symbol>"""
        )
    label_expr = quoteattr('"class" || \' \' || format_number("score", 2)')
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="Symbology|Labeling" labelsEnabled="1">
  <renderer-v2 type="categorizedSymbol" attr="class" forceraster="0" symbollevels="0" enableorderby="0">
    <categories>
{chr(10).join(categories)}
    </categories>
    <symbols>
{chr(10).join(symbols)}
    </symbols>
  </renderer-v2>
  <labeling type="simple">
    <settings calloutType="simple">
      <text-style fieldName={label_expr} isExpression="1" fontSize="8" fontSizeUnit="Point" textColor="0,0,0,255" textOpacity="1" namedStyle="Regular" fontFamily="Sans Serif">
        <text-buffer bufferDraw="1" bufferSize="0.7" bufferSizeUnits="MM" bufferColor="255,255,255,255" bufferOpacity="0.8"/>
      </text-style>
      <placement placement="1" priority="5" dist="0" distUnits="MM"/>
      <rendering scaleVisibility="0" obstacle="1" fontLimitPixelSize="0" displayAll="0"/>
    </settings>
  </labeling>
</qgis>
"""
