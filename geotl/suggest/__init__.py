"""Where to label next: ``geotl suggest``.

``suggest_areas(region, model_dir, out, options)`` scores squares over the region's scenes
that are neither labelled yet nor part of the test split by the model's uncertainty,
picks ``n`` of them greedily with a diversity discount, and writes them as a styled
GeoPackage with a contact sheet.
"""

from geotl.suggest.core import COLUMNS, SuggestOptions, SuggestSummary, suggest_areas

__all__ = ["COLUMNS", "SuggestOptions", "SuggestSummary", "suggest_areas"]
