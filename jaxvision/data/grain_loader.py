"""Grain as the execution backend of :class:`~jaxvision.data.DataLoader`'s batch plan.

:class:`GrainLoader` yields exactly the batches of a :class:`~jaxvision.data.DataLoader` of
the same arguments (same order, shards, padding, transforms, ``get_state`` format, so a run
may switch backend on resume), but runs them through a ``grain.MapDataset`` pipeline::

    MapDataset.range(start, num_epochs * steps_per_epoch)  # element p = batch p; resume at
                                                           # the saved position ``start``
      .map(load batch p)                                   # DataLoader.batch_indices + load_batch
      .to_iter_dataset(ReadOptions(num_threads=...))       # Grain's read-ahead threads
      .mp_prefetch(MultiprocessingOptions(worker_count))   # Grain's worker processes (spawn)

Why not Grain's own ``shuffle`` / ``batch`` / sharding (grain 0.2.18)? They are deterministic,
but they do not give the loader's guarantees:

- ``MapDataset.shuffle(seed)`` draws its own permutation (a Feistel ``index_shuffle``, reseeded
  per epoch by ``repeat``), not ``default_rng([seed, epoch]).permutation(N)``: existing
  checkpoints and results would change order; equal in quality, not in batches.
- Sharding by slicing the dataset (``ds[shard_index::shard_count]``, ``ShardByJaxProcess``)
  before ``batch`` gives every process its own sub-permutation, so the *global* batch at a
  step depends on the process count; the loader's process ``p`` takes rows
  ``[p * B, (p + 1) * B)`` of one global batch, the same global batch for any process count.
- ``batch(drop_remainder=False)`` yields a short last batch; there is no padded final
  batch with a validity flag (``_valid``), which multi-process evaluation needs (every
  process must run the same number of static-shaped steps).
- ``random_map`` seeds its Philox generator by the element's position in the pipeline,
  not by the example: the same example gets other draws when the batch size or the shard
  count changes. :func:`~jaxvision.data.example_rng` depends on ``(seed, epoch, index)`` only.
- Worker processes (``mp_prefetch``) copy the source; an ``on_error="skip"`` source's
  ``skipped_paths`` stay in the workers. Here each batch carries its worker's skipped paths
  back (as the DataLoader's own workers do).

What Grain does provide and this backend uses: spawn-started worker processes (safe with
JAX's threads), read-ahead threads, and random access by position, so resuming starts the
range at the saved position (exact).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from jaxvision.data.loader import VALID, Batch, DataLoader, load_batch


def _absl_flags_parsed() -> None:
    """grain 0.2.18's ``mp_prefetch`` reads absl flags (its worker-profiling switch) and raises
    ``UnparsedFlagAccessError`` outside an absl app; mark the flags parsed (their defaults)
    when nobody has parsed them. An absl app that parses its flags later is unaffected."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class _LoadBatch:
    """Grain ``map`` function: position p -> (batch p of the plan, the skipped paths).

    Holds a DataLoader for its index plan (``batch_indices``); picklable when the source
    and transform are, so Grain can ship it to its worker processes.
    """

    def __init__(self, loader: DataLoader):
        self.loader = loader

    def __call__(self, position: int) -> tuple[Batch, list[str]]:
        plan = self.loader
        epoch, step = divmod(int(position), plan.steps_per_epoch)
        idx, valid = plan.batch_indices(epoch, step)
        batch = load_batch(plan.source, idx, plan.transform, seed=plan.seed, epoch=epoch)
        batch[VALID] = valid
        return batch, sorted(getattr(plan.source, "skipped_paths", ()))


class GrainLoader(DataLoader):
    """A :class:`DataLoader` whose batches are produced by a Grain pipeline.

    Same arguments, batches, ``len``, ``get_state``/``set_state`` as :class:`DataLoader`;
    ``worker_count`` selects Grain's multiprocess prefetch (``mp_prefetch``), ``prefetch``
    its per-worker buffer, and ``read_threads`` Grain's read-ahead threads in the process
    that runs the map (0 = read in order in that process).
    """

    def __init__(self, *args: Any, read_threads: int = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if read_threads < 0:
            raise ValueError(f"GrainLoader: read_threads must be >= 0, got {read_threads}")
        self.read_threads = int(read_threads)

    def grain_dataset(self) -> Any:
        """The ``grain.IterDataset`` of the batches from the loader's current position."""
        import grain

        start = self._epoch * self.steps_per_epoch + self._step
        stop = sys.maxsize if self.num_epochs is None else self.num_epochs * self.steps_per_epoch
        ds = grain.MapDataset.range(start, stop).map(_LoadBatch(self))
        it_ds = ds.to_iter_dataset(grain.ReadOptions(
            num_threads=self.read_threads, prefetch_buffer_size=max(1, 2 * self.read_threads)))
        if self.worker_count > 0:
            _absl_flags_parsed()
            it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(
                num_workers=self.worker_count, per_worker_buffer_size=self.prefetch))
        return it_ds

    def __iter__(self) -> Iterator[Batch]:
        if self.num_epochs is not None and self._epoch >= self.num_epochs:
            self._epoch, self._step = 0, 0
        return self._iter_grain()

    def _iter_grain(self) -> Iterator[Batch]:
        it = iter(self.grain_dataset())
        try:
            for batch, skipped in it:
                # Worker outputs arrive as views of Grain's shared-memory blocks, unlinked when
                # the view is collected; own plain copies instead (np.array drops the subclass).
                batch = {k: np.array(v) for k, v in batch.items()}
                self._merge_skipped(skipped)
                self._advance()
                yield batch
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
