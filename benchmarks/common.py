"""Timing and reporting shared by the benchmark scripts.

Every benchmark times jaxvision and its reference in the same process, on the same
inputs, with the same thread count, and reports the ratio: absolute numbers on a shared
2-core machine drift from run to run, the ratio much less.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def median_seconds(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 7,
                   min_seconds: float = 0.0) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls.

    ``fn`` must block until its work is done (``jax.block_until_ready`` on the output;
    torch on CPU is synchronous). With ``min_seconds``, repeats continue until that much
    time has been spent, so very fast ops are not judged on a handful of samples.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> str:
    """One line naming the machine, for the results file."""
    import jax
    import torch

    return (f"{platform.processor() or platform.machine()}, {jax.device_count()} JAX "
            f"device(s) ({jax.default_backend()}), torch threads {torch.get_num_threads()}; "
            f"jax {jax.__version__}, torch {torch.__version__}")


def write_markdown(name: str, title: str, header: Sequence[str],
                   rows: Sequence[Sequence[Any]], notes: str = "",
                   directory: Path | None = None) -> Path:
    """Writes ``<directory>/<name>.md`` (a markdown table; default ``results/``) and prints
    it; returns the path."""
    lines = [f"# {title}", "", f"Machine: {machine()}.", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    if notes:
        lines += ["", notes.strip()]
    text = "\n".join(lines) + "\n"
    directory = RESULTS if directory is None else Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.md"
    path.write_text(text)
    print(text)
    return path


def engine_state(config: Any, init: dict[str, Any], steps: int, torch_net: Any) -> tuple:
    """The training engine's pieces on one device, from converted torch weights ``init``
    (``{"params", "batch_stats"}``): ``(mesh, data_sharding, model, tx, schedule, state)``.
    Raises when ``torch_net`` and the model differ in parameter count (not the same
    network)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxvision.train import sharding
    from jaxvision.train.optim import make_optimizer
    from jaxvision.train.state import TrainState, build_model

    mesh = sharding.make_mesh(jax.devices()[:1])
    rep, data_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    model = build_model(config)
    tx, schedule = make_optimizer(config, steps)
    params = init["params"]
    state = jax.device_put(TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                      batch_stats=init["batch_stats"],
                                      opt_state=tx.init(params), rng=jax.random.key_data(
                                          jax.random.key(0))), rep)
    n_jax = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(state.params))
    n_torch = sum(p.numel() for p in torch_net.parameters())
    if n_torch != n_jax:
        raise AssertionError(f"torch model has {n_torch} parameters, jaxvision {n_jax}: not "
                             "the same network")
    return mesh, data_sharding, model, tx, schedule, state

