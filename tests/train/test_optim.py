"""Optimizers and schedules against torch.optim on the same parameters and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from jaxvision.train.config import load_config
from jaxvision.train.optim import decay_mask, make_optimizer, make_schedule

STEPS = 12


def _problem():
    rng = np.random.default_rng(0)
    params = {"dense": {"kernel": rng.normal(size=(3, 4)).astype(np.float32),
                        "bias": rng.normal(size=(4,)).astype(np.float32)},
              "bn": {"scale": rng.normal(size=(4,)).astype(np.float32)}}
    grads = [jax.tree_util.tree_map(lambda p, i=i: np.random.default_rng(i + 1).normal(
        size=p.shape).astype(np.float32), params) for i in range(STEPS)]
    return params, grads


def _run_ours(config, params, grads):
    tx, _ = make_optimizer(config, STEPS)
    p = jax.tree_util.tree_map(jnp.asarray, params)
    state = tx.init(p)
    for g in grads:
        updates, state = tx.update(jax.tree_util.tree_map(jnp.asarray, g), state, p)
        p = optax.apply_updates(p, updates)
    return p


def _run_torch(params, grads, make_opt, make_sched, decay_all: bool):
    leaves = {"dense.kernel": params["dense"]["kernel"], "dense.bias": params["dense"]["bias"],
              "bn.scale": params["bn"]["scale"]}
    tp = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in leaves.items()}
    decay = [tp[k] for k in tp if decay_all or k == "dense.kernel"]
    no_decay = [tp[k] for k in tp if not (decay_all or k == "dense.kernel")]
    opt = make_opt(decay, no_decay)
    sched = make_sched(opt)
    for g in grads:
        for k, v in tp.items():
            a, b = k.split(".")
            v.grad = torch.tensor(g[a][b])
        opt.step()
        sched.step()
    return {k: v.detach().numpy() for k, v in tp.items()}


def _compare(ours, ref):
    np.testing.assert_allclose(np.asarray(ours["dense"]["kernel"]), ref["dense.kernel"],
                               rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(np.asarray(ours["dense"]["bias"]), ref["dense.bias"],
                               rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(np.asarray(ours["bn"]["scale"]), ref["bn.scale"],
                               rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("decay_all", [False, True])
def test_sgd_momentum_step_schedule_matches_torch(nesterov, decay_all):
    config = load_config("lenet5_mnist", [
        "optimizer.name=sgd", "optimizer.learning_rate=0.1", "optimizer.momentum=0.9",
        f"optimizer.nesterov={nesterov}", "optimizer.weight_decay=0.01",
        f"optimizer.decay_norm_and_bias={decay_all}", "schedule.name=step",
        "schedule.boundaries=[4, 8]", "schedule.decay_factor=0.1", "schedule.warmup_steps=0"])
    params, grads = _problem()

    def make_opt(decay, no_decay):
        return torch.optim.SGD([{"params": decay, "weight_decay": 0.01},
                                {"params": no_decay, "weight_decay": 0.0}],
                               lr=0.1, momentum=0.9, nesterov=nesterov)

    ref = _run_torch(params, grads, make_opt,
                     lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [4, 8], 0.1), decay_all)
    _compare(_run_ours(config, params, grads), ref)


def test_adamw_cosine_matches_torch():
    config = load_config("lenet5_mnist", [
        "optimizer.name=adamw", "optimizer.learning_rate=0.01", "optimizer.weight_decay=0.05",
        "schedule.name=cosine", "schedule.warmup_steps=0", f"num_train_steps={STEPS}"])
    params, grads = _problem()

    def make_opt(decay, no_decay):
        return torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                                  {"params": no_decay, "weight_decay": 0.0}], lr=0.01)

    ref = _run_torch(params, grads, make_opt,
                     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, STEPS), False)
    _compare(_run_ours(config, params, grads), ref)


def test_warmup_then_cosine_matches_torch_sequential_lr():
    config = load_config("lenet5_mnist", ["optimizer.learning_rate=0.4", "schedule.name=cosine",
                                          "schedule.warmup_steps=5", "num_train_steps=25"])
    sched = make_schedule(config, 25)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.4)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / 5, end_factor=1.0,
                                             total_iters=4)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)
    torch_sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[5])
    ours, ref = [], []
    for s in range(25):
        ours.append(float(sched(s)))
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        torch_sched.step()
    # torch's LinearLR reaches the peak at step 4 and the cosine starts at step 5 from the
    # peak; ours reaches the peak at step warmup-1 = 4 and decays from step 5 on.
    np.testing.assert_allclose(ours[:5], ref[:5], rtol=1e-6)
    np.testing.assert_allclose(ours[5:], ref[5:], rtol=1e-5, atol=1e-7)


def test_decay_mask_excludes_biases_and_norm_params():
    params = {"conv": {"kernel": jnp.zeros((3, 3, 1, 2)), "bias": jnp.zeros(2)},
              "bn": {"scale": jnp.zeros(2), "bias": jnp.zeros(2)}}
    assert decay_mask(params) == {"conv": {"kernel": True, "bias": False},
                                  "bn": {"scale": False, "bias": False}}
    assert all(jax.tree_util.tree_leaves(decay_mask(params, True)))


def _tree():
    return {"backbone": {"features.0": {"kernel": jnp.ones((3, 3, 1, 2)), "bias": jnp.ones(2)}},
            "classifier.0": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)},
            "regressor.0": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)}}


def test_frozen_mask_matches_whole_paths_and_module_paths():
    from jaxvision.train.optim import frozen_mask

    mask = frozen_mask(_tree(), ["backbone", r"classifier\..*"])
    assert mask == {"backbone": {"features.0": {"kernel": True, "bias": True}},
                    "classifier.0": {"kernel": True, "bias": True},
                    "regressor.0": {"kernel": False, "bias": False}}
    assert frozen_mask(_tree(), [".*/bias"])["regressor.0"] == {"kernel": False, "bias": True}
    # 'back' is a prefix of a module name, not a module: it freezes nothing, and says so.
    with pytest.raises(ValueError, match=r"\['back'\] match no parameter.*backbone/features"):
        frozen_mask(_tree(), ["backbone", "back"])
    with pytest.raises(ValueError, match="is not a regular expression"):
        frozen_mask(_tree(), ["("])


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_frozen_parameters_stay_fixed_and_the_rest_train_as_without_freezing(name):
    base = [f"optimizer.name={name}", "optimizer.learning_rate=0.1",
            "optimizer.weight_decay=0.1", "optimizer.grad_clip_norm=1.0",
            "schedule.warmup_steps=0"]
    frozen_cfg = load_config("lenet5_mnist", [*base, "optimizer.frozen=['backbone']"])
    free_cfg = load_config("lenet5_mnist", base)
    params = _tree()
    grads = [jax.tree_util.tree_map(lambda p, i=i: jnp.full_like(p, 0.1 * (i + 1)), params)
             for i in range(3)]

    def run(config, tree, gs):
        tx, _ = make_optimizer(config, STEPS)
        p, state = tree, tx.init(tree)
        for g in gs:
            updates, state = tx.update(g, state, p)
            p = optax.apply_updates(p, updates)
        return p

    got = run(frozen_cfg, params, grads)
    jax.tree_util.tree_map(np.testing.assert_array_equal, got["backbone"], params["backbone"])
    # The trained part moves as the same optimizer on that part alone (clipping and decay
    # see only the trained parameters).
    trained = {k: v for k, v in params.items() if k != "backbone"}
    ref = run(free_cfg, trained, [{k: v for k, v in g.items() if k != "backbone"}
                                  for g in grads])
    for k in trained:
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
                               got[k], ref[k])
        assert not np.allclose(got[k]["kernel"], params[k]["kernel"])
