"""QGIS layer styles (``.qml``): polygons by category with a label, a raster band in colour.

QGIS loads ``<name>.qml`` beside a vector or raster file as that layer's default style,
and a GeoPackage's ``layer_styles`` table holds the same text.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

__all__ = ["categorized_qml", "pseudocolor_qml"]

RGB = tuple[int, int, int]


def categorized_qml(
    attr: str,
    categories: list[tuple[str, RGB]],
    label_expression: str,
    *,
    fill_alpha: int = 70,
    outline_width_mm: float = 0.5,
    font_style: str = "Regular",
    display_all: bool = False,
) -> str:
    """A style that colours polygons by the value of ``attr`` and labels them.

    Args:
        attr: the field whose value picks the colour.
        categories: (value, colour) pairs; the value is also the legend label.
        label_expression: a QGIS expression for the label text.
        fill_alpha: fill opacity, 0-255 (the outline is opaque).
        outline_width_mm: outline width.
        font_style: the label font's style (``Regular``, ``Bold``).
        display_all: show every label, even overlapping ones.

    >>> qml = categorized_qml("class", [("tree", (27, 158, 119))], '"class"')
    >>> 'attr="class"' in qml and 'value="27,158,119,70"' in qml
    True
    """
    rows = []
    symbols = []
    for i, (value, (r, g, b)) in enumerate(categories):
        rows.append(
            f'      <category symbol="{i}" value={quoteattr(value)} label={quoteattr(value)} render="true"/>'
        )
        symbols.append(
            f"""      <symbol type="fill" name="{i}" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleFill" enabled="1" locked="0" pass="0">
          <Option type="Map">
            <Option name="color" type="QString" value="{r},{g},{b},{fill_alpha}"/>
            <Option name="outline_color" type="QString" value="{r},{g},{b},255"/>
            <Option name="outline_style" type="QString" value="solid"/>
            <Option name="outline_width" type="QString" value="{outline_width_mm}"/>
            <Option name="outline_width_unit" type="QString" value="MM"/>
            <Option name="style" type="QString" value="solid"/>
          </Option>
        </layer>
      </symbol>"""
        )
    label = quoteattr(label_expression)
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="Symbology|Labeling" labelsEnabled="1">
  <renderer-v2 type="categorizedSymbol" attr={quoteattr(attr)} forceraster="0" symbollevels="0" enableorderby="0">
    <categories>
{chr(10).join(rows)}
    </categories>
    <symbols>
{chr(10).join(symbols)}
    </symbols>
  </renderer-v2>
  <labeling type="simple">
    <settings calloutType="simple">
      <text-style fieldName={label} isExpression="1" fontSize="8" fontSizeUnit="Point" textColor="0,0,0,255" textOpacity="1" namedStyle="{font_style}" fontFamily="Sans Serif">
        <text-buffer bufferDraw="1" bufferSize="0.7" bufferSizeUnits="MM" bufferColor="255,255,255,255" bufferOpacity="0.8"/>
      </text-style>
      <placement placement="1" priority="5" dist="0" distUnits="MM"/>
      <rendering scaleVisibility="0" obstacle="1" fontLimitPixelSize="0" displayAll="{int(display_all)}"/>
    </settings>
  </labeling>
</qgis>
"""


def pseudocolor_qml(
    band: int,
    band_names: list[str],
    colour: RGB,
    *,
    minimum: float = 0.0,
    maximum: float = 1.0,
) -> str:
    """A raster style: band ``band`` (1-based) from transparent at ``minimum`` to ``colour``.

    Without it QGIS shows a file of three or more bands as an RGB composite of its first
    three, which means nothing for probabilities. The fixed range keeps one colour one
    value across scenes (QGIS would stretch each file to its own min and max). The legend
    names the band, and a comment lists every band (Symbology > Band picks another).

    >>> qml = pseudocolor_qml(1, ["tree", "border"], (27, 158, 119))
    >>> 'type="singlebandpseudocolor"' in qml and 'band="1"' in qml and 'label="tree 1"' in qml
    True
    """
    name = band_names[band - 1]
    listed = ", ".join(f"{i} {n}" for i, n in enumerate(band_names, start=1))
    listed = listed.replace("--", "- -")  # "--" may not appear in an XML comment
    hex_colour = "#{:02x}{:02x}{:02x}".format(*colour)
    lo, hi = repr(float(minimum)), repr(float(maximum))
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="Symbology">
  <!-- bands: {listed} -->
  <pipe>
    <rasterrenderer type="singlebandpseudocolor" band="{band}" opacity="1" alphaBand="-1" classificationMin="{lo}" classificationMax="{hi}" nodataColor="">
      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" labelPrecision="2" minimumValue="{lo}" maximumValue="{hi}">
          <item alpha="0" value="{lo}" label={quoteattr(f"{name} {minimum:g}")} color="{hex_colour}"/>
          <item alpha="255" value="{hi}" label={quoteattr(f"{name} {maximum:g}")} color="{hex_colour}"/>
        </colorrampshader>
      </rastershader>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" grayscaleMode="0" invertColors="0" colorizeOn="0" colorizeRed="255" colorizeGreen="128" colorizeBlue="128" colorizeStrength="100"/>
    <rasterresampler maxOversampling="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""
