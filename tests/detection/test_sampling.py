"""Parity of :mod:`jaxvision.detection.sampling` with torchvision's R-CNN training targets."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import AnchorGenerator, RegionProposalNetwork, RPNHead

from jaxvision.detection.sampling import (
    BELOW_LOW_THRESHOLD,
    BETWEEN_THRESHOLDS,
    BalancedPositiveNegativeSampler,
    Matcher,
    add_gt_proposals,
    assign_targets_to_anchors,
    assign_targets_to_proposals,
    rpn_training_targets,
    select_training_samples,
)

FAST = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
G_MAX, A_MAX = 6, 40
THRESHOLDS = [(0.3, 0.7), (0.5, 0.5), (0.4, 0.6), (0.0, 1.0)]
_ASSIGN_ANCHORS = jax.jit(assign_targets_to_anchors)
_RPN_TARGETS = jax.jit(jax.vmap(rpn_training_targets, in_axes=(None, 0, 0, 0)))
# Sampling every candidate (54 >= 48 proposals + 6 gt, all may be positive) is deterministic.
_SELECT_ALL = jax.jit(functools.partial(select_training_samples,
                                        sampler=BalancedPositiveNegativeSampler(54, 1.0)))


def _grid_boxes(rng: np.random.Generator, n: int, size: int = 12) -> np.ndarray:
    """Boxes with integer corners on a small grid: many exact IoU ties, some IoU 1."""
    xy = rng.integers(0, size, (n, 2))
    wh = rng.integers(1, 6, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def _torch_rpn(batch: int = 256, fraction: float = 0.5) -> RegionProposalNetwork:
    return RegionProposalNetwork(AnchorGenerator(), RPNHead(1, 1), 0.7, 0.3, batch, fraction,
                                 {"training": 1, "testing": 1}, {"training": 1, "testing": 1},
                                 0.7)


def _torch_roi_heads(batch: int, fraction: float) -> RoIHeads:
    return RoIHeads(None, None, None, 0.5, 0.5, batch, fraction, None, 0.05, 0.5, 100)


# --------------------------------------------------------------------------- Matcher


@FAST
@given(seed=st.integers(0, 2**31 - 1), thr=st.sampled_from(THRESHOLDS), allow=st.booleans(),
       levels=st.sampled_from([2, 5, 20]))
def test_matcher_matches_torchvision(seed, thr, allow, levels):
    """Quantised qualities (ties everywhere), padded gt rows and predictions in any order."""
    rng = np.random.default_rng(seed)
    g, a = int(rng.integers(1, G_MAX + 1)), int(rng.integers(1, A_MAX + 1))
    q = (rng.integers(0, levels + 1, (g, a)) / levels).astype(np.float32)
    low, high = thr
    ref = tv_utils.Matcher(high, low, allow)(torch.tensor(q)).numpy()

    gt_rows = np.sort(rng.choice(G_MAX, g, replace=False))
    pred_cols = np.sort(rng.choice(A_MAX, a, replace=False))
    padded = rng.uniform(0, 1, (G_MAX, A_MAX)).astype(np.float32)  # garbage on padding
    padded[np.ix_(gt_rows, pred_cols)] = q
    gt_valid = np.isin(np.arange(G_MAX), gt_rows)
    pred_valid = np.isin(np.arange(A_MAX), pred_cols)
    out = np.asarray(Matcher(high, low, allow)(padded, gt_valid, pred_valid))

    expected = np.where(ref >= 0, gt_rows[np.maximum(ref, 0)], ref)
    np.testing.assert_array_equal(out[pred_cols], expected)
    assert (out[~pred_valid] == BELOW_LOW_THRESHOLD).all()
    assert out.dtype == np.int32


def test_matcher_low_quality_gives_every_tie():
    """Both predictions tying gt 0's best (0.2) are matched; the thresholds alone drop them."""
    q = jnp.asarray([[0.2, 0.1, 0.2, 0.0], [0.0, 0.6, 0.1, 0.8]], jnp.float32)
    with_lq = np.asarray(Matcher(0.7, 0.3, True)(q))
    np.testing.assert_array_equal(with_lq, [0, BETWEEN_THRESHOLDS, 0, 1])
    np.testing.assert_array_equal(np.asarray(Matcher(0.7, 0.3, False)(q)),
                                  [BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS, BELOW_LOW_THRESHOLD, 1])


@pytest.mark.parametrize("allow", [False, True])
def test_matcher_without_ground_truth_is_all_background(allow):
    q = jnp.full((3, 5), 0.9, jnp.float32)
    out = Matcher(0.7, 0.3, allow)(q, jnp.zeros(3, bool))
    np.testing.assert_array_equal(np.asarray(out), np.full(5, BELOW_LOW_THRESHOLD))
    empty = Matcher(0.7, 0.3, allow)(jnp.zeros((0, 5), jnp.float32))
    np.testing.assert_array_equal(np.asarray(empty), np.full(5, BELOW_LOW_THRESHOLD))


def test_matcher_rejects_bad_input():
    with pytest.raises(ValueError, match="low_threshold"):
        Matcher(0.3, 0.7)
    with pytest.raises(ValueError, match=r"match_quality must have rank 2"):
        Matcher(0.7, 0.3)(jnp.zeros(5))
    with pytest.raises(ValueError, match=r"gt_valid must have 3 entries"):
        Matcher(0.7, 0.3)(jnp.zeros((3, 5)), jnp.ones(4, bool))


# --------------------------------------------------------------------------- sampler


@pytest.mark.parametrize("batch,fraction,dtype", [
    (16, 0.25, np.int64), (7, 0.5, np.float32), (64, 1.0, np.int64),
    (0, 0.5, np.int64)])
def test_sampler_counts_and_subsets_match_torchvision(batch, fraction, dtype):
    """Label mixes from all positives to all ignored; one compile per setting."""
    sampler = jax.jit(BalancedPositiveNegativeSampler(batch, fraction))
    tv_sampler = tv_utils.BalancedPositiveNegativeSampler(batch, fraction)
    rng = np.random.default_rng(batch)
    for seed in range(12):
        labels = rng.choice([-2, -1, 0, 1, 2, 3], 48, p=rng.dirichlet(np.ones(6) * 0.3))
        labels = labels.astype(dtype)
        (tpos,), (tneg,) = tv_sampler([torch.tensor(labels)])
        pos, neg = (np.asarray(m) for m in sampler(labels, jax.random.key(seed)))
        assert pos.dtype == bool and neg.dtype == bool
        assert pos.sum() == int(tpos.sum()) and neg.sum() == int(tneg.sum())
        assert (labels[pos] >= 1).all() and (labels[neg] == 0).all()


def test_sampler_is_uniform_over_eligible():
    """Each positive (negative) is drawn with probability num_pos / #positives."""
    labels = np.array([1] * 10 + [0] * 30 + [-1] * 8)
    sampler = BalancedPositiveNegativeSampler(16, 0.25)  # 4 of 10 positives, 12 of 30 negatives
    keys = jax.random.split(jax.random.key(0), 2000)
    pos, neg = jax.jit(jax.vmap(sampler, in_axes=(None, 0)))(labels, keys)
    pos, neg = np.asarray(pos), np.asarray(neg)
    assert (pos.sum(1) == 4).all() and (neg.sum(1) == 12).all()
    np.testing.assert_allclose(pos.mean(0)[:10], 0.4, atol=0.05)
    np.testing.assert_allclose(neg.mean(0)[10:40], 0.4, atol=0.05)
    assert not pos[:, 10:].any() and not neg[:, 40:].any()
    # Different keys give different draws.
    assert len({tuple(np.flatnonzero(p)) for p in pos[:50]}) > 40


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="positive_fraction"):
        BalancedPositiveNegativeSampler(16, 1.5)
    with pytest.raises(ValueError, match="batch_size_per_image"):
        BalancedPositiveNegativeSampler(-1, 0.5)


# --------------------------------------------------------------------------- RPN targets


@pytest.mark.parametrize("seed,num_gt", [(0, 4), (1, 1), (2, 0), (3, 6)])
def test_rpn_targets_match_torchvision(seed, num_gt):
    rng = np.random.default_rng(seed)
    anchors = _grid_boxes(rng, 200)
    gt = _grid_boxes(rng, num_gt)
    gt[: num_gt // 2] = anchors[rng.choice(200, num_gt // 2)]  # IoU-1 matches
    rpn = _torch_rpn()
    (tlabels,), (tmatched,) = rpn.assign_targets_to_anchors(
        [torch.tensor(anchors)], [{"boxes": torch.tensor(gt).reshape(-1, 4)}])
    ttargets = rpn.box_coder.encode_single(tmatched, torch.tensor(anchors))

    # Pad the gt to 8 rows, valid first (the loader's layout), zeros elsewhere.
    padded = np.zeros((8, 4), np.float32)
    padded[:num_gt] = gt
    valid = np.arange(8) < num_gt
    labels, matched = _ASSIGN_ANCHORS(anchors, padded, valid)
    np.testing.assert_array_equal(np.asarray(labels), tlabels.numpy())
    np.testing.assert_array_equal(np.asarray(matched), tmatched.numpy())
    if num_gt == 0:
        assert (np.asarray(labels) == 0).all()

    # Batched as a training step runs it: this image beside an image without boxes.
    batch = _RPN_TARGETS(anchors, np.stack([padded, padded]), np.stack([valid, valid & False]),
                         jax.random.split(jax.random.key(seed), 2))
    targets = jax.tree.map(lambda x: x[0], batch)
    assert (np.asarray(batch.labels[1]) == 0).all()
    assert batch.neg_mask[1].all() and not batch.pos_mask[1].any()  # 200 < 256 anchors
    np.testing.assert_allclose(np.asarray(targets.regression_targets), ttargets.numpy(),
                               rtol=1e-6, atol=1e-6)
    (tpos,), (tneg,) = rpn.fg_bg_sampler([tlabels])
    assert int(targets.pos_mask.sum()) == int(tpos.sum())
    assert int(targets.neg_mask.sum()) == int(tneg.sum())
    assert (tlabels.numpy()[np.asarray(targets.pos_mask)] == 1).all()
    assert (tlabels.numpy()[np.asarray(targets.neg_mask)] == 0).all()


# --------------------------------------------------------------------------- RoI head targets


def test_add_gt_proposals_appends_in_torchvision_order():
    rng = np.random.default_rng(0)
    props, gt = _grid_boxes(rng, 6), _grid_boxes(rng, 3)
    pv, gv = np.array([1, 0, 1, 1, 0, 1], bool), np.array([0, 1, 1], bool)
    boxes, valid = add_gt_proposals(jnp.asarray(props), jnp.asarray(pv), jnp.asarray(gt),
                                    jnp.asarray(gv))
    ref = torch.cat([torch.tensor(props[pv]), torch.tensor(gt[gv])]).numpy()
    np.testing.assert_array_equal(np.asarray(boxes)[np.asarray(valid)], ref)


def _proposals_case(rng: np.random.Generator, p: int, num_gt: int):
    props = _grid_boxes(rng, p)
    gt = _grid_boxes(rng, num_gt)
    # Jittered copies of the gt make foreground proposals; exact copies make ties.
    k = min(p, 3 * num_gt)
    if num_gt:
        src = gt[rng.integers(0, num_gt, k)]
        props[:k] = src + rng.integers(-1, 2, src.shape) * (rng.uniform(size=(k, 1)) < 0.6)
        props[:k, 2:] = np.maximum(props[:k, 2:], props[:k, :2] + 1)
    return props.astype(np.float32), gt, rng.integers(1, 5, num_gt)


@pytest.mark.parametrize("seed,num_gt,gt_first", [(0, 3, True), (1, 1, True), (2, 0, True),
                                                  (3, 5, False), (4, 2, False)])
def test_select_training_samples_matches_torchvision_when_all_are_taken(seed, num_gt, gt_first):
    """batch >= proposals + gt and fraction 1 make both samplers take every candidate."""
    rng = np.random.default_rng(seed)
    p, g_max, p_max = 40, 6, 48
    props, gt, gl = _proposals_case(rng, p, num_gt)
    heads = _torch_roi_heads(p_max + g_max, 1.0)
    tprops, tidx, tlabels, ttargets = heads.select_training_samples(
        [torch.tensor(props)],
        [{"boxes": torch.tensor(gt).reshape(-1, 4), "labels": torch.tensor(gl)}])

    # Proposals scattered over a larger padded array; gt rows first (the loader's layout) or
    # scattered (after a crop drops boxes): matched_idxs then name padded rows.
    rows = np.sort(rng.choice(p_max, p, replace=False))
    pp = np.zeros((p_max, 4), np.float32)
    pp[rows] = props
    pv = np.isin(np.arange(p_max), rows)
    gt_rows = np.arange(num_gt) if gt_first else np.sort(rng.choice(g_max, num_gt, False))
    gp, glp = np.zeros((g_max, 4), np.float32), np.zeros(g_max)
    gp[gt_rows], glp[gt_rows] = gt, gl
    gv = np.isin(np.arange(g_max), gt_rows)
    out = _SELECT_ALL(pp, pv, gp, glp.astype(np.int32), gv, jax.random.key(seed))
    n = int(out.valid.sum())
    assert n == len(tlabels[0])
    assert out.valid[:n].all()
    np.testing.assert_array_equal(np.asarray(out.proposals)[:n], tprops[0].numpy())
    np.testing.assert_array_equal(np.asarray(out.labels)[:n], tlabels[0].numpy())
    expected_idx = gt_rows[tidx[0].numpy()] if num_gt else tidx[0].numpy()
    np.testing.assert_array_equal(np.asarray(out.matched_idxs)[:n], expected_idx)
    np.testing.assert_allclose(np.asarray(out.regression_targets)[:n], ttargets[0].numpy(),
                               rtol=1e-5, atol=1e-5)
    assert (np.asarray(out.labels)[n:] == -1).all()
    assert np.isfinite(np.asarray(out.regression_targets)[n:]).all()
    if num_gt == 0:
        assert (np.asarray(out.labels)[:n] == 0).all()


def test_select_training_samples_default_sampling():
    """512 RoIs at 25% foreground: torchvision's counts, its labels on the chosen proposals."""
    rng = np.random.default_rng(7)
    gt = rng.uniform(0, 200, (8, 2)).repeat(2, 1) + rng.uniform([0, 0, 10, 10], [5, 5, 80, 80],
                                                                (8, 4))
    gl = rng.integers(1, 5, 8)
    # Continuous coordinates: no two proposals alike, so each row finds its index.
    near = gt[rng.integers(0, 8, 400)] + rng.normal(0, 4, (400, 4))
    far = rng.uniform(0, 200, (600, 2)).repeat(2, 1) + rng.uniform([0, 0, 5, 5], [1, 1, 60, 60],
                                                                   (600, 4))
    props = np.concatenate([near, far]).astype(np.float32)
    gt = gt.astype(np.float32)
    tgt = [{"boxes": torch.tensor(gt), "labels": torch.tensor(gl)}]
    heads = _torch_roi_heads(512, 0.25)
    all_props = heads.add_gt_proposals([torch.tensor(props)], [tgt[0]["boxes"]])
    (tidx,), (tlab,) = heads.assign_targets_to_proposals(all_props, [tgt[0]["boxes"]],
                                                         [tgt[0]["labels"]])
    tprops, _, tlabels, _ = heads.select_training_samples([torch.tensor(props)], tgt)

    fn = jax.jit(jax.vmap(select_training_samples, in_axes=(None, None, None, None, None, 0)))
    keys = jax.random.split(jax.random.key(1), 2)
    out = fn(props, np.ones(1000, bool), gt, gl.astype(np.int32), np.ones(8, bool), keys)
    assert out.proposals.shape == (2, 512, 4) and out.labels.shape == (2, 512)
    for i in range(2):
        n = int(out.valid[i].sum())
        lab = np.asarray(out.labels[i])[:n]
        assert n == len(tlabels[0])
        assert (lab > 0).sum() == (tlabels[0] > 0).sum() == min(128, int((tlab > 0).sum()))
        # Rows are proposals in index order; their labels are torchvision's assignment.
        cand = all_props[0].numpy()
        sel = np.asarray(out.proposals[i])[:n]
        at = np.array([np.flatnonzero((cand == b).all(1))[0] for b in sel])
        assert (np.diff(at) > 0).all()
        np.testing.assert_array_equal(lab, tlab.numpy()[at])
        np.testing.assert_array_equal(np.asarray(out.matched_idxs[i])[:n], tidx.numpy()[at])
    assert not np.array_equal(np.asarray(out.proposals[0]), np.asarray(out.proposals[1]))


def test_fast_rcnn_background_interval():
    """The paper's background is IoU in [0.1, 0.5): lower overlaps are ignored, not sampled."""
    gt = jnp.asarray([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]])
    props = jnp.asarray([[0.0, 0.0, 10.0, 12.0],   # IoU 0.83: class 3
                         [0.0, 0.0, 10.0, 3.0],    # IoU 0.3: background
                         [0.0, 0.0, 10.0, 0.5],    # IoU 0.05: ignored by the paper
                         [50.0, 50.0, 60.0, 60.0]])  # IoU 0: ignored by the paper
    args = (props, jnp.ones(4, bool), gt, jnp.asarray([3, 0]), jnp.asarray([True, False]))
    paper_assign = jax.jit(functools.partial(assign_targets_to_proposals,
                                             min_background_iou=0.1))
    _, tv = jax.jit(assign_targets_to_proposals)(*args)
    _, paper = paper_assign(*args)
    np.testing.assert_array_equal(np.asarray(tv), [3, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(paper), [3, 0, -1, -1])
    _, empty = paper_assign(*args[:4], jnp.zeros(2, bool))
    np.testing.assert_array_equal(np.asarray(empty), [0, 0, 0, 0])
    out = jax.jit(functools.partial(select_training_samples, min_background_iou=0.1,
                                    sampler=BalancedPositiveNegativeSampler(64, 0.25)))(
        *args, jax.random.key(0))
    assert int(out.valid.sum()) == 3  # proposal 0, proposal 1, the appended gt box
    np.testing.assert_array_equal(np.asarray(out.labels)[:3], [3, 0, 3])
