"""GoogLeNet against the installed torchvision: parameter counts, eval parity at two sizes,
transform_input, training mode (aux outputs, BatchNorm statistics, gradients), input errors."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from jaxvision.models import get_model
from jaxvision.models.googlenet import GoogLeNetOutputs
from jaxvision.weights.convert import variable_shapes
from tests.torch_parity import (
    converted,
    count_params,
    eval_parity,
    grads_to_flax,
    max_rel_err,
    nchw_to_nhwc,
    realistic_batchnorm,
)


def tv_googlenet(**kwargs) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's init_weights FutureWarning
        torch.manual_seed(0)
        return torchvision.models.googlenet(init_weights=True, **kwargs)


@pytest.mark.parametrize("aux_logits", [False, True])
def test_param_count_matches_torchvision(aux_logits):
    model = get_model("googlenet", aux_logits=aux_logits)
    expected = sum(p.numel() for p in tv_googlenet(aux_logits=aux_logits).parameters())
    assert expected == (13_004_888 if aux_logits else 6_624_904)  # REFERENCE.md
    assert count_params(variable_shapes(model)) == expected
    # init in eval mode creates the aux heads' variables too.
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
    assert count_params(shapes) == expected


@pytest.mark.parametrize("hw, transform", [((224, 224), False), ((193, 257), True)])
def test_eval_logits_match_torchvision(hw, transform):
    tv = realistic_batchnorm(tv_googlenet(transform_input=transform))
    err, noise = eval_parity(get_model("googlenet", transform_input=transform), tv, hw, batch=2)
    assert err <= max(1e-4, 10 * noise), (err, noise)


@pytest.fixture(scope="module")
def train_step_pair():
    """One training-mode forward + backward in both frameworks, dropouts at 0."""
    tv = realistic_batchnorm(tv_googlenet(dropout=0.0, dropout_aux=0.0)).train()
    model = get_model("googlenet", dropout=0.0, dropout_aux=0.0)
    variables = converted(model, tv)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 112, 144, generator=g, requires_grad=True)
    cot = [torch.randn(2, 1000, generator=g) for _ in range(3)]

    out = tv(x)
    loss = sum((o * c).sum() for o, c in zip(out, cot, strict=True))
    loss.backward()
    torch_after = converted(model, tv)["batch_stats"]

    def loss_fn(params, x):
        out, updates = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                   x, train=True, mutable=["batch_stats"])
        loss = sum(jnp.sum(o * jnp.asarray(c.numpy())) for o, c in zip(out, cot, strict=True))
        return loss, (out, updates["batch_stats"])

    grad_fn = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True))
    (_, (jout, jstats)), (gparams, gx) = grad_fn(variables["params"], nchw_to_nhwc(x))
    return dict(tv=tv, model=model, x=x, out=out, torch_after=torch_after, jout=jout,
                jstats=jstats, gparams=gparams, gx=gx)


def test_train_mode_outputs_match_torchvision(train_step_pair):
    out, jout = train_step_pair["out"], train_step_pair["jout"]
    assert isinstance(jout, GoogLeNetOutputs)
    for name in GoogLeNetOutputs._fields:  # logits, aux_logits2, aux_logits1
        ref = getattr(out, name).detach().numpy()
        np.testing.assert_allclose(np.asarray(getattr(jout, name)), ref, atol=1e-4, rtol=0,
                                   err_msg=name)


def test_train_mode_batch_stats_match_torchvision(train_step_pair):
    got, ref = train_step_pair["jstats"], train_step_pair["torch_after"]
    errs = jax.tree_util.tree_map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), got, ref)
    assert max(jax.tree_util.tree_leaves(errs)) < 1e-4


def test_gradients_match_torchvision(train_step_pair):
    p = train_step_pair
    assert max_rel_err(p["gparams"], grads_to_flax(p["model"], p["tv"])) < 1e-4
    assert max_rel_err(p["gx"], nchw_to_nhwc(p["x"].grad)) < 1e-4


def test_outputs_by_mode():
    x = jnp.zeros((2, 64, 64, 3))
    model = get_model("googlenet", num_classes=7)
    variables = model.init(jax.random.key(0), x)
    assert jax.eval_shape(lambda: model.apply(variables, x)).shape == (2, 7)
    out = jax.eval_shape(lambda: model.apply(variables, x, train=True, mutable=["batch_stats"],
                                             rngs={"dropout": jax.random.key(1)})[0])
    assert isinstance(out, GoogLeNetOutputs) and [o.shape for o in out] == [(2, 7)] * 3
    # Without aux heads training mode returns plain logits, as torchvision does.
    model = get_model("googlenet", num_classes=7, aux_logits=False)
    variables = model.init(jax.random.key(0), x)
    out = jax.eval_shape(lambda: model.apply(variables, x, train=True, mutable=["batch_stats"],
                                             rngs={"dropout": jax.random.key(1)})[0])
    assert out.shape == (2, 7)


def test_dtypes():
    x = jnp.zeros((1, 64, 64, 3))
    model = get_model("googlenet", dtype=jnp.bfloat16)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    assert {v.dtype for v in jax.tree_util.tree_leaves(variables)} == {jnp.dtype(jnp.float32)}
    assert jax.eval_shape(lambda: model.apply(variables, x)).dtype == jnp.bfloat16
    model = get_model("googlenet", param_dtype=jnp.bfloat16)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"]
    assert {v.dtype for v in jax.tree_util.tree_leaves(params)} == {jnp.dtype(jnp.bfloat16)}


def test_min_size_is_torchvisions():
    """15x15 is the smallest input torchvision's GoogLeNet runs on; ours agrees."""
    tv = tv_googlenet(aux_logits=False).eval()
    with torch.no_grad():
        tv(torch.zeros(1, 3, 15, 15))
        with pytest.raises(RuntimeError):
            tv(torch.zeros(1, 3, 14, 15))
    model = get_model("googlenet")
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 15, 15, 3))))
    with pytest.raises(ValueError, match="at least 15x15"):
        model.init(jax.random.key(0), jnp.zeros((1, 14, 15, 3)))


@pytest.mark.parametrize(
    "x, error, match",
    [
        (jnp.zeros((224, 224, 3)), ValueError, "rank 4"),
        (jnp.zeros((1, 224, 224, 1)), ValueError, "3 input channels"),
        (jnp.zeros((1, 3, 224, 224)), ValueError, "NCHW"),
        (jnp.zeros((1, 224, 224, 3), jnp.uint8), TypeError, "floating-point"),
    ],
)
def test_input_errors(x, error, match):
    with pytest.raises(error, match=match):
        get_model("googlenet").init(jax.random.key(0), x)
