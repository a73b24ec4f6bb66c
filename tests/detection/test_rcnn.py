"""R-CNN's parts: warp against PIL, fine-tuning labels, SVMs with hard-negative mining, ridge
box regression, the feature cache, detections, and a tiny end-to-end run on BCCD."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxvision.detection.rcnn import (
    RCNN_BOX_CODER,
    FeatureCache,
    apply_box_regression,
    context_boxes,
    feature_norm_scale,
    finetune_samples,
    fit_box_regressors,
    fit_svms,
    image_regions,
    rcnn_detections,
    region_features,
    svm_objective,
    train_svms,
    warp_regions,
)


def _pil_resize(image: np.ndarray, box, size: int) -> np.ndarray:
    """PIL's bilinear resize of ``box`` of a float image, channel by channel (mode "F")."""
    chans = [np.asarray(Image.fromarray(image[..., c], mode="F").resize(
        (size, size), Image.BILINEAR, box=tuple(float(v) for v in box)))
        for c in range(image.shape[-1])]
    return np.stack(chans, axis=-1)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).uniform(0, 1, (40, 50, 3)).astype(np.float32)


def test_warp_without_context_equals_pil_resize_of_the_box(image):
    # Upscaling (PIL's bilinear then has no antialiasing, like R-CNN's warp).
    boxes = np.array([[5.3, 7.1, 17.9, 20.4], [0.0, 0.0, 50.0, 40.0], [30, 2, 48.5, 9]],
                     np.float32)
    out = np.asarray(warp_regions(image, boxes, out_size=64, context_padding=0))
    assert out.shape == (3, 64, 64, 3) and out.dtype == np.float32
    for k, box in enumerate(boxes):
        np.testing.assert_allclose(out[k], _pil_resize(image, box, 64), atol=2e-5)


def test_warp_with_context_is_the_dilated_box_and_puts_the_box_at_p(image):
    boxes = np.array([[15.0, 12.0, 30.0, 25.0], [20.2, 10.5, 27.7, 31.0]], np.float32)
    s, p = 48, 8
    dilated = np.asarray(context_boxes(boxes, s, p))
    # Independent geometry: the original box spans [p, s - p] of the warped square.
    for b, d in zip(boxes, dilated, strict=True):
        np.testing.assert_allclose((b[:2] - d[:2]) / (d[2:] - d[:2]) * s, [p, p], rtol=1e-5)
        np.testing.assert_allclose((b[2:] - d[:2]) / (d[2:] - d[:2]) * s, [s - p, s - p],
                                   rtol=1e-5)
    out = np.asarray(jax.jit(lambda im, b: warp_regions(im, b, out_size=s,
                                                        context_padding=p))(image, boxes))
    for k in range(2):
        np.testing.assert_allclose(out[k], _pil_resize(image, dilated[k], s), atol=2e-5)


def _reference_warp(image, box, s, fill):
    """Per-pixel loops: clamp-bilinear inside the image, ``fill`` outside."""
    h, w, _ = image.shape
    out = np.empty((s, s, image.shape[2]), np.float64)
    for i in range(s):
        y = box[1] + (i + 0.5) * (box[3] - box[1]) / s
        for j in range(s):
            x = box[0] + (j + 0.5) * (box[2] - box[0]) / s
            if not (0 <= x <= w and 0 <= y <= h):
                out[i, j] = fill
                continue
            u, v = min(max(x - 0.5, 0), w - 1), min(max(y - 0.5, 0), h - 1)
            x0, y0 = int(np.floor(u)), int(np.floor(v))
            x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
            a, b = u - x0, v - y0
            out[i, j] = ((1 - b) * ((1 - a) * image[y0, x0] + a * image[y0, x1])
                         + b * ((1 - a) * image[y1, x0] + a * image[y1, x1]))
    return out


def test_warp_fills_outside_the_image_and_masks_padding(image):
    fill = np.array([0.25, -1.0, 3.0], np.float32)
    boxes = np.array([[-10.0, -6.0, 20.0, 18.0], [40.0, 30.0, 70.0, 55.0], [1, 1, 5, 5]],
                     np.float32)
    valid = np.array([True, True, False])
    out = np.asarray(warp_regions(image, boxes, valid, out_size=16, context_padding=2,
                                  fill=fill))
    dilated = np.asarray(context_boxes(boxes, 16, 2))
    for k in range(2):
        np.testing.assert_allclose(out[k], _reference_warp(image, dilated[k], 16, fill),
                                   atol=2e-5)
    assert (out[0, 0, 0] == fill).all() and (out[1, -1, -1] == fill).all()
    assert not out[2].any()


def test_warp_rejects_bad_arguments(image):
    with pytest.raises(ValueError, match=r"warp_regions: image must have rank 3"):
        warp_regions(image[None], np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="context_padding"):
        warp_regions(image, np.zeros((1, 4), np.float32), out_size=16, context_padding=8)


def test_finetune_samples_label_at_05_iou_with_32_of_128_positives():
    gt = np.array([[10, 10, 50, 50], [60, 60, 100, 100]], np.float32)
    labels = np.array([2, 1], np.int32)
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-6, 6, (300, 4)).astype(np.float32)
    near = np.concatenate([gt[0] + jitter[:150], gt[1] + jitter[150:]])
    far = np.tile(np.array([[110, 0, 140, 30]], np.float32), (100, 1)) + jitter[:100]
    proposals = np.concatenate([near, far])
    valid = np.ones(len(proposals), bool)
    out = jax.jit(lambda *a: finetune_samples(*a))(proposals, valid, gt, labels,
                                                    np.ones(2, bool), jax.random.key(0))
    lab, v = np.asarray(out.labels), np.asarray(out.valid)
    assert lab.shape == (128,) and v.all()
    assert (lab > 0).sum() == 32 and (lab == 0).sum() == 96
    iou = np.asarray(jax.vmap(lambda b: jnp.max(
        jnp.asarray(__import__("jaxvision").ops.box_iou(jnp.asarray(gt), b[None]))))(
        out.proposals))
    assert (iou[lab > 0] >= 0.5).all() and (iou[lab == 0] < 0.5).all()


def test_image_regions_overlaps_per_class():
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [0, 0, 0, 0]], np.float32)
    gt_labels = np.array([1, 2, 0], np.int32)
    gt_valid = np.array([True, True, False])
    props = np.array([[0, 0, 10, 5], [20, 0, 30, 10], [50, 50, 60, 60]], np.float32)
    r = image_regions(props, np.array([True, True, False]), gt, gt_labels, gt_valid, 2)
    assert r.boxes.shape == (6, 4)
    np.testing.assert_array_equal(r.valid, [True, True, False, True, True, False])
    np.testing.assert_array_equal(r.gt_label, [1, 2, 0, 0, 0, 0])
    np.testing.assert_allclose(r.class_iou[:5], [[1, 0], [0, 1], [0, 0], [0.5, 0], [0, 1]])
    rows = np.array([0, 1, 3, 4])
    np.testing.assert_array_equal(np.asarray(r.target_label)[rows], [1, 2, 1, 2])
    np.testing.assert_allclose(np.asarray(r.target_iou)[rows], [1, 1, 0.5, 1])
    np.testing.assert_array_equal(r.target_box[3], gt[0])


def _separable(n=600, d=16, c=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(d, c)).astype(np.float32)
    s = x @ w + 1.0
    y = np.where(s > 0, 1.0, -1.0).astype(np.float32)
    mask = np.abs(s) > 0.5  # a margin: linearly separable
    return x * feature_norm_scale(x), y, mask


def test_svms_separate_a_linearly_separable_problem():
    x, y, mask = _separable()
    svms = fit_svms(x, y, mask, C=0.1, pos_weight=1.0, epochs=300)
    assert svms.W.shape == (16, 3) and svms.b.shape == (3,)
    scores = x @ np.asarray(svms.W) + np.asarray(svms.b)
    assert (np.sign(scores)[mask] == y[mask]).all()
    # Each class's problem is independent: one column alone reaches the same optimum.
    one = fit_svms(x, y[:, 1:2], mask[:, 1:2], C=0.1, pos_weight=1.0, epochs=300)
    joint = svm_objective(svms, x, y, mask, C=0.1)
    alone = svm_objective(one, x, y[:, 1:2], mask[:, 1:2], C=0.1)
    np.testing.assert_allclose(float(alone[0]), float(joint[1]), rtol=0.01)


def test_hard_negative_mining_adds_only_margin_violators_and_lowers_the_loss():
    rng = np.random.default_rng(1)
    n_pos, n_neg, d, c = 40, 3000, 12, 2
    pos = rng.normal(size=(2 * n_pos, d)).astype(np.float32) + 1.5
    neg = rng.normal(size=(n_neg, d)).astype(np.float32)
    x = np.concatenate([pos, neg]) * 2.0
    gt_label = np.concatenate([np.repeat([1, 2], n_pos), np.zeros(n_neg, int)])
    class_iou = np.zeros((len(x), c), np.float32)
    class_iou[:n_pos, 0] = class_iou[n_pos:2 * n_pos, 1] = 1.0
    class_iou[2 * n_pos:2 * n_pos + 100, 0] = 0.4  # in between: neither positive nor negative
    valid = np.ones(len(x), bool)
    out = train_svms(x, gt_label, class_iou, valid, c, C=0.05, initial_negatives=30,
                     rounds=3, epochs=20)
    rounds = out.rounds
    assert len(rounds) >= 2 and rounds[0].added.any()
    eligible = (class_iou < 0.3) & (gt_label[:, None] != np.arange(1, c + 1))
    for r in rounds:
        scores = x @ np.asarray(r.svms.W) + np.asarray(r.svms.b)
        assert (scores[r.added] > -1.0).all()  # only margin violators ...
        assert not (r.added & r.cache).any() and not (r.added & ~eligible).any()  # ... new
        assert not (r.cache & ~eligible).any()
    assert rounds[0].cache.sum(axis=0).tolist() == [30, 30]
    assert (rounds[-1].negative_hinge < rounds[0].negative_hinge).all()
    assert (rounds[-1].objective < rounds[0].objective).all()
    assert out.svms is rounds[-1].svms


def _regression_problem(seed=0, n=400, d=6, c=2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(c, d, 4)).astype(np.float32) * 0.05
    b = rng.normal(size=(c, 4)).astype(np.float32) * 0.05
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(20, 80, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    label = rng.integers(1, c + 1, n)
    codes = np.einsum("nd,ndj->nj", x, w[label - 1]) + b[label - 1]
    target = np.asarray(RCNN_BOX_CODER.decode_single(jnp.asarray(codes, jnp.float32),
                                                     boxes))
    return x, boxes, target, label, codes, w, b


def test_ridge_box_regression_recovers_a_linear_map_and_equals_the_normal_equations():
    x, boxes, target, label, codes, w, b = _regression_problem()
    iou = np.full(len(x), 0.8, np.float32)
    valid = np.ones(len(x), bool)
    reg = fit_box_regressors(x, boxes, target, label, iou, valid, 2, lam=1e-4)
    np.testing.assert_allclose(np.asarray(reg.W), w, atol=2e-3)
    np.testing.assert_allclose(np.asarray(reg.b), b, atol=2e-3)
    out = np.asarray(apply_box_regression(x, boxes, reg))
    assert out.shape == (len(x), 2, 4)
    np.testing.assert_allclose(out[np.arange(len(x)), label - 1], target, atol=0.05)

    # lambda = 1000 (R-CNN) and the IoU > 0.6 rule: the closed form of the normal equations.
    iou[::3] = 0.55
    valid[1::7] = False
    reg = fit_box_regressors(x, boxes, target, label, iou, valid, 2, lam=1000.0)
    t = np.asarray(RCNN_BOX_CODER.encode_single(target, boxes), np.float64)
    for cls in (1, 2):
        m = (label == cls) & (iou > 0.6) & valid
        a = np.concatenate([x[m], np.ones((m.sum(), 1))], 1).astype(np.float64)
        reg_diag = np.diag([1000.0] * x.shape[1] + [0.0])
        sol = np.linalg.solve(a.T @ a + reg_diag, a.T @ t[m])
        np.testing.assert_allclose(np.asarray(reg.W[cls - 1]), sol[:-1], atol=1e-5)
        np.testing.assert_allclose(np.asarray(reg.b[cls - 1]), sol[-1], atol=1e-5)


def test_box_regressor_of_a_class_without_samples_is_the_identity():
    x, boxes, target, label, *_ = _regression_problem()
    reg = fit_box_regressors(x, boxes, target, np.ones_like(label), np.ones(len(x)),
                             np.ones(len(x), bool), 3)
    assert not np.asarray(reg.W[1:]).any() and not np.asarray(reg.b[1:]).any()
    np.testing.assert_allclose(np.asarray(apply_box_regression(x, boxes, reg))[:, 2], boxes,
                               atol=1e-4)


def test_detections_threshold_and_per_class_nms():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60],
                      [70, 70, 80, 80]], np.float32)
    scores = np.array([[2.0, -5], [1.5, -5], [-5, 1.0], [0.5, -0.5], [9.0, 9.0]], np.float32)
    valid = np.array([True, True, True, True, False])
    det = jax.jit(lambda b, s, v: rcnn_detections(b, s, v, (40, 60), max_detections=6))(
        boxes, scores, valid)
    assert det.boxes.shape == (6, 4) and det.labels.dtype == jnp.int32
    v = np.asarray(det.valid)
    np.testing.assert_array_equal(v, [True, True, False, False, False, False])
    # Box 1 is suppressed by box 0 (same class, IoU 0.68 > 0.3), box 2's class-2 score stays;
    # box 3 lies outside the 40 x 60 image; box 4 is padding.
    np.testing.assert_allclose(np.asarray(det.scores)[v], [2.0, 1.0])
    np.testing.assert_array_equal(np.asarray(det.labels)[v], [1, 2])


def test_feature_cache_shards_are_atomic_and_sized(tmp_path):
    cache = FeatureCache(tmp_path / "feats")
    assert cache.size_bytes() == 0 and cache.names() == []
    cache.write("img0", features=np.ones((3, 4), np.float32), labels=np.arange(3))
    cache.write("img1", features=np.zeros((2, 4), np.float32), labels=np.arange(2))
    assert cache.names() == ["img0", "img1"] and "img0" in cache
    assert not list((tmp_path / "feats").glob("*.tmp"))
    assert cache.size_bytes() == sum(p.stat().st_size for p in (tmp_path / "feats").iterdir())
    both = cache.load_all()
    assert both["features"].shape == (5, 4)
    np.testing.assert_array_equal(both["labels"], [0, 1, 2, 0, 1])
    with pytest.raises(ValueError, match="plain file stem"):
        cache.write("../x", a=np.zeros(1))
    with pytest.raises(FileNotFoundError, match="no shard 'img9'"):
        cache.read("img9")


def test_rcnn_end_to_end_on_two_bccd_images(shared_data, tmp_path):
    pytest.importorskip("cv2")
    from jaxvision.data import VOCSource
    from jaxvision.detection.proposals import SelectiveSearch

    root = shared_data / "bccd"
    if not root.is_dir():
        pytest.skip(f"BCCD not found at {root}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = VOCSource(root, "test")
    num_classes = src.num_classes
    search = SelectiveSearch(short_side=96, max_proposals=64)
    # A tiny random CNN (two 3x3 convs, global average pool): only the shapes matter here.
    k1, k2 = jax.random.split(jax.random.key(0))
    w1 = jax.random.normal(k1, (3, 3, 3, 8)) * 0.3
    w2 = jax.random.normal(k2, (3, 3, 8, 16)) * 0.2

    @jax.jit
    def feature_fn(x):
        dn = ("NHWC", "HWIO", "NHWC")
        h = jax.nn.relu(jax.lax.conv_general_dilated(x, w1, (2, 2), "SAME",
                                                     dimension_numbers=dn))
        h = jax.nn.relu(jax.lax.conv_general_dilated(h, w2, (2, 2), "SAME",
                                                     dimension_numbers=dn))
        return jnp.mean(h, axis=(1, 2))

    regions_fn = jax.jit(image_regions, static_argnums=(5,))
    cache = FeatureCache(tmp_path / "features")
    for i in range(2):
        ex = src[i]
        image = ex["image"].astype(np.float32) / 255.0 - 0.5
        props = search(ex["image"])
        regions = regions_fn(props.boxes, props.valid, ex["boxes"], ex["labels"],
                             ex["box_valid"], num_classes)
        feats = region_features(feature_fn, image, regions.boxes, regions.valid, out_size=32,
                                context_padding=4, chunk=64)
        assert feats.shape == (len(regions.boxes), 16)
        cache.write(src.ids[i], features=feats,
                    **{k: np.asarray(v) for k, v in regions._asdict().items()})
    assert cache.size_bytes() > 0
    data = cache.load_all()
    scale = feature_norm_scale(data["features"], data["valid"])
    x = data["features"] * scale
    svm = train_svms(x, data["gt_label"], data["class_iou"], data["valid"], num_classes,
                     initial_negatives=50, rounds=1, epochs=5)
    assert svm.svms.W.shape == (16, num_classes)
    reg = fit_box_regressors(x, data["boxes"], data["target_box"], data["target_label"],
                             data["target_iou"], data["valid"], num_classes)
    assert reg.W.shape == (num_classes, 16, 4)

    ex = src[2]
    image = ex["image"].astype(np.float32) / 255.0 - 0.5
    props = search(ex["image"])
    feats = region_features(feature_fn, image, props.boxes, props.valid, out_size=32,
                            context_padding=4, chunk=64) * scale
    scores = feats @ np.asarray(svm.svms.W) + np.asarray(svm.svms.b)
    boxes = jax.jit(apply_box_regression)(feats, props.boxes, reg)
    det = jax.jit(lambda b, s, v: rcnn_detections(b, s, v, (480, 640), score_threshold=-10.0,
                                                  max_detections=20))(boxes, scores,
                                                                      props.valid)
    assert det.boxes.shape == (20, 4) and det.scores.shape == (20,)
    assert det.labels.shape == (20,) and det.valid.shape == (20,)
    v = np.asarray(det.valid)
    assert v.any()
    b = np.asarray(det.boxes)[v]
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= 640).all() and (b[:, 3] <= 480).all()
    assert set(np.asarray(det.labels)[v].tolist()) <= {1, 2, 3}
