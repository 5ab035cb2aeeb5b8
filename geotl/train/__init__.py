"""Train a region model: chips + base model -> artefact (``model.safetensors`` + ``model.json``).

- :mod:`geotl.train.data`: chips folders, the label budget, normalisation, batches;
- :mod:`geotl.train.augment`: augmentation of image and mask together;
- :mod:`geotl.train.tasks`: one module per task on a small base, keyed by the region's ``task``;
- :mod:`geotl.train.loop`: the Lightning module, callbacks and :func:`train_model`.
"""

from geotl.train.data import (
    ChipData,
    compute_normalisation,
    load_region_chips,
    resolve_chips_dir,
    select_objects,
)
from geotl.train.loop import train_model
from geotl.train.options import TrainOptions
from geotl.train.tasks import TASKS, Task, make_task

__all__ = [
    "TASKS",
    "ChipData",
    "Task",
    "TrainOptions",
    "compute_normalisation",
    "load_region_chips",
    "make_task",
    "resolve_chips_dir",
    "select_objects",
    "train_model",
]
