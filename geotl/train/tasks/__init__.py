"""Tasks, keyed by the region's ``task`` name: a new task is one module plus one line here.

See :mod:`geotl.train.tasks.base` for what a task provides.
"""

from __future__ import annotations

from geotl.errors import GeotlInputError
from geotl.train.tasks.base import Task, ValidationMetric
from geotl.train.tasks.detection import DetectionTask
from geotl.train.tasks.instances import InstancesTask
from geotl.train.tasks.segmentation import SegmentationTask

__all__ = [
    "TASKS",
    "DetectionTask",
    "InstancesTask",
    "SegmentationTask",
    "Task",
    "ValidationMetric",
    "make_task",
]

TASKS: dict[str, type[Task]] = {
    "segmentation": SegmentationTask,
    "instances": InstancesTask,
    "detection": DetectionTask,
}


def make_task(name: str, classes: list[str], loss: str = "ce+dice") -> Task:
    """The task registered under ``name``.

    Raises:
        GeotlInputError: no task has that name.
    """
    try:
        cls = TASKS[name]
    except KeyError:
        raise GeotlInputError(
            f"unknown task '{name}': use one of {', '.join(sorted(TASKS))}"
        ) from None
    return cls(classes, loss)
