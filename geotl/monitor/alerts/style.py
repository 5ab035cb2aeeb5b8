"""The QGIS style of ``alerts.geojson``: outlines coloured by status, labelled with id and rule."""

from __future__ import annotations

from geotl.io.qml import categorized_qml

__all__ = ["STATUS_COLOURS", "alerts_qml"]

#: status -> RGB: open alerts stand out; delivered ones are still open, a shade darker;
#: failed deliveries are purple (someone must look at the webhook).
STATUS_COLOURS: dict[str, tuple[int, int, int]] = {
    "open": (228, 26, 28),
    "delivered": (255, 127, 0),
    "failed": (152, 78, 163),
}


def alerts_qml() -> str:
    """A QGIS layer style for alerts: categorised on ``status``, label ``id: rule``.

    >>> qml = alerts_qml()
    >>> 'attr="status"' in qml and 'value="open"' in qml and '&quot;rule&quot;' in qml
    True
    """
    return categorized_qml(
        "status",
        list(STATUS_COLOURS.items()),
        '"id" || \': \' || "rule"',
        fill_alpha=60,
        outline_width_mm=0.8,
        font_style="Bold",
        display_all=True,
    )
