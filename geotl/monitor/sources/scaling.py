"""A catalogue's scale and offset (STAC ``raster:bands``) against the units a model was trained on.

Catalogues publish digital numbers and say how to turn them into physical values: Landsat
Collection 2 Level-2 surface reflectance carries ``scale`` 2.75e-05 and ``offset`` -0.2 per
band, Sentinel-2 L2A from processing baseline 04.00 on Earth Search ``scale`` 0.0001 and
``offset`` -0.1 (its numbers are reflectance x 10000 + 1000). geotl reads raw numbers, and a
model's card records the units it was trained in only through its normalisation (means in
the training files' raw units). So which reading a pass needs is judged on the pass itself,
with the rules prediction warns by (:func:`geotl.predict.radiometry.scaling_fits`,
:func:`geotl.predict.radiometry.unit_offset`):

- ``"scaled"``: the raw means are other units than the training's (over 10x off) and the
  scaled ones are not: a model trained on reflectance given digital numbers. The VRT reads
  every band through its scale and offset (float32).
- ``"offset"``: the raw means read higher or lower than the training's by about the
  catalogue's offset in raw units, alike in every band: a model trained on Sentinel-2 numbers
  before baseline 04.00 given later ones (+1000). The VRT adds the offset in raw units
  (``offset / scale``, -1000) and keeps the scale of the numbers the model knows.
- ``None``: the raw numbers fit (a model trained on the same digital numbers, Landsat
  Collection 2 files as USGS delivers them), or no reading fits (prediction warns then, as
  for any scene in other units): the pass is read as published.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from geotl.models.artefact import Normalisation
from geotl.predict.radiometry import scaling_fits, unit_offset

__all__ = ["OFFSET_TOLERANCE", "Reading", "Scaling", "choose_reading", "reading_factors"]

#: ``(scale, offset)`` of one band, as the catalogue states it (value = raw x scale + offset)
Scaling = tuple[float, float]
Reading = Literal["scaled", "offset"]

#: the shift the pass shows may differ from the catalogue's offset by this share of it
#: (the ground differs from the training's a little even when the units agree)
OFFSET_TOLERANCE = 0.25


def choose_reading(
    raw: Normalisation, trained: Normalisation, scaling: Sequence[Scaling]
) -> Reading | None:
    """How a pass's bands must be read to be in the model's units, or None: as published.

    ``raw``: the pass's sampled means and spreads in raw numbers; ``trained``: the card's;
    ``scaling``: each band's catalogue scale and offset; all three in the card's band order.

    >>> trained = Normalisation(mean=[0.05, 0.08, 0.3], std=[0.02, 0.03, 0.1])
    >>> dn = Normalisation(mean=[9091.0, 10182.0, 18182.0], std=[700.0, 1000.0, 3600.0])
    >>> choose_reading(dn, trained, [(2.75e-5, -0.2)] * 3)
    'scaled'
    >>> choose_reading(dn, dn, [(2.75e-5, -0.2)] * 3) is None  # trained on the same numbers
    True
    >>> old = Normalisation(mean=[807.0, 1168.0, 1285.0], std=[248.0, 333.0, 439.0])
    >>> new = Normalisation(mean=[1807.0, 2168.0, 2285.0], std=[250.0, 330.0, 440.0])
    >>> choose_reading(new, old, [(1e-4, -0.1)] * 3)
    'offset'
    """
    if all((s, o) == (1.0, 0.0) for s, o in scaling):
        return None
    if scaling_fits(raw, trained, scaling):
        return "scaled"
    shift = unit_offset(raw, trained)
    raw_offsets = {round(-o / s, 6) for s, o in scaling if s}
    if shift is not None and len(raw_offsets) == 1:
        (expected,) = raw_offsets
        if expected and abs(shift - expected) <= OFFSET_TOLERANCE * abs(expected):
            return "offset"
    return None


def reading_factors(reading: Reading | None, scaling: Scaling) -> Scaling:
    """The ``(ratio, offset)`` a VRT source applies to a band's raw numbers for ``reading``.

    >>> reading_factors("scaled", (2.75e-5, -0.2)), reading_factors("offset", (1e-4, -0.1))
    ((2.75e-05, -0.2), (1.0, -1000.0))
    >>> reading_factors(None, (2.75e-5, -0.2))
    (1.0, 0.0)
    """
    scale, offset = scaling
    if reading == "scaled":
        return scale, offset
    if reading == "offset" and scale:
        return 1.0, offset / scale
    return 1.0, 0.0
