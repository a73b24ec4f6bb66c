"""Tasks on the shared engine: ``task.name`` selects one (see :class:`Task`).

A new task (detection, segmentation) subclasses :class:`Task`, registers an instance in
:data:`TASKS` and lists its evaluators (:mod:`jaxvision.train.evaluators`); the steps, the
loop, checkpoints and sharding serve it unchanged.
"""

from __future__ import annotations

import ml_collections

from jaxvision.train.tasks.base import Task
from jaxvision.train.tasks.classification import Classification
from jaxvision.train.tasks.detection import Detection
from jaxvision.train.tasks.localization import Localization
from jaxvision.train.tasks.segmentation import Segmentation

TASKS: dict[str, Task] = {t.name: t for t in (Classification(), Localization(),
                                              Segmentation(), Detection())}


def get_task(config_or_name: ml_collections.ConfigDict | str) -> Task:
    """The task of ``config.task.name`` (or of a name)."""
    name = (config_or_name if isinstance(config_or_name, str)
            else config_or_name.task.name)
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "Classification", "Detection", "Localization", "Segmentation", "Task",
           "get_task"]
