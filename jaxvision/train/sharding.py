"""Data parallelism in one place: the device mesh, shardings, multi-host setup.

One mesh axis, ``'data'``, over every device of every process. Batches are split along
their first axis (``NamedSharding(mesh, P('data'))``); parameters and optimizer state are
replicated (``P()``). The jitted steps carry these shardings explicitly and XLA inserts the
gradient all-reduce; there is no ``pmap``. Each process loads only its share of a global
batch and :func:`global_batch` assembles the global array with
``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
    """Starts ``jax.distributed`` for a multi-process run; returns True if it did.

    Arguments left ``None`` come from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID``. With none of them set this is a single-process run and nothing is
    started. CPU processes exchange data over gloo.
    """
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and os.environ.get("JAX_PROCESS_ID"):
        process_id = int(os.environ["JAX_PROCESS_ID"])
    if coordinator is None and num_processes is None and process_id is None:
        return False
    missing = [n for n, v in (("coordinator", coordinator), ("num_processes", num_processes),
                              ("process_id", process_id)) if v is None]
    if missing:
        raise ValueError(f"multi-process training needs coordinator, num_processes and "
                         f"process_id; missing: {', '.join(missing)} (flags --coordinator, "
                         f"--num-processes, --process-id or JAX_COORDINATOR_ADDRESS, "
                         f"JAX_NUM_PROCESSES, JAX_PROCESS_ID)")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return True


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``'data'`` over ``devices`` (default: all devices, all processes)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Splits the leading (batch) axis over the mesh."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device (parameters, optimizer state, metrics)."""
    return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch_size") -> int:
    """Returns the per-process batch size; errors if ``batch_size`` does not split evenly
    over the mesh's devices."""
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(f"{what}={batch_size} must be divisible by the number of devices "
                         f"({n}) so every device gets the same share; try "
                         f"{max(n, batch_size // n * n)}")
    return batch_size // jax.process_count()


def global_batch(local: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Assembles each process's ``local`` batch ``{key: [B / processes, ...]}`` into global
    arrays ``[B, ...]`` sharded along the batch axis (process p holds rows p*b..(p+1)*b)."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local.items()}


def shard_like(tree: Any, sharding: NamedSharding) -> Any:
    """A pytree of ``jax.ShapeDtypeStruct`` like ``tree``, every leaf with ``sharding``:
    the target that tells a checkpoint restore where to place each array."""
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), tree)
