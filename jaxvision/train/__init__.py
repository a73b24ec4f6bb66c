"""jaxvision.train: the training engine (Flax examples/imagenet + big_vision style), one for
every task.

One job per file: :mod:`~jaxvision.train.config` (experiment configs, schema, overrides),
:mod:`~jaxvision.train.tasks` (what a task is: batch fields, loss, predictions, evaluators;
``task.name`` picks one), :mod:`~jaxvision.train.evaluators` (one metric family per module),
:mod:`~jaxvision.train.state` (``TrainState``, model from config),
:mod:`~jaxvision.train.optim` (optax optimizers, schedules, frozen parameters),
:mod:`~jaxvision.train.pretrained` (``model.init_from``), :mod:`~jaxvision.train.losses`,
:mod:`~jaxvision.train.preprocess` (on-device augmentation),
:mod:`~jaxvision.train.sharding` (mesh, shardings, multi-host),
:mod:`~jaxvision.train.checkpoint` (orbax, preemption), :mod:`~jaxvision.train.steps`
(jitted train/eval/predict steps), :mod:`~jaxvision.train.loop` (``train_and_evaluate``),
:mod:`~jaxvision.train.workdir` (the files of a run), :mod:`~jaxvision.train.writers`
(metrics.jsonl, TensorBoard), :mod:`~jaxvision.train.predict`. Experiments:
:mod:`jaxvision.train.configs`.

    from jaxvision.train import load_config, train_and_evaluate
    config = load_config("lenet5_mnist", ["num_epochs=2"])
    result = train_and_evaluate(config, "runs/lenet5")   # result["eval_top1"]
"""

from jaxvision.train.config import (
    ConfigError,
    apply_overrides,
    default_config,
    ensure_valid,
    list_experiments,
    load_config,
    validate,
)
from jaxvision.train.loop import (
    NonFiniteLossError,
    evaluate_checkpoint,
    train_and_evaluate,
)
from jaxvision.train.state import TrainState

__all__ = [
    "ConfigError",
    "NonFiniteLossError",
    "TrainState",
    "apply_overrides",
    "default_config",
    "ensure_valid",
    "evaluate_checkpoint",
    "list_experiments",
    "load_config",
    "train_and_evaluate",
    "validate",
]
