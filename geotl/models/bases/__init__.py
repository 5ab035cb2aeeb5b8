"""Base-model kinds: one module per kind of id, each answering "describe" and "load".

``torchgeo`` (``torchgeo:<WeightsEnum>.<NAME>``), ``packaged`` (``pkg:...``), ``file``
(``file:<path>``), ``model`` (``model:<MODEL_DIR>``) and ``none``. :mod:`.kind` holds what
they share (:class:`~geotl.models.bases.kind.BaseKind`, the entry and loaded-weights
types); :mod:`geotl.models.catalogue` registers the kinds by id prefix.
"""
