"""Per-layer model summaries: output shapes, parameter counts and XLA's FLOP count.

:func:`summarize` traces the model abstractly (``jax.eval_shape``: no weights are
allocated, nothing runs) with a Flax method interceptor (``nn.intercept_methods``) that
records every submodule call -- its path, type and output shape -- and counts the
parameters under each path from the variable tree. Two compute counts are given:

* ``macs``: multiply-accumulates of the convolutions and dense layers counted the way
  torchvision's ``_ops`` ("GFLOPS" in its docs, really GMAC) and fvcore count them: every
  kernel tap of every output, padding included. Comparable with published tables.
* ``flops``: XLA's own cost analysis (``HloCostAnalysis``) of the lowered forward pass:
  what the program computes, a multiply-add being 2 FLOPs, elementwise ops (BatchNorm,
  ReLU, adds) included, but kernel taps that fall on zero padding left out. So it is a
  little below ``2 * macs`` for nets with large padded kernels on small maps (AlexNet's
  5x5 pad-2 conv on 27x27 maps: about 8% below), close for the rest. ``valid_macs`` is
  our count of the non-padding taps, which ``flops / 2`` should slightly exceed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util


@dataclass(frozen=True)
class LayerRow:
    """One submodule call: ``path`` is the dotted module path (= the torchvision module
    name under our naming convention), ``params`` the parameters in its subtree."""

    path: str
    kind: str
    depth: int
    output_shape: str
    params: int
    macs: int = 0


@dataclass(frozen=True)
class ModelSummary:
    """Structured summary of a model at one input shape (see :func:`summarize`)."""

    name: str
    input_shape: tuple[int, ...]
    output_shape: str
    rows: list[LayerRow]
    params: int
    batch_stats: int
    param_bytes: int
    macs: int = 0
    valid_macs: int = 0
    flops: float | None = None
    collections: dict[str, int] = field(default_factory=dict)

    def table(self, depth: int | None = None) -> str:
        """The summary as a text table; ``depth`` limits the nesting shown (1 = top)."""
        rows = [r for r in self.rows if depth is None or r.depth <= depth]
        head = ("Layer (type)", "Output shape", "Param #", "MACs")
        cells = [(("  " * (r.depth - 1)) + f"{r.path} ({r.kind})", r.output_shape,
                  f"{r.params:,}", f"{r.macs:,}" if r.macs else "-") for r in rows]
        w = [max([len(head[i])] + [len(c[i]) for c in cells]) for i in range(4)]
        width = sum(w) + 6

        def line(c: tuple[str, ...]) -> str:
            return f"{c[0]:<{w[0]}}  {c[1]:<{w[1]}}  {c[2]:>{w[2]}}  {c[3]:>{w[3]}}"

        lines = [f"{self.name}: input {list(self.input_shape)} float32 -> "
                 f"{self.output_shape}", "=" * width, line(head), "-" * width]
        lines += [line(c) for c in cells]
        lines.append("=" * width)
        lines.append(f"Total params: {self.params:,} "
                     f"({self.param_bytes / 2**20:.1f} MiB)")
        if self.batch_stats:
            lines.append(f"Batch statistics (batch_stats, not trained): {self.batch_stats:,}")
        for col, n in self.collections.items():
            if col not in ("params", "batch_stats"):
                lines.append(f"Other variables ({col}): {n:,}")
        batch = self.input_shape[0]
        lines.append(f"MACs (conv + dense, batch {batch}): {self.macs / 1e9:,.3f} G")
        if self.flops is not None:
            lines.append(f"FLOPs (XLA cost analysis, batch {batch}): "
                         f"{self.flops / 1e9:,.3f} G")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _shape_str(out: Any) -> str:
    leaves = jax.tree_util.tree_leaves(out)
    shapes = [list(x.shape) for x in leaves if hasattr(x, "shape")]
    if len(shapes) == 1:
        return str(shapes[0])
    return " ".join(str(s) for s in shapes) if shapes else "-"


def _valid_taps(size: int, out: int, k: int, stride: int, dilation: int, pad_lo: int) -> int:
    """Kernel taps landing inside the input, summed over the outputs of one axis."""
    return sum(sum(1 for j in range(k) if 0 <= o * stride - pad_lo + j * dilation < size)
               for o in range(out))


def _tuple(v: Any, n: int) -> tuple[int, ...]:
    if v is None:
        return (1,) * n
    if isinstance(v, int):
        return (v,) * n
    return tuple(v)


def _layer_macs(module: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
                ) -> tuple[int, int]:
    """(dense MACs, MACs of non-padding taps) of one nn.Conv / nn.Dense call, else (0, 0)."""
    if isinstance(module, nn.Dense):
        n = int(np.prod(out_shape)) * int(in_shape[-1])
        return n, n
    if not isinstance(module, nn.Conv) or len(in_shape) != len(out_shape):
        return 0, 0
    ks = tuple(module.kernel_size)
    nd = len(ks)
    strides = _tuple(module.strides, nd)
    dil = _tuple(module.kernel_dilation, nd)
    cin = int(in_shape[-1]) // int(module.feature_group_count)
    per_out = int(np.prod(ks)) * cin
    dense = int(np.prod(out_shape)) * per_out
    spatial_in, spatial_out = in_shape[-nd - 1:-1], out_shape[-nd - 1:-1]
    pad = module.padding
    if isinstance(pad, str):
        if pad.upper() == "VALID":
            lo = (0,) * nd
        elif pad.upper() == "SAME":
            lo = tuple(max((o - 1) * s + (k - 1) * d + 1 - i, 0) // 2 for i, o, k, s, d
                       in zip(spatial_in, spatial_out, ks, strides, dil, strict=True))
        else:
            return dense, dense
    elif isinstance(pad, int):
        lo = (pad,) * nd
    else:
        lo = tuple(p if isinstance(p, int) else p[0] for p in pad)
    taps = 1
    for i, o, k, s, d, p in zip(spatial_in, spatial_out, ks, strides, dil, lo, strict=True):
        taps *= _valid_taps(int(i), int(o), k, s, d, p)
    batch = int(np.prod(out_shape[:-nd - 1]))
    return dense, batch * int(out_shape[-1]) * cin * taps


def _resolve(module: nn.Module | str, **config: Any) -> tuple[nn.Module, str]:
    if isinstance(module, str):
        from jaxvision.models import get_model

        return get_model(module, **config), module
    return module, type(module).__name__


def _input_struct(module: nn.Module, input_shape: tuple[int, ...] | None,
                  batch_size: int) -> jax.ShapeDtypeStruct:
    shape = tuple(input_shape) if input_shape is not None else None
    if shape is None:
        shape = getattr(module, "default_input_shape", None)
        if shape is None:
            raise ValueError(f"{type(module).__name__} has no default_input_shape: pass "
                             "input_shape=(H, W, C)")
    if len(shape) == 3:
        shape = (batch_size, *shape)
    if len(shape) != 4:
        raise ValueError(f"input_shape must be (H, W, C) or (N, H, W, C), got {shape}")
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def count_flops(module: nn.Module, variables: Any, x: Any, *, optimized: bool = False
                ) -> float:
    """FLOPs of ``module.apply(variables, x, train=False)`` by XLA's cost analysis.

    ``variables`` and ``x`` may be abstract (``jax.ShapeDtypeStruct``). By default the
    lowered (pre-optimization) HLO is analyzed, which needs no compilation; with
    ``optimized=True`` the compiled executable is (slower; fusion may change the count of
    elementwise ops slightly).
    """
    lowered = jax.jit(lambda v, x: module.apply(v, x, train=False)).lower(variables, x)
    cost = lowered.compile().cost_analysis() if optimized else lowered.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax returned one dict per device
        cost = cost[0]
    if not cost or "flops" not in cost:
        raise RuntimeError("XLA returned no cost analysis for this backend")
    return float(cost["flops"])


def summarize(
    module: nn.Module | str,
    input_shape: tuple[int, ...] | None = None,
    *,
    batch_size: int = 1,
    flops: bool = True,
    optimized_flops: bool = False,
    **config: Any,
) -> ModelSummary:
    """Structured per-layer summary of ``module`` (a Module or a zoo model name).

    Args:
      module: a Flax module taking ``[N, H, W, C] float32`` images with a ``train`` flag,
        or a registered model name (built with ``**config``).
      input_shape: ``(H, W, C)`` or ``(N, H, W, C)``; default the model's
        ``default_input_shape`` with ``batch_size``.
      flops: also count FLOPs with XLA's cost analysis (see :func:`count_flops`).

    Returns:
      A :class:`ModelSummary`; ``str()`` of it is the table.
    """
    module, name = _resolve(module, **config)
    x = _input_struct(module, input_shape, batch_size)
    calls: list[list[Any]] = []

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__" or not context.module.path:
            return next_fun(*args, **kwargs)
        entry = [tuple(context.module.path), type(context.module).__name__, None, 0, 0]
        calls.append(entry)  # appended before the call: rows come out parent first
        out = next_fun(*args, **kwargs)
        entry[2] = _shape_str(out)
        if args and hasattr(args[0], "shape") and hasattr(out, "shape"):
            entry[3], entry[4] = _layer_macs(context.module, args[0].shape, out.shape)
        return out

    def init(x):
        with nn.intercept_methods(interceptor):
            return module.init_with_output({"params": jax.random.key(0),
                                            "dropout": jax.random.key(1)}, x, train=False)

    out, variables = jax.eval_shape(init, x)
    per_prefix: dict[tuple[str, ...], int] = defaultdict(int)
    totals: dict[str, int] = defaultdict(int)
    param_bytes = 0
    for path, leaf in traverse_util.flatten_dict(dict(variables)).items():
        n = int(np.prod(leaf.shape))
        totals[path[0]] += n
        if path[0] == "params":
            param_bytes += n * np.dtype(leaf.dtype).itemsize
            for i in range(1, len(path)):
                per_prefix[tuple(path[1:i])] += n
    rows = []
    for p, kind, shape, _, _ in calls:
        # A row's MACs are those of the conv/dense calls in its subtree.
        macs = sum(c[3] for c in calls if c[0][:len(p)] == p)
        rows.append(LayerRow(".".join(p), kind, len(p), shape or "-", per_prefix.get(p, 0),
                             macs))
    n_flops = count_flops(module, variables, x, optimized=optimized_flops) if flops else None
    return ModelSummary(name=name, input_shape=tuple(x.shape), output_shape=_shape_str(out),
                        rows=rows, params=totals.get("params", 0),
                        macs=sum(c[3] for c in calls), valid_macs=sum(c[4] for c in calls),
                        batch_stats=totals.get("batch_stats", 0), param_bytes=param_bytes,
                        flops=n_flops, collections=dict(totals))


def summary(
    module: nn.Module | str,
    input_shape: tuple[int, ...] | None = None,
    *,
    depth: int | None = None,
    **kwargs: Any,
) -> str:
    """The per-layer table of ``module`` as text (see :func:`summarize` for arguments).

    Example::

        print(summary("resnet50", depth=2))
    """
    return summarize(module, input_shape, **kwargs).table(depth)
