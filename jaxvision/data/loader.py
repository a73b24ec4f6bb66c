"""A deterministic, resumable, per-process-sharded batch loader over random-access sources.

The order of examples is a pure function of ``(seed, epoch)``: epoch ``e`` visits the
permutation ``numpy.random.default_rng([seed, e]).permutation(N)`` (or ``arange(N)`` without
shuffling), cut into *global* batches of ``batch_size * shard_count`` examples; process
``shard_index`` takes the contiguous rows ``[shard_index * batch_size, (shard_index + 1) *
batch_size)`` of every global batch. So the processes of a multi-host job see disjoint
slices of the same global batch at every step, all run the same number of steps, and the
position ``(epoch, step)`` is all that a checkpoint needs to resume exactly
(:meth:`DataLoader.get_state` / :meth:`DataLoader.set_state`), as in big_vision and grain.

Evaluation uses ``pad_final=True``: the last global batch is padded to full size with
copies of a real example whose ``_valid`` flag is False, so no example is dropped and every
process runs the same number of static-shaped steps.

Examples are dicts with any fields (``image``, ``label``, ``boxes``, ``mask``...); a batch
stacks every field. A per-example ``transform(example, rng)`` (host-side decoding and
augmentation) runs before stacking, its ``rng`` drawn from ``(seed, epoch, index)``
(:func:`example_rng`), so transforms too are exactly reproducible on resume and in worker
processes.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

Batch = dict[str, np.ndarray]

#: The loader's padding flag: ``batch[VALID]`` is bool [B], False on the rows that pad the
#: final batch. Data fields never start with ``_``, so it cannot collide with one (a
#: segmentation ``mask``, a box ``valid`` flag).
VALID = "_valid"

_STATE_VERSION = 1
# Fields of the state that must match the loader it is restored into (they determine the
# order and the cut of the batches). shard_index and worker_count may differ.
_STATE_CONFIG = (
    "num_examples",
    "batch_size",
    "shard_count",
    "seed",
    "shuffle",
    "drop_remainder",
    "pad_final",
)


#: A per-example transform: ``transform(example, rng) -> example`` (host side, numpy). It
#: returns new arrays rather than writing into the example's (which may be read-only views
#: of the source's memory, as :class:`~jaxvision.data.ArraySource` gives).
Transform = Callable[[dict[str, Any], np.random.Generator], dict[str, Any]]

# Appended to the seed of every per-example rng so that its stream differs from the epoch
# permutation's (numpy's SeedSequence pads with zeros: [seed, epoch] == [seed, epoch, 0]).
_TRANSFORM_STREAM = 1


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator a transform gets for source example ``index`` in epoch ``epoch``.

    A pure function of ``(seed, epoch, index)``: a resumed loader, any ``worker_count``
    and any shard count give every example the same random draws.
    """
    return np.random.default_rng([int(seed), int(epoch), int(index), _TRANSFORM_STREAM])


def stack_examples(examples: Sequence[dict[str, Any]]) -> Batch:
    """Stack every field of ``examples`` along a new leading axis: {field: [B, ...]}.

    Raises:
      ValueError: naming the field when the examples do not all have the same fields, when a
        field's shape differs within the batch (batches must be static-shaped), or when a
        field name starts with ``_`` (reserved for the loader's flags such as :data:`VALID`).
    """
    if not examples:
        raise ValueError("stack_examples: no examples to stack")
    keys = list(examples[0])
    for k, e in enumerate(examples[1:], 1):
        if set(e) != set(keys):
            raise ValueError(
                f"DataLoader: examples of one batch have different fields: example 0 has "
                f"{sorted(keys)}, example {k} has {sorted(e)}"
            )
    batch: Batch = {}
    for key in keys:
        if key.startswith("_"):
            raise ValueError(
                f"DataLoader: example field {key!r} starts with '_', which is reserved for the "
                f"loader's flags ({VALID!r})"
            )
        values = [np.asarray(e[key]) for e in examples]
        shapes = {v.shape for v in values}
        if len(shapes) > 1:
            raise ValueError(
                f"DataLoader: field {key!r} has different shapes within one batch "
                f"{sorted(shapes)}; batches must be static-shaped: resize/pad in the source or "
                "the transform (e.g. ImageFolderSource(image_size=...), or a dense transform "
                "onto a fixed canvas)"
            )
        batch[key] = np.stack(values)
    return batch


def load_batch(source: Any, indices: np.ndarray, transform: Transform | None = None, *,
               seed: int = 0, epoch: int = 0) -> Batch:
    """Gather ``source[i]`` for ``i in indices`` and stack every field: {field: [B, ...]}.

    ``label`` (when present) becomes int32 [B]; every other field keeps its dtype. With a
    ``transform``, each example is replaced by ``transform(example, example_rng(seed, epoch,
    i))`` before stacking. Without one, ``source.get_batch(indices)`` is used when the source
    has it (vectorized :class:`ArraySource`).
    """
    if transform is None and hasattr(source, "get_batch"):
        batch = {k: np.asarray(v) for k, v in source.get_batch(indices).items()}
        bad = [k for k in batch if k.startswith("_")]
        if bad:
            raise ValueError(f"DataLoader: source fields {bad} start with '_' (reserved)")
    else:
        examples = []
        for i in indices:
            ex = source[int(i)]
            if transform is not None:
                ex = transform(dict(ex), example_rng(seed, epoch, int(i)))
                if not isinstance(ex, dict):
                    raise TypeError(
                        f"DataLoader: transform must return a dict of fields, got "
                        f"{type(ex).__name__}"
                    )
            examples.append(ex)
        batch = stack_examples(examples)
    if "label" in batch:
        batch["label"] = batch["label"].astype(np.int32)
    return batch


# ---- worker processes -------------------------------------------------------------------
# Each worker process receives the source and the transform once (pickled by the pool
# initializer) and then loads whole batches from index arrays, so only indices travel to it
# and batches back.
_WORKER_SOURCE: Any = None
_WORKER_TRANSFORM: Transform | None = None
_WORKER_SEED = 0


def _worker_init(source: Any, transform: Transform | None = None, seed: int = 0) -> None:
    global _WORKER_SOURCE, _WORKER_TRANSFORM, _WORKER_SEED
    _WORKER_SOURCE, _WORKER_TRANSFORM, _WORKER_SEED = source, transform, seed


def _worker_load(indices: np.ndarray, epoch: int = 0) -> tuple[Batch, list[str]]:
    batch = load_batch(_WORKER_SOURCE, indices, _WORKER_TRANSFORM, seed=_WORKER_SEED,
                       epoch=epoch)
    # Decode-time skips happen in the worker's copy of the source; report them back.
    skipped = sorted(getattr(_WORKER_SOURCE, "skipped_paths", ()))
    return batch, skipped


class DataLoader:
    """Batches a random-access source: shuffled per epoch, sharded per process, resumable.

    Iterating yields every field of the examples stacked, e.g. ``{"image": [B, H, W, C] (the
    source's dtype, uint8), "label": int32 [B], ..., "_valid": bool [B]}`` with
    ``B = batch_size`` (per process). ``_valid`` (:data:`VALID`) is False only on the padding
    rows of the final batch when ``pad_final=True``.

    Args:
      source: random-access source (``len``, ``src[i] -> {"image", "label", ...}``: any
        fields whose names do not start with ``_``).
      batch_size: examples per batch *per process*; the global batch is
        ``batch_size * shard_count``.
      shuffle: visit each epoch in the order of a permutation drawn from ``(seed, epoch)``.
      seed: non-negative int seed of the shuffling.
      num_epochs: number of passes; ``None`` repeats forever.
      drop_remainder: drop the last incomplete global batch (the default, for training).
        ``False`` (single process only) yields it smaller; see ``pad_final``.
      shard_index, shard_count: this process's slice of every global batch; default
        ``jax.process_index()`` and ``jax.process_count()``.
      worker_count: 0 loads in the calling thread; ``> 0`` loads batches in that many worker
        processes (``spawn`` start method, safe with JAX's threads) while the consumer runs;
        the source must be picklable. The output is identical for any worker_count.
      pad_final: keep every example: the last global batch is padded to full size with
        ``_valid=False`` rows (``drop_remainder`` is then ignored). For evaluation.
      prefetch: batches requested ahead per worker (``worker_count > 0`` only).
      transform: ``transform(example: dict, rng: numpy.random.Generator) -> dict`` applied to
        every example before stacking (host-side decoding/augmentation, e.g. the dense
        transforms onto a fixed canvas). ``rng`` is :func:`example_rng` ``(seed, epoch,
        index)`` with ``index`` the example's index in the source: a pure function of the
        position, so resuming is exact and every ``worker_count`` gives the same batches.
        Must be picklable when ``worker_count > 0``.

    Iteration starts at the loader's current position (initially epoch 0, step 0) and
    advances it as batches are *yielded* (so :meth:`get_state` right after receiving a
    batch records that batch as consumed, whatever the workers prefetched). Iterating a
    loader that has finished all of its ``num_epochs`` starts over at epoch 0, so an
    evaluation loader can be looped over once per evaluation. Use one iterator at a time.
    """

    def __init__(
        self,
        source: Any,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        num_epochs: int | None = None,
        drop_remainder: bool = True,
        shard_index: int | None = None,
        shard_count: int | None = None,
        worker_count: int = 0,
        pad_final: bool = False,
        prefetch: int = 2,
        transform: Transform | None = None,
    ):
        if shard_index is None or shard_count is None:
            import jax  # deferred: workers and pure-numpy users need not import JAX

            shard_index = jax.process_index() if shard_index is None else shard_index
            shard_count = jax.process_count() if shard_count is None else shard_count
        n = len(source)
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if shard_count < 1 or not 0 <= shard_index < shard_count:
            raise ValueError(
                f"DataLoader: need 0 <= shard_index < shard_count, got shard_index={shard_index}, "
                f"shard_count={shard_count}"
            )
        if num_epochs is not None and num_epochs < 1:
            raise ValueError(f"DataLoader: num_epochs must be >= 1 or None, got {num_epochs}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"DataLoader: seed must be a non-negative int, got {seed!r}")
        if worker_count < 0:
            raise ValueError(f"DataLoader: worker_count must be >= 0, got {worker_count}")
        if prefetch < 1:
            raise ValueError(f"DataLoader: prefetch must be >= 1, got {prefetch}")
        if n == 0:
            raise ValueError("DataLoader: the source is empty")
        if shard_count > 1 and not drop_remainder and not pad_final:
            raise ValueError(
                "DataLoader: drop_remainder=False without pad_final would give the processes "
                "different batch sizes in the last step; use pad_final=True (evaluation) or "
                "drop_remainder=True (training) with shard_count > 1"
            )
        self.source = source
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.num_epochs = num_epochs
        self.drop_remainder = bool(drop_remainder)
        self.pad_final = bool(pad_final)
        self.shard_index = int(shard_index)
        self.shard_count = int(shard_count)
        self.worker_count = int(worker_count)
        self.prefetch = int(prefetch)
        self.transform = transform
        self.num_examples = n
        self.global_batch_size = self.batch_size * self.shard_count
        if self.pad_final or not self.drop_remainder:
            self.steps_per_epoch = -(-n // self.global_batch_size)
        else:
            self.steps_per_epoch = n // self.global_batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"DataLoader: global batch {self.global_batch_size} (batch_size {batch_size} x "
                f"{shard_count} shards) exceeds the {n} examples and drop_remainder=True drops "
                "it: no batch per epoch; lower batch_size or set pad_final=True"
            )
        self._epoch = 0
        self._step = 0
        self._order_cache: tuple[int, np.ndarray] | None = None

    # ---- the order ---------------------------------------------------------------------
    def epoch_order(self, epoch: int) -> np.ndarray:
        """The global visiting order of epoch ``epoch``: int64 [N] (a permutation of 0..N-1)."""
        if self._order_cache is not None and self._order_cache[0] == epoch:
            return self._order_cache[1]
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
        else:
            order = np.arange(self.num_examples, dtype=np.int64)
        self._order_cache = (epoch, order)
        return order

    def batch_indices(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """This process's (indices int64 [B], mask bool [B]) of batch ``step`` of ``epoch``.

        Padding rows (beyond the data, ``pad_final``) repeat the epoch's first example with
        mask False; without padding the final batch may be shorter (drop_remainder=False).
        """
        order = self.epoch_order(epoch)
        start = step * self.global_batch_size + self.shard_index * self.batch_size
        pos = start + np.arange(self.batch_size)
        valid = pos < self.num_examples
        if not self.pad_final:
            pos = pos[valid]
            valid = valid[valid]
        return order[np.where(valid, pos, 0)], valid

    def _positions(self) -> Iterator[tuple[int, int]]:
        epoch, step = self._epoch, self._step
        while self.num_epochs is None or epoch < self.num_epochs:
            yield epoch, step
            step += 1
            if step == self.steps_per_epoch:
                epoch, step = epoch + 1, 0

    def _advance(self) -> None:
        self._step += 1
        if self._step == self.steps_per_epoch:
            self._epoch, self._step = self._epoch + 1, 0

    # ---- iteration ---------------------------------------------------------------------
    def __len__(self) -> int:
        """Batches per epoch (per process; equal on every process)."""
        return self.steps_per_epoch

    def __iter__(self) -> Iterator[Batch]:
        if self.num_epochs is not None and self._epoch >= self.num_epochs:
            self._epoch, self._step = 0, 0
        if self.worker_count == 0:
            return self._iter_inline()
        return self._iter_workers()

    def _iter_inline(self) -> Iterator[Batch]:
        for epoch, step in self._positions():
            idx, mask = self.batch_indices(epoch, step)
            batch = load_batch(self.source, idx, self.transform, seed=self.seed, epoch=epoch)
            batch[VALID] = mask
            self._advance()
            yield batch

    def _iter_workers(self) -> Iterator[Batch]:
        ctx = mp.get_context("spawn")
        pool = ctx.Pool(self.worker_count, initializer=_worker_init,
                        initargs=(self.source, self.transform, self.seed))
        try:
            pending: collections.deque = collections.deque()
            positions = self._positions()
            limit = self.worker_count * self.prefetch

            def submit() -> bool:
                pos = next(positions, None)
                if pos is None:
                    return False
                idx, mask = self.batch_indices(*pos)
                pending.append((mask, pool.apply_async(_worker_load, (idx, pos[0]))))
                return True

            while len(pending) < limit and submit():
                pass
            while pending:
                mask, result = pending.popleft()
                batch, skipped = result.get()
                self._merge_skipped(skipped)
                submit()
                batch[VALID] = mask
                self._advance()
                yield batch
        finally:
            pool.terminate()
            pool.join()

    def _merge_skipped(self, paths: Sequence[str]) -> None:
        mine = getattr(self.source, "skipped_paths", None)
        if paths and mine is not None:
            mine.update(paths)

    # ---- checkpointing -----------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """JSON-able position: the next batch is batch ``step`` of epoch ``epoch``."""
        return {
            "version": _STATE_VERSION,
            "epoch": self._epoch,
            "step": self._step,
            "num_examples": self.num_examples,
            "batch_size": self.batch_size,
            "shard_count": self.shard_count,
            "shard_index": self.shard_index,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "drop_remainder": self.drop_remainder,
            "pad_final": self.pad_final,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Resume at a position saved by :meth:`get_state` (of a loader of the same config).

        Raises ValueError naming the field when the state does not belong to a loader of
        this configuration (different data, batch size, seed, shard count...).
        """
        missing = [k for k in ("version", "epoch", "step", *_STATE_CONFIG) if k not in state]
        if missing:
            raise ValueError(
                f"DataLoader.set_state: state lacks {missing}; got keys {sorted(state)}"
            )
        if state["version"] != _STATE_VERSION:
            raise ValueError(
                f"DataLoader.set_state: state version {state['version']}, expected {_STATE_VERSION}"
            )
        mine = self.get_state()
        diff = {k: (state[k], mine[k]) for k in _STATE_CONFIG if state[k] != mine[k]}
        if diff:
            desc = ", ".join(f"{k}: state {a!r} vs loader {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"DataLoader.set_state: state is from a different loader ({desc})")
        epoch, step = int(state["epoch"]), int(state["step"])
        if epoch < 0 or not 0 <= step < self.steps_per_epoch:
            raise ValueError(
                f"DataLoader.set_state: position epoch={epoch}, step={step} invalid for "
                f"{self.steps_per_epoch} steps per epoch"
            )
        self._epoch, self._step = epoch, step

    def __repr__(self) -> str:
        return (
            f"DataLoader(n={self.num_examples}, batch_size={self.batch_size}, "
            f"shard={self.shard_index}/{self.shard_count}, steps_per_epoch={self.steps_per_epoch}, "
            f"epoch={self._epoch}, step={self._step})"
        )
