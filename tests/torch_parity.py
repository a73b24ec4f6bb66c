"""Helpers for parity tests against the installed torch/torchvision (test-only code)."""

from __future__ import annotations

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


def count_params(variables: dict) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(variables["params"]))


__all__ = ["count_params", "converted", "eval_parity", "grads_to_flax", "jnp",
           "max_rel_err", "nchw_to_nhwc", "realistic_batchnorm", "torch_eval_logits",
           "torch_noise"]
