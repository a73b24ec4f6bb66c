"""From ``config.data`` to :mod:`jaxvision.data` sources and loaders (glue only)."""

from __future__ import annotations

from typing import Any

import jax
import ml_collections

from jaxvision import data


def make_source(config: ml_collections.ConfigDict, split: str) -> Any:
    """The random-access source of ``split`` described by ``config.data``."""
    d = config.data
    if d.source == "mnist":
        return data.mnist_source(split, root=d.root)
    if d.source == "image_folder":
        from pathlib import Path

        root = Path(d.root) / split
        if not root.is_dir():
            raise FileNotFoundError(f"data.root={d.root!r}: no folder {str(root)!r} for split "
                                    f"{split!r} (expected <root>/<split>/<class>/*.jpg)")
        return data.ImageFolderSource(root, image_size=d.load_size, on_error=d.on_error,
                                      grayscale=d.grayscale)
    if d.source == "tfds":
        if d.tfds_name.split("/")[0] in _TFDS_DETECTION:
            return data.tfds_detection_source(d.tfds_name, split, data_dir=d.root,
                                              max_boxes=d.max_boxes)
        return data.tfds_source(d.tfds_name, split, data_dir=d.root, image_size=d.load_size)
    if d.source in ("voc", "coco", "segmentation_folder"):
        return _dense_source(config, split)
    raise ValueError(f"unknown data.source {d.source!r}")


# TFDS names whose examples are dense (boxes), read by data.tfds_detection_source.
_TFDS_DETECTION = ("voc", "coco")


def _dense_source(config: ml_collections.ConfigDict, split: str) -> Any:
    """The VOC / COCO / segmentation-folder source of ``split`` (data.root, data.classes,
    data.max_boxes, data.ignore_index, data.on_error)."""
    from pathlib import Path

    d = config.data
    if not d.root:
        raise ValueError(f"data.source={d.source!r} needs data.root (the data set folder)")
    root = Path(d.root)
    classes = list(d.classes) if d.classes else None
    if d.source == "voc":
        # Every split takes its labels from the training split's names (unless given).
        return data.VOCSource(root, split, classes=classes, classes_split=d.train_split,
                              max_boxes=d.max_boxes, on_error=d.on_error)
    if d.source == "coco":
        # COCO's layout: <root>/annotations/instances_<split>.json and <root>/<split>/*.jpg.
        return data.COCOSource(root / "annotations" / f"instances_{split}.json", root / split,
                               max_boxes=d.max_boxes, classes=classes,
                               masks=d.masks, on_error=d.on_error)
    return data.SegmentationFolderSource(root, split, classes=classes,
                                         ignore_index=d.ignore_index, on_error=d.on_error)


def skipped_files(*sources: Any) -> list[str]:
    """Sorted paths of the undecodable files the sources skipped (``data.on_error='skip'``)."""
    return sorted({p for s in sources for p in getattr(s, "skipped_paths", ())})


def class_names(source: Any) -> list[str] | None:
    """The source's class names if it knows them (``classes`` attribute), else None."""
    names = getattr(source, "classes", None)
    return [str(n) for n in names] if names is not None else None


#: Tasks whose examples go through a dense transform onto ``dense.canvas`` on the host.
DENSE_TASKS = ("segmentation", "detection")


def transform_fields(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The fields :func:`dense_transform` adds to every example (none for other tasks)."""
    return ("image_size", "orig_size") if config.task.name in DENSE_TASKS else ()


def dense_transform(config: ml_collections.ConfigDict,
                    train: bool) -> data.loader.Transform | None:
    """The host-side transform of a dense task (``task.name`` in :data:`DENSE_TASKS`), None
    for the others (their examples are loaded as stored).

    Training: :func:`jaxvision.data.dense_augment.train_transform` (flip, scale jitter in
    ``dense.scale_range``, crop, padding onto ``dense.canvas``; ``dense.base_size``).
    Evaluation: :func:`~jaxvision.data.dense_augment.eval_transform` (shorter side to
    ``dense.eval_min_size``, longer capped at ``dense.eval_max_size``; by default the
    canvas's sides), padded onto the canvas. Masks are padded with ``data.ignore_index``.
    """
    if config.task.name not in DENSE_TASKS:
        return None
    from jaxvision.data import dense_augment

    d = config.dense
    if d.canvas is None:
        raise ValueError(f"task.name={config.task.name!r} needs dense.canvas=[H, W] (the "
                         "fixed size every example is put on)")
    canvas = tuple(int(v) for v in d.canvas)
    ignore = int(config.data.ignore_index)
    if train:
        return dense_augment.train_transform(canvas, scale_range=tuple(d.scale_range),
                                             flip=d.flip, crop=d.crop, ignore_index=ignore,
                                             base_size=d.base_size)
    min_size = d.eval_min_size if d.eval_min_size is not None else min(canvas)
    max_size = d.eval_max_size if d.eval_max_size is not None else max(canvas)
    return dense_augment.eval_transform(min_size=min_size, max_size=max_size, canvas=canvas,
                                        ignore_index=ignore)


def train_loader(config: ml_collections.ConfigDict, source: Any, local_batch_size: int,
                 transform: data.loader.Transform | None = None) -> data.DataLoader:
    """Endless, shuffled, full batches; process ``p`` gets rows ``p*b..(p+1)*b`` of each
    global batch; position saved in checkpoints. ``transform(example, rng)`` runs on the
    host per example (e.g. a dense transform onto a fixed canvas), rng from (seed, epoch,
    index); None: the task's :func:`dense_transform` (none for classification and
    localization)."""
    if transform is None:
        transform = dense_transform(config, train=True)
    return data.DataLoader(source, local_batch_size, shuffle=True, seed=config.seed,
                           num_epochs=None, drop_remainder=True,
                           shard_index=jax.process_index(), shard_count=jax.process_count(),
                           worker_count=config.data.worker_count, transform=transform)


def eval_loader(config: ml_collections.ConfigDict, source: Any, local_batch_size: int,
                transform: data.loader.Transform | None = None) -> data.DataLoader:
    """One pass in order; the last batch padded (``_valid`` False) so no example is lost.
    ``transform`` as in :func:`train_loader` (deterministic ones, for evaluation; None: the
    task's evaluation :func:`dense_transform`)."""
    if transform is None:
        transform = dense_transform(config, train=False)
    return data.DataLoader(source, local_batch_size, shuffle=False, seed=0, num_epochs=1,
                           drop_remainder=False, pad_final=True,
                           shard_index=jax.process_index(), shard_count=jax.process_count(),
                           worker_count=config.data.worker_count, transform=transform)
