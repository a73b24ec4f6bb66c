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
                   rows: Sequence[Sequence[Any]], notes: str = "") -> Path:
    """Writes ``results/<name>.md`` (a markdown table) and prints it; returns the path."""
    lines = [f"# {title}", "", f"Machine: {machine()}.", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    if notes:
        lines += ["", notes.strip()]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(text)
    print(text)
    return path
