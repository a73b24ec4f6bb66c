"""From ``config.data`` to :mod:`jaxvision.data` sources and loaders (glue only)."""

from __future__ import annotations

import threading
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
        if config.task.name == "detection" and config.detection.proposals:
            raise ValueError("detection.proposals needs image files to cache proposals by: "
                             "data.source='voc' or 'coco', not 'tfds'")
        if d.tfds_name.split("/")[0] in _TFDS_DETECTION:
            return data.tfds_detection_source(d.tfds_name, split, data_dir=d.root,
                                              max_boxes=d.max_boxes)
        return data.tfds_source(d.tfds_name, split, data_dir=d.root, image_size=d.load_size)
    if d.source in ("voc", "coco", "segmentation_folder"):
        return with_proposals(config, _dense_source(config, split))
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


def with_proposals(config: ml_collections.ConfigDict, source: Any) -> Any:
    """``source`` whose examples also carry selective-search ``proposals`` [P, 4] float32
    (original pixels) and ``proposal_valid`` [P] bool when ``task.name='detection'`` and
    ``detection.proposals='selective_search'``; ``source`` itself otherwise.

    P = ``detection.num_proposals``; searched with ``detection.selective_search_mode`` on
    images shrunk to ``detection.selective_search_size``; cached under
    ``detection.proposal_cache`` (default ``~/.cache/jaxvision/proposals``).
    """
    det = config.detection
    if config.task.name != "detection" or not det.proposals:
        return source
    from jaxvision.detection.proposals import SelectiveSearch

    search = SelectiveSearch(mode=det.selective_search_mode,
                             short_side=det.selective_search_size,
                             max_proposals=int(det.num_proposals))
    cache = det.proposal_cache
    if cache is None:
        from jaxvision.weights.hub import cache_dir

        cache = str(cache_dir().parent / "proposals")
    return ProposalSource(source, search, cache, on_error=config.data.on_error,
                          progress=bool(config.progress_bar) and jax.process_index() == 0)


class ProposalSource:
    """A file-backed dense source (``VOCSource``, ``COCOSource``) whose examples gain
    ``proposals`` [P, 4] float32 (x1, y1, x2, y2, original pixels) and ``proposal_valid``
    [P] bool from a :class:`~jaxvision.detection.proposals.ProposalCache`.

    On first use (the first example read) every image without a cache entry is searched,
    with a progress bar (:func:`~jaxvision.detection.proposals.source_proposals`); later
    reads, and later runs with the same settings, load the cached ``.npz``. With
    ``on_error='skip'`` an image whose search fails gets no valid proposal. Other attributes
    are the wrapped source's.
    """

    def __init__(self, source: Any, search: Any, cache_dir: str, *, on_error: str = "raise",
                 progress: bool = True) -> None:
        from jaxvision.detection.proposals import ProposalCache

        self.source = source
        self.cache = ProposalCache(search, cache_dir)
        self.on_error = on_error
        self.progress = progress
        self.failures: dict[str, str] = {}
        self._ready = False
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.source)

    def __getattr__(self, name: str) -> Any:
        if name == "source":  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.source, name)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def path(self, index: int) -> str:
        """The image file of example ``index``."""
        from jaxvision.detection.proposals import _image_path

        return _image_path(self.source, index)

    def prepare(self) -> None:
        """Searches every image not yet in the cache (once; the loader's threads wait)."""
        with self._lock:
            if self._ready:
                return
            from jaxvision.detection.proposals import source_proposals

            missing = [i for i in range(len(self.source))
                       if not self.cache.path_for(self.path(i)).is_file()]
            if missing:
                done = source_proposals(self.source, self.cache.search, self.cache.cache_dir,
                                        indices=missing, on_error=self.on_error,
                                        progress=self.progress)
                self.failures.update(done.failures)
            self._ready = True

    def __getitem__(self, index: int) -> dict[str, Any]:
        import numpy as np

        self.prepare()
        example = dict(self.source[index])
        path = self.path(index)
        p = self.cache.search.max_proposals
        if path in self.failures:
            boxes, valid = np.zeros((p, 4), np.float32), np.zeros((p,), bool)
        else:
            boxes, valid = self.cache(path)
        example["proposals"] = np.asarray(boxes, np.float32)
        example["proposal_valid"] = np.asarray(valid, bool)
        return example


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
