"""Subcommands of the ``jaxvision`` command line (see :mod:`jaxvision.cli`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def check_image_args(images: Sequence[str], outputs: str) -> None:
    """Fails before any model loads: two images whose outputs (``outputs``, e.g.
    ``"{stem}_boxes.png"``) would overwrite each other, or a missing or unreadable file."""
    from pathlib import Path

    from jaxvision.weights.transforms import check_image_file

    stems: dict[str, str] = {}
    for path in images:
        stem = Path(path).stem
        if stem in stems:
            raise ValueError(f"{stems[stem]} and {path} would write the same output "
                             f"{outputs.format(stem=stem)}; rename one")
        stems[stem] = path
    for path in images:
        check_image_file(path)



def workdir_predictor(workdir: str, task_name: str, example: str) -> tuple:
    """``(config, state, step, transform, predict)`` of a training workdir's latest
    checkpoint, for the ``--workdir`` of the commands that apply a trained dense model:
    its config, the restored state on one local device, the config's evaluation
    :func:`~jaxvision.train.input_pipeline.dense_transform` and the task's jitted
    prediction ``predict(state, batch)`` (compiled per canvas).

    Raises FileNotFoundError when ``workdir`` is not a training workdir and ValueError
    when it was trained for another task than ``task_name`` (``example``: how to train one).
    """
    import jax

    from jaxvision.train import checkpoint, input_pipeline, sharding
    from jaxvision.train import workdir as wd
    from jaxvision.train.config import ensure_valid
    from jaxvision.train.loop import abstract_state
    from jaxvision.train.steps import jit_predict_step
    from jaxvision.train.tasks import get_task

    if not wd.is_workdir(workdir):
        raise FileNotFoundError(f"--workdir {workdir} is not a training workdir (it has no "
                                f"{wd.CONFIG}); train one with `jaxvision train`")
    config = ensure_valid(wd.read_config(workdir))
    task = get_task(config)
    if task.name != task_name:
        raise ValueError(f"--workdir {workdir} was trained for task.name={task.name!r}; "
                         f"this command needs a {task_name} workdir ({example})")
    mesh = sharding.make_mesh(jax.local_devices()[:1])
    model, shapes, shape = abstract_state(config, wd.read_input_shape(workdir))
    state, step = checkpoint.restore_params(workdir, shapes, sharding.replicated(mesh))
    transform = input_pipeline.dense_transform(config, train=False)
    return config, state, step, transform, jit_predict_step(task, model, config, shape[:2])


def fitting_canvas(transform: Any, image_hw: Sequence[int], multiple: int = 1) -> Any:
    """``transform`` (an :class:`~jaxvision.data.dense_augment.EvalTransform`), its canvas
    grown, to multiples of ``multiple``, where an image of ``image_hw`` resizes past it (a
    portrait image on a landscape canvas, or the reverse): one more compile of a fully
    convolutional model rather than a refusal."""
    import dataclasses
    import math

    from jaxvision.data.dense_augment import resized_size

    nh, nw = resized_size(image_hw, transform.min_size, transform.max_size)
    hc, wc = transform.canvas
    if nh <= hc and nw <= wc:
        return transform
    up = lambda n: int(math.ceil(n / multiple) * multiple)  # noqa: E731
    return dataclasses.replace(transform, canvas=(max(up(nh), hc), max(up(nw), wc)))
