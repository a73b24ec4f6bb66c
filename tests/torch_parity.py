"""Helpers for parity tests against the installed torch/torchvision (test-only code)."""

from __future__ import annotations

from contextlib import nullcontext as _nullcontext
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxvision.weights.convert import convert_state_dict, torch_to_flax, variable_shapes


def nchw_to_nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().permute(0, 2, 3, 1).contiguous().numpy()


def realistic_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Gives every BatchNorm non-trivial affine parameters and running statistics.

    The initial zeros and ones hide conversion errors (a swapped mean/var, a missing
    scale), so parity tests use values like those of a trained network.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
    return model


def converted(module: Any, tv_model: torch.nn.Module) -> dict:
    """The jaxvision variables converted from ``tv_model.state_dict()``."""
    return convert_state_dict(module, tv_model.state_dict())


def torch_eval_logits(tv_model: torch.nn.Module, x_nchw: torch.Tensor,
                      channels_last: bool = False) -> np.ndarray:
    tv_model.eval()
    with torch.inference_mode():
        if channels_last:
            m = tv_model.to(memory_format=torch.channels_last)
            out = m(x_nchw.contiguous(memory_format=torch.channels_last))
            tv_model.to(memory_format=torch.contiguous_format)
        else:
            out = tv_model(x_nchw)
    return out.numpy()


def torch_noise(tv_model: torch.nn.Module, x_nchw: torch.Tensor) -> float:
    """torch's own fp32 noise: max |contiguous - channels_last| logits."""
    a = torch_eval_logits(tv_model, x_nchw)
    b = torch_eval_logits(tv_model, x_nchw, channels_last=True)
    return float(np.abs(a - b).max())


def eval_parity(module: Any, tv_model: torch.nn.Module, hw: tuple[int, int], batch: int = 2,
                seed: int = 0, channels: int = 3) -> tuple[float, float]:
    """Max |jaxvision - torchvision| eval logits at ``hw``, and torch's own noise there."""
    variables = converted(module, tv_model)
    x = torch.randn(batch, channels, *hw, generator=torch.Generator().manual_seed(seed))
    ref = torch_eval_logits(tv_model, x)
    out = jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, nchw_to_nhwc(x))
    return float(np.abs(np.asarray(out) - ref).max()), torch_noise(tv_model, x)


def grads_to_flax(module: Any, tv_model: torch.nn.Module) -> dict:
    """torch parameter gradients laid out as jaxvision ``params`` (same transforms)."""
    grads = {k: p.grad for k, p in tv_model.named_parameters() if p.grad is not None}
    template = {"params": variable_shapes(module)["params"]}
    flat = getattr(module, "torch_flatten_shapes", None) or {}
    return torch_to_flax(template, grads, flat)["params"]


def max_rel_err(a: Any, b: Any) -> float:
    """Max over leaves of max|a - b| / max(max|b|, 1e-6)."""
    errs = jax.tree_util.tree_map(
        lambda x, y: float(np.abs(np.asarray(x) - np.asarray(y)).max()
                           / max(float(np.abs(np.asarray(y)).max()), 1e-6)), a, b)
    return max(jax.tree_util.tree_leaves(errs))


def layer_rel_err(a: Any, b: Any) -> float:
    """Max over layers of max|a - b| / max|b|, the max taken over all of a layer's leaves.

    Per layer rather than per leaf: the bias of a conv followed by train-mode BatchNorm has
    an exactly zero true gradient (BN subtracts the batch mean), so both frameworks return
    roundoff (~1e-6 of the layer's kernel gradient) and a per-leaf ratio of two noises says
    nothing. Measured against the layer's own gradient scale, the noise is negligible and
    every real gradient is still held to the tolerance.
    """
    groups: dict[tuple, tuple[float, float]] = {}
    flat_b = dict(jax.tree_util.tree_flatten_with_path(b)[0])
    for path, x in jax.tree_util.tree_flatten_with_path(a)[0]:
        y = np.asarray(flat_b[path])
        err, scale = groups.get(path[:-1], (0.0, 0.0))
        groups[path[:-1]] = (max(err, float(np.abs(np.asarray(x) - y).max())),
                             max(scale, float(np.abs(y).max())))
    return max(err / max(scale, 1e-6) for err, scale in groups.values())


def train_parity(module: Any, tv_model: torch.nn.Module, x: torch.Tensor, *,
                 with_grads: bool = False, seed: int = 3) -> dict[str, float]:
    """One train-mode step of ``module`` and ``tv_model`` from the same weights and input.

    The loss is ``sum_i <out_i, w_i>`` over the model's outputs (aux heads included) with
    random cotangents ``w_i``. Returns the max abs differences of the outputs
    (``logits_abs``) and of the updated running statistics (``stats_abs``), the smallest
    change of any statistic (``stats_moved``: a no-op update must not pass by accident) and,
    ``with_grads``, the max relative differences of the gradients with respect to the
    parameters (per layer, see :func:`layer_rel_err`) and the input. A float64 ``x`` (and
    ``tv_model.double()``) runs both sides in float64, jaxvision under ``jax.enable_x64``;
    ``module`` must then be built with ``dtype=param_dtype=jnp.float64``.
    """
    x64 = x.dtype == torch.float64
    variables_ctx = jax.enable_x64(True) if x64 else _nullcontext()
    with variables_ctx:
        variables = converted(module, tv_model)
        tv_model.train()
        x_t = x.clone().requires_grad_(with_grads)
        ref = tv_model(x_t)
        refs = tuple(ref) if isinstance(ref, tuple) else (ref,)
        gen = torch.Generator().manual_seed(seed)
        cots = [torch.randn(r.shape, generator=gen, dtype=r.dtype) for r in refs]
        if with_grads:
            sum((r * c).sum() for r, c in zip(refs, cots, strict=True)).backward()
        ref_stats = converted(module, tv_model)["batch_stats"]

        def loss(params: Any, x: jax.Array) -> tuple[jax.Array, tuple[Any, Any]]:
            out, upd = module.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                    x, train=True, mutable=["batch_stats"])
            outs = tuple(out) if isinstance(out, tuple) else (out,)
            total = sum(jnp.sum(o * jnp.asarray(c.numpy())) for o, c in
                        zip(outs, cots, strict=True))
            return total, (outs, upd["batch_stats"])

        x_j = nchw_to_nhwc(x)
        errs: dict[str, float] = {}
        if with_grads:
            (_, (outs, stats)), (g_params, g_x) = jax.jit(
                jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(variables["params"], x_j)
            errs["grad_params_rel"] = layer_rel_err(g_params, grads_to_flax(module, tv_model))
            errs["grad_input_rel"] = max_rel_err(g_x, nchw_to_nhwc(x_t.grad))
        else:
            _, (outs, stats) = jax.jit(loss)(variables["params"], x_j)
    errs["logits_abs"] = max(float(np.abs(np.asarray(o) - r.detach().numpy()).max())
                             for o, r in zip(outs, refs, strict=True))
    diff = lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max())  # noqa: E731
    errs["stats_abs"] = max(jax.tree_util.tree_leaves(
        jax.tree_util.tree_map(diff, stats, ref_stats)))
    errs["stats_moved"] = min(jax.tree_util.tree_leaves(
        jax.tree_util.tree_map(diff, stats, variables["batch_stats"])))
    print(type(module).__name__, errs)
    return errs


def input_error_cases(size: int, too_small: int, min_match: str) -> list[tuple[Any, type, str]]:
    """``(images, exception, message)`` for the wrong inputs every zoo model must refuse.

    ``size`` is a valid side, ``too_small`` a side below the model's minimum, whose error
    must match ``min_match``. For ``pytest.mark.parametrize(("x", "exc", "match"), ...)``.
    """
    return [
        (jnp.zeros((size, size, 3)), ValueError, "rank 4"),
        (jnp.zeros((1, 3, size, size)), ValueError, "looks like NCHW"),
        (jnp.zeros((1, size, size, 1)), ValueError, "3 input channels"),
        (jnp.zeros((1, size, size, 3), jnp.uint8), TypeError, "floating-point"),
        (np.zeros((1, size, size, 3), np.int32), TypeError, "floating-point"),
        (jnp.zeros((1, too_small, too_small, 3)), ValueError, min_match),
    ]


def count_params(variables: dict) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(variables["params"]))


__all__ = ["count_params", "converted", "eval_parity", "grads_to_flax", "input_error_cases",
           "jnp", "layer_rel_err", "max_rel_err", "nchw_to_nhwc", "realistic_batchnorm",
           "torch_eval_logits", "torch_noise", "train_parity"]
