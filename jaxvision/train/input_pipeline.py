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
        return data.tfds_source(d.tfds_name, split, data_dir=d.root, image_size=d.load_size)
    raise ValueError(f"unknown data.source {d.source!r}")


def skipped_files(*sources: Any) -> list[str]:
    """Sorted paths of the undecodable files the sources skipped (``data.on_error='skip'``)."""
    return sorted({p for s in sources for p in getattr(s, "skipped_paths", ())})


def class_names(source: Any) -> list[str] | None:
    """The source's class names if it knows them (``classes`` attribute), else None."""
    names = getattr(source, "classes", None)
    return [str(n) for n in names] if names is not None else None


def train_loader(config: ml_collections.ConfigDict, source: Any,
                 local_batch_size: int) -> data.DataLoader:
    """Endless, shuffled, full batches; process ``p`` gets rows ``p*b..(p+1)*b`` of each
    global batch; position saved in checkpoints."""
    return data.DataLoader(source, local_batch_size, shuffle=True, seed=config.seed,
                           num_epochs=None, drop_remainder=True,
                           shard_index=jax.process_index(), shard_count=jax.process_count(),
                           worker_count=config.data.worker_count)


def eval_loader(config: ml_collections.ConfigDict, source: Any,
                local_batch_size: int) -> data.DataLoader:
    """One pass in order; the last batch padded (``_valid`` False) so no example is lost."""
    return data.DataLoader(source, local_batch_size, shuffle=False, seed=0, num_epochs=1,
                           drop_remainder=False, pad_final=True,
                           shard_index=jax.process_index(), shard_count=jax.process_count(),
                           worker_count=config.data.worker_count)
