"""OverFeat models: parameter counts (paper: ~145M fast, ~144M accurate), shapes, errors."""

import jax
import jax.numpy as jnp
import pytest

from jaxvision.models import get_model


def _count(model):
    shape = (1, *model.default_input_shape)
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(v["params"]))


@pytest.mark.parametrize(("name", "params", "size"), [
    # Table 1/3 layouts: conv 34,944 + 614,656 + 1,180,160 + 4,719,616 + 9,438,208, FC
    # 113,249,280 + 12,587,008 + 4,097,000 (fast); see overfeat.py for the accurate one.
    ("overfeat_fast", 145_920_872, 231),
    ("overfeat_accurate", 144_656_488, 221),
])
def test_param_count_and_shapes(name, params, size):
    model = get_model(name)
    assert model.default_input_shape == (size, size, 3)
    assert _count(model) == params
    out = jax.eval_shape(lambda: model.init_with_output(
        jax.random.key(0), jnp.zeros((2, size, size, 3)))[0])
    assert out.shape == (2, 1000)


def test_classifier_map_sizes_at_training_size():
    model = get_model("overfeat_fast", num_classes=5, hidden=(8, 8))
    x = jnp.zeros((1, 231, 231, 3))
    v = model.init(jax.random.key(0), x)
    assert model.apply(v, x, method="features").shape == (1, 6, 6, 1024)
    assert model.apply(v, x, last_pool=False, method="features").shape == (1, 12, 12, 1024)


def test_too_small_input_is_refused():
    model = get_model("overfeat_accurate", num_classes=5, hidden=(8, 8))
    with pytest.raises(ValueError, match="at least"):
        model.init(jax.random.key(0), jnp.zeros((1, 40, 40, 3)))
    # Big enough for the conv stack, not for the dense classifier: points to convolutionize.
    with pytest.raises(ValueError, match="221x221 input.*convolutionize"):
        model.init(jax.random.key(0), jnp.zeros((1, 100, 100, 3)))
    with pytest.raises(TypeError, match="floating-point"):
        model.init(jax.random.key(0), jnp.zeros((1, 221, 221, 3), jnp.uint8))
