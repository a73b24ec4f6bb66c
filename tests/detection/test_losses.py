"""Parity of :mod:`jaxvision.detection.losses` with torchvision's R-CNN training losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import fastrcnn_loss as tv_fastrcnn_loss
from torchvision.models.detection.rpn import AnchorGenerator, RegionProposalNetwork, RPNHead

from jaxvision.detection.losses import fast_rcnn_multitask_loss, fastrcnn_loss, rpn_loss
from jaxvision.detection.sampling import BalancedPositiveNegativeSampler

B, A, R, C = 2, 300, 64, 5
_FASTRCNN = jax.jit(fastrcnn_loss)
_SAMPLE = jax.jit(jax.vmap(BalancedPositiveNegativeSampler(64, 0.5)))


def _rpn_case(seed: int):
    """Logits, deltas, labels (1 / 0 / -1), targets (-inf on background) and our samples."""
    rng = np.random.default_rng(seed)
    objectness = rng.normal(0, 3, (B, A)).astype(np.float32)
    deltas = rng.normal(0, 0.3, (B, A, 4)).astype(np.float32)
    labels = rng.choice([1.0, 0.0, -1.0], (B, A), p=[0.1, 0.7, 0.2]).astype(np.float32)
    targets = rng.normal(0, 0.3, (B, A, 4)).astype(np.float32)
    # Background anchors of an image without boxes have -inf codes in torchvision too.
    targets[labels != 1, 2:] = -np.inf
    keys = jax.random.split(jax.random.key(seed), B)
    pos, neg = _SAMPLE(labels, keys)
    return objectness, deltas, labels, targets, np.asarray(pos), np.asarray(neg)


def _torch_rpn_loss(objectness, deltas, labels, targets, pos, neg):
    """torchvision's ``compute_loss`` on exactly our samples.

    The anchors we did not sample are labelled -1 (ignored) and torchvision's sampler is
    set to take every remaining candidate, so its own code computes the loss on our set.
    """
    rpn = RegionProposalNetwork(AnchorGenerator(), RPNHead(1, 1), 0.7, 0.3, A, 1.0,
                                {"training": 1, "testing": 1}, {"training": 1, "testing": 1},
                                0.7)
    ob = torch.tensor(objectness.reshape(-1, 1), requires_grad=True)
    de = torch.tensor(deltas.reshape(-1, 4), requires_grad=True)
    lab = np.where(pos | neg, labels, -1.0).astype(np.float32)
    obj_loss, box_loss = rpn.compute_loss(ob, de, list(torch.tensor(lab)),
                                          list(torch.tensor(targets)))
    (obj_loss + 3 * box_loss).backward()
    return (obj_loss.item(), box_loss.item(), ob.grad.numpy().reshape(B, A),
            de.grad.numpy().reshape(B, A, 4))


@pytest.mark.parametrize("seed", [0, 1])
def test_rpn_loss_matches_torchvision(seed):
    objectness, deltas, labels, targets, pos, neg = _rpn_case(seed)
    assert pos.sum() > 0 and neg.sum() > 0
    t_obj, t_box, t_gob, t_gde = _torch_rpn_loss(objectness, deltas, labels, targets, pos, neg)

    def total(ob, de):
        o, b = rpn_loss(ob, de, labels, targets, pos, neg)
        return o + 3 * b, (o, b)

    (_, (obj, box)), (gob, gde) = jax.jit(jax.value_and_grad(total, argnums=(0, 1),
                                                            has_aux=True))(objectness, deltas)
    np.testing.assert_allclose(float(obj), t_obj, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(box), t_box, rtol=1e-5, atol=1e-6)
    assert t_box > 0
    np.testing.assert_allclose(np.asarray(gob), t_gob, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(gde), t_gde, rtol=1e-5, atol=1e-7)
    assert np.isfinite(np.asarray(gde)).all()


def test_rpn_loss_nothing_sampled_is_zero_not_nan():
    objectness, deltas, labels, targets, pos, _ = _rpn_case(0)
    none = np.zeros_like(pos)
    obj, box = jax.jit(rpn_loss)(objectness, deltas, labels, targets, none, none)
    assert float(obj) == 0.0 and float(box) == 0.0


def _roi_case(seed: int):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (B, R, C)).astype(np.float32)
    boxes = rng.normal(0, 0.5, (B, R, 4 * C)).astype(np.float32)
    labels = rng.choice(np.arange(C), (B, R), p=[0.6] + [0.1] * (C - 1)).astype(np.int32)
    targets = rng.normal(0, 0.5, (B, R, 4)).astype(np.float32)
    valid = np.arange(R)[None] < np.array([[R - 10], [R - 23]])  # samples first, padding after
    labels[~valid] = -1
    targets[~valid] = np.nan  # padding holds anything
    return logits, boxes, labels, targets, valid


def test_fastrcnn_loss_matches_torchvision():
    logits, boxes, labels, targets, valid = _roi_case(0)
    tl = torch.tensor(logits[valid], requires_grad=True)
    tb = torch.tensor(boxes[valid], requires_grad=True)
    per_image = [torch.tensor(labels[i][valid[i]]).long() for i in range(B)]
    per_image_t = [torch.tensor(targets[i][valid[i]]) for i in range(B)]
    t_cls, t_box = tv_fastrcnn_loss(tl, tb, per_image, per_image_t)
    (t_cls + 2 * t_box).backward()

    def total(lo, bo):
        c, b = fastrcnn_loss(lo, bo, labels, targets, valid)
        return c + 2 * b, (c, b)

    (_, (cls, box)), (gl, gb) = jax.jit(jax.value_and_grad(total, argnums=(0, 1),
                                                          has_aux=True))(logits, boxes)
    np.testing.assert_allclose(float(cls), t_cls.item(), rtol=1e-5)
    np.testing.assert_allclose(float(box), t_box.item(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gl)[valid], tl.grad.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(gb)[valid], tb.grad.numpy(), rtol=1e-5, atol=1e-7)
    assert not np.asarray(gl)[~valid].any() and not np.asarray(gb)[~valid].any()


def test_fastrcnn_loss_flat_batch_and_default_mask():
    """``[N, C]`` inputs as torchvision takes them; ``valid`` defaults to ``labels >= 0``."""
    logits, boxes, labels, targets, valid = _roi_case(1)
    lo, bo, la, ta = logits[valid], boxes[valid], labels[valid], targets[valid]
    t_cls, t_box = tv_fastrcnn_loss(torch.tensor(lo), torch.tensor(bo),
                                    [torch.tensor(la).long()], [torch.tensor(ta)])
    cls, box = _FASTRCNN(lo, bo, la, ta)
    np.testing.assert_allclose([float(cls), float(box)], [t_cls.item(), t_box.item()],
                               rtol=1e-5)
    cls2, box2 = _FASTRCNN(logits, boxes, labels, np.where(valid[..., None], targets, 0))
    np.testing.assert_allclose([float(cls2), float(box2)], [float(cls), float(box)], rtol=1e-6)


def test_fast_rcnn_multitask_loss_is_the_papers():
    """Girshick 2015, eq. 1-3: log loss plus smooth L1 (beta 1) on the true class's box."""
    logits, boxes, labels, targets, valid = _roi_case(2)
    lo, bo, la, ta = (torch.tensor(x[valid]) for x in (logits, boxes, labels, targets))
    la = la.long()
    fg = torch.where(la > 0)[0]
    l_loc = F.smooth_l1_loss(bo.reshape(-1, C, 4)[fg, la[fg]], ta[fg], beta=1.0,
                             reduction="sum") / la.numel()
    ref = F.cross_entropy(lo, la) + 0.5 * l_loc
    out = jax.jit(fast_rcnn_multitask_loss)(logits, boxes, labels, targets, valid,
                                            box_weight=0.5)
    np.testing.assert_allclose(float(out), ref.item(), rtol=1e-5)
    # The beta matters: torchvision's 1/9 gives another box loss on the same inputs.
    assert abs(float(_FASTRCNN(logits, boxes, labels, targets, valid)[1])
               - l_loc.item()) > 1e-4


def test_losses_reject_mismatched_shapes():
    logits, boxes, labels, targets, valid = _roi_case(0)
    with pytest.raises(ValueError, match=r"box_regression must have 20 entries in its last axis"):
        fastrcnn_loss(logits, boxes[..., :16], labels, targets, valid)
    objectness, deltas, labels, targets, pos, neg = _rpn_case(0)
    with pytest.raises(ValueError, match=r"pos_mask must have shape \[2, 300\]"):
        rpn_loss(objectness, deltas, labels, targets, pos[0], neg)
    with pytest.raises(TypeError, match="objectness must be floating"):
        rpn_loss(jnp.zeros((2, 300), jnp.int32), deltas, labels, targets, pos, neg)
