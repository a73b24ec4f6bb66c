"""Losses and metrics against torch.nn.functional / torch.topk."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxvision.train import losses


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_torch(smoothing):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 10)).astype(np.float32) * 3
    labels = rng.integers(0, 10, 16)
    ours = losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), smoothing)
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels),
                                            reduction="none", label_smoothing=smoothing)
    np.testing.assert_allclose(np.asarray(ours), ref.numpy(), rtol=1e-5, atol=1e-6)


def test_cross_entropy_bf16_logits_computed_in_float32():
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(4, 10)), jnp.bfloat16)
    out = losses.cross_entropy(logits, jnp.array([0, 1, 2, 3]))
    assert out.dtype == jnp.float32


@pytest.mark.parametrize("k", [1, 5])
def test_topk_matches_torch_topk(k):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(300, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 300)
    ours = np.asarray(losses.topk_correct(jnp.asarray(logits), jnp.asarray(labels), k))
    top = torch.topk(torch.tensor(logits), k, dim=1).indices.numpy()
    ref = np.array([labels[i] in top[i] for i in range(300)], np.float32)
    np.testing.assert_array_equal(ours, ref)


def test_topk_ties_break_toward_lower_index():
    logits = jnp.array([[1.0, 1.0, 1.0, 0.0]] * 3)
    got = losses.topk_correct(logits, jnp.array([0, 1, 2]), 2)
    np.testing.assert_array_equal(np.asarray(got), [1.0, 1.0, 0.0])


def test_masked_mean_ignores_padding():
    v = jnp.array([1.0, 2.0, 100.0])
    assert float(losses.masked_mean(v, jnp.array([True, True, False]))) == 1.5
    assert float(losses.masked_mean(v, jnp.zeros(3, bool))) == 0.0
