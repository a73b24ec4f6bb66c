"""Evaluators: each metric a small module (big_vision's ``evaluators/``).

An :class:`~jaxvision.train.evaluators.base.Evaluator` turns a task's predictions on one
batch into a pytree (jitted, on device; usually masked sums) and, after the pass, the pytrees
of every batch into named scalars. The loop only sums, fetches and writes them: it knows
nothing of what a metric means. A task lists its evaluators
(:meth:`jaxvision.train.tasks.Task.evaluators`); detection and segmentation add theirs here.
"""

from jaxvision.train.evaluators.base import Evaluator, SumEvaluator, run_evaluators
from jaxvision.train.evaluators.classification import Accuracy
from jaxvision.train.evaluators.detection import DetectionAP
from jaxvision.train.evaluators.localization import BoxLocalization, KeypointPCK
from jaxvision.train.evaluators.segmentation import SegmentationConfusion

__all__ = ["Accuracy", "BoxLocalization", "DetectionAP", "Evaluator", "KeypointPCK",
           "SegmentationConfusion", "SumEvaluator", "run_evaluators"]
