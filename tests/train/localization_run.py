"""``python -m tests.train.localization_run WORKDIR [KEY=VALUE ...]``: the tiny localization
run of the engine tests, in a process of its own (as ``jaxvision train`` runs the tiny
classification config), so it can be killed, preempted and run on simulated devices.

Single-digit 32x32 scenes of the embedded MNIST subset (512 train, 128 test), from
:class:`jaxvision.data.ArraySource` with ``boxes``; LeNet-5 with a box head, joint loss.
"""

from __future__ import annotations

import sys

import numpy as np

from tests.train.conftest import TINY, enable_compilation_cache

# Localization refuses pixel-moving augmentation; the rest of TINY applies unchanged.
LOCALIZATION = [*TINY, "augment.crop_padding=0", "task.name=localization",
                "localization.hidden=[32]", "eval_batch_size=64", "data.mean=[0.0]",
                "data.std=[1.0]", "localization.target_mean=[0.5, 0.5, 0.78, 0.78]",
                "localization.target_std=[0.075, 0.075, 0.1, 0.1]"]


def scene_sources(n_train: int = 512, n_test: int = 128):
    """``(train, test)`` ArraySources of one-digit 32x32 scenes with ``boxes`` [N, 1, 4]."""
    from jaxvision.data import ArraySource, mnist_source
    from jaxvision.data.scenes import make_scenes

    src = mnist_source("train")
    idx = np.arange(n_train + n_test)
    batch = src.get_batch(idx)
    out = []
    for sl, seed in ((slice(0, n_train), 0), (slice(n_train, None), 1)):
        s = make_scenes(batch["image"][sl], batch["label"][sl], len(idx[sl]), size=(32, 32),
                        digits_per_scene=(1, 1), scale_range=(0.7, 1.1), seed=seed)
        out.append(ArraySource(s.images, s.labels[:, 0], num_classes=10, boxes=s.boxes))
    return tuple(out)


def main(argv: list[str]) -> int:
    enable_compilation_cache()
    from jaxvision.train import load_config, train_and_evaluate

    workdir, overrides = argv[0], argv[1:]
    train, test = scene_sources()
    config = load_config("lenet5_mnist", [*LOCALIZATION, *overrides])
    train_and_evaluate(config, workdir, train_source=train, eval_source=test)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
